//! `restore_command` for physical targets: writes the WAL file atomically (temp + rename)
//! where the server asks; one that is not archived is [`Fetched::NotArchived`] without
//! noise — that is how recovery learns it reached the end of the archive.
//!
//! A restoring lifeboat serves its WAL over a socket (the feed); without one, a segment
//! fetched from the repository starts a [`prefetch`] of the next ones, so that the server's
//! next requests are a rename away.

use std::path::{Path, PathBuf};

use lifeboat_core::{Config, TargetConfig};
use lifeboat_postgres::wal::{self, WalKind, WalName};
use lifeboat_repo::{Bars, Repo, SideKey};

use super::{PREFETCH_DIR, feed as wal_feed, get, open, write_atomically};
use crate::{EngineError, EngineResult, FsContext};

/// What a fetch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetched {
    /// Written where the server asked.
    Written {
        /// A segment served to a recovering server from the repository: the next ones
        /// are worth fetching ahead ([`prefetch`]), for this cluster and segment size.
        prefetch: Option<(u64, u64)>,
    },
    /// Not in the archive (or not a WAL file name): how recovery learns it reached the end.
    NotArchived,
}

/// `restore_command`: write the WAL file `wanted` of the physical target `name` to `path`,
/// atomically. From the restoring process's feed, a segment fetched ahead, or the
/// repository, in that order. `system_id`: the cluster's, when the data directory cannot
/// tell it.
pub async fn fetch(
    config: &Config,
    name: &str,
    target: &TargetConfig,
    wanted: &str,
    path: &Path,
    system_id: Option<u64>,
    bars: Bars,
) -> EngineResult<Fetched> {
    let Some(wal_name) = WalName::parse(wanted) else {
        return Ok(Fetched::NotArchived);
    };
    // restore_command runs in the data directory being recovered.
    let cluster = match system_id {
        Some(id) => id,
        None => wal::control_system_id(Path::new("."))
            .or_else(|_| {
                wal::control_system_id(target.data_dir.as_deref().unwrap_or(Path::new(".")))
            })
            .map_err(|e| {
                EngineError::failure(
                    format!("cannot tell which cluster `{name}` is: {e}"),
                    Some("pass `--system-id`".into()),
                )
            })?,
    };
    // Fetched ahead by an earlier call: move it into place. Only as a restore_command,
    // which runs in the data directory being recovered.
    let recovering = Path::new("global/pg_control").is_file();
    // Served by the restoring process, which has the repository open.
    let feed = Path::new(PREFETCH_DIR).join(wal_feed::FEED_SOCKET);
    if recovering && feed.exists() {
        match wal_feed::request(&feed, &wal_name.name) {
            Ok(Some(plain)) => {
                write_atomically(path, &plain).fs("write", path)?;
                return Ok(Fetched::Written { prefetch: None });
            }
            Ok(None) => return Ok(Fetched::NotArchived),
            Err(e) => log::debug!("the WAL feed did not answer: {e}"),
        }
    }
    let prefetched = prefetch_dir(cluster);
    if recovering && wal_name.kind == WalKind::Segment && prefetched.join(&wal_name.name).is_file()
    {
        let file = prefetched.join(&wal_name.name);
        let size = segment_size_of(std::fs::metadata(&file).map_or(0, |m| m.len()));
        std::fs::rename(&file, path).fs("write", path)?;
        forget_prefetched_before(&prefetched, &wal_name, size);
        return Ok(Fetched::Written { prefetch: None });
    }
    let (repo, key) = open(config, bars).await?;
    let Some(plain) = get(&repo, &key, cluster, &wal_name)? else {
        log::debug!("`{wanted}` is not archived");
        return Ok(Fetched::NotArchived);
    };
    write_atomically(path, &plain).fs("write", path)?;
    let prefetch = (recovering && wal_name.kind == WalKind::Segment)
        .then(|| (cluster, segment_size_of(plain.len() as u64)));
    Ok(Fetched::Written { prefetch })
}

