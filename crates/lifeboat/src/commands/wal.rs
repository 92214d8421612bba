//! `lifeboat wal push` / `lifeboat wal fetch`: PostgreSQL's `archive_command` and
//! `restore_command` for physical targets.
//!
//! push: the file is sealed (zstd + XChaCha20-Poly1305 under a key derived from the
//! repository key) and stored at `lifeboat/wal/<system-id>/<timeline>/<name>` in the side
//! area, create-only and durable (temp file, fsync, link, directory fsync) before exit 0:
//! PostgreSQL recycles a segment once the command succeeded. The same name again with the
//! same content is fine (exit 0); other content under an archived name, or a segment of
//! another cluster, is refused (exit 1) so PostgreSQL keeps it and complains.
//!
//! fetch: writes the file atomically (temp + rename) where the server asks; a missing one
//! exits 1 without noise — that is how recovery learns it reached the end of the archive.

use std::{
    io::Write,
    path::{Path, PathBuf},
    sync::Arc,
};

use lifeboat_core::{Config, TargetConfig, config::PostgresMode, manifest::PhysicalManifest};
use lifeboat_postgres::wal::{self, WalKind, WalName};
use lifeboat_repo::{Repo, SideKey};

use super::Context;
use crate::{
    cli::{WalCommand, WalFetchArgs, WalPushArgs},
    error::{CliError, CliResult},
};

/// Where WAL lives in the side area.
pub const WAL_DIR: &str = "wal";

pub async fn run(ctx: &Context, cmd: WalCommand) -> CliResult<i32> {
    match cmd {
        WalCommand::Push(args) => push(ctx, args).await,
        WalCommand::Fetch(args) => fetch(ctx, args).await,
    }
}

/// The physical target the command is for: `--target`, or the only one configured.
pub fn physical_target<'a>(
    config: &'a Config,
    wanted: Option<&str>,
) -> CliResult<(String, &'a TargetConfig)> {
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
                CliError::usage(
                    format!("no physical target `{w}` in the config"),
                    Some("a physical target has `mode = \"physical\"` and `data-dir`".into()),
                )
            }),
        None if physical.len() == 1 => Ok((physical[0].0.clone(), physical[0].1)),
        None => Err(CliError::usage(
            format!(
                "{} physical targets configured; name one with `--target`",
                physical.len()
            ),
            Some("a physical target has `mode = \"physical\"` and `data-dir`".into()),
        )),
    }
}

/// The side-area name of a WAL file of cluster `system_id`.
pub fn object_name(system_id: u64, name: &WalName) -> String {
    format!("{WAL_DIR}/{system_id}/{:08X}/{}", name.timeline, name.name)
}

async fn open(ctx: &Context, config: &Config) -> CliResult<(Arc<Repo>, SideKey)> {
    let repo = ctx.open_repo(config).await?;
    let r = repo.clone();
    let key = tokio::task::spawn_blocking(move || r.side_key()).await??;
    Ok((repo, key))
}

async fn push(ctx: &Context, args: WalPushArgs) -> CliResult<i32> {
    let config = ctx.load_config()?;
    let (name, target) = physical_target(&config, args.target.as_deref())?;
    let file = args.path.clone();
    let file_name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let Some(wal_name) = WalName::parse(&file_name) else {
        return Err(CliError::usage(
            format!("`{}` is not a WAL file name", file.display()),
            Some("archive_command = 'lifeboat wal push %p'".into()),
        ));
    };
    let bytes = std::fs::read(&file)
        .map_err(|e| CliError::failure(format!("cannot read `{}`: {e}", file.display()), None))?;
    let data_dir = target.data_dir.clone().unwrap_or_default();
    let cluster = wal::control_system_id(&data_dir).map_err(|e| {
        CliError::failure(
            format!(
                "cannot read the system identifier of `{name}` from `{}/global/pg_control`: {e}",
                data_dir.display()
            ),
            Some("`data-dir` must be the server's data directory, readable by this user".into()),
        )
    })?;
    if matches!(wal_name.kind, WalKind::Segment | WalKind::Partial)
        && let Some(found) = wal::segment_system_id(&bytes)
        && found != cluster
    {
        return Err(CliError::failure(
            format!(
                "`{file_name}` belongs to cluster {found}, but target `{name}` is cluster {cluster}"
            ),
            Some("is `data-dir` the data directory of the server that archives?".into()),
        ));
    }
    let (repo, key) = open(ctx, &config).await?;
    let rel = object_name(cluster, &wal_name);
    let (sealed, rel2) = (key.seal(&rel, &bytes), rel.clone());
    let sealed = sealed.map_err(|e| CliError::failure(e.to_string(), None))?;
    let r = repo.clone();
    let created = tokio::task::spawn_blocking(move || r.side().put_new(&rel2, &sealed))
        .await?
        .map_err(|e| CliError::failure(e.to_string(), None))?;
    if created {
        log::info!("archived `{file_name}` as {rel}");
        return Ok(0);
    }
    // Already archived: fine if it is the same file.
    let stored = repo
        .side()
        .get(&rel)
        .map_err(|e| CliError::failure(e.to_string(), None))?
        .unwrap_or_default();
    match key.open(&rel, &stored) {
        Ok(plain) if plain == bytes => {
            log::info!("`{file_name}` was already archived with the same content");
            Ok(0)
        }
        Ok(_) => Err(CliError::failure(
            format!("`{file_name}` is already archived with different content; refusing to replace it"),
            Some("two servers may be archiving into the same place; check `data-dir` and the repository".into()),
        )),
        Err(e) => Err(CliError::failure(
            format!("`{file_name}` is archived but cannot be read back: {e}"),
            None,
        )),
    }
}

