//! The WAL archive of physical targets, in the side area: `wal/<system-id>/<timeline>/<name>`,
//! each file sealed. Storing (create-only, durable), reading, listing, and retention
//! (never deleting WAL a kept base backup needs). `feed` serves it to a recovering server.

pub mod feed;
pub mod fetch;
pub mod push;

use std::{io::Write, path::Path, sync::Arc};

use lifeboat_core::{Config, TargetConfig, config::PostgresMode, manifest::PhysicalManifest};
use lifeboat_postgres::wal::{WalKind, WalName};
use lifeboat_repo::{Bars, ForgetDecision, Repo, SideKey, SnapshotInfo};

use crate::{EngineError, EngineResult};

/// Where WAL lives in the side area.
pub const WAL_DIR: &str = "wal";

/// The side-area name of a WAL file of cluster `system_id`.
pub fn object_name(system_id: u64, name: &WalName) -> String {
    format!("{WAL_DIR}/{system_id}/{:08X}/{}", name.timeline, name.name)
}

/// Where `wal fetch` keeps segments fetched ahead, relative to the data directory it runs in.
pub const PREFETCH_DIR: &str = "lifeboat-prefetch";

/// The physical target the command is for: `--target`, or the only one configured.
pub fn physical_target<'a>(
    config: &'a Config,
    wanted: Option<&str>,
) -> EngineResult<(String, &'a TargetConfig)> {
    let physical: Vec<(&String, &TargetConfig)> = config
        .targets
        .iter()
        .filter(|(_, t)| t.mode == Some(PostgresMode::Physical))
        .collect();
    match wanted {
        Some(w) => physical
            .into_iter()
            .find(|(n, _)| n.as_str() == w)
            .map(|(n, t)| (n.clone(), t))
            .ok_or_else(|| {
                EngineError::usage(
                    format!("no physical target `{w}` in the config"),
                    Some(
                        "a physical target is a postgres target with `mode = \"physical\"`".into(),
                    ),
                )
            }),
        None if physical.len() == 1 => Ok((physical[0].0.clone(), physical[0].1)),
        None => Err(EngineError::usage(
            format!(
                "{} physical targets configured; name one with `--target`",
                physical.len()
            ),
            Some(
                "in `archive_command` and `restore_command`: `lifeboat wal push --target NAME %p`"
                    .into(),
            ),
        )),
    }
}

/// Where a physical target's WAL archiving stands, for `status`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ArchiveState {
    /// The newest segment in the repository, and when it was written there.
    pub last_archived: Option<String>,
    pub last_archived_at: Option<String>,
    /// The server's own view (`pg_stat_archiver`); `None` when it cannot be reached.
    pub server: Option<lifeboat_postgres::physical::ArchiverStats>,
    pub server_error: Option<String>,
    /// Cdc targets: the replication slot as the server sees it (`None` when it cannot be
    /// reached or does not exist).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slot: Option<lifeboat_postgres::cdc::preflight::SlotState>,
}

/// The base backups among the kept snapshots: the WAL they need stays. A kept snapshot
/// whose manifest cannot be read may be one, so then no WAL may be deleted.
pub fn kept_bases(
    snaps: &[SnapshotInfo],
    decisions: &[ForgetDecision],
) -> EngineResult<Vec<PhysicalManifest>> {
    let kept: Vec<&SnapshotInfo> = snaps
        .iter()
        .filter(|s| decisions.iter().any(|d| d.keep && d.id == s.id))
        .collect();
    if let Some(s) = kept.iter().find(|s| s.manifest.is_err()) {
        return Err(EngineError::failure(
            format!(
                "cannot prune WAL: the manifest of kept snapshot `{}` of `{}` cannot be read, so the WAL it may need is unknown",
                s.short_id(),
                s.target
            ),
            Some(
                "run `lifeboat check`; forget that snapshot if it is damaged, then prune again"
                    .into(),
            ),
        ));
    }
    Ok(kept
        .iter()
        .filter_map(|s| s.manifest.as_ref().ok().and_then(|m| m.physical.clone()))
        .collect())
}

