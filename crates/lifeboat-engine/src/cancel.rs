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
    /// once nothing writes there any more. Dropped before `f` returned (a drill abandons
    /// its restore phase), the drop itself waits for `f` to stop (up to a minute), so that
    /// a teardown right after never races its writes.
    pub async fn blocking_until<T, F>(&self, f: F) -> T
    where
        F: FnOnce(StopFlag) -> T + Send + 'static,
        T: Send + 'static,
    {
        struct StopOnDrop {
            flag: StopFlag,
            watcher: tokio::task::JoinHandle<()>,
            /// Set while `f` may still run.
            running: Option<std::sync::mpsc::Receiver<()>>,
        }
        impl Drop for StopOnDrop {
            fn drop(&mut self) {
                self.flag.stop();
                self.watcher.abort();
                if let Some(done) = self.running.take() {
                    let _ = done.recv_timeout(std::time::Duration::from_secs(60));
                }
            }
        }
        let flag = StopFlag::new();
        let mut rx = self.rx.clone();
        let watcher = tokio::spawn(async move {
            if rx.wait_for(|set| *set).await.is_ok() {
                flag.stop();
            }
        });
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let mut stop = StopOnDrop {
            flag,
            watcher,
            running: Some(done_rx),
        };
        let out = lifeboat_repo::blocking(move || {
            let out = f(flag);
            let _ = done_tx.send(());
            out
        })
        .await;
        stop.running = None;
        out
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

/// Kills a command's whole process group (a command started with `process_group(0)`, whose
/// id is the group's) when dropped: a `sh -c` command's children go with it, also when the
/// operation that ran it is abandoned.
pub struct GroupKill(pub u32);

impl Drop for GroupKill {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0)])
            .stderr(std::process::Stdio::null())
            .status();
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

    /// From a review: a drill abandons its restore phase by dropping it; the drop waits for
    /// the blocking work to stop, so that the teardown after it never races its writes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dropping_blocking_work_waits_for_it_to_stop() {
        let ended = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let seen = ended.clone();
        let cancel = Cancel::new();
        let work = cancel.blocking_until(move |stop| {
            while !stop.is_set() {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
            seen.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        // Abandoned after 50 ms, as `Cancel::guard` abandons a phase.
        let _ = tokio::time::timeout(std::time::Duration::from_millis(50), work).await;
        assert!(
            ended.load(std::sync::atomic::Ordering::SeqCst),
            "the work still ran after it was dropped"
        );
    }
}
