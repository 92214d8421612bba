//! `lifeboat backup`: one snapshot per target.
//!
//! PostgreSQL (logical): the exported-snapshot session counts rows while `pg_dump` streams
//! the same snapshot into the repository; the manifest is produced last, from the dump's
//! measured size and hash and the counts. Files: the configured paths, each file hashed as
//! it is stored. Any failure deletes the snapshot: a failed backup never looks good.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Instant,
};

use lifeboat_core::{
    Config, Manifest, Redacted, TargetConfig, TargetKind,
    config::PostgresMode,
    manifest::{
        DumpLayout, FORMAT_VERSION, FileRecord, FilesManifest, PostgresManifest, StreamRecord,
        TableRecord,
    },
};
use lifeboat_postgres::{PgTools, Target, archive, logical};
use lifeboat_repo::{
    Content, LockKind, Repo, SnapshotInfo, SourceEntry, StreamStat, TAG_EMERGENCY,
};
use serde::Serialize;

use super::Context;
use crate::{
    cli::BackupArgs,
    error::{CliError, CliResult},
    output,
};

#[derive(Debug, Serialize)]
pub struct BackupReport {
    pub target: String,
    pub snapshot: String,
    pub kind: String,
    pub bytes: u64,
    pub stored_bytes: u64,
    pub tables: usize,
    pub rows: u64,
    pub files: usize,
    pub seconds: f64,
}

pub async fn run(ctx: &Context, args: BackupArgs) -> CliResult<i32> {
    let config = ctx.load_config()?;
    let names = select_targets(&config, &args.targets)?;
    let repo = ctx.open_repo(&config).await?;
    let lock_repo = repo.clone();
    let _lock =
        tokio::task::spawn_blocking(move || lock_repo.lock(LockKind::Shared, "lifeboat backup"))
            .await??;
    let mut reports = Vec::new();
    let mut failed = Vec::new();
    // A signal abandons the running backup: its snapshot is never written (rustic writes
    // it last), the lock goes with `_lock`, and the command exits 130.
    let cancel = crate::interrupt::on_signal("stopping the backup; no snapshot is written");
    for name in &names {
        let target = &config.targets[name];
        ctx.say(format!("backing up `{name}` ({})", target.kind));
        let Ok(outcome) = cancel
            .guard(backup_target(&repo, name, target, None, false))
            .await
        else {
            eprintln!(
                "error: interrupted: the backup of `{name}` was stopped; no snapshot of it was written"
            );
            return Ok(crate::interrupt::EXIT_INTERRUPTED);
        };
        match outcome {
            Ok(r) => {
                if !ctx.json {
                    print_report(&r);
                }
                reports.push(r);
            }
            Err(e) => {
                let e = if e.message.contains(&format!("`{name}`")) {
                    e
                } else {
                    e.context(format!("backup of `{name}` failed"))
                };
                e.print();
                failed.push(serde_json::json!({ "target": name, "error": e.message }));
            }
        }
    }
    if ctx.json {
        output::json(&serde_json::json!({ "backups": reports, "failed": failed }));
    }
    Ok(if failed.is_empty() { 0 } else { 1 })
}

fn print_report(r: &BackupReport) {
    let what = match r.kind.as_str() {
        "logical" => format!("{} tables, {} rows", r.tables, output::thousands(r.rows)),
        "command" => "command output".to_string(),
        "redis" => "RDB snapshot".to_string(),
        "bucket" => format!("{} objects", r.files),
        _ => format!("{} files", r.files),
    };
    outln!(
        "{}  snapshot {}  {} ({what}), {} new in repository, {:.1} s",
        r.target,
        &r.snapshot[..8.min(r.snapshot.len())],
        output::bytes(r.bytes),
        output::bytes(r.stored_bytes),
        r.seconds
    );
}