/// The repository and its side key: what `wal push` and `wal fetch` need once the cheap
/// ways (pushed ahead, fetched ahead, the feed) did not answer.
async fn open(config: &Config, bars: Bars) -> EngineResult<(Arc<Repo>, SideKey)> {
    let repo = crate::Engine::open_repo(config, bars).await?;
    let key = repo.side_key_async().await?;
    Ok((repo, key))
}

/// One archived WAL file, opened; `None` if it is not archived.
pub fn get(repo: &Repo, key: &SideKey, cluster: u64, w: &WalName) -> EngineResult<Option<Vec<u8>>> {
    let rel = object_name(cluster, w);
    let Some(sealed) = repo
        .side()
        .get(&rel)
        .map_err(|e| EngineError::failure(e.to_string(), None))?
    else {
        return Ok(None);
    };
    key.open(&rel, &sealed)
        .map(Some)
        .map_err(|e| EngineError::failure(e.to_string(), None))
}

/// Store one WAL file create-only and durably; the same content again is fine, other
/// content under the same name is an error.
pub fn push_one(
    repo: &Repo,
    key: &SideKey,
    cluster: u64,
    w: &WalName,
    bytes: &[u8],
) -> EngineResult<()> {
    let rel = object_name(cluster, w);
    let sealed = key
        .seal(&rel, bytes)
        .map_err(|e| EngineError::failure(e.to_string(), None))?;
    let created = repo
        .side()
        .put_new(&rel, &sealed)
        .map_err(|e| EngineError::failure(e.to_string(), None))?;
    if created {
        log::info!("archived `{}` as {rel}", w.name);
        return Ok(());
    }
    let stored = repo
        .side()
        .get(&rel)
        .map_err(|e| EngineError::failure(e.to_string(), None))?
        .unwrap_or_default();
    match key.open(&rel, &stored) {
        Ok(plain) if plain == bytes => {
            log::info!("`{}` was already archived with the same content", w.name);
            Ok(())
        }
        Ok(_) => Err(EngineError::failure(
            format!("`{}` is already archived with different content; refusing to replace it", w.name),
            Some("two servers may be archiving into the same place; check `data-dir` and the repository".into()),
        )),
        Err(e) => Err(EngineError::failure(
            format!("`{}` is archived but cannot be read back: {e}", w.name),
            None,
        )),
    }
}

/// What WAL retention did.
#[derive(Debug, Clone, Copy, Default)]
pub struct WalPruned {
    pub deleted: u64,
    pub kept: u64,
}

/// Delete archived WAL that no kept base backup needs: per cluster, every segment (and
/// `.backup`/`.partial` file) before the start segment of the oldest kept base backup, on
/// any timeline. `.history` files are always kept; a cluster without any kept base backup
/// keeps all its WAL.
pub fn prune(repo: &Repo, kept: &[PhysicalManifest], dry_run: bool) -> EngineResult<WalPruned> {
    let mut result = WalPruned {
        deleted: 0,
        kept: 0,
    };
    let clusters = repo
        .side()
        .list(WAL_DIR)
        .map_err(|e| EngineError::failure(e.to_string(), None))?;
    for cluster in clusters {
        let Ok(system_id) = cluster.parse::<u64>() else {
            continue;
        };
        let oldest = oldest_needed(kept, system_id);
        let files = list(repo, system_id)?;
        if oldest.is_none() && !files.is_empty() {
            log::warn!(
                "cluster {cluster}: no kept base backup; keeping all {} WAL files",
                files.len()
            );
        }
        for w in files {
            if !unneeded(&w, oldest) {
                result.kept += 1;
                continue;
            }
            // With Object Lock, a segment still under retention stays (and is counted).
            let gone = dry_run
                || repo
                    .side()
                    .delete_unless_retained(&object_name(system_id, &w), true)
                    .map_err(|e| EngineError::failure(e.to_string(), None))?;
            if gone {
                result.deleted += 1;
            } else {
                result.kept += 1;
            }
        }
    }
    Ok(result)
}

