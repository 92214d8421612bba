//! Physical targets: base backups of the data directory and point-in-time recovery.
//!
//! Backup: `pg_backup_start` → the data directory walked into the snapshot under
//! `<target>/data/<data-dir>` (without what PostgreSQL's docs exclude, keeping the
//! directories it needs) → once every file is read, `pg_backup_stop` on the same session;
//! its `backup_label` and `tablespace_map` go to `<target>/meta/` and the manifest records
//! system id, timeline, start/stop LSN and time and every file's size and hash. Without
//! `data-dir` (the server's files are elsewhere), `pg_basebackup` streams the cluster as
//! one tar into `<target>/base.tar` instead; restore extracts it.
//!
//! Restore (`--to-dir` with `--time`, `--lsn`, `--xid`, `--name` or `--latest`): the newest
//! base backup that ends before the target, its files, `backup_label`, `recovery.signal`
//! and the recovery settings (`restore_command` = `lifeboat wal fetch`); with `--start`,
//! the server is started and watched until it reaches the target. A target before the
//! oldest base backup, or after the newest archived WAL, is refused before anything is
//! written.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use lifeboat_core::{
    Redacted, TargetConfig, TargetKind,
    manifest::{FilesManifest, PhysicalManifest, StreamRecord},
};
use lifeboat_engine::{
    kinds::postgres_physical::plan::{choose_base, needed_segments, physical_of},
    time::parse_time,
};
use lifeboat_postgres::{
    PgTools, Target, basebackup,
    physical::{self, BaseBackup, RecoveryTarget, ServerFacts},
    wal::{self, WalKind},
};
use lifeboat_repo::{Content, Repo, SnapshotInfo, SourceEntry};
use serde_json::json;

use super::{
    Context,
    backup::{Shared, file_records, manifest_base, seal, store_with_manifest, watched},
    snapshot_io::Measured,
    wal::{list as list_wal, object_name},
    wal_feed::WalFeed,
};
use crate::{
    cli::{PitrArgs, RestoreArgs},
    error::{CliError, CliResult, FsContext, IoContext},
    output,
};

/// What the archiver thread and the session exchange when the files are read.
struct StopInfo {
    stop_lsn: lifeboat_core::Lsn,
    stop_time: String,
    backup_label: String,
    tablespace_map: String,
}

