//! `lifeboat drill`: prove that a target can be recovered, and how fast.
//!
//! For each target: choose the snapshot (latest, `--snapshot` or the newest at `--time`),
//! provision a scratch environment (a throwaway PostgreSQL cluster of the backup's major
//! version, or a database on `[drill] scratch-url`; a temporary folder for files), restore
//! into it, run the checks (row counts against the manifest, `[[checks]]` rules, pg_amcheck,
//! foreign keys and CHECK constraints re-validated, no invalid indexes; files by size and
//! SHA-256), measure every phase, and compare RTO (start → verified) and RPO (start − the
//! restored point) with the target's objectives.
//!
//! Each kind of target implements [`Rehearsal`] (provision, restore, check, teardown) in a
//! module of its own (`postgres.rs`, `files.rs`); this module is the runner that times the
//! phases, handles signals, decides the verdict and stores the report.
//!
//! The scratch environment is torn down on every path: success, failed checks, errors, and
//! SIGINT/SIGTERM (the signal only sets a flag; the running phase is abandoned at its next
//! await and teardown runs as usual). The report goes into the repository's side area
//! (`lifeboat/drills/<target>/<id>.{json,md,html}`) and `--report-dir`.

use std::{path::Path, process::Stdio, sync::Arc, time::Instant};

use lifeboat_core::{Config, Manifest, Redacted, TargetConfig, TargetKind, config::CheckConfig};
use lifeboat_drill::{
    CheckResult, DrillReport, HistoryPoint, Objective, Phase, Verdict, render, report,
};
use lifeboat_engine::{
    cancel::{Cancel, Cancelled},
    kinds::postgres_physical::plan::choose_base,
};
use lifeboat_postgres::{PgTools, physical::RecoveryTarget};
use lifeboat_repo::{LockKind, Repo, SnapshotInfo};

use lifeboat_engine::backup::select_targets;

use super::Context;
use crate::{
    cli::DrillArgs,
    error::{CliError, CliResult},
    output,
};

/// Where drill reports live in the side area.
mod bucket;
mod files;
mod physical;
mod postgres;
mod redis;

pub const DRILLS_DIR: &str = "drills";

pub async fn run(ctx: &Context, args: DrillArgs) -> CliResult<i32> {
    let cancel = crate::interrupt::on_signal("tearing down the scratch environment");
    let started = Instant::now();
    let config = ctx.load_config()?;
    let names = select_targets(&config, &args.targets)?;
    let time = args
        .time
        .as_deref()
        .map(lifeboat_engine::time::parse_time)
        .transpose()
        .map_err(|e| CliError::usage(e, Some("write it like 2026-11-22T10:01:00Z".into())))?;
    let scratch_url = config.drill.scratch_url()?;
    let report_dir = args.report_dir.clone().or(config.drill.report_dir.clone());
    let repo = ctx.open_repo(&config).await?;
    let lock_repo = repo.clone();
    let _lock =
        tokio::task::spawn_blocking(move || lock_repo.lock(LockKind::Shared, "lifeboat drill"))
            .await??;
    let opened = started.elapsed().as_secs_f64();

    let mut code = 0;
    let mut reports = Vec::new();
    for name in &names {
        let target_cfg = &config.targets[name];
        ctx.say(format!("drill of `{name}` ({})", target_cfg.kind));
        let drill = Drill {
            ctx,
            repo: repo.clone(),
            name: name.clone(),
            cfg: target_cfg.clone(),
            rules: config
                .checks
                .iter()
                .filter(|c| &c.target == name)
                .cloned()
                .collect(),
            t0: Instant::now()
                .checked_sub(std::time::Duration::from_secs_f64(opened))
                .unwrap_or_else(Instant::now),
            started_at: jiff::Timestamp::now(),
            cancel: cancel.clone(),
            scratch_url: scratch_url.clone(),
            scratch_bucket: config.drill.scratch_bucket.clone(),
            jobs: args.jobs,
            phases: Vec::new(),
            findings: Findings::default(),
            chosen: None,
            scratch: String::new(),
            verified_at: None,
            restored_point: None,
        };
        let report = drill.run(args.snapshot.as_deref(), time).await;
        let written = store(&repo, &report, report_dir.as_deref()).await;
        if !ctx.json {
            print_report(&report, &written);
        }
        code = match (code, report.verdict) {
            (1, _) | (_, Verdict::Error) => 1,
            (3, _) | (_, Verdict::Fail) => 3,
            _ => 0,
        };
        reports.push((report, written));
        if cancel.is_cancelled() {
            break;
        }
    }
    if ctx.json {
        let items: Vec<serde_json::Value> = reports
            .iter()
            .map(|(r, w)| serde_json::json!({ "report": r, "written": w }))
            .collect();
        output::json(&serde_json::json!({ "drills": items }));
    }
    if cancel.is_cancelled() {
        eprintln!("error: interrupted; the scratch environment was torn down");
        return Ok(crate::interrupt::EXIT_INTERRUPTED);
    }
    Ok(code)
}

