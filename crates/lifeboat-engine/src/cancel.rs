//! Cancellation: a token the caller sets (the CLI on SIGINT or SIGTERM, the daemon when a job
//! is stopped) and long operations watch. An operation abandoned through [`Cancel::guard`]
//! leaves what its own cleanup leaves: no snapshot, no lock, the destination as it was.

use std::future::Future;

use lifeboat_repo::StopFlag;
use tokio::sync::watch;

/// Set once, seen by every clone.
#[derive(Clone, Debug)]
pub struct Cancel {
    tx: std::sync::Arc<watch::Sender<bool>>,
    rx: watch::Receiver<bool>,
}

/// What a guarded operation returns when it was cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cancelled;

impl Default for Cancel {
    fn default() -> Self {
        Self::new()
    }
}

impl Cancel {
    pub fn new() -> Self {
        let (tx, rx) = watch::channel(false);
        Self {
            tx: std::sync::Arc::new(tx),
            rx,
        }
    }

    pub fn cancel(&self) {
        self.tx.send_replace(true);
    }

    pub fn is_cancelled(&self) -> bool {
        *self.rx.borrow()
    }

    /// Run blocking `f` off the async threads with a [`StopFlag`] that is set when this token
    /// is (or when this future is dropped), and wait for `f` to return: a stoppable call
    /// (a restore between packs) returns soon after, so that what it wrote can be removed
    /// once nothing writes there any more.
    pub async fn blocking_until<T, F>(&self, f: F) -> T
    where
        F: FnOnce(StopFlag) -> T + Send + 'static,
        T: Send + 'static,
    {
        struct StopOnDrop(StopFlag, tokio::task::JoinHandle<()>);
        impl Drop for StopOnDrop {
            fn drop(&mut self) {
                self.0.stop();
                self.1.abort();
            }
        }
        let flag = StopFlag::new();
        let mut rx = self.rx.clone();
        let watcher = tokio::spawn(async move {
            if rx.wait_for(|set| *set).await.is_ok() {
                flag.stop();
            }
        });
        let _stop = StopOnDrop(flag, watcher);
        lifeboat_repo::blocking(move || f(flag)).await
    }

    /// Run `fut` unless (or until) the token is set; then `fut` is dropped.
    pub async fn guard<T>(&self, fut: impl Future<Output = T>) -> Result<T, Cancelled> {
        let mut rx = self.rx.clone();
        tokio::select! {
            biased;
            _ = rx.wait_for(|set| *set) => Err(Cancelled),
            r = fut => Ok(r),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_guarded_operation_ends_when_the_token_is_set() {
        let cancel = Cancel::new();
        assert_eq!(cancel.guard(async { 7 }).await, Ok(7));
        let clone = cancel.clone();
        let pending = tokio::spawn(async move { clone.guard(std::future::pending::<()>()).await });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!cancel.is_cancelled());
        cancel.cancel();
        assert_eq!(pending.await.unwrap(), Err(Cancelled));
        assert!(cancel.is_cancelled());
        // Once set, nothing more starts.
        assert_eq!(cancel.guard(async { 7 }).await, Err(Cancelled));
    }

    #[tokio::test]
    async fn blocking_work_sees_its_stop_flag_when_the_token_is_set() {
        let cancel = Cancel::new();
        let clone = cancel.clone();
        // Polls its flag like a restore between packs; gives up after 10 s.
        let work = tokio::spawn(async move {
            clone
                .blocking_until(|stop| {
                    let start = std::time::Instant::now();
                    while !stop.is_set() && start.elapsed().as_secs() < 10 {
                        std::thread::sleep(std::time::Duration::from_millis(5));
                    }
                    stop.is_set()
                })
                .await
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        cancel.cancel();
        assert!(work.await.unwrap(), "the flag was never set");
        // Not set when the token is not.
        let quiet = Cancel::new();
        assert!(!quiet.blocking_until(|stop| stop.is_set()).await);
    }
}
