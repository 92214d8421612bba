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

use super::plan::{choose_base, needed_segments, physical_of};
use crate::{
    Engine, EngineError, EngineResult, FsContext, IoContext, format,
    restore::{ActCx, Plan, Refusal, RestoreOutcome, RestorePlan, RestoreRequest, act},
    snapshot_io::Measured,
    time::parse_time,
    wal::{feed::WalFeed, object_name},
};

/// Where recovery stops (besides the request's `time`) and what follows, as asked.
#[derive(Debug, Clone, Default)]
pub struct Recovery {
    pub lsn: Option<String>,
    pub xid: Option<String>,
    pub name: Option<String>,
    pub latest: bool,
    /// Pause at the target instead of promoting.
    pub pause: bool,
    /// Start the server and wait until it reaches the target.
    pub start: bool,
    pub port: Option<u16>,
    /// The restored server does not archive WAL.
    pub no_archive: bool,
}

/// A point-in-time restore into a new data directory (`--to-dir`), planned against the
/// archive; with `--start`, the server is started and watched until it reaches the target.
pub(super) async fn plan_restore(
    engine: &Engine,
    request: &RestoreRequest,
    cfg: &TargetConfig,
) -> EngineResult<RestorePlan> {
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
        &engine.config_path,
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
            let repo = &cx.engine.repo;
            let feed = if pitr.start {
                feed(repo, &plan).await?
            } else {
                None
            };
            let base_id = plan.base.id.clone();
            materialize(
                repo,
                &name,
                &plan,
                &to,
                &target,
                pitr.pause,
                !pitr.no_archive,
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
            let (_, point, _) = start_and_wait(&cfg, &name, &plan, &to, port, feed).await?;
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
pub async fn plan(
    repo: &Arc<Repo>,
    config_path: &Path,
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
    let needed = needed_segments(&p).map_err(|e| {
        EngineError::failure(
            format!("base backup `{}`: {e}", base.short_id()),
            Some("choose another base backup with `--snapshot`, or take a new one with `lifeboat backup`".into()),
        )
    })?;
    let missing: Vec<String> = needed
        .into_iter()
        .filter(|n| !segments.iter().any(|s| &s.name == n))
        .collect();
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
pub async fn materialize(
    repo: &Arc<Repo>,
    target_name: &str,
    plan: &PitrPlan,
    dir: &Path,
    target: &RecoveryTarget,
    pause: bool,
    archive: bool,
) -> EngineResult<()> {
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
) -> EngineResult<()> {
    let (r, id, src, d) = (
        repo.clone(),
        snapshot.to_string(),
        format!("{target_name}/data{}", p.data_dir),
        dir.to_path_buf(),
    );
    r.call(move |r| r.restore_dir(&id, &src, &d, false)).await?;
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