/// One kind of target's part in a drill. The runner times every phase, abandons the running
/// one on a signal, and always calls [`Rehearsal::teardown`], whatever happened before.
pub(super) trait Rehearsal {
    /// Create the scratch environment; returns what it is, for the report.
    async fn provision(&mut self) -> Result<String, String>;
    /// Restore the snapshot into it; `Err`: the backup cannot be restored (a failed check).
    async fn restore(&mut self) -> Result<String, String>;
    /// Bring what was restored to a consistent state (physical: start the server and
    /// replay the archived WAL); `None` for kinds without such a phase.
    async fn recover(&mut self) -> Result<Option<String>, String> {
        Ok(None)
    }
    /// The newest point the restored state holds, when only the drill can tell (the last
    /// commit a recovery replayed).
    fn restored_point(&self) -> Option<jiff::Timestamp> {
        None
    }
    /// What the recovery phase aims at, as the report's check names it.
    fn recovery_goal(&self) -> String {
        "recover to the end of the archive".into()
    }
    /// Check the restored state; results go into `findings` as they come.
    async fn check(&mut self, findings: &mut Findings);
    /// Remove the scratch environment; works in any state, also after a failed provision.
    async fn teardown(&mut self) -> Result<(), String>;
}

/// Check results as a drill collects them.
#[derive(Default)]
pub(super) struct Findings(pub Vec<CheckResult>);

impl Findings {
    pub fn add(&mut self, kind: &str, name: impl Into<String>, passed: bool, detail: String) {
        self.0.push(CheckResult {
            name: name.into(),
            kind: kind.to_string(),
            passed,
            detail,
        });
    }

    /// A `[[checks]]` rule's outcome.
    pub fn rule(&mut self, kind: &str, rule: &CheckConfig, result: Result<String, String>) {
        let passed = result.is_ok();
        self.add(
            kind,
            rule.name.clone(),
            passed,
            result.unwrap_or_else(|e| e),
        );
    }
}

/// What a drill of one target needs besides its kind's part.
struct Drill<'a> {
    ctx: &'a Context,
    repo: Arc<Repo>,
    name: String,
    cfg: TargetConfig,
    rules: Vec<CheckConfig>,
    t0: Instant,
    started_at: jiff::Timestamp,
    cancel: Cancel,
    scratch_url: Option<Redacted>,
    /// `[drill] scratch-bucket`, for bucket targets.
    scratch_bucket: Option<String>,
    jobs: u32,
    phases: Vec<Phase>,
    findings: Findings,
    chosen: Option<(SnapshotInfo, Manifest)>,
    scratch: String,
    verified_at: Option<f64>,
    /// Set by kinds that learn it while restoring (physical recovery).
    restored_point: Option<jiff::Timestamp>,
}

/// How a drill stopped early: a failed check (the backup cannot be restored), an error of
/// the environment, or a signal.
enum Stop {
    Failed,
    Error(String),
    Interrupted,
}

impl From<Cancelled> for Stop {
    fn from(_: Cancelled) -> Self {
        Self::Interrupted
    }
}