async fn fetch(ctx: &Context, args: WalFetchArgs) -> CliResult<i32> {
    let config = ctx.load_config()?;
    let (name, target) = physical_target(&config, args.target.as_deref())?;
    let Some(wal_name) = WalName::parse(&args.name) else {
        return Ok(1);
    };
    // restore_command runs in the data directory being recovered.
    let cluster = match args.system_id {
        Some(id) => id,
        None => wal::control_system_id(Path::new("."))
            .or_else(|_| {
                wal::control_system_id(target.data_dir.as_deref().unwrap_or(Path::new(".")))
            })
            .map_err(|e| {
                CliError::failure(
                    format!("cannot tell which cluster `{name}` is: {e}"),
                    Some("pass `--system-id`".into()),
                )
            })?,
    };
    let rel = object_name(cluster, &wal_name);
    let (repo, key) = open(ctx, &config).await?;
    let Some(sealed) = repo
        .side()
        .get(&rel)
        .map_err(|e| CliError::failure(e.to_string(), None))?
    else {
        log::debug!("`{}` is not archived", args.name);
        return Ok(1);
    };
    let plain = key
        .open(&rel, &sealed)
        .map_err(|e| CliError::failure(e.to_string(), None))?;
    write_atomically(&args.path, &plain).map_err(|e| {
        CliError::failure(format!("cannot write `{}`: {e}", args.path.display()), None)
    })?;
    Ok(0)
}

/// Write to a temporary name beside `path`, then rename: the server never sees half a file.
fn write_atomically(path: &PathBuf, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".lifeboat-fetch-")
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// What WAL retention did.
pub struct WalPruned {
    pub deleted: u64,
    pub kept: u64,
}

/// Delete archived WAL that no kept base backup needs: per cluster, every segment (and
/// `.backup`/`.partial` file) before the start segment of the oldest kept base backup, on
/// any timeline. `.history` files are always kept; a cluster without any kept base backup
/// keeps all its WAL.
pub fn prune(repo: &Repo, kept: &[PhysicalManifest], dry_run: bool) -> CliResult<WalPruned> {
    let mut result = WalPruned {
        deleted: 0,
        kept: 0,
    };
    let clusters = repo
        .side()
        .list(WAL_DIR)
        .map_err(|e| CliError::failure(e.to_string(), None))?;
    for cluster in clusters {
        let Ok(system_id) = cluster.parse::<u64>() else {
            continue;
        };
        let oldest = kept
            .iter()
            .filter(|m| m.system_id == cluster)
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
                    .map_err(|e| CliError::failure(e.to_string(), None))?;
            }
        }
    }
    Ok(result)
}

/// Every archived WAL file of cluster `system_id`: (timeline dir, name), sorted.
pub fn list(repo: &Repo, system_id: u64) -> CliResult<Vec<WalName>> {
    let base = format!("{WAL_DIR}/{system_id}");
    let mut out = Vec::new();
    let side = repo.side();
    for tl in side
        .list(&base)
        .map_err(|e| CliError::failure(e.to_string(), None))?
    {
        for n in side
            .list(&format!("{base}/{tl}"))
            .map_err(|e| CliError::failure(e.to_string(), None))?
        {
            if let Some(w) = WalName::parse(&n) {
                out.push(w);
            }
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}
