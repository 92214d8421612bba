//! Point-in-time recovery: plan (the base backup, the WAL it needs, checked against the
//! archive before anything is written), materialize (its files, `recovery.signal`, the
//! recovery settings with `restore_command` = `lifeboat wal fetch`), and with `--start`,
//! the server started and watched until it reaches the target while the restoring process
//! feeds it WAL.

use std::{path::Path, sync::Arc, time::Duration};

use lifeboat_core::{
    TargetConfig,
    manifest::{PhysicalManifest, StreamRecord},
};
use lifeboat_postgres::{
    PgTools, Target,
    physical::{self, RecoveryTarget},
    wal::{self, WalKind},
};
use lifeboat_repo::{Repo, SnapshotInfo};
use serde_json::json;

use super::plan::{choose_base, missing_wal, physical_of};
use crate::{
    Engine, EngineError, EngineResult, Failure, FsContext, IoContext,
    cancel::Cancel,
    format,
    restore::{
        act::{ActCx, RestoreOutcome, RestorePlan, act},
        plan::{Plan, Recovery, Refusal, RestoreRequest},
    },
    snapshot_io::Measured,
    time::parse_time,
    wal::{feed::WalFeed, object_name},
};

/// A point-in-time restore into a new data directory (`--to-dir`), planned against the
/// archive; with `--start`, the server is started and watched until it reaches the target.
pub(super) async fn plan_restore(
    engine: &Engine,
    request: &RestoreRequest,
    cfg: &TargetConfig,
) -> EngineResult<RestorePlan> {
    if request.table.is_some() {
        return super::table::plan(engine, request, cfg).await;
    }
    let Some(dir) = request.to_dir.clone() else {
        return Err(EngineError::usage(
            "a physical target is restored into a new data directory with `--to-dir DIR`",
            Some(
                "add `--time T` (or --lsn, --xid, --name, --latest) and `--start --port P`".into(),
            ),
        ));
    };
    let pitr = &request.recovery;
    let Some(target) = recovery_target(request.time.as_deref(), pitr)? else {
        return Err(EngineError::usage(
            "say where recovery stops: `--time`, `--lsn`, `--xid`, `--name` or `--latest`",
            None,
        ));
    };
    let not_empty = dir.exists()
        && std::fs::read_dir(&dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true);
    let plan = plan(
        &engine.repo,
        (&engine.config_path, engine.config.using_copy.as_deref()),
        &request.target,
        &request.snapshot,
        &target,
    )
    .await?;
    let (base, p) = (&plan.base, &plan.manifest);
    let steps = vec![
        format!(
            "restore base backup {} ({}; {} → {}, timeline {})",
            base.short_id(),
            match &p.base_tar {
                Some(tar) => format!("streamed, a tar of {}", format::bytes(tar.bytes)),
                None => format!(
                    "{} files, {}",
                    p.files.files.len(),
                    format::bytes(p.files.total_bytes)
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
            "recovery target: {}, then {}",
            target.describe(),
            if pitr.pause { "pause" } else { "promote" }
        ),
        if pitr.start {
            format!(
                "start the server on port {} and wait for the target",
                pitr.port.unwrap_or(0)
            )
        } else {
            "leave the server stopped (start it with pg_ctl)".into()
        },
    ];
    let mut shown = Plan::new(
        &request.target,
        base,
        format!("`{}` (a new data directory)", dir.display()),
        steps,
        false,
    );
    // Recovered to a moment: that moment is the point restored.
    if let lifeboat_postgres::physical::RecoveryTarget::Time(t) = &target
        && let Ok(at) = parse_time(t)
    {
        shown.restored_point = at.to_string();
    }
    for (k, v) in [
        ("base_backup", json!(base.id)),
        ("start_wal", json!(p.start_wal)),
        ("newest_wal", json!(plan.newest_wal)),
        ("restore_command", json!(plan.restore_command)),
    ] {
        shown.facts.insert(k.into(), v);
    }
    shown.notes = vec![format!("  restore_command = '{}'", plan.restore_command)];
    let (name, cfg, pitr) = (request.target.clone(), cfg.clone(), pitr.clone());
    let to = dir.clone();
    let mut restore = RestorePlan::new(
        shown,
        act(move |cx: ActCx| async move {
            // Stopped part-way (a signal): the server stopped, the new data directory gone.
            let created = !to.exists();
            let done = recover_into(&cx, &name, &cfg, &pitr, &plan, &target, &to).await;
            if matches!(&done, Err(e) if e.failure == Failure::Interrupted) {
                if let Err(e) = stop_server_on(&cfg, &plan, &to).await {
                    log::warn!("cannot stop the server on `{}`: {e}", to.display());
                }
                let removed = if created {
                    std::fs::remove_dir_all(&to)
                } else {
                    empty_dir(&to)
                };
                return Err(match removed {
                    Ok(()) => EngineError::interrupted(format!(
                        "the restore was stopped; `{}` was {} again",
                        to.display(),
                        if created { "removed" } else { "emptied" }
                    )),
                    Err(e) => EngineError::interrupted(format!(
                        "the restore was stopped, but `{}` could not be cleared: {e}",
                        to.display()
                    )),
                });
            }
            done
        }),
    );
    if not_empty {
        restore.refusal = Some(Refusal {
            message: format!("`{}` exists and is not empty", dir.display()),
            hint: "restore into a new folder; a restore never overwrites a data directory".into(),
            forceable: false,
            why: "the folder is not empty".into(),
        });
    }
    Ok(restore)
}

/// The act of a physical restore: the base backup into `to`, the recovery settings, and
/// with `--start` the server started and watched until it reached the target.
async fn recover_into(
    cx: &ActCx,
    name: &str,
    cfg: &TargetConfig,
    pitr: &Recovery,
    plan: &PitrPlan,
    target: &RecoveryTarget,
    to: &Path,
) -> EngineResult<RestoreOutcome> {
    let repo = &cx.engine.repo;
    let feed = if pitr.start {
        feed(repo, plan).await?
    } else {
        None
    };
    let base_id = plan.base.id.clone();
    materialize(
        repo,
        name,
        plan,
        to,
        target,
        (pitr.pause, !pitr.no_archive),
        &cx.cancel,
    )
    .await?;
    let verified = |facts, line| RestoreOutcome::new(true, "", facts, vec![line]);
    if !pitr.start {
        return Ok(verified(
            json!({ "data_dir": to, "base_backup": base_id, "started": false }),
            format!("restored; start it with: pg_ctl -D {} start", to.display()),
        ));
    }
    let port = pitr.port.unwrap_or(5432);
    let started = cx
        .cancel
        .guard(start_and_wait(cfg, name, plan, to, port, feed))
        .await;
    let Ok(started) = started else {
        return Err(EngineError::interrupted("recovery was stopped"));
    };
    let (_, point, _) = started?;
    Ok(verified(
        json!({
            "data_dir": to, "base_backup": base_id, "started": true, "port": port,
            "state": point.state, "last_commit_time": point.last_commit_time,
            "replay_lsn": point.replay_lsn, "timeline": point.timeline,
        }),
        format!(
            "recovered: last replayed commit {} at LSN {}; timeline {}; server {} on port {port}",
            point.last_commit_time.as_deref().unwrap_or("(none)"),
            point.replay_lsn.as_deref().unwrap_or("?"),
            point.timeline,
            point.state
        ),
    ))
}

/// Remove everything inside `dir`, keeping `dir`.
fn empty_dir(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if std::fs::symlink_metadata(&path)?.is_dir() {
            std::fs::remove_dir_all(&path)?;
        } else {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

/// Stop, at once, a server running on the restored folder `dir` (a stopped restore, a
/// drill's teardown); nothing to do when none runs there.
pub(crate) async fn stop_server_on(
    cfg: &TargetConfig,
    plan: &PitrPlan,
    dir: &Path,
) -> Result<(), String> {
    if !dir.join("postmaster.pid").exists() {
        return Ok(());
    }
    let tools = PgTools::find(
        plan.manifest.server_version_num / 10_000,
        cfg.pg_bin_dir.as_deref(),
    )
    .map_err(|e| e.to_string())?;
    let mut cmd =
        lifeboat_postgres::cluster::server_tool(&tools, "pg_ctl").map_err(|e| e.to_string())?;
    cmd.arg("-D")
        .arg(dir)
        .args(["-m", "immediate", "-w", "stop"]);
    let out = lifeboat_repo::blocking(move || cmd.output())
        .await
        .map_err(|e| e.to_string())?;
    // Gone meanwhile is stopped too.
    if out.status.success() || !dir.join("postmaster.pid").exists() {
        return Ok(());
    }
    Err(format!(
        "pg_ctl stop failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    ))
}

/// Recovery to the moment `ts`, in PostgreSQL's own spelling in UTC: the server reads
/// `recovery_target_time` before it knows time-zone abbreviations, so `…Z` is refused.
pub fn recovery_to(ts: jiff::Timestamp) -> RecoveryTarget {
    let utc = ts.to_zoned(jiff::tz::TimeZone::UTC);
    RecoveryTarget::Time(utc.strftime("%Y-%m-%d %H:%M:%S%.f+00").to_string())
}

/// Where recovery should stop, from the command line.
pub fn recovery_target(time: Option<&str>, p: &Recovery) -> EngineResult<Option<RecoveryTarget>> {
    Ok(if let Some(t) = time {
        let ts = parse_time(t).map_err(|e| {
            EngineError::usage(e, Some("write it like 2026-11-22T10:01:00Z".into()))
        })?;
        Some(recovery_to(ts))
    } else if let Some(l) = &p.lsn {
        let lsn = l.parse().map_err(|e| EngineError::usage(e, None))?;
        Some(RecoveryTarget::Lsn(lsn))
    } else if let Some(x) = &p.xid {
        if x.trim().parse::<u64>().is_err() {
            return Err(EngineError::usage(
                format!("`{x}` is not a transaction id"),
                Some("give the number `SELECT txid_current()` returned, like 7342".into()),
            ));
        }
        Some(RecoveryTarget::Xid(x.trim().to_string()))
    } else if let Some(n) = &p.name {
        if n.is_empty() || n.chars().any(char::is_control) {
            return Err(EngineError::usage(
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
pub struct PitrPlan {
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
/// `(config_path, copy)`: the config the server's `restore_command` names, and the copy
/// (`--repo NAME`) it fetches WAL from, if not the repository.
pub async fn plan(
    repo: &Arc<Repo>,
    (config_path, copy): (&Path, Option<&str>),
    target_name: &str,
    wanted: &str,
    target: &RecoveryTarget,
) -> EngineResult<PitrPlan> {
    let snaps = repo.list_snapshots(Some(target_name)).await?;
    let base = choose_base(&snaps, wanted, target)?.clone();
    let p = physical_of(&base)
        .expect("chosen among physical snapshots")
        .1
        .clone();
    let system_id = p.system_id.0;
    let archived = repo.call(move |r| crate::wal::list(r, system_id)).await?;
    let segments: Vec<&wal::WalName> = archived
        .iter()
        .filter(|w| w.kind == WalKind::Segment)
        .collect();
    // Without its WAL range the coverage check cannot run: that is an error, not a skip.
    let missing = missing_wal(&p, &archived).map_err(|e| {
        EngineError::failure(
            format!("base backup `{}`: {e}", base.short_id()),
            Some("choose another base backup with `--snapshot`, or take a new one with `lifeboat backup`".into()),
        )
    })?;
    if !missing.is_empty() {
        return Err(EngineError::failure(
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
            .map_err(|e| EngineError::failure(e.to_string(), None))?;
        let t = parse_time(t).map_err(|_| {
            EngineError::failure(format!("`{t}` is not a moment PostgreSQL wrote"), None)
        })?;
        if let Some(w) = written.and_then(|w| jiff::Timestamp::try_from(w).ok())
            && t > w + jiff::SignedDuration::from_secs(1)
        {
            return Err(EngineError::failure(
                format!(
                    "the target {t} is past the archived WAL: the newest segment ({newest}) was archived at {w}"
                ),
                Some("recover to an earlier moment, or use `--latest`".into()),
            ));
        }
    }
    let exe = std::env::current_exe().doing("find lifeboat's own path for `restore_command`")?;
    let config = std::fs::canonicalize(config_path).fs("resolve the path of", config_path)?;
    // Restored from a copy (`--repo NAME`), the server fetches its WAL from the copy too.
    let from_copy = copy
        .map(|c| format!(" --repo {}", shell_quote(c)))
        .unwrap_or_default();
    let restore_command = format!(
        "{} -q -c {}{from_copy} wal fetch --target {} --system-id {system_id} %f %p",
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

/// Restore the plan's base backup into `dir` and write the recovery settings (`(pause,
/// archive)`: pause at the target instead of promoting; let the server archive); the folder
/// is handed to the server's user. `cancel` stops it part-way ([`Failure::Interrupted`]);
/// what it wrote into `dir` is the caller's to remove.
pub async fn materialize(
    repo: &Arc<Repo>,
    target_name: &str,
    plan: &PitrPlan,
    dir: &Path,
    target: &RecoveryTarget,
    (pause, archive): (bool, bool),
    cancel: &Cancel,
) -> EngineResult<()> {
    let (base, p) = (&plan.base, &plan.manifest);
    std::fs::create_dir_all(dir).fs("create the data directory", dir)?;
    if let Some(tar) = &p.base_tar {
        extract_tar(repo, &base.id, tar, dir).await?;
    } else {
        restore_files(repo, target_name, &base.id, p, dir, cancel).await?;
    }
    if cancel.is_cancelled() {
        return Err(EngineError::interrupted("the restore was stopped"));
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
    cancel: &Cancel,
) -> EngineResult<()> {
    let (r, id, src, d) = (
        repo.clone(),
        snapshot.to_string(),
        format!("{target_name}/data{}", p.data_dir),
        dir.to_path_buf(),
    );
    cancel
        .blocking_until(move |stop| r.restore_dir_until(&id, &src, &d, false, Some(stop)))
        .await?;
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
) -> EngineResult<()> {
    let (r, id, path, d) = (
        repo.clone(),
        snapshot.to_string(),
        tar.path.clone(),
        dir.to_path_buf(),
    );
    let (bytes, sha256) = lifeboat_repo::blocking(move || -> EngineResult<(u64, String)> {
        let mut child = std::process::Command::new("tar")
            .args(["-x", "--no-same-owner", "-f", "-", "-C"])
            .arg(&d)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| EngineError::failure(format!("cannot start `tar`: {e}"), None))?;
        let stdin = child.stdin.take().expect("piped stdin");
        let mut w = Measured::new(std::io::BufWriter::new(stdin));
        let dumped = r.dump(&id, &path, &mut w).map_err(EngineError::from);
        let flushed = std::io::Write::flush(&mut w);
        let Measured { inner, bytes, hash } = w;
        drop(inner); // tar sees the end of its input
        let hash = hex::encode(sha2::Digest::finalize(hash));
        let status = child.wait().doing("wait for `tar`")?;
        dumped?;
        flushed.doing("feed the base backup to `tar`")?;
        if !status.success() {
            return Err(EngineError::failure(
                format!("`tar -x` of the base backup failed ({status})"),
                None,
            ));
        }
        Ok((bytes, hash))
    })
    .await?;
    if (bytes, sha256.as_str()) != (tar.bytes, tar.sha256.as_str()) {
        return Err(EngineError::verification(format!(
            "the base backup's tar does not match its manifest: {bytes} bytes, SHA-256 {sha256} (recorded: {} bytes, {})",
            tar.bytes, tar.sha256
        )));
    }
    Ok(())
}

/// Start fetching the plan's WAL ahead, for a server that will be started on the restore
/// (see [`WalFeed`]); begun before the files are restored so the first segments are ready
/// when recovery asks.
pub async fn feed(repo: &Arc<Repo>, plan: &PitrPlan) -> EngineResult<Option<WalFeed>> {
    let Some(start) = wal::WalName::parse(&plan.manifest.start_wal) else {
        return Ok(None);
    };
    let key = repo.side_key_async().await?;
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
pub async fn start_and_wait(
    cfg: &TargetConfig,
    target_name: &str,
    plan: &PitrPlan,
    dir: &Path,
    port: u16,
    mut feed: Option<WalFeed>,
) -> EngineResult<(physical::Recovered, physical::RecoveredPoint, Target)> {
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
    let server = lifeboat_repo::blocking(move || physical::start_server(&tools, &d, port)).await?;
    let url = cfg.connection_url(target_name)?;
    let watch = Target::parse(&url)?.with_host_port("127.0.0.1", port);
    let point = physical::wait_recovered(&server, &watch, Duration::from_secs(3600)).await;
    lifeboat_repo::blocking(move || drop(feed)).await;
    let point = point?;
    // Segments fetched ahead that recovery did not need.
    let _ = std::fs::remove_dir_all(dir.join(crate::wal::PREFETCH_DIR));
    Ok((server, point, watch))
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