impl Drill<'_> {
    fn phase(&mut self, name: &str, start: Instant, ok: bool) {
        self.phases.push(Phase {
            name: name.to_string(),
            start: start.duration_since(self.t0).as_secs_f64(),
            seconds: start.elapsed().as_secs_f64(),
            ok,
        });
    }

    async fn run(mut self, snapshot: Option<&str>, time: Option<jiff::Timestamp>) -> DrillReport {
        let outcome = self.fetch_and_rehearse(snapshot, time).await;
        let error = match outcome {
            Ok(()) | Err(Stop::Failed) => None,
            Err(Stop::Error(e)) => Some(e),
            Err(Stop::Interrupted) => Some("interrupted by a signal".into()),
        };
        self.finish(error)
    }

    /// Fetch: choose the snapshot and read its manifest (the repository was opened before,
    /// and that time counts here). Then the kind's rehearsal.
    async fn fetch_and_rehearse(
        &mut self,
        snapshot: Option<&str>,
        time: Option<jiff::Timestamp>,
    ) -> Result<(), Stop> {
        let start = self.t0;
        let found = self.cancel.guard(self.choose(snapshot, time)).await?;
        self.phase("fetch", start, found.is_ok());
        let (info, manifest) = found.map_err(|e| {
            self.findings
                .add("restore", "a restorable snapshot", false, e);
            Stop::Failed
        })?;
        self.ctx.say(format!(
            "  snapshot {} of {}",
            info.short_id(),
            output::time(&info.time)
        ));
        self.chosen = Some((info.clone(), manifest.clone()));
        if manifest.physical.is_some() {
            let mut r = physical::PhysicalRehearsal {
                repo: self.repo.clone(),
                config_path: self.ctx.config_path.clone(),
                target: self.name.clone(),
                // The base backup chosen above, recovered to `--time` when one is given.
                snapshot: info.id.clone(),
                recovery: time.map_or(
                    RecoveryTarget::Latest,
                    lifeboat_engine::kinds::postgres_physical::recovery_to,
                ),
                cfg: self.cfg.clone(),
                rules: self.rules.clone(),
                dir: None,
                plan: None,
                feed: None,
                server: None,
                point: None,
            };
            return self.rehearse(&mut r).await;
        }
        match (&manifest.postgres, &manifest.files) {
            (Some(pgm), _) => {
                let tools = PgTools::find(
                    pgm.server_version_num / 10_000,
                    self.cfg.pg_bin_dir.as_deref(),
                )
                .or_else(|_| PgTools::newest_installed())
                .map_err(|e| Stop::Error(e.to_string()))?;
                let mut r = postgres::PgRehearsal {
                    repo: self.repo.clone(),
                    snapshot: info.id.clone(),
                    manifest: pgm.clone(),
                    tools,
                    rules: self.rules.clone(),
                    scratch_url: self.scratch_url.clone(),
                    started_at: self.started_at,
                    jobs: self.jobs,
                    scratch: None,
                };
                self.rehearse(&mut r).await
            }
            (None, Some(fm)) => {
                let mut r = files::FilesRehearsal {
                    repo: self.repo.clone(),
                    snapshot: info.id.clone(),
                    target: self.name.clone(),
                    manifest: fm.clone(),
                    stream: None,
                    source: format!("{}/files", self.name),
                    rules: self.rules.clone(),
                    dir: None,
                };
                self.rehearse(&mut r).await
            }
            (None, None) if manifest.bucket.is_some() && self.scratch_bucket.is_some() => {
                let scratch = self.scratch_bucket.as_deref().expect("checked");
                let base = self
                    .cfg
                    .bucket_location(&self.name)
                    .map_err(|e| Stop::Error(e.to_string()))?;
                let (bucket, prefix) = lifeboat_core::location::parse_s3_url(scratch)
                    .unwrap_or_else(|| Err("not an `s3://` URL".into()))
                    .map_err(|e| Stop::Error(format!("`drill.scratch-bucket`: {e}")))?;
                let sub = format!(
                    "{}/lifeboat-drill-{}",
                    prefix,
                    self.started_at.strftime("%Y%m%dT%H%M%S%.3fZ")
                );
                let mut r = bucket::BucketRehearsal {
                    repo: self.repo.clone(),
                    snapshot: info.id.clone(),
                    manifest: manifest.bucket.clone().expect("checked"),
                    location: base.with_bucket(&bucket, &sub),
                    bucket: None,
                };
                self.rehearse(&mut r).await
            }
            (None, None) if manifest.bucket.is_some() => {
                let bm = manifest.bucket.as_ref().expect("checked");
                let mut r = files::FilesRehearsal {
                    repo: self.repo.clone(),
                    snapshot: info.id.clone(),
                    target: self.name.clone(),
                    manifest: lifeboat_engine::kinds::bucket::as_files(&self.name, bm),
                    stream: None,
                    source: format!("{}/bucket", self.name),
                    rules: self.rules.clone(),
                    dir: None,
                };
                self.rehearse(&mut r).await
            }
            (None, None) if manifest.redis.is_some() => {
                let mut r = redis::RedisRehearsal {
                    repo: self.repo.clone(),
                    snapshot: info.id.clone(),
                    manifest: manifest.redis.clone().expect("checked"),
                    rules: self.rules.clone(),
                    dir: None,
                    server: None,
                    restored: None,
                };
                self.rehearse(&mut r).await
            }
            (None, None) if manifest.command.is_some() => {
                let mut r = files::FilesRehearsal::of_command(
                    self.repo.clone(),
                    &info.id,
                    &self.name,
                    manifest.command.as_ref().expect("checked"),
                    self.rules.clone(),
                );
                self.rehearse(&mut r).await
            }
            (None, None) => {
                self.findings.add(
                    "restore",
                    "a readable manifest",
                    false,
                    "the manifest has no section for its kind".into(),
                );
                Err(Stop::Failed)
            }
        }
    }

    /// Provision, restore, check — each timed, each abandoned on a signal — then teardown,
    /// whatever happened.
    async fn rehearse(&mut self, r: &mut impl Rehearsal) -> Result<(), Stop> {
        let outcome = self.provision_restore_check(r).await;
        let start = Instant::now();
        let torn = r.teardown().await;
        if let Err(e) = &torn {
            log::warn!("teardown of the scratch environment: {e}");
        }
        self.phase("teardown", start, torn.is_ok());
        outcome
    }

    async fn provision_restore_check(&mut self, r: &mut impl Rehearsal) -> Result<(), Stop> {
        let start = Instant::now();
        let provisioned = self.cancel.guard(r.provision()).await?;
        self.phase("provision", start, provisioned.is_ok());
        self.scratch = provisioned.map_err(|e| Stop::Error(format!("cannot provision: {e}")))?;
        self.ctx.say(format!("  scratch: {}", self.scratch));

        let start = Instant::now();
        self.ctx.say("  restoring");
        let restored = self.cancel.guard(r.restore()).await?;
        self.phase("restore", start, restored.is_ok());
        let passed = restored.is_ok();
        let detail = restored.unwrap_or_else(|e| e);
        self.findings
            .add("restore", "restore the backup", passed, detail);
        if !passed {
            return Err(Stop::Failed);
        }

        let start = Instant::now();
        let recovered = self.cancel.guard(r.recover()).await?;
        match recovered {
            Ok(None) => {}
            Ok(Some(detail)) => {
                self.phase("recovery", start, true);
                self.findings
                    .add("recovery", r.recovery_goal(), true, detail);
                self.restored_point = r.restored_point();
            }
            Err(e) => {
                self.phase("recovery", start, false);
                self.findings.add("recovery", r.recovery_goal(), false, e);
                return Err(Stop::Failed);
            }
        }

        let start = Instant::now();
        self.ctx.say("  checking");
        let checked = self.cancel.guard(r.check(&mut self.findings)).await;
        let ok = self.findings.0.iter().all(|c| c.passed);
        self.phase("checks", start, ok);
        checked?;
        self.verified_at = Some(self.t0.elapsed().as_secs_f64());
        Ok(())
    }

    async fn choose(
        &self,
        snapshot: Option<&str>,
        time: Option<jiff::Timestamp>,
    ) -> Result<(SnapshotInfo, Manifest), String> {
        let (repo, name) = (self.repo.clone(), self.name.clone());
        let snapshot = snapshot.map(str::to_string);
        let physical = self.cfg.mode == Some(lifeboat_core::config::PostgresMode::Physical);
        let info = tokio::task::spawn_blocking(move || -> Result<SnapshotInfo, String> {
            if let Some(wanted) = snapshot {
                return repo
                    .find_snapshot(&name, &wanted)
                    .map_err(|e| e.to_string());
            }
            // The newest backup (at `time`) must be restorable: an unreadable one is a
            // finding, not a reason to quietly drill an older one.
            let snaps = repo.snapshots(Some(&name)).map_err(|e| e.to_string())?;
            // Recovery to `time` starts from the newest base backup that had *ended* by
            // then, as `restore --time` chooses it.
            if let (true, Some(t)) = (physical, time) {
                let target = lifeboat_engine::kinds::postgres_physical::recovery_to(t);
                return choose_base(&snaps, "latest", &target)
                    .cloned()
                    .map_err(|e| e.to_string());
            }
            snaps
                .into_iter()
                .rev()
                .filter(|s| !s.emergency && time.is_none_or(|t| s.time.timestamp() <= t))
                .find(|s| !matches!(&s.manifest, Ok(m) if !m.complete))
                .ok_or_else(|| match time {
                    Some(t) => format!("no complete snapshot of `{name}` at or before {t}"),
                    None => format!("no complete snapshot of `{name}`"),
                })
        })
        .await
        .map_err(|e| e.to_string())??;
        match &info.manifest {
            Ok(m) if m.complete => Ok((info.clone(), m.clone())),
            Ok(_) => Err(format!("snapshot `{}` is incomplete", info.short_id())),
            Err(e) => Err(format!(
                "snapshot `{}` of {} cannot be read: {e}",
                info.short_id(),
                output::time(&info.time)
            )),
        }
    }

    fn finish(self, error: Option<String>) -> DrillReport {
        let restorable_at = self
            .restored_point
            .or_else(|| self.chosen.as_ref().map(|(s, m)| restorable_at(s, m)));
        let rpo = restorable_at
            .map(|t| (self.started_at.as_millisecond() - t.as_millisecond()) as f64 / 1000.0);
        let objective = |d: Option<lifeboat_core::HumanDuration>| d.map(|d| d.as_secs() as f64);
        let kind = match &self.chosen {
            Some((_, m)) if m.kind == TargetKind::Postgres => format!("postgres-{}", m.method),
            _ => self.cfg.kind.to_string(),
        };
        let stamp = self
            .started_at
            .strftime("%Y%m%dT%H%M%S%.3fZ")
            .to_string()
            .replace('.', "");
        let mut report = DrillReport {
            format: report::REPORT_FORMAT,
            id: format!("{stamp}-{}", self.name),
            target: self.name.clone(),
            kind,
            started_at: self.started_at.to_string(),
            finished_at: jiff::Timestamp::now().to_string(),
            host: lifeboat_repo::hostname(),
            lifeboat_version: env!("CARGO_PKG_VERSION").to_string(),
            snapshot: self
                .chosen
                .as_ref()
                .map(|(s, _)| s.id.clone())
                .unwrap_or_default(),
            restorable_at: restorable_at.map(|t| t.to_string()).unwrap_or_default(),
            scratch: self.scratch,
            phases: self.phases,
            checks: self.findings.0,
            rto: Objective::new(objective(self.cfg.objectives.rto), self.verified_at),
            rpo: Objective::new(objective(self.cfg.objectives.rpo), rpo),
            verdict: Verdict::Error,
            error,
        };
        report.decide();
        report
    }
}