/// The first segment (number, and the segment size) the oldest kept base backup of cluster
/// `system_id` needs; `None` when no base backup of it is kept.
fn oldest_needed(kept: &[PhysicalManifest], system_id: u64) -> Option<(u64, u64)> {
    kept.iter()
        .filter(|m| m.system_id.0 == system_id)
        .filter_map(|m| {
            WalName::parse(&m.start_wal)?
                .segno(m.wal_segment_size)
                .map(|n| (n, m.wal_segment_size))
        })
        .min()
}

/// Whether retention deletes `w`, given the first segment still needed: a segment (or
/// `.backup`/`.partial` file) before it, on any timeline. `.history` files, and everything
/// of a cluster without a kept base backup (`None`), stay.
fn unneeded(w: &WalName, first_needed: Option<(u64, u64)>) -> bool {
    let Some((first, segment_size)) = first_needed else {
        return false;
    };
    w.kind != WalKind::History && w.segno(segment_size).is_some_and(|n| n < first)
}

/// Every archived WAL file of cluster `system_id`: (timeline dir, name), sorted.
pub fn list(repo: &Repo, system_id: u64) -> EngineResult<Vec<WalName>> {
    let base = format!("{WAL_DIR}/{system_id}");
    let mut out = Vec::new();
    let side = repo.side();
    for tl in side
        .list(&base)
        .map_err(|e| EngineError::failure(e.to_string(), None))?
    {
        for n in side
            .list(&format!("{base}/{tl}"))
            .map_err(|e| EngineError::failure(e.to_string(), None))?
        {
            if let Some(w) = WalName::parse(&n) {
                out.push(w);
            }
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Write to a temporary name beside `path`, then rename: the server never sees half a file.
/// No fsync: a restored file is the server's to make durable (it fsyncs what it keeps,
/// and a recovery that crashes fetches again), and one fsync per 16 MiB segment sits on
/// the path of every replayed segment.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".lifeboat-fetch-")
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(system_id: u64, start_wal: &str, segment_size: u64) -> PhysicalManifest {
        serde_json::from_value(serde_json::json!({
            "system-id": system_id.to_string(), "timeline": 1,
            "start-lsn": "0/2000028", "stop-lsn": "0/2000100",
            "start-wal": start_wal, "stop-wal": start_wal,
            "start-time": "", "stop-time": "",
            "server-version": "16.4", "server-version-num": 160_004,
            "data-dir": "", "wal-segment-size": segment_size,
            "files": { "roots": [], "files": [], "total-bytes": 0 }
        }))
        .unwrap()
    }

    fn kept_of(kept: &[PhysicalManifest], cluster: u64, names: &[&str]) -> Vec<String> {
        let first = oldest_needed(kept, cluster);
        names
            .iter()
            .filter(|n| !unneeded(&WalName::parse(n).unwrap(), first))
            .map(|n| n.to_string())
            .collect()
    }

    #[test]
    fn retention_keeps_what_the_oldest_kept_base_backup_needs_and_every_history_file() {
        const MIB16: u64 = 16 << 20;
        let kept = [
            base(7, "000000010000000000000005", MIB16),
            base(7, "000000020000000000000009", MIB16),
            base(8, "0000000100000001000000A0", MIB16),
        ];
        let names = [
            "000000010000000000000003",
            "000000010000000000000004.00000028.backup",
            "000000010000000000000005",
            "000000010000000000000006.partial",
            "00000002.history",
            // On another timeline, but before the oldest start: not needed either.
            "000000020000000000000004",
            "000000020000000000000009",
        ];
        assert_eq!(
            kept_of(&kept, 7, &names),
            [
                "000000010000000000000005",
                "000000010000000000000006.partial",
                "00000002.history",
                "000000020000000000000009"
            ]
        );
        // Another cluster's base backups say nothing about this one's.
        assert_eq!(kept_of(&kept[..1], 9, &names), names);
        // The segment size decides the numbering: ...00FF is segment 255 with 16 MiB
        // segments, but 64 MiB segments have 64 per log id.
        let big = [base(8, "000000010000000100000001", 64 << 20)];
        assert_eq!(
            kept_of(
                &big,
                8,
                &["00000001000000000000003F", "000000010000000100000000"]
            ),
            Vec::<String>::new()
        );
    }
}