pub fn select_targets(config: &Config, wanted: &[String]) -> CliResult<Vec<String>> {
    if wanted.is_empty() {
        if config.targets.is_empty() {
            return Err(CliError::usage(
                "no targets configured",
                Some("add a `[targets.<name>]` table to the config".into()),
            ));
        }
        return Ok(config.targets.keys().cloned().collect());
    }
    for w in wanted {
        if !config.targets.contains_key(w) {
            let known: Vec<&str> = config.targets.keys().map(String::as_str).collect();
            return Err(CliError::usage(
                format!("no target `{w}` in the config"),
                Some(format!("configured targets: {}", known.join(", "))),
            ));
        }
    }
    Ok(wanted.to_vec())
}

/// Back up one target. `url` overrides a PostgreSQL target's own (emergency backups of a
/// restore destination); `emergency` tags the snapshot so `latest` never picks it.
pub async fn backup_target(
    repo: &Arc<Repo>,
    name: &str,
    target: &TargetConfig,
    url: Option<Redacted>,
    emergency: bool,
) -> CliResult<BackupReport> {
    let started = Instant::now();
    let started_at = jiff::Timestamp::now();
    let (info, manifest_bytes) = match target.kind {
        TargetKind::Postgres if target.mode == Some(PostgresMode::Physical) && !emergency => {
            let url = target.connection_url(name)?;
            super::pitr::backup_physical(repo, name, target, &url, started_at).await?
        }
        TargetKind::Postgres => {
            let url = match url {
                Some(u) => u,
                None => target.connection_url(name)?,
            };
            backup_postgres(repo, name, target, &url, emergency, started_at).await?
        }
        TargetKind::Files => backup_files(repo, name, target, emergency, started_at).await?,
        TargetKind::Command => {
            super::command_target::backup(repo, name, target, emergency, started_at).await?
        }
        TargetKind::Redis => {
            let url = match url {
                Some(u) => u,
                None => target.connection_url(name)?,
            };
            super::redis_target::backup(repo, name, &url, emergency, started_at).await?
        }
        TargetKind::Bucket => {
            super::bucket_target::backup(repo, name, target, emergency, started_at).await?
        }
    };
    let manifest = Manifest::from_json(&manifest_bytes).ok();
    let pg = manifest.as_ref().and_then(|m| m.postgres.as_ref());
    Ok(BackupReport {
        target: name.to_string(),
        snapshot: info.id.clone(),
        kind: info.kind.clone(),
        bytes: manifest.as_ref().map_or(0, Manifest::logical_bytes),
        stored_bytes: info.stored_bytes(),
        tables: pg.map_or(0, |p| p.tables.len()),
        rows: pg.map_or(0, PostgresManifest::total_rows),
        files: manifest.as_ref().map_or(0, |m| {
            if let Some(b) = &m.bucket {
                return b.objects.len();
            }
            m.files
                .as_ref()
                .or(m.physical.as_ref().map(|p| &p.files))
                .map_or(0, |f| f.files.len())
        }),
        seconds: started.elapsed().as_secs_f64(),
    })
}

pub(super) fn manifest_base(
    name: &str,
    kind: TargetKind,
    method: &str,
    started_at: jiff::Timestamp,
) -> Manifest {
    Manifest {
        format: FORMAT_VERSION,
        target: name.to_string(),
        kind,
        method: method.to_string(),
        lifeboat_version: env!("CARGO_PKG_VERSION").to_string(),
        started_at: started_at.to_string(),
        finished_at: String::new(),
        complete: false,
        emergency: false,
        postgres: None,
        files: None,
        physical: None,
        command: None,
        redis: None,
        bucket: None,
    }
}

/// Store `entries` and, after them, the manifest `produce` makes once they were all read,
/// as one snapshot of `name` (tagged `emergency` if so). Returns the snapshot and the
/// manifest's bytes.
pub(super) async fn store_with_manifest(
    repo: &Arc<Repo>,
    name: &str,
    kind_tag: &'static str,
    emergency: bool,
    entries: Vec<SourceEntry>,
    produce: impl FnOnce() -> Result<Manifest, String> + Send + 'static,
) -> CliResult<(SnapshotInfo, Vec<u8>)> {
    store_with_parent(repo, name, kind_tag, emergency, entries, produce, None).await
}