/// The newest point the restored state holds: a logical dump's exported snapshot, else the
/// backup's start.
pub(super) fn restorable_at(info: &SnapshotInfo, m: &Manifest) -> jiff::Timestamp {
    m.postgres
        .as_ref()
        .and_then(|p| p.snapshot_time.parse::<jiff::Timestamp>().ok())
        .or_else(|| m.started_at.parse().ok())
        .unwrap_or_else(|| info.time.timestamp())
}

/// Run a `command` check with `sh -c` in its own process group (killed with the group if
/// the drill is interrupted): exit 0 passes. `secret` is masked in what is reported.
pub(super) async fn run_command(
    command: &str,
    env: &[(&str, &str)],
    secrets: &[String],
) -> Result<String, String> {
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c")
        .arg(command)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let child = cmd.spawn().map_err(|e| format!("cannot run `sh`: {e}"))?;
    let _group = child.id().map(GroupKill);
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| format!("command check: {e}"))?;
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut tail = lines[lines.len().saturating_sub(3)..].join(" / ");
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        tail = tail.replace(secret.as_str(), "[redacted]");
    }
    let status = match out.status.code() {
        Some(c) => format!("exit {c}"),
        None => "killed by a signal".into(),
    };
    if out.status.success() {
        Ok(if tail.is_empty() {
            status
        } else {
            format!("{status}: {tail}")
        })
    } else {
        Err(if tail.is_empty() {
            status
        } else {
            format!("{status}: {tail}")
        })
    }
}

