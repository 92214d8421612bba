//! The WAL archive of physical targets, in the side area: `wal/<system-id>/<timeline>/<name>`,
//! each file sealed. Storing (create-only, durable), reading, listing, and retention
//! (never deleting WAL a kept base backup needs). `feed` serves it to a recovering server.

pub mod feed;
pub mod fetch;
pub mod push;

use std::{io::Write, path::Path, sync::Arc};

use lifeboat_core::{Config, TargetConfig, config::PostgresMode, manifest::PhysicalManifest};
use lifeboat_postgres::wal::{WalKind, WalName};
use lifeboat_repo::{Bars, Repo, SideKey};

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
        let oldest = kept
            .iter()
            .filter(|m| m.system_id.0 == system_id)
            .filter_map(|m| {
                WalName::parse(&m.start_wal)?
                    .segno(m.wal_segment_size)
                    .map(|n| (n, m.wal_segment_size))
            })
            .min();
        let files = list(repo, system_id)?;
        let Some((first_needed, segment_size)) = oldest else {
            if !files.is_empty() {
                log::warn!(
                    "cluster {cluster}: no kept base backup; keeping all {} WAL files",
                    files.len()
                );
            }
            result.kept += files.len() as u64;
            continue;
        };
        for w in files {
            let unneeded = w.kind != WalKind::History
                && w.segno(segment_size).is_some_and(|n| n < first_needed);
            if !unneeded {
                result.kept += 1;
                continue;
            }
            result.deleted += 1;
            if !dry_run {
                repo.side()
                    .delete(&object_name(system_id, &w))
                    .map_err(|e| EngineError::failure(e.to_string(), None))?;
            }
        }
    }
    Ok(result)
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