/// [`store_with_manifest`] with a parent snapshot unchanged entries may be linked from.
pub(super) async fn store_with_parent(
    repo: &Arc<Repo>,
    name: &str,
    kind_tag: &'static str,
    emergency: bool,
    mut entries: Vec<SourceEntry>,
    produce: impl FnOnce() -> Result<Manifest, String> + Send + 'static,
    parent: Option<lifeboat_repo::Parent>,
) -> CliResult<(SnapshotInfo, Vec<u8>)> {
    let kept: Shared = Default::default();
    let kept_in = kept.clone();
    let (m_entry, _) = SourceEntry::new(
        format!("{name}/lifeboat.json"),
        Content::Deferred(Box::new(move || Ok(seal(produce()?, &kept_in)))),
    );
    entries.push(m_entry);
    let tags: &'static [&'static str] = if emergency { &[TAG_EMERGENCY] } else { &[] };
    let (r, n) = (repo.clone(), name.to_string());
    let info = tokio::task::spawn_blocking(move || {
        r.backup_with_parent(&n, kind_tag, tags, entries, parent)
    })
    .await??;
    let bytes = kept.lock().unwrap_or_else(|p| p.into_inner()).clone();
    Ok((info, bytes))
}

/// Keeps the manifest's bytes so the caller can report from them.
pub(super) type Shared = Arc<std::sync::Mutex<Vec<u8>>>;

/// Finish a manifest once every stream ended well: mark it complete, keep a copy.
pub(super) fn seal(mut manifest: Manifest, kept: &Shared) -> Vec<u8> {
    manifest.finished_at = jiff::Timestamp::now().to_string();
    manifest.complete = true;
    let bytes = manifest.to_json();
    *kept.lock().unwrap_or_else(|p| p.into_inner()) = bytes.clone();
    bytes
}

async fn backup_postgres(
    repo: &Arc<Repo>,
    name: &str,
    target_cfg: &TargetConfig,
    url: &Redacted,
    emergency: bool,
    started_at: jiff::Timestamp,
) -> CliResult<(SnapshotInfo, Vec<u8>)> {
    let target = Target::parse(url)?;
    let mut session = logical::SnapshotSession::open(&target).await?;
    let tools = PgTools::find(session.major(), target_cfg.pg_bin_dir.as_deref())?;
    let globals = if target_cfg.globals == Some(false) {
        None
    } else {
        let (t, tg) = (tools.clone(), target.clone());
        Some(tokio::task::spawn_blocking(move || logical::dump_globals(&t, &tg)).await??)
    };
    let dump = logical::spawn_dump(&tools, &target, &session.snapshot)?;
    let layout: Arc<Mutex<Option<DumpLayout>>> = Default::default();
    let dump = archive::Watched::new(dump, layout.clone());

    let dump_path = format!("{name}/db.dump");
    let globals_path = format!("{name}/globals.sql");
    let (dump_entry, dump_stat) = SourceEntry::new(&dump_path, Content::Stream(Box::new(dump)));
    let mut entries = vec![dump_entry];
    let mut globals_stat = None;
    if let Some((sql, _)) = globals {
        let (e, s) = SourceEntry::new(&globals_path, Content::Bytes(sql));
        entries.push(e);
        globals_stat = Some(s);
    }

    let (tx, rx) = std::sync::mpsc::channel::<Result<Vec<TableRecord>, String>>();
    let mut manifest = manifest_base(name, TargetKind::Postgres, "logical", started_at);
    manifest.emergency = emergency;
    let base = PostgresManifest {
        database: target.database().to_string(),
        server: target.server(),
        server_version: session.server_version.clone(),
        server_version_num: session.server_version_num,
        pg_dump_version: tools.version("pg_dump"),
        database_size: session.database_size,
        snapshot_lsn: session.lsn.clone(),
        snapshot_time: session.snapshot_time.clone(),
        tables: Vec::new(),
        dump: StreamRecord {
            path: dump_path.clone(),
            bytes: 0,
            sha256: String::new(),
        },
        layout: None,
        globals: None,
    };
    let kept: Shared = Default::default();
    let kept_in = kept.clone();
    let produce = move || -> Result<Vec<u8>, String> {
        // Runs in an archiver thread after the entries before it were started: wait for
        // the dump to end and the counts to arrive.
        let dump = dump_stat.wait()?;
        let tables = rx
            .recv()
            .map_err(|_| "row counts never arrived".to_string())??;
        let mut pg = base;
        pg.dump.bytes = dump.bytes;
        pg.dump.sha256 = dump.sha256;
        pg.layout = layout.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(g) = globals_stat {
            let g = g.wait()?;
            pg.globals = Some(StreamRecord {
                path: globals_path,
                bytes: g.bytes,
                sha256: g.sha256,
            });
        }
        pg.tables = tables;
        manifest.postgres = Some(pg);
        Ok(seal(manifest, &kept_in))
    };
    let (m_entry, _) = SourceEntry::new(
        format!("{name}/lifeboat.json"),
        Content::Deferred(Box::new(produce)),
    );
    entries.push(m_entry);

    let tags: &'static [&'static str] = if emergency { &[TAG_EMERGENCY] } else { &[] };
    let (repo2, name2) = (repo.clone(), name.to_string());
    let archive =
        tokio::task::spawn_blocking(move || repo2.backup(&name2, "logical", tags, entries));
    let counts = session.count_rows().await.map_err(|e| e.to_string());
    let _ = tx.send(counts);
    let result = archive.await?;
    session.close().await;
    let info = result?;
    let bytes = kept.lock().unwrap_or_else(|p| p.into_inner()).clone();
    Ok((info, bytes))
}