/// Kills a command check's whole process group when dropped (also when the drill is
/// interrupted while it runs).
struct GroupKill(u32);

impl Drop for GroupKill {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0)])
            .stderr(Stdio::null())
            .status();
    }
}

/// Store the report (JSON, Markdown, HTML) in the side area and in `report_dir`; returns
/// the places written.
async fn store(repo: &Arc<Repo>, report: &DrillReport, report_dir: Option<&Path>) -> Vec<String> {
    let history = read_history(repo, &report.target)
        .await
        .unwrap_or_default()
        .iter()
        .map(DrillReport::history_point)
        .collect::<Vec<HistoryPoint>>();
    let files = [
        ("json", report.to_json()),
        ("md", render::markdown(report, &history).into_bytes()),
        ("html", render::html(report, &history).into_bytes()),
    ];
    let mut written = Vec::new();
    let base = format!("{DRILLS_DIR}/{}/{}", report.target, report.id);
    let (r, items, b) = (repo.clone(), files.clone(), base.clone());
    let stored = tokio::task::spawn_blocking(move || {
        for (ext, bytes) in &items {
            r.side().put(&format!("{b}.{ext}"), bytes)?;
        }
        Ok::<_, lifeboat_repo::SideError>(())
    })
    .await;
    match stored {
        Ok(Ok(())) => written.push(repo.side().display(&format!("{base}.html"))),
        Ok(Err(e)) => log::warn!("cannot store the drill report in the repository: {e}"),
        Err(e) => log::warn!("cannot store the drill report in the repository: {e}"),
    }
    if let Some(dir) = report_dir {
        let result = std::fs::create_dir_all(dir).and_then(|()| {
            for (ext, bytes) in &files {
                std::fs::write(dir.join(format!("{}.{ext}", report.id)), bytes)?;
            }
            Ok(())
        });
        match result {
            Ok(()) => written.push(
                dir.join(format!("{}.html", report.id))
                    .display()
                    .to_string(),
            ),
            Err(e) => log::warn!(
                "cannot write the drill report into `{}`: {e}",
                dir.display()
            ),
        }
    }
    written
}

