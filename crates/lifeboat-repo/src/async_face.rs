//! The repository's async face. rustic_core is synchronous; every call from async code goes
//! through here, onto tokio's blocking pool, so that no caller needs `spawn_blocking`. A
//! panic inside resumes in the caller, as if the call had been direct.

use std::sync::Arc;

use lifeboat_core::{Location, Redacted};

use crate::{Bars, LockGuard, LockKind, Repo, RepoError, SideKey, SnapshotInfo};

/// Run blocking work (rustic_core, a child process, a file walk) off the async threads.
pub async fn blocking<T, F>(f: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => v,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // Only when the runtime shuts down under the call: nothing can wait for it any more.
        Err(e) => panic!("blocking task did not finish: {e}"),
    }
}

/// Work begun by [`Repo::start`]; awaiting it gives its result (a panic in it resumes in
/// the caller).
pub struct Started<T>(tokio::task::JoinHandle<T>);

impl<T> std::future::Future for Started<T> {
    type Output = T;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<T> {
        std::pin::Pin::new(&mut self.0)
            .poll(cx)
            .map(|done| match done {
                Ok(v) => v,
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(e) => panic!("repository work did not finish: {e}"),
            })
    }
}

impl Repo {
    /// [`Repo::open`] off the async threads.
    pub async fn open_shared(
        location: Location,
        password: Redacted,
        bars: Bars,
    ) -> Result<Arc<Repo>, RepoError> {
        blocking(move || Repo::open(&location, &password, bars).map(Arc::new)).await
    }

    /// [`Repo::init`] off the async threads.
    pub async fn init_shared(
        location: Location,
        password: Redacted,
        bars: Bars,
    ) -> Result<Arc<Repo>, RepoError> {
        blocking(move || Repo::init(&location, &password, bars).map(Arc::new)).await
    }

    /// Run `f` on this repository off the async threads: the one door from async code to
    /// any blocking repository call.
    pub async fn call<T, F>(self: &Arc<Self>, f: F) -> T
    where
        F: FnOnce(&Repo) -> T + Send + 'static,
        T: Send + 'static,
    {
        let repo = self.clone();
        blocking(move || f(&repo)).await
    }

    /// Start `f` on this repository now, off the async threads, and return a handle to
    /// await its result later: for work that runs beside the caller's own (an archiver
    /// reading the streams the caller feeds).
    pub fn start<T, F>(self: &Arc<Self>, f: F) -> Started<T>
    where
        F: FnOnce(&Repo) -> T + Send + 'static,
        T: Send + 'static,
    {
        let repo = self.clone();
        Started(tokio::task::spawn_blocking(move || f(&repo)))
    }

    /// All lifeboat snapshots (of `target`), oldest first, manifests read.
    pub async fn list_snapshots(
        self: &Arc<Self>,
        target: Option<&str>,
    ) -> Result<Vec<SnapshotInfo>, RepoError> {
        let target = target.map(str::to_string);
        self.call(move |r| r.snapshots(target.as_deref())).await
    }

    /// Take the repository lock; held until the guard is dropped.
    pub async fn lock_async(
        self: &Arc<Self>,
        kind: LockKind,
        command: &str,
    ) -> Result<LockGuard, RepoError> {
        let command = command.to_string();
        self.call(move |r| r.lock(kind, &command)).await
    }

    /// The side area's key (derived from the repository's).
    pub async fn side_key_async(self: &Arc<Self>) -> Result<SideKey, RepoError> {
        self.call(Repo::side_key).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_in_blocking_work_resumes_in_the_caller() {
        let caught = tokio::spawn(blocking(|| -> u32 { panic!("inside") })).await;
        let panic = caught.unwrap_err().into_panic();
        assert_eq!(panic.downcast_ref::<&str>(), Some(&"inside"));
        assert_eq!(blocking(|| 7).await, 7);
    }
}