pub async fn backup_physical(
    repo: &Arc<Repo>,
    name: &str,
    cfg: &TargetConfig,
    url: &Redacted,
    started_at: jiff::Timestamp,
) -> CliResult<(lifeboat_repo::SnapshotInfo, Vec<u8>)> {
    let target = Target::parse(url)?;
    let Some(data_dir) = cfg.data_dir.clone() else {
        return backup_streamed(repo, name, cfg, &target, started_at).await;
    };
    let session = BaseBackup::start(&target, &format!("lifeboat {name}")).await?;
    let walk = lifeboat_repo::files::walk(
        std::slice::from_ref(&data_dir),
        &physical::excludes(&data_dir),
        &PathBuf::from(name).join("data"),
    )
    .map_err(|e| CliError::failure(e.to_string(), None))?;
    let mut entries = walk.entries;
    let files = watched(&walk.files);

    // The manifest entry waits for every file, asks for pg_backup_stop, and passes its
    // result on to the backup_label and tablespace_map entries after it.
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<Result<StopInfo, String>>();
    let (label_tx, label_rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let (map_tx, map_rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let mut manifest = manifest_base(name, TargetKind::Postgres, "physical", started_at);
    let base = PhysicalManifest {
        system_id: session.system_id,
        timeline: session.timeline,
        start_lsn: session.start_lsn,
        // Known once `pg_backup_stop` answers, below.
        stop_lsn: session.start_lsn,
        start_wal: session.start_wal(),
        stop_wal: String::new(),
        start_time: session.start_time.clone(),
        stop_time: String::new(),
        server_version: session.server_version.clone(),
        server_version_num: session.server_version_num,
        data_dir: data_dir.display().to_string(),
        wal_segment_size: session.segment_size,
        files: FilesManifest {
            roots: vec![data_dir.display().to_string()],
            files: Vec::new(),
            total_bytes: 0,
            symlinks: walk.symlinks,
        },
        base_tar: None,
    };
    let kept: Shared = Default::default();
    let kept_in = kept.clone();
    let (timeline, segment_size) = (session.timeline, session.segment_size);
    let produce = move || -> Result<Vec<u8>, String> {
        let records = file_records(files)?;
        done_tx
            .send(())
            .map_err(|_| "the backup session is gone".to_string())?;
        let stop = stop_rx
            .recv()
            .map_err(|_| "pg_backup_stop never answered".to_string())??;
        let _ = label_tx.send(stop.backup_label.into_bytes());
        let _ = map_tx.send(stop.tablespace_map.into_bytes());
        let mut p = base;
        p.files.total_bytes = records.iter().map(|r| r.bytes).sum();
        p.files.files = records;
        p.stop_wal = wal::segment_of(stop.stop_lsn, timeline, segment_size);
        p.stop_lsn = stop.stop_lsn;
        p.stop_time = stop.stop_time;
        manifest.physical = Some(p);
        Ok(seal(manifest, &kept_in))
    };
    // Snapshot order is path order: `<name>/data/...`, `<name>/lifeboat.json`, `<name>/meta/...`.
    entries.push(
        SourceEntry::new(
            format!("{name}/lifeboat.json"),
            Content::Deferred(Box::new(produce)),
        )
        .0,
    );
    let from = |rx: std::sync::mpsc::Receiver<Vec<u8>>| {
        move || {
            rx.recv()
                .map_err(|_| "the base backup did not stop".to_string())
        }
    };
    entries.push(
        SourceEntry::new(
            format!("{name}/meta/backup_label"),
            Content::Deferred(Box::new(from(label_rx))),
        )
        .0,
    );
    entries.push(
        SourceEntry::new(
            format!("{name}/meta/tablespace_map"),
            Content::Deferred(Box::new(from(map_rx))),
        )
        .0,
    );

    let (repo2, name2) = (repo.clone(), name.to_string());
    let mut archive =
        tokio::task::spawn_blocking(move || repo2.backup(&name2, "physical", &[], entries));
    let files_done = tokio::task::spawn_blocking(move || done_rx.recv().is_ok());
    tokio::select! {
        done = files_done => {
            // Every file is read: stop the backup on its own session.
            let stopped = if done.unwrap_or(false) {
                session.stop().await.map(|s| StopInfo {
                    stop_lsn: s.stop_lsn,
                    stop_time: s.stop_time,
                    backup_label: s.backup_label,
                    tablespace_map: s.tablespace_map,
                }).map_err(|e| e.to_string())
            } else {
                Err("the backup ended before every file was read".to_string())
            };
            let _ = stop_tx.send(stopped);
        }
        result = &mut archive => {
            // The archiver ended first: it failed; the session's end aborts the backup.
            drop(session);
            result??;
            return Err(CliError::failure("the base backup ended early", None));
        }
    }
    let info = archive.await??;
    let bytes = kept.lock().unwrap_or_else(|p| p.into_inner()).clone();
    Ok((info, bytes))
}

/// The server's clock, as text.
async fn server_now(client: &tokio_postgres::Client) -> Result<String, tokio_postgres::Error> {
    let row = client.query_one("SELECT now()::text", &[]).await?;
    Ok(row.get(0))
}

/// A base backup without `data-dir`: `pg_basebackup`'s tar stream into `<name>/base.tar`,
/// its WAL start and end read off the stream (see `lifeboat_postgres::basebackup`).
async fn backup_streamed(
    repo: &Arc<Repo>,
    name: &str,
    cfg: &TargetConfig,
    target: &Target,
    started_at: jiff::Timestamp,
) -> CliResult<(lifeboat_repo::SnapshotInfo, Vec<u8>)> {
    let client = target.connect().await?;
    let facts = ServerFacts::read(&client).await?;
    let start_time = server_now(&client)
        .await
        .map_err(|e| CliError::failure(format!("cannot read the server's time: {e}"), None))?;
    let tools = PgTools::find(facts.major(), cfg.pg_bin_dir.as_deref())?;
    let child = basebackup::stream(target, &tools, &format!("lifeboat {name}"))?;
    let (watch, kept_entries) = basebackup::TarWatch::new(child);
    let path = format!("{name}/base.tar");
    let (entry, stat) = SourceEntry::new(&path, Content::Stream(Box::new(watch)));
    let mut manifest = manifest_base(name, TargetKind::Postgres, "physical", started_at);
    let runtime = tokio::runtime::Handle::current();
    let produce = move || {
        let out = stat.wait()?;
        let points = kept_entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .wal_points()?;
        let stop_time = runtime
            .block_on(server_now(&client))
            .map_err(|e| format!("cannot read the server's time: {e}"))?;
        let segment = |lsn| wal::segment_of(lsn, points.timeline, facts.segment_size);
        manifest.physical = Some(PhysicalManifest {
            system_id: facts.system_id,
            timeline: points.timeline,
            start_wal: segment(points.start_lsn),
            stop_wal: segment(points.stop_lsn),
            start_lsn: points.start_lsn,
            stop_lsn: points.stop_lsn,
            start_time,
            stop_time,
            server_version: facts.server_version,
            server_version_num: facts.server_version_num,
            data_dir: String::new(),
            wal_segment_size: facts.segment_size,
            files: FilesManifest {
                roots: Vec::new(),
                files: Vec::new(),
                total_bytes: out.bytes,
                symlinks: 0,
            },
            base_tar: Some(StreamRecord {
                path,
                bytes: out.bytes,
                sha256: out.sha256,
            }),
        });
        Ok(manifest)
    };
    store_with_manifest(repo, name, "physical", false, vec![entry], produce).await
}

/// Recovery to the moment `ts`, in PostgreSQL's own spelling in UTC: the server reads
/// `recovery_target_time` before it knows time-zone abbreviations, so `…Z` is refused.
pub(super) fn recovery_to(ts: jiff::Timestamp) -> RecoveryTarget {
    let utc = ts.to_zoned(jiff::tz::TimeZone::UTC);
    RecoveryTarget::Time(utc.strftime("%Y-%m-%d %H:%M:%S%.f+00").to_string())
}

/// Where recovery should stop, from the command line.
fn recovery_target(p: &PitrArgs) -> CliResult<Option<RecoveryTarget>> {
    Ok(if let Some(t) = &p.time {
        let ts = parse_time(t)
            .map_err(|e| CliError::usage(e, Some("write it like 2026-11-22T10:01:00Z".into())))?;
        Some(recovery_to(ts))
    } else if let Some(l) = &p.lsn {
        let lsn = l.parse().map_err(|e| CliError::usage(e, None))?;
        Some(RecoveryTarget::Lsn(lsn))
    } else if let Some(x) = &p.xid {
        if x.trim().parse::<u64>().is_err() {
            return Err(CliError::usage(
                format!("`{x}` is not a transaction id"),
                Some("give the number `SELECT txid_current()` returned, like 7342".into()),
            ));
        }
        Some(RecoveryTarget::Xid(x.trim().to_string()))
    } else if let Some(n) = &p.name {
        if n.is_empty() || n.chars().any(char::is_control) {
            return Err(CliError::usage(
                format!("{n:?} is not a restore point name"),
                Some("give the name passed to pg_create_restore_point()".into()),
            ));
        }
        Some(RecoveryTarget::Name(n.clone()))
    } else if p.latest {
        Some(RecoveryTarget::Latest)
    } else {
        None
    })
}

/// What a point-in-time restore will use, checked against the archive before anything is
/// written.
pub(super) struct PitrPlan {
    pub base: SnapshotInfo,
    pub manifest: PhysicalManifest,
    pub newest_wal: String,
    pub restore_command: String,
    /// The cluster's system identifier and the segments its archive held when planned.
    pub system_id: u64,
    pub archived: Vec<String>,
}

/// Choose the base backup for `target` and check that the archive holds the WAL from its
/// start on and reaches the target.
pub(super) async fn plan(
    repo: &Arc<Repo>,
    config_path: &Path,
    target_name: &str,
    wanted: &str,
    target: &RecoveryTarget,
) -> CliResult<PitrPlan> {
    let (r, name) = (repo.clone(), target_name.to_string());
    let snaps = tokio::task::spawn_blocking(move || r.snapshots(Some(&name))).await??;
    let base = choose_base(&snaps, wanted, target)?.clone();
    let p = physical_of(&base)
        .expect("chosen among physical snapshots")
        .1
        .clone();
    let system_id = p.system_id.0;
    let (r, sid) = (repo.clone(), system_id);
    let archived = tokio::task::spawn_blocking(move || list_wal(&r, sid)).await??;
    let segments: Vec<&wal::WalName> = archived
        .iter()
        .filter(|w| w.kind == WalKind::Segment)
        .collect();
    // Without its WAL range the coverage check cannot run: that is an error, not a skip.
    let needed = needed_segments(&p).map_err(|e| {
        CliError::failure(
            format!("base backup `{}`: {e}", base.short_id()),
            Some("choose another base backup with `--snapshot`, or take a new one with `lifeboat backup`".into()),
        )
    })?;
    let missing: Vec<String> = needed
        .into_iter()
        .filter(|n| !segments.iter().any(|s| &s.name == n))
        .collect();
    if !missing.is_empty() {
        return Err(CliError::failure(
            format!(
                "the WAL this base backup needs is not archived: {}",
                missing.join(", ")
            ),
            Some("is `archive_command = 'lifeboat wal push %p'` set on the server?".into()),
        ));
    }
    let newest = segments.last().map(|s| s.name.clone()).unwrap_or_default();
    if let RecoveryTarget::Time(t) = target {
        let rel = segments
            .last()
            .map(|s| object_name(system_id, s))
            .unwrap_or_default();
        let written = repo
            .side()
            .written_at(&rel)
            .map_err(|e| CliError::failure(e.to_string(), None))?;
        let t = parse_time(t).map_err(|_| {
            CliError::failure(format!("`{t}` is not a moment PostgreSQL wrote"), None)
        })?;
        if let Some(w) = written.and_then(|w| jiff::Timestamp::try_from(w).ok())
            && t > w + jiff::SignedDuration::from_secs(1)
        {
            return Err(CliError::failure(
                format!(
                    "the target {t} is past the archived WAL: the newest segment ({newest}) was archived at {w}"
                ),
                Some("recover to an earlier moment, or use `--latest`".into()),
            ));
        }
    }
    let exe = std::env::current_exe().doing("find lifeboat's own path for `restore_command`")?;
    let config = std::fs::canonicalize(config_path).fs("resolve the path of", config_path)?;
    let restore_command = format!(
        "{} -q -c {} wal fetch --target {} --system-id {system_id} %f %p",
        shell_quote(&exe.display().to_string()),
        shell_quote(&config.display().to_string()),
        shell_quote(target_name),
    );
    let archived = segments.iter().map(|s| s.name.clone()).collect();
    Ok(PitrPlan {
        base,
        manifest: p,
        newest_wal: newest,
        restore_command,
        system_id,
        archived,
    })
}

/// Restore the plan's base backup into `dir` and write the recovery settings; the folder
/// is handed to the server's user.
pub(super) async fn materialize(
    repo: &Arc<Repo>,
    target_name: &str,
    plan: &PitrPlan,
    dir: &Path,
    target: &RecoveryTarget,
    pause: bool,
    archive: bool,
) -> CliResult<()> {
    let (base, p) = (&plan.base, &plan.manifest);
    std::fs::create_dir_all(dir).fs("create the data directory", dir)?;
    if let Some(tar) = &p.base_tar {
        extract_tar(repo, &base.id, tar, dir).await?;
    } else {
        restore_files(repo, target_name, &base.id, p, dir).await?;
    }
    for d in physical::EMPTIED_DIRS {
        let d = dir.join(d);
        std::fs::create_dir_all(&d).fs("create", &d)?;
    }
    let settings = physical::write_recovery(dir, &plan.restore_command, target, pause, archive)
        .fs("write the recovery settings into", dir)?;
    physical::hand_over(dir).fs("give the server's user the restored folder", dir)?;
    log::info!("recovery settings: {settings:?}");
    Ok(())
}

/// A base backup of files: the data directory, then `backup_label` and `tablespace_map`.
async fn restore_files(
    repo: &Arc<Repo>,
    target_name: &str,
    snapshot: &str,
    p: &PhysicalManifest,
    dir: &Path,
) -> CliResult<()> {
    let (r, id, src, d) = (
        repo.clone(),
        snapshot.to_string(),
        format!("{target_name}/data{}", p.data_dir),
        dir.to_path_buf(),
    );
    tokio::task::spawn_blocking(move || r.restore_dir(&id, &src, &d, false)).await??;
    for file in ["backup_label", "tablespace_map"] {
        let mut bytes = Vec::new();
        repo.dump(snapshot, &format!("{target_name}/meta/{file}"), &mut bytes)?;
        if !bytes.is_empty() {
            let path = dir.join(file);
            std::fs::write(&path, bytes).fs("write", &path)?;
        }
    }
    Ok(())
}

/// A streamed base backup: its tar streamed into `tar -x` in `dir`, checked against the
/// size and SHA-256 the manifest recorded (`backup_label` is inside).
async fn extract_tar(
    repo: &Arc<Repo>,
    snapshot: &str,
    tar: &StreamRecord,
    dir: &Path,
) -> CliResult<()> {
    let (r, id, path, d) = (
        repo.clone(),
        snapshot.to_string(),
        tar.path.clone(),
        dir.to_path_buf(),
    );
    let (bytes, sha256) = tokio::task::spawn_blocking(move || -> CliResult<(u64, String)> {
        let mut child = std::process::Command::new("tar")
            .args(["-x", "--no-same-owner", "-f", "-", "-C"])
            .arg(&d)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| CliError::failure(format!("cannot start `tar`: {e}"), None))?;
        let stdin = child.stdin.take().expect("piped stdin");
        let mut w = Measured::new(std::io::BufWriter::new(stdin));
        let dumped = r.dump(&id, &path, &mut w).map_err(CliError::from);
        let flushed = std::io::Write::flush(&mut w);
        let Measured { inner, bytes, hash } = w;
        drop(inner); // tar sees the end of its input
        let hash = hex::encode(sha2::Digest::finalize(hash));
        let status = child.wait().doing("wait for `tar`")?;
        dumped?;
        flushed.doing("feed the base backup to `tar`")?;
        if !status.success() {
            return Err(CliError::failure(
                format!("`tar -x` of the base backup failed ({status})"),
                None,
            ));
        }
        Ok((bytes, hash))
    })
    .await??;
    if (bytes, sha256.as_str()) != (tar.bytes, tar.sha256.as_str()) {
        return Err(CliError::verification(format!(
            "the base backup's tar does not match its manifest: {bytes} bytes, SHA-256 {sha256} (recorded: {} bytes, {})",
            tar.bytes, tar.sha256
        )));
    }
    Ok(())
}

/// Start fetching the plan's WAL ahead, for a server that will be started on the restore
/// (see [`WalFeed`]); begun before the files are restored so the first segments are ready
/// when recovery asks.
pub(super) async fn feed(repo: &Arc<Repo>, plan: &PitrPlan) -> CliResult<Option<WalFeed>> {
    let Some(start) = wal::WalName::parse(&plan.manifest.start_wal) else {
        return Ok(None);
    };
    let r = repo.clone();
    let key = tokio::task::spawn_blocking(move || r.side_key()).await??;
    Ok(Some(WalFeed::start(
        repo.clone(),
        key,
        plan.system_id,
        plan.archived.clone(),
        &start,
        plan.manifest.wal_segment_size,
    )))
}

/// Start the server on a restored folder and wait until recovery reached its target,
/// `feed` answering its `restore_command`; returns the server, where it stopped, and how
/// to connect to it.
pub(super) async fn start_and_wait(
    cfg: &TargetConfig,
    target_name: &str,
    plan: &PitrPlan,
    dir: &Path,
    port: u16,
    mut feed: Option<WalFeed>,
) -> CliResult<(physical::Recovered, physical::RecoveredPoint, Target)> {
    if let Some(f) = &mut feed
        && let Err(e) = f.listen(dir)
    {
        log::warn!("recovery fetches WAL without the feed: {e}");
    }
    let tools = PgTools::find(
        plan.manifest.server_version_num / 10_000,
        cfg.pg_bin_dir.as_deref(),
    )
    .or_else(|_| PgTools::newest_installed())?;
    let d = dir.to_path_buf();
    let server =
        tokio::task::spawn_blocking(move || physical::start_server(&tools, &d, port)).await??;
    let url = cfg.connection_url(target_name)?;
    let watch = Target::parse(&url)?.with_host_port("127.0.0.1", port);
    let point = physical::wait_recovered(&server, &watch, Duration::from_secs(3600)).await;
    tokio::task::spawn_blocking(move || drop(feed)).await?;
    let point = point?;
    // Segments fetched ahead that recovery did not need.
    let _ = std::fs::remove_dir_all(dir.join(super::wal::PREFETCH_DIR));
    Ok((server, point, watch))
}

pub async fn restore_physical(
    ctx: &Context,
    args: &RestoreArgs,
    repo: &Arc<Repo>,
    cfg: &TargetConfig,
) -> CliResult<i32> {
    let Some(dir) = args.to_dir.clone() else {
        return Err(CliError::usage(
            "a physical target is restored into a new data directory with `--to-dir DIR`",
            Some(
                "add `--time T` (or --lsn, --xid, --name, --latest) and `--start --port P`".into(),
            ),
        ));
    };
    let Some(target) = recovery_target(&args.pitr)? else {
        return Err(CliError::usage(
            "say where recovery stops: `--time`, `--lsn`, `--xid`, `--name` or `--latest`",
            None,
        ));
    };
    if dir.exists()
        && std::fs::read_dir(&dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        return Err(CliError::failure(
            format!("`{}` exists and is not empty", dir.display()),
            Some("restore into a new folder; a restore never overwrites a data directory".into()),
        ));
    }
    let plan = plan(
        repo,
        &ctx.config_path,
        &args.target,
        &args.snapshot,
        &target,
    )
    .await?;
    let (base, p) = (&plan.base, &plan.manifest);
    let steps = vec![
        format!(
            "restore base backup {} ({}; {} → {}, timeline {})",
            base.short_id(),
            match &p.base_tar {
                Some(tar) => format!("streamed, a tar of {}", output::bytes(tar.bytes)),
                None => format!(
                    "{} files, {}",
                    p.files.files.len(),
                    output::bytes(p.files.total_bytes)
                ),
            },
            p.start_lsn,
            p.stop_lsn,
            p.timeline
        ),
        format!(
            "WAL from {} (archived up to {}) fetched by restore_command",
            p.start_wal, plan.newest_wal
        ),
        format!(
            "recovery target: {target:?}, then {}",
            if args.pitr.pause { "pause" } else { "promote" }
        ),
        if args.pitr.start {
            format!(
                "start the server on port {} and wait for the target",
                args.pitr.port.unwrap_or(0)
            )
        } else {
            "leave the server stopped (start it with pg_ctl)".into()
        },
    ];
    if args.dry_run {
        if ctx.json {
            output::json(&json!({
                "dry_run": true, "base_backup": base.id, "start_wal": p.start_wal,
                "newest_wal": plan.newest_wal, "restore_command": plan.restore_command,
                "steps": steps,
            }));
        } else {
            outln!(
                "plan (dry run): point-in-time restore of `{}` into `{}`",
                args.target,
                dir.display()
            );
            for (i, s) in steps.iter().enumerate() {
                outln!("  {}. {s}", i + 1);
            }
            outln!("  restore_command = '{}'", plan.restore_command);
            outln!("nothing was changed");
        }
        return Ok(0);
    }
    if !ctx.json {
        outln!(
            "point-in-time restore of `{}` into `{}`",
            args.target,
            dir.display()
        );
        for (i, s) in steps.iter().enumerate() {
            outln!("  {}. {s}", i + 1);
        }
    }
    let feed = if args.pitr.start {
        feed(repo, &plan).await?
    } else {
        None
    };
    materialize(
        repo,
        &args.target,
        &plan,
        &dir,
        &target,
        args.pitr.pause,
        !args.pitr.no_archive,
    )
    .await?;
    if !args.pitr.start {
        if ctx.json {
            output::json(&json!({ "data_dir": dir, "base_backup": base.id, "started": false }));
        } else {
            outln!("restored; start it with: pg_ctl -D {} start", dir.display());
        }
        return Ok(0);
    }
    let port = args.pitr.port.unwrap_or(5432);
    let (_, point, _) = start_and_wait(cfg, &args.target, &plan, &dir, port, feed).await?;
    if ctx.json {
        output::json(&json!({
            "data_dir": dir, "base_backup": base.id, "started": true, "port": port,
            "state": point.state, "last_commit_time": point.last_commit_time,
            "replay_lsn": point.replay_lsn, "timeline": point.timeline,
        }));
    } else {
        outln!(
            "recovered: last replayed commit {} at LSN {}; timeline {}; server {} on port {port}",
            point.last_commit_time.as_deref().unwrap_or("(none)"),
            point.replay_lsn.as_deref().unwrap_or("?"),
            point.timeline,
            point.state
        );
    }
    Ok(0)
}

/// `s` as one word for `sh`.
fn shell_quote(s: &str) -> String {
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-=".contains(c))
    {
        s.to_string()
    } else {
        format!(
            "\"{}\"",
            s.replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('$', "\\$")
        )
    }
}
