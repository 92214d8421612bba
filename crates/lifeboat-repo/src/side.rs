//! lifeboat's side area, `<repository>/lifeboat/`: objects restic tools ignore (WAL
//! archive, drill reports, locks). Writes are atomic: temp file, fsync, rename, fsync of
//! the directory. Only local repositories for now; S3 comes with the S3 issue.
//!
//! Locks: rustic writes none, and a prune running beside a backup can lose data. A shared
//! lock (backup, restore) and an exclusive lock (forget, prune) are files under `locks/`.
//! Taking one writes it first and then looks for a conflicting live lock, removing its own
//! and retrying if it finds one; two takers can both back off, never both proceed. A lock
//! is refreshed while held and counts as stale when its expiry passed or, on the same host,
//! when its process is gone.

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};

pub const SIDE_DIR: &str = "lifeboat";
const LOCKS: &str = "locks";
/// A held lock is rewritten this often; one not rewritten for `LOCK_TTL` is stale.
const REFRESH: Duration = Duration::from_secs(60);
const LOCK_TTL: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum SideError {
    #[error("side area `{path}`: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("repository is locked by {holder}")]
    Locked { holder: String },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SideError + '_ {
    move |source| SideError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The side area of a local repository.
#[derive(Debug, Clone)]
pub struct SideArea {
    root: PathBuf,
}

impl SideArea {
    pub fn new(repository: &Path) -> Self {
        Self {
            root: repository.join(SIDE_DIR),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn create(&self) -> Result<(), SideError> {
        for dir in [LOCKS, "wal", "drills"] {
            let p = self.root.join(dir);
            fs::create_dir_all(&p).map_err(io_err(&p))?;
        }
        Ok(())
    }

    /// Write `bytes` at `rel` atomically and durably.
    pub fn put(&self, rel: &str, bytes: &[u8]) -> Result<(), SideError> {
        let path = self.root.join(rel);
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let mut tmp = tempfile::NamedTempFile::new_in(&dir).map_err(io_err(&dir))?;
        tmp.write_all(bytes).map_err(io_err(&path))?;
        tmp.as_file().sync_all().map_err(io_err(&path))?;
        tmp.persist(&path).map_err(|e| SideError::Io {
            path: path.clone(),
            source: e.error,
        })?;
        fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(&dir))
    }

    /// Write `bytes` at `rel` atomically and durably, only if `rel` does not exist yet
    /// (`Ok(false)` then): a temp file, fsync, a hard link to the name (which fails if it
    /// exists), fsync of the directory. A reader never sees a partial object.
    pub fn put_new(&self, rel: &str, bytes: &[u8]) -> Result<bool, SideError> {
        let path = self.root.join(rel);
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let mut tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(&dir)
            .map_err(io_err(&dir))?;
        tmp.write_all(bytes).map_err(io_err(&path))?;
        tmp.as_file().sync_all().map_err(io_err(&path))?;
        match tmp.persist_noclobber(&path) {
            Ok(_) => {}
            Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
            Err(e) => {
                return Err(SideError::Io {
                    path: path.clone(),
                    source: e.error,
                });
            }
        }
        fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(&dir))?;
        Ok(true)
    }

    /// Modification time of `rel` (when it was written), if it exists.
    pub fn written_at(&self, rel: &str) -> Result<Option<std::time::SystemTime>, SideError> {
        let path = self.root.join(rel);
        match fs::metadata(&path) {
            Ok(m) => Ok(m.modified().ok()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// Create `rel` only if it does not exist; `Ok(false)` if it does.
    pub fn create_new(&self, rel: &str, bytes: &[u8]) -> Result<bool, SideError> {
        let path = self.root.join(rel);
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(mut f) => {
                f.write_all(bytes)
                    .and_then(|()| f.sync_all())
                    .map_err(io_err(&path))?;
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    pub fn get(&self, rel: &str) -> Result<Option<Vec<u8>>, SideError> {
        let path = self.root.join(rel);
        match fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    pub fn delete(&self, rel: &str) -> Result<(), SideError> {
        let path = self.root.join(rel);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err(&path)(e)),
            _ => Ok(()),
        }
    }

    /// Names directly under `rel`.
    pub fn list(&self, rel: &str) -> Result<Vec<String>, SideError> {
        let path = self.root.join(rel);
        let rd = match fs::read_dir(&path) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(&path)(e)),
        };
        let mut names = Vec::new();
        for e in rd {
            let e = e.map_err(io_err(&path))?;
            names.push(e.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
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
        self.host == hostname() && !Path::new(&format!("/proc/{}", self.pid)).exists()
    }
}

pub fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
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
                    thread::sleep(Duration::from_millis(200));
                }
            }
        }
    }

    fn try_lock(
        &self,
        kind: LockKind,
        command: &str,
    ) -> Result<Result<LockGuard, String>, SideError> {
        let dir = self.root.join(LOCKS);
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let pid = std::process::id();
        let record = LockRecord {
            kind,
            host: hostname(),
            pid,
            command: command.to_string(),
            created: jiff::Timestamp::now().to_string(),
            expires: now_secs() + LOCK_TTL.as_secs() as i64,
        };
        let nonce: u64 = rand_u64();
        let name = match kind {
            LockKind::Exclusive => "exclusive.json".to_string(),
            LockKind::Shared => format!("shared-{pid}-{nonce:016x}.json"),
        };
        let bytes = serde_json::to_vec(&record).unwrap_or_default();
        if !self.create_new(&format!("{LOCKS}/{name}"), &bytes)? {
            // Another exclusive lock file exists: stale or live?
            match self.read_lock(&name)? {
                Some(other) if !other.is_stale(now_secs()) => return Ok(Err(other.describe())),
                Some(other) => {
                    log::warn!("removing stale lock held by {}", other.describe());
                    self.delete(&format!("{LOCKS}/{name}"))?;
                    return self.try_lock(kind, command);
                }
                None => {}
            }
            return Ok(Err("a lock being released".into()));
        }
        // Ours is written: now look for a conflicting live lock.
        for other_name in self.list(LOCKS)? {
            if other_name == name || !other_name.ends_with(".json") {
                continue;
            }
            let conflicts = kind == LockKind::Exclusive || other_name == "exclusive.json";
            if !conflicts {
                continue;
            }
            let Some(other) = self.read_lock(&other_name)? else {
                continue;
            };
            if other.is_stale(now_secs()) {
                log::warn!("removing stale lock held by {}", other.describe());
                self.delete(&format!("{LOCKS}/{other_name}"))?;
                continue;
            }
            self.delete(&format!("{LOCKS}/{name}"))?;
            return Ok(Err(other.describe()));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let refresher = {
            let side = self.clone();
            let stop = stop.clone();
            let name = name.clone();
            let mut record = record;
            thread::spawn(move || {
                loop {
                    thread::park_timeout(REFRESH);
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    record.expires = now_secs() + LOCK_TTL.as_secs() as i64;
                    let bytes = serde_json::to_vec(&record).unwrap_or_default();
                    if let Err(e) = side.put(&format!("{LOCKS}/{name}"), &bytes) {
                        log::warn!("cannot refresh lock: {e}");
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
        let side = SideArea::new(dir.path());
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
        let side = SideArea::new(dir.path());
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
            "locks/exclusive.json",
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
        let side = SideArea::new(dir.path());
        side.put("drills/x.json", b"{}").unwrap();
        assert_eq!(side.get("drills/x.json").unwrap().unwrap(), b"{}");
        assert!(side.get("drills/none").unwrap().is_none());
        assert!(!side.create_new("drills/x.json", b"1").unwrap());
    }
}
