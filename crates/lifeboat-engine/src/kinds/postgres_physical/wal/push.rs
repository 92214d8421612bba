//! `archive_command` for physical targets: the file is sealed (zstd + XChaCha20-Poly1305
//! under a key derived from the repository key) and stored at
//! `lifeboat/wal/<system-id>/<timeline>/<name>` in the side area, create-only and durable
//! (temp file, fsync, link, directory fsync) before it counts as pushed: PostgreSQL recycles
//! a segment once the command succeeded. The same name again with the same content is fine;
//! other content under an archived name, or a segment of another cluster, is refused so
//! PostgreSQL keeps it and complains.
//!
//! Deriving the key costs most of a call, so once it is derived, a call pushes ahead what
//! else is ready; a local [`Spool`] records what was pushed so that the archiver's own call
//! for it later returns at once.

use std::path::{Path, PathBuf};

use lifeboat_core::{Config, TargetConfig};
use lifeboat_postgres::wal::{self, WalKind, WalName};
use lifeboat_repo::{Bars, Repo, SideKey};

use super::{object_name, open, push_one};
use crate::{EngineError, EngineResult, FsContext, wal::write_atomically};

/// What a push did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Stored now (durably), with whatever else was ready.
    Stored,
    /// An earlier call had pushed it ahead, and it is in the archive.
    Ahead,
}

/// `archive_command`: store `file` of the physical target `name` in the archive, durably,
/// then push what else PostgreSQL marked ready. The repository is opened only when the
/// file was not pushed ahead.
pub async fn push(
    config: &Config,
    name: &str,
    target: &TargetConfig,
    file: &Path,
    bars: Bars,
) -> EngineResult<Pushed> {
    let file = file.to_path_buf();
    let file_name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let Some(wal_name) = WalName::parse(&file_name) else {
        return Err(EngineError::usage(
            format!("`{}` is not a WAL file name", file.display()),
            Some("archive_command = 'lifeboat wal push %p'".into()),
        ));
    };
    let data_dir = target.data_dir.clone().unwrap_or_default();
    let cluster = wal::control_system_id(&data_dir).map_err(|e| {
        EngineError::failure(
            format!(
                "cannot read the system identifier of `{name}` from `{}/global/pg_control`: {e}",
                data_dir.display()
            ),
            Some("`data-dir` must be the server's data directory, readable by this user".into()),
        )
    })?;
    let spool = Spool::new(cluster);
    let rel = object_name(cluster, &wal_name);
    let side =
        lifeboat_repo::SideArea::new(&lifeboat_repo::Store::open(&config.repository_location()?)?);
    // Pushed ahead by an earlier call and still in the archive: done, without deriving the
    // repository key again. The same file (inode, size, mtime) needs no hashing; PostgreSQL
    // never rewrites a segment once it is ready, and never reuses a name.
    let identity = std::fs::metadata(&file).ok().map(|m| Spool::identity(&m));
    if identity
        .as_deref()
        .is_some_and(|id| spool.confirms_file(&wal_name.name, id))
        && side.exists(&rel)?
    {
        log::info!("`{file_name}` was pushed ahead");
        return Ok(Pushed::Ahead);
    }
    let bytes = std::fs::read(&file).fs("read", &file)?;
    if matches!(wal_name.kind, WalKind::Segment | WalKind::Partial)
        && let Some(found) = wal::segment_system_id(&bytes)
        && found != cluster
    {
        return Err(EngineError::failure(
            format!(
                "`{file_name}` belongs to cluster {found}, but target `{name}` is cluster {cluster}"
            ),
            Some("is `data-dir` the data directory of the server that archives?".into()),
        ));
    }
    if spool.confirms(&wal_name.name, &bytes) && side.exists(&rel)? {
        log::info!("`{file_name}` was pushed ahead");
        return Ok(Pushed::Ahead);
    }
    let (repo, key) = open(config, bars).await?;
    let sp = spool.clone();
    repo.call(move |r| -> EngineResult<()> {
        push_one(r, &key, cluster, &wal_name, &bytes)?;
        sp.record(&wal_name.name, &bytes, identity.as_deref());
        // The key is derived now: push what else is ready, and what became ready meanwhile.
        let mut seen = std::collections::HashSet::from([file.clone()]);
        let started = std::time::Instant::now();
        while seen.len() <= LOOK_AHEAD && started.elapsed() < LOOK_AHEAD_TIME {
            let mut ahead = ready_besides(&file, &wal_name.name);
            ahead.retain(|f| !seen.contains(f));
            ahead.truncate(LOOK_AHEAD + 1 - seen.len());
            if ahead.is_empty() {
                break;
            }
            look_ahead(r, &key, &sp, cluster, &ahead);
            seen.extend(ahead);
        }
        Ok(())
    })
    .await?;
    Ok(Pushed::Stored)
}