/// Every stored drill report of `target`, oldest first.
pub async fn read_history(repo: &Arc<Repo>, target: &str) -> CliResult<Vec<DrillReport>> {
    let (r, dir) = (repo.clone(), format!("{DRILLS_DIR}/{target}"));
    tokio::task::spawn_blocking(move || {
        let mut names = r.side().list(&dir)?;
        names.retain(|n| n.ends_with(".json"));
        names.sort();
        let mut reports = Vec::new();
        for n in names {
            if let Some(bytes) = r.side().get(&format!("{dir}/{n}"))? {
                match DrillReport::from_json(&bytes) {
                    Ok(rep) => reports.push(rep),
                    Err(e) => log::warn!("unreadable drill report `{dir}/{n}`: {e}"),
                }
            }
        }
        Ok::<_, lifeboat_repo::SideError>(reports)
    })
    .await?
    .map_err(|e| CliError::failure(format!("cannot read drill history: {e}"), None))
}

/// Drill history of the configured targets, or of one.
pub async fn history_of(
    repo: &Arc<Repo>,
    config: &Config,
    target: Option<&str>,
) -> CliResult<Vec<DrillReport>> {
    let mut all = Vec::new();
    for name in config.targets.keys() {
        if target.is_none_or(|t| t == name) {
            all.extend(read_history(repo, name).await?);
        }
    }
    all.sort_by(|a, b| a.started_at.cmp(&b.started_at));
    Ok(all)
}

fn objective_text(o: &Objective) -> String {
    let measured = o.measured_seconds.map_or("—".into(), render::seconds);
    match (o.objective_seconds, o.met) {
        (Some(obj), Some(true)) => format!("{measured} (objective {}: met)", render::seconds(obj)),
        (Some(obj), Some(false)) => {
            format!("{measured} (objective {}: MISSED)", render::seconds(obj))
        }
        _ => format!("{measured} (no objective)"),
    }
}

fn print_report(r: &DrillReport, written: &[String]) {
    outln!(
        "drill of `{}`: {}",
        r.target,
        r.verdict.as_str().to_uppercase()
    );
    if let Some(e) = &r.error {
        outln!("  error: {e}");
    }
    if !r.snapshot.is_empty() {
        outln!(
            "  snapshot {} (restorable point {})",
            &r.snapshot[..8.min(r.snapshot.len())],
            r.restorable_at
        );
    }
    outln!("  RTO {}", objective_text(&r.rto));
    outln!("  RPO {}", objective_text(&r.rpo));
    let phases: Vec<String> = r
        .phases
        .iter()
        .map(|p| format!("{} {}", p.name, render::seconds(p.seconds)))
        .collect();
    outln!("  phases: {}", phases.join(", "));
    let failed: Vec<&CheckResult> = r.failed_checks().collect();
    outln!(
        "  checks: {} passed, {} failed",
        r.checks.len() - failed.len(),
        failed.len()
    );
    for c in failed {
        outln!("  FAILED {} ({}): {}", c.name, c.kind, c.detail);
    }
    for w in written {
        outln!("  report: {w}");
    }
}