/// `wal prefetch NAME`, started by `wal fetch` beside a recovering server: fetch the
/// segments after `after` of cluster `cluster` into the prefetch folder of the data
/// directory it runs in (one prefetcher at a time per data directory). Best effort: a
/// segment not fetched ahead is fetched when the server asks for it.
pub async fn prefetch(
    config: &Config,
    after: &str,
    cluster: u64,
    segment_size: u64,
    bars: Bars,
) -> EngineResult<()> {
    let Some(wal_name) = WalName::parse(after) else {
        return Err(EngineError::usage(
            format!("`{after}` is not a WAL file name"),
            None,
        ));
    };
    let dir = prefetch_dir(cluster);
    std::fs::create_dir_all(&dir).fs("create the prefetch folder", &dir)?;
    let running = dir.join(".running");
    let stale = std::fs::metadata(&running)
        .and_then(|m| m.modified())
        .is_ok_and(|t| {
            t.elapsed()
                .is_ok_and(|e| e > std::time::Duration::from_secs(120))
        });
    if stale {
        let _ = std::fs::remove_file(&running);
    }
    if std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&running)
        .is_err()
    {
        return Ok(());
    }
    let result = async {
        let (repo, key) = open(config, bars).await?;
        let d = dir.clone();
        let size = segment_size_of(segment_size);
        repo.call(move |r| fetch_ahead(r, &key, cluster, &wal_name, size, &d))
            .await;
        Ok::<_, EngineError>(())
    }
    .await;
    let _ = std::fs::remove_file(&running);
    result
}

fn prefetch_dir(cluster: u64) -> PathBuf {
    Path::new(PREFETCH_DIR).join(cluster.to_string())
}
/// How many segments after the requested one are fetched ahead.
const PREFETCH: u64 = 64;
/// PostgreSQL's default WAL segment size, assumed where a file's own size cannot tell.
const DEFAULT_SEGMENT_SIZE: u64 = 16 << 20;

/// The segment size a WAL segment of `bytes` bytes means: a power of two from 1 MiB to
/// 1 GiB (what `initdb --wal-segsize` allows), else the default.
fn segment_size_of(bytes: u64) -> u64 {
    if bytes.is_power_of_two() && ((1 << 20)..=(1 << 30)).contains(&bytes) {
        bytes
    } else {
        DEFAULT_SEGMENT_SIZE
    }
}

/// The `count` segment names after `after` on its timeline, for `segment_size` segments.
fn names_after(after: &WalName, count: u64, segment_size: u64) -> Vec<WalName> {
    let Some(first) = after.segno(segment_size) else {
        return Vec::new();
    };
    (first + 1..=first + count)
        .filter_map(|n| WalName::parse(&wal::segment_name(after.timeline, n, segment_size)))
        .collect()
}

/// Fetch the segments after `after` on its timeline into `dir` (two threads), stopping at
/// the first that is not archived. Recovery asks for them one by one; they are then a
/// rename away.
fn fetch_ahead(
    repo: &Repo,
    key: &SideKey,
    cluster: u64,
    after: &WalName,
    segment_size: u64,
    dir: &Path,
) {
    let names = names_after(after, PREFETCH, segment_size);
    if names.is_empty() || std::fs::create_dir_all(dir).is_err() {
        return;
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let missing = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(w) = names.get(i) else { break };
                    if missing.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    if dir.join(&w.name).exists() {
                        continue;
                    }
                    match get(repo, key, cluster, w) {
                        Ok(Some(plain)) => {
                            let _ = write_atomically(&dir.join(&w.name), &plain);
                        }
                        _ => missing.store(true, std::sync::atomic::Ordering::Relaxed),
                    }
                }
            });
        }
    });
}

/// Remove prefetched segments older than `served` (recovery moved past them, e.g. onto
/// another timeline).
fn forget_prefetched_before(dir: &Path, served: &WalName, segment_size: u64) {
    let Some(n) = served.segno(segment_size) else {
        return;
    };
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if WalName::parse(&name)
            .and_then(|w| w.segno(segment_size))
            .is_some_and(|m| m < n)
        {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(after: &str, count: u64, size: u64) -> Vec<String> {
        names_after(&WalName::parse(after).unwrap(), count, size)
            .into_iter()
            .map(|w| w.name)
            .collect()
    }

    #[test]
    fn the_next_segment_names_follow_the_segment_size() {
        // 16 MiB: 256 segments per log id.
        assert_eq!(
            names("0000000100000000000000FE", 2, 16 << 20),
            ["0000000100000000000000FF", "000000010000000100000000"]
        );
        // 64 MiB: 64 per log id, so ...3F is the last of a log.
        assert_eq!(
            names("00000002000000000000003F", 1, 64 << 20),
            ["000000020000000100000000"]
        );
        assert_eq!(segment_size_of(64 << 20), 64 << 20);
        assert_eq!(segment_size_of(12345), DEFAULT_SEGMENT_SIZE);
        assert_eq!(segment_size_of(2 << 30), DEFAULT_SEGMENT_SIZE);
    }
}