/// How many other `.ready` files one call pushes ahead of the archiver, at most.
const LOOK_AHEAD: usize = 256;
/// After this long, a call stops looking for more `.ready` files and returns.
const LOOK_AHEAD_TIME: std::time::Duration = std::time::Duration::from_secs(30);

/// The other WAL files PostgreSQL marked ready to archive, oldest first.
fn ready_besides(file: &Path, name: &str) -> Vec<PathBuf> {
    let dir = file.parent().unwrap_or(Path::new("."));
    let mut ready: Vec<PathBuf> = std::fs::read_dir(dir.join("archive_status"))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    let wal = n.strip_suffix(".ready")?.to_string();
                    (wal != name && WalName::parse(&wal).is_some()).then(|| dir.join(wal))
                })
                .collect()
        })
        .unwrap_or_default();
    ready.sort();
    ready
}

/// Push `files` on two threads; a failure here only means the archiver pushes that file
/// itself later.
fn look_ahead(repo: &Repo, key: &SideKey, spool: &Spool, cluster: u64, files: &[PathBuf]) {
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(path) = files.get(i) else { break };
                    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
                    let Some(w) = name.as_deref().and_then(WalName::parse) else {
                        continue;
                    };
                    let identity = std::fs::metadata(path).ok().map(|m| Spool::identity(&m));
                    let Ok(bytes) = std::fs::read(path) else {
                        continue;
                    };
                    let foreign = matches!(w.kind, WalKind::Segment | WalKind::Partial)
                        && wal::segment_system_id(&bytes).is_some_and(|id| id != cluster);
                    if foreign {
                        continue;
                    }
                    match push_one(repo, key, cluster, &w, &bytes) {
                        Ok(()) => spool.record(&w.name, &bytes, identity.as_deref()),
                        Err(e) => log::debug!("look-ahead push of `{}`: {}", w.name, e.message),
                    }
                }
            });
        }
    });
}

/// A local record of WAL files pushed ahead: `<tmp>/lifeboat-wal-spool-<system-id>/<name>`
/// holds the SHA-256 of what was stored and the file's identity (inode, size, mtime) when
/// it was read. Written only after the object is durable.
#[derive(Clone)]
struct Spool(PathBuf);

impl Spool {
    fn new(cluster: u64) -> Self {
        Self(std::env::temp_dir().join(format!("lifeboat-wal-spool-{cluster}")))
    }

    fn hash(bytes: &[u8]) -> String {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(bytes))
    }

    fn identity(m: &std::fs::Metadata) -> String {
        use std::os::unix::fs::MetadataExt;
        format!(
            "{}:{}:{}:{}.{}",
            m.dev(),
            m.ino(),
            m.len(),
            m.mtime(),
            m.mtime_nsec()
        )
    }

    fn record(&self, name: &str, bytes: &[u8], identity: Option<&str>) {
        use std::os::unix::fs::DirBuilderExt;
        let _ = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.0);
        let text = format!("{} {}", Self::hash(bytes), identity.unwrap_or("-"));
        if let Err(e) = write_atomically(&self.0.join(name), text.as_bytes()) {
            log::debug!("spool record of `{name}`: {e}");
        }
    }

    /// Only a folder of our own that nobody else can write is trusted: a marker planted by
    /// someone else would make an unarchived segment look archived.
    fn trusted(&self) -> bool {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let me = std::fs::metadata("/proc/self").map(|m| m.uid()).ok();
        std::fs::symlink_metadata(&self.0)
            .is_ok_and(|m| m.is_dir() && Some(m.uid()) == me && m.permissions().mode() & 0o077 == 0)
    }

    fn read(&self, name: &str) -> Option<(String, String)> {
        if !self.trusted() {
            return None;
        }
        let text = std::fs::read_to_string(self.0.join(name)).ok()?;
        let (hash, identity) = text.split_once(' ')?;
        Some((hash.to_string(), identity.to_string()))
    }

    /// The same file as when it was pushed.
    fn confirms_file(&self, name: &str, identity: &str) -> bool {
        self.read(name).is_some_and(|(_, id)| id == identity)
    }

    /// The same content as what was pushed.
    fn confirms(&self, name: &str, bytes: &[u8]) -> bool {
        self.read(name).is_some_and(|(h, _)| h == Self::hash(bytes))
    }
}