async fn backup_files(
    repo: &Arc<Repo>,
    name: &str,
    target: &TargetConfig,
    emergency: bool,
    started_at: jiff::Timestamp,
) -> CliResult<(SnapshotInfo, Vec<u8>)> {
    let roots: Vec<PathBuf> = target.paths.clone().unwrap_or_default();
    let excludes = target.exclude.clone().unwrap_or_default();
    let prefix = PathBuf::from(name).join("files");
    let walk = lifeboat_repo::files::walk(&roots, &excludes, &prefix).map_err(|e| {
        CliError::failure(e.to_string(), Some("check `paths` of the target".into()))
    })?;
    for s in &walk.skipped {
        log::warn!("skipped `{s}`: not a regular file, directory or link");
    }
    let files = watched(&walk.files);
    let (total_bytes, symlinks) = (walk.total_bytes, walk.symlinks);
    let mut manifest = manifest_base(name, TargetKind::Files, "files", started_at);
    manifest.emergency = emergency;
    let root_names: Vec<String> = roots.iter().map(|r| r.display().to_string()).collect();
    let produce = move || {
        let records = file_records(files)?;
        let read_bytes: u64 = records.iter().map(|r| r.bytes).sum();
        if read_bytes != total_bytes {
            log::warn!(
                "files changed size while being backed up ({total_bytes} → {read_bytes} bytes)"
            );
        }
        manifest.files = Some(FilesManifest {
            roots: root_names,
            files: records,
            total_bytes: read_bytes,
            symlinks,
        });
        Ok(manifest)
    };
    store_with_manifest(repo, name, "files", emergency, walk.entries, produce).await
}

/// The walked files' paths with where their reads are recorded.
pub(super) fn watched(
    files: &[lifeboat_repo::files::WalkedFile],
) -> Vec<(String, Arc<StreamStat>)> {
    files
        .iter()
        .map(|f| (f.source.display().to_string(), f.stat.clone()))
        .collect()
}

/// Wait until every file was read and stored; their manifest records, or the first error.
pub(super) fn file_records(
    files: Vec<(String, Arc<StreamStat>)>,
) -> Result<Vec<FileRecord>, String> {
    files
        .into_iter()
        .map(|(path, stat)| {
            let o = stat.wait().map_err(|e| format!("`{path}`: {e}"))?;
            Ok(FileRecord {
                path,
                bytes: o.bytes,
                sha256: o.sha256,
            })
        })
        .collect()
}
