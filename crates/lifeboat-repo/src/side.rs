//! lifeboat's side area, `<repository>/lifeboat/`: objects restic tools ignore (WAL
//! archive, drill reports, locks), in the repository's own [`Store`] (a folder or an S3
//! prefix). Writes are atomic and durable there.
//!
//! Locks: rustic writes none, and a prune running beside a backup can lose data. A shared
//! lock (backup, restore) and an exclusive lock (forget, prune) are objects under `locks/`,
//! each with its own name (kind, host, pid, a random nonce), written create-only
//! (`If-None-Match: *` on S3) with its owner and an expiry. Taking one writes it first and
//! then lists the others: a live conflicting lock makes the taker remove its own and retry
//! after a random pause. Two takers can both back off, never both proceed, because each
//! one's lock is visible before it looks (S3 lists are strongly consistent). A held lock is
//! rewritten every minute; one past its expiry (5 minutes) or, on the same host, whose
//! process is gone is stale: it is removed with a message. Since every lock has a name of
//! its own, removing a stale one can never remove a live lock someone else just took.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};

use crate::store::{Store, StoreError};

pub const SIDE_DIR: &str = "lifeboat";
const LOCKS: &str = "locks";
/// A held lock is rewritten this often; one not rewritten for `LOCK_TTL` is stale.
const REFRESH: Duration = Duration::from_secs(60);
const LOCK_TTL: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum SideError {
    #[error("side area {0}")]
    Store(#[from] StoreError),
    #[error("repository is locked by {holder}")]
    Locked { holder: String },
}

/// The side area of a repository.
#[derive(Debug, Clone)]
pub struct SideArea {
    store: Store,
}

impl SideArea {
    /// The side area of the repository at `repository`.
    pub fn new(repository: &Store) -> Self {
        Self {
            store: repository.sub(SIDE_DIR),
        }
    }

    /// How `rel` is shown to people (a path or an `s3://` URL).
    pub fn display(&self, rel: &str) -> String {
        self.store.display(rel)
    }

    pub fn create(&self) -> Result<(), SideError> {
        for dir in [LOCKS, "wal", "drills"] {
            self.store.create_dir(dir)?;
        }
        Ok(())
    }

    /// Write `bytes` at `rel` atomically and durably.
    pub fn put(&self, rel: &str, bytes: &[u8]) -> Result<(), SideError> {
        Ok(self.store.put(rel, bytes)?)
    }

    /// Write `bytes` at `rel` atomically and durably, only if `rel` does not exist yet
    /// (`Ok(false)` then). A reader never sees a partial object.
    pub fn put_new(&self, rel: &str, bytes: &[u8]) -> Result<bool, SideError> {
        Ok(self.store.put_new(rel, bytes)?)
    }

    /// When `rel` was written, if it exists.
    pub fn written_at(&self, rel: &str) -> Result<Option<std::time::SystemTime>, SideError> {
        Ok(self.store.stat(rel)?.and_then(|s| s.modified))
    }

    pub fn exists(&self, rel: &str) -> Result<bool, SideError> {
        Ok(self.store.exists(rel)?)
    }

    pub fn get(&self, rel: &str) -> Result<Option<Vec<u8>>, SideError> {
        Ok(self.store.get(rel)?)
    }

    pub fn delete(&self, rel: &str) -> Result<(), SideError> {
        Ok(self.store.delete(rel)?)
    }

    /// With Object Lock, whether `rel` is still under retention (retention's removals
    /// leave it).
    pub fn retained(&self, rel: &str) -> Result<bool, SideError> {
        Ok(self.store.retained(rel)?)
    }

    /// Delete `rel` as retention does: with Object Lock, not while it is under retention
    /// (`Ok(false)`; `counted` for `forget`'s report). See [`Store::delete_unless_retained`].
    pub fn delete_unless_retained(&self, rel: &str, counted: bool) -> Result<bool, SideError> {
        Ok(self.store.delete_unless_retained(rel, counted)?)
    }

    /// Names directly under `rel`, sorted.
    pub fn list(&self, rel: &str) -> Result<Vec<String>, SideError> {
        Ok(self.store.list(rel)?)
    }

    /// Every object of the side area (below `rel`, `""` for all): its path, size and time
    /// of writing, sorted by path.
    pub fn walk(&self, rel: &str) -> Result<Vec<(String, crate::store::ObjectStat)>, SideError> {
        Ok(self.store.walk(rel)?)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LockKind {
    /// backup, restore: many at once.
    Shared,
    /// forget, prune: alone.
    Exclusive,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct LockRecord {
    kind: LockKind,
    host: String,
    pid: u32,
    command: String,
    created: String,
    /// Unix seconds after which the lock is stale unless refreshed.
    expires: i64,
}

impl LockRecord {
    fn describe(&self) -> String {
        format!(
            "`{}` (pid {} on {}, since {})",
            self.command, self.pid, self.host, self.created
        )
    }

    fn is_stale(&self, now: i64) -> bool {
        if now > self.expires {
            return true;
        }
        self.host == hostname() && !std::path::Path::new(&format!("/proc/{}", self.pid)).exists()
    }
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

fn now_secs() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// A held lock; released (file removed) on drop.
pub struct LockGuard {
    side: SideArea,
    name: String,
    stop: Arc<AtomicBool>,
    refresher: Option<thread::JoinHandle<()>>,
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.refresher.take() {
            t.thread().unpark();
            let _ = t.join();
        }
        let _ = self.side.delete(&format!("{LOCKS}/{}", self.name));
    }
}

impl SideArea {
    /// Take a lock, waiting up to `wait` for conflicting locks to go away.
    pub fn lock(
        &self,
        kind: LockKind,
        command: &str,
        wait: Duration,
    ) -> Result<LockGuard, SideError> {
        let deadline = Instant::now() + wait;
        let mut announced = false;
        loop {
            match self.try_lock(kind, command)? {
                Ok(guard) => return Ok(guard),
                Err(holder) => {
                    if Instant::now() >= deadline {
                        return Err(SideError::Locked { holder });
                    }
                    if !announced {
                        log::warn!("waiting for the repository lock held by {holder}");
                        announced = true;
                    }
                    // A random pause, so that two takers that both backed off do not meet again.
                    thread::sleep(Duration::from_millis(100 + rand_u64() % 400));
                }
            }
        }
    }

    fn try_lock(
        &self,
        kind: LockKind,
        command: &str,
    ) -> Result<Result<LockGuard, String>, SideError> {
        let pid = std::process::id();
        let host = hostname();
        let record = LockRecord {
            kind,
            host: host.clone(),
            pid,
            command: command.to_string(),
            created: jiff::Timestamp::now().to_string(),
            expires: now_secs() + LOCK_TTL.as_secs() as i64,
        };
        let kind_name = match kind {
            LockKind::Exclusive => "exclusive",
            LockKind::Shared => "shared",
        };
        let host_name: String = host
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let name = format!("{kind_name}-{host_name}-{pid}-{:016x}.json", rand_u64());
        let bytes = serde_json::to_vec(&record).unwrap_or_default();
        if !self.put_new(&format!("{LOCKS}/{name}"), &bytes)? {
            return Ok(Err("a lock of the same name (retrying)".into()));
        }
        // Ours is visible: now look for a conflicting live lock.
        for other_name in self.list(LOCKS)? {
            if other_name == name || !other_name.ends_with(".json") {
                continue;
            }
            let Some(other) = self.read_lock(&other_name)? else {
                continue;
            };
            if other.is_stale(now_secs()) {
                log::warn!(
                    "taking over: removing the stale lock held by {} (expired or its process is gone)",
                    other.describe()
                );
                self.delete(&format!("{LOCKS}/{other_name}"))?;
                continue;
            }
            if kind == LockKind::Exclusive || other.kind == LockKind::Exclusive {
                self.delete(&format!("{LOCKS}/{name}"))?;
                return Ok(Err(other.describe()));
            }
        }
        let stop = Arc::new(AtomicBool::new(false));
        let refresher = {
            let side = self.clone();
            let stop = stop.clone();
            let name = name.clone();
            let mut record = record;
            thread::spawn(move || {
                let rel = format!("{LOCKS}/{name}");
                loop {
                    thread::park_timeout(REFRESH);
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    if matches!(side.exists(&rel), Ok(false)) {
                        log::error!(
                            "our repository lock `{name}` was removed by another process (it thought it stale); writing it again"
                        );
                    }
                    record.expires = now_secs() + LOCK_TTL.as_secs() as i64;
                    let bytes = serde_json::to_vec(&record).unwrap_or_default();
                    if let Err(e) = side.put(&rel, &bytes) {
                        log::warn!("cannot refresh the repository lock: {e}");
                    }
                }
            })
        };
        Ok(Ok(LockGuard {
            side: self.clone(),
            name,
            stop,
            refresher: Some(refresher),
        }))
    }

    fn read_lock(&self, name: &str) -> Result<Option<LockRecord>, SideError> {
        Ok(self
            .get(&format!("{LOCKS}/{name}"))?
            .and_then(|b| serde_json::from_slice(&b).ok()))
    }

    /// Remove every lock (`lifeboat unlock`); returns what was removed.
    pub fn remove_locks(&self) -> Result<Vec<String>, SideError> {
        let mut removed = Vec::new();
        for name in self.list(LOCKS)? {
            if let Some(r) = self.read_lock(&name)? {
                removed.push(r.describe());
            }
            self.delete(&format!("{LOCKS}/{name}"))?;
        }
        Ok(removed)
    }
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(jiff::Timestamp::now().as_nanosecond() as u128);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclusive_excludes_shared_and_back() {
        let dir = tempfile::tempdir().unwrap();
        let side = SideArea::new(&Store::Local(dir.path().to_path_buf()));
        side.create().unwrap();
        let shared = side
            .lock(LockKind::Shared, "backup", Duration::ZERO)
            .unwrap();
        let second = side
            .lock(LockKind::Shared, "backup", Duration::ZERO)
            .unwrap();
        let err = side
            .lock(LockKind::Exclusive, "prune", Duration::ZERO)
            .err()
            .unwrap();
        assert!(err.to_string().contains("backup"), "{err}");
        drop(shared);
        drop(second);
        let excl = side
            .lock(LockKind::Exclusive, "prune", Duration::ZERO)
            .unwrap();
        assert!(
            side.lock(LockKind::Shared, "backup", Duration::ZERO)
                .is_err()
        );
        assert!(
            side.lock(LockKind::Exclusive, "forget", Duration::ZERO)
                .is_err()
        );
        drop(excl);
        assert!(
            side.lock(LockKind::Shared, "backup", Duration::ZERO)
                .is_ok()
        );
        assert!(side.list(LOCKS).unwrap().is_empty());
    }

    #[test]
    fn a_dead_process_lock_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let side = SideArea::new(&Store::Local(dir.path().to_path_buf()));
        side.create().unwrap();
        let record = LockRecord {
            kind: LockKind::Exclusive,
            host: hostname(),
            pid: u32::MAX - 1,
            command: "prune".into(),
            created: "2026-01-01T00:00:00Z".into(),
            expires: now_secs() + 1000,
        };
        side.put(
            "locks/exclusive-elsewhere-1-0.json",
            &serde_json::to_vec(&record).unwrap(),
        )
        .unwrap();
        assert!(
            side.lock(LockKind::Shared, "backup", Duration::from_secs(2))
                .is_ok()
        );
    }

    #[test]
    fn put_is_atomic_and_readable() {
        let dir = tempfile::tempdir().unwrap();
        let side = SideArea::new(&Store::Local(dir.path().to_path_buf()));
        side.put("drills/x.json", b"{}").unwrap();
        assert_eq!(side.get("drills/x.json").unwrap().unwrap(), b"{}");
        assert!(side.get("drills/none").unwrap().is_none());
        assert!(!side.put_new("drills/x.json", b"1").unwrap());
    }
}
