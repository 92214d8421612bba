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
//! The scratch environment is torn down on every path: success, failed checks, errors, and
//! SIGINT/SIGTERM (the signal only sets a flag; the running phase is abandoned at its next
//! await and teardown runs as usual). The report goes into the repository's side area
//! (`lifeboat/drills/<target>/<id>.{json,md,html}`) and `--report-dir`.

use std::{future::Future, io::Write, path::Path, process::Stdio, sync::Arc, time::Instant};

use lifeboat_core::{
    Config, Manifest, Redacted, TargetConfig, TargetKind, config::CheckConfig,
    manifest::PostgresManifest,
};
use lifeboat_drill::{
    CheckResult, DrillReport, HistoryPoint, Objective, Phase, Verdict, render, report,
};
use lifeboat_postgres::{
    Cluster, PgTools, Target, integrity, quote_ident,
    restore::{self as pg, RowCheck},
};
use lifeboat_repo::{LockKind, Repo, SnapshotInfo};
use tokio::sync::watch;

use super::{
    Context,
    backup::select_targets,
    restore::{load_dump, verify_files},
};
use crate::{
    cli::DrillArgs,
    error::{CliError, CliResult},
    output,
};

/// Where drill reports live in the side area.
pub const DRILLS_DIR: &str = "drills";

pub async fn run(ctx: &Context, args: DrillArgs) -> CliResult<i32> {
    let cancel = Cancel::listen();
    let started = Instant::now();
    let config = ctx.load_config()?;
    let names = select_targets(&config, &args.targets)?;
    let time = args
        .time
        .as_deref()
        .map(parse_time)
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
            phases: Vec::new(),
            checks: Vec::new(),
            cancel: cancel.clone(),
            scratch_url: scratch_url.clone(),
            jobs: args.jobs,
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
        if cancel.is_set() {
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
    if cancel.is_set() {
        eprintln!("error: interrupted; the scratch environment was torn down");
        return Ok(130);
    }
    Ok(code)
}

fn parse_time(text: &str) -> Result<jiff::Timestamp, String> {
    text.parse::<jiff::Timestamp>()
        .or_else(|_| {
            // "2026-11-22 10:01:00+00"
            jiff::fmt::strtime::parse("%Y-%m-%d %H:%M:%S%#z", text).and_then(|t| t.to_timestamp())
        })
        .map_err(|_| format!("cannot read `{text}` as a time"))
}

/// The flag set by SIGINT or SIGTERM.
#[derive(Clone)]
struct Cancel(watch::Receiver<bool>);

struct Interrupted;

impl Cancel {
    fn listen() -> Self {
        let (tx, rx) = watch::channel(false);
        tokio::spawn(async move {
            let term = async {
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(mut s) => {
                        s.recv().await;
                    }
                    Err(_) => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term => {}
            }
            let _ = tx.send(true);
            // stderr may be closed by now; a failed write must not lose the flag.
            let _ = writeln!(
                std::io::stderr(),
                "interrupted: tearing down the scratch environment"
            );
        });
        Self(rx)
    }

    fn is_set(&self) -> bool {
        *self.0.borrow()
    }

    /// Run `fut` unless (or until) the flag is set.
    async fn guard<T>(&self, fut: impl Future<Output = T>) -> Result<T, Interrupted> {
        let mut rx = self.0.clone();
        tokio::select! {
            r = fut => Ok(r),
            _ = rx.wait_for(|set| *set) => Err(Interrupted),
        }
    }
}

/// Where a drill restores to; dropped or torn down at the end of every drill.
enum Scratch {
    Cluster(Cluster),
    /// A database created on the user's `[drill] scratch-url` server.
    Server {
        server: Target,
        database: String,
    },
    Folder(tempfile::TempDir),
}

impl Scratch {
    fn describe(&self) -> String {
        match self {
            Self::Cluster(c) => format!(
                "throwaway PostgreSQL {} on 127.0.0.1:{}",
                c.tools().major,
                c.port
            ),
            Self::Server { server, database } => {
                format!("database `{database}` on {}", server.server())
            }
            Self::Folder(d) => format!("temporary folder {}", d.path().display()),
        }
    }

    async fn teardown(self) -> Result<(), String> {
        match self {
            Self::Cluster(c) => tokio::task::spawn_blocking(move || drop(c))
                .await
                .map_err(|e| e.to_string()),
            Self::Server { server, database } => {
                let client = server.connect().await.map_err(|e| e.to_string())?;
                client
                    .batch_execute(&format!(
                        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                        quote_ident(&database)
                    ))
                    .await
                    .map_err(|e| lifeboat_postgres::conn::describe_pg_error(&e))
            }
            Self::Folder(d) => d.close().map_err(|e| e.to_string()),
        }
    }
}

struct Drill<'a> {
    ctx: &'a Context,
    repo: Arc<Repo>,
    name: String,
    cfg: TargetConfig,
    rules: Vec<CheckConfig>,
    t0: Instant,
    started_at: jiff::Timestamp,
    phases: Vec<Phase>,
    checks: Vec<CheckResult>,
    cancel: Cancel,
    scratch_url: Option<Redacted>,
    jobs: u32,
}

/// How a drill stopped before its checks: a failed check (the backup cannot be restored),
/// an error of the environment, or a signal.
enum Stop {
    Failed,
    Error(String),
    Interrupted,
}

impl From<Interrupted> for Stop {
    fn from(_: Interrupted) -> Self {
        Self::Interrupted
    }
}

impl Drill<'_> {
    fn since(&self, at: Instant) -> f64 {
        at.duration_since(self.t0).as_secs_f64()
    }

    fn phase(&mut self, name: &str, start: Instant, ok: bool) {
        self.phases.push(Phase {
            name: name.to_string(),
            start: self.since(start),
            seconds: start.elapsed().as_secs_f64(),
            ok,
        });
    }

    fn check(&mut self, kind: &str, name: impl Into<String>, passed: bool, detail: String) {
        self.checks.push(CheckResult {
            name: name.into(),
            kind: kind.to_string(),
            passed,
            detail,
        });
    }

    async fn run(mut self, snapshot: Option<&str>, time: Option<jiff::Timestamp>) -> DrillReport {
        let mut scratch = None;
        let mut chosen = None;
        let mut verified_at = None;
        let outcome = self
            .steps(snapshot, time, &mut scratch, &mut chosen, &mut verified_at)
            .await;
        let scratch_text = scratch.as_ref().map(Scratch::describe).unwrap_or_default();
        if let Some(s) = scratch {
            let start = Instant::now();
            let torn = s.teardown().await;
            if let Err(e) = &torn {
                log::warn!("teardown of the scratch environment: {e}");
            }
            self.phase("teardown", start, torn.is_ok());
        }
        let error = match outcome {
            Ok(()) | Err(Stop::Failed) => None,
            Err(Stop::Error(e)) => Some(e),
            Err(Stop::Interrupted) => Some("interrupted by a signal".into()),
        };
        self.finish(chosen, scratch_text, verified_at, error)
    }

    fn finish(
        self,
        chosen: Option<(SnapshotInfo, Manifest)>,
        scratch: String,
        verified_at: Option<f64>,
        error: Option<String>,
    ) -> DrillReport {
        let restorable_at = chosen.as_ref().map(|(s, m)| restorable_at(s, m));
        let rpo = restorable_at.map(|t| {
            (self.started_at.as_second() - t.as_second()) as f64
                + f64::from(self.started_at.subsec_nanosecond() - t.subsec_nanosecond()) / 1e9
        });
        let objective = |d: Option<lifeboat_core::HumanDuration>| d.map(|d| d.as_secs() as f64);
        let kind = match (self.cfg.kind, chosen.as_ref()) {
            (_, Some((_, m))) if m.kind == TargetKind::Postgres => format!("postgres-{}", m.method),
            (k, _) => k.to_string(),
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
            snapshot: chosen
                .as_ref()
                .map(|(s, _)| s.id.clone())
                .unwrap_or_default(),
            restorable_at: restorable_at.map(|t| t.to_string()).unwrap_or_default(),
            scratch,
            phases: self.phases,
            checks: self.checks,
            rto: Objective::new(objective(self.cfg.objectives.rto), verified_at),
            rpo: Objective::new(objective(self.cfg.objectives.rpo), rpo),
            verdict: Verdict::Error,
            error,
        };
        report.decide();
        report
    }

    async fn steps(
        &mut self,
        snapshot: Option<&str>,
        time: Option<jiff::Timestamp>,
        scratch: &mut Option<Scratch>,
        chosen: &mut Option<(SnapshotInfo, Manifest)>,
        verified_at: &mut Option<f64>,
    ) -> Result<(), Stop> {
        // Fetch: the snapshot and its manifest (the repository was opened before, and that
        // time counts here).
        let start = self.t0;
        let found = self.cancel.guard(self.choose(snapshot, time)).await?;
        self.phase("fetch", start, found.is_ok());
        let (info, manifest) = match found {
            Ok(x) => x,
            Err(e) => {
                self.check("restore", "a restorable snapshot", false, e);
                return Err(Stop::Failed);
            }
        };
        self.ctx.say(format!(
            "  snapshot {} of {}",
            info.short_id(),
            output::time(&info.time)
        ));
        *chosen = Some((info.clone(), manifest.clone()));
        match (manifest.kind, manifest.postgres.as_ref()) {
            (TargetKind::Postgres, Some(pgm)) => {
                self.postgres(&info, pgm, scratch, verified_at).await
            }
            (TargetKind::Files, _) => self.files(&info, &manifest, scratch, verified_at).await,
            _ => {
                self.check(
                    "restore",
                    "a readable manifest",
                    false,
                    "the manifest has no section for its kind".into(),
                );
                Err(Stop::Failed)
            }
        }
    }

    async fn choose(
        &self,
        snapshot: Option<&str>,
        time: Option<jiff::Timestamp>,
    ) -> Result<(SnapshotInfo, Manifest), String> {
        let (repo, name) = (self.repo.clone(), self.name.clone());
        let wanted = snapshot.unwrap_or("latest").to_string();
        let snapshot = snapshot.map(str::to_string);
        let info = tokio::task::spawn_blocking(move || -> Result<SnapshotInfo, String> {
            if snapshot.is_some() {
                return repo
                    .find_snapshot(&name, &wanted)
                    .map_err(|e| e.to_string());
            }
            // The newest backup (at `time`) must be restorable: an unreadable one is a
            // finding, not a reason to quietly drill an older one.
            let snaps = repo.snapshots(Some(&name)).map_err(|e| e.to_string())?;
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

    async fn postgres(
        &mut self,
        info: &SnapshotInfo,
        pgm: &PostgresManifest,
        scratch: &mut Option<Scratch>,
        verified_at: &mut Option<f64>,
    ) -> Result<(), Stop> {
        let major = pgm.server_version_num / 10_000;
        let tools = PgTools::find(major, self.cfg.pg_bin_dir.as_deref())
            .or_else(|_| PgTools::newest_installed())
            .map_err(|e| Stop::Error(e.to_string()))?;

        // Provision.
        let start = Instant::now();
        let provisioned = self.cancel.guard(self.provision(&tools, pgm)).await?;
        self.phase("provision", start, provisioned.is_ok());
        let (dest, url) = match provisioned {
            Ok((s, dest, url)) => {
                self.ctx.say(format!("  scratch: {}", s.describe()));
                *scratch = Some(s);
                (dest, url)
            }
            Err(e) => return Err(Stop::Error(format!("cannot provision: {e}"))),
        };

        // Restore.
        let start = Instant::now();
        self.ctx.say(format!(
            "  restoring {} ({} tables)",
            output::bytes(pgm.dump.bytes),
            pgm.tables.len()
        ));
        let stage = tempfile::Builder::new()
            .prefix("lifeboat-drill-")
            .tempdir()
            .map_err(|e| Stop::Error(e.to_string()))?;
        let opts = pg::RestoreOptions {
            jobs: self.jobs,
            ..Default::default()
        };
        let restored = self
            .cancel
            .guard(load_dump(
                &self.repo,
                &info.id,
                &pgm.dump.path,
                &tools,
                &dest,
                opts,
                stage.path(),
            ))
            .await?;
        self.phase("restore", start, restored.is_ok());
        if let Err(e) = restored {
            self.check("restore", "restore the dump", false, e.message);
            return Err(Stop::Failed);
        }
        self.check(
            "restore",
            "restore the dump",
            true,
            format!("{} restored", output::bytes(pgm.dump.bytes)),
        );

        // Checks.
        let start = Instant::now();
        self.ctx.say("  checking");
        let jobs = std::thread::available_parallelism().map_or(2, |n| n.get() as u32);
        let (rows, amcheck, constraints) = self
            .cancel
            .guard(async {
                tokio::join!(
                    pg::verify_rows(&dest, &pgm.tables),
                    integrity::amcheck(&tools, &dest, jobs),
                    integrity::constraints(&dest),
                )
            })
            .await?;
        match rows {
            Ok(rows) => {
                for r in rows {
                    self.row_check(&r);
                }
            }
            Err(e) => self.check("rows", "row counts", false, e.to_string()),
        }
        match amcheck {
            Ok(f) => self.check(f.kind, f.name, f.passed, f.detail),
            Err(e) => self.check("amcheck", "pg_amcheck", false, e.to_string()),
        }
        match constraints {
            Ok(fs) => {
                for f in fs {
                    self.check(f.kind, f.name, f.passed, f.detail);
                }
            }
            Err(e) => self.check(
                "constraints",
                "re-validate constraints",
                false,
                e.to_string(),
            ),
        }
        for rule in self.rules.clone() {
            let result = self.cancel.guard(self.rule(&rule, &dest, &url)).await?;
            self.check(
                if rule.sql.is_some() { "sql" } else { "command" },
                rule.name.clone(),
                result.is_ok(),
                result.unwrap_or_else(|e| e),
            );
        }
        self.phase("checks", start, self.checks.iter().all(|c| c.passed));
        *verified_at = Some(self.since(Instant::now()));
        Ok(())
    }

    fn row_check(&mut self, r: &RowCheck) {
        let detail = match r.restored {
            Some(n) if n == r.expected => {
                format!("{} rows, as in the manifest", output::thousands(n))
            }
            Some(n) => format!(
                "{} rows restored, the manifest says {}",
                output::thousands(n),
                output::thousands(r.expected)
            ),
            None => "table missing after restore".into(),
        };
        self.check("rows", format!("rows of {}", r.table), r.ok(), detail);
    }

    async fn provision(
        &self,
        tools: &PgTools,
        pgm: &PostgresManifest,
    ) -> Result<(Scratch, Target, Redacted), String> {
        match &self.scratch_url {
            Some(url) => {
                let server = Target::parse(url).map_err(|e| e.to_string())?;
                let database = format!(
                    "lifeboat_drill_{}",
                    self.started_at.strftime("%Y%m%d%H%M%S%3f")
                );
                let url = Redacted::new(url_with_database(url.expose(), &database));
                let dest = Target::parse(&url).map_err(|e| e.to_string())?;
                pg::create_database(&dest)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok((Scratch::Server { server, database }, dest, url))
            }
            None => {
                let tools = tools.clone();
                let cluster = tokio::task::spawn_blocking(move || Cluster::start(&tools, &[]))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())?;
                let url = Redacted::new(cluster.url(&pgm.database));
                let dest = Target::parse(&url).map_err(|e| e.to_string())?;
                let scratch = Scratch::Cluster(cluster);
                pg::create_database(&dest)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok((scratch, dest, url))
            }
        }
    }

    /// One `[[checks]]` rule against the restored state: `Ok(detail)` when it passes.
    async fn rule(
        &self,
        rule: &CheckConfig,
        dest: &Target,
        url: &Redacted,
    ) -> Result<String, String> {
        if let Some(sql) = &rule.sql {
            let value = integrity::first_value(dest, sql)
                .await
                .map_err(|e| e.to_string())?;
            return lifeboat_drill::expect::judge(rule, value.as_deref());
        }
        let command = rule.command.as_deref().unwrap_or_default();
        run_command(command, &[("LIFEBOAT_DRILL_URL", url.expose())], url).await
    }

    async fn files(
        &mut self,
        info: &SnapshotInfo,
        manifest: &Manifest,
        scratch: &mut Option<Scratch>,
        verified_at: &mut Option<f64>,
    ) -> Result<(), Stop> {
        let Some(fm) = manifest.files.clone() else {
            self.check(
                "restore",
                "a readable manifest",
                false,
                "no files section".into(),
            );
            return Err(Stop::Failed);
        };
        let start = Instant::now();
        let dir = tempfile::Builder::new()
            .prefix("lifeboat-drill-files-")
            .tempdir();
        self.phase("provision", start, dir.is_ok());
        let dir = dir.map_err(|e| Stop::Error(format!("cannot provision: {e}")))?;
        let root = dir.path().to_path_buf();
        *scratch = Some(Scratch::Folder(dir));

        let start = Instant::now();
        let (repo, id, src, d) = (
            self.repo.clone(),
            info.id.clone(),
            format!("{}/files", self.name),
            root.clone(),
        );
        let restored = self
            .cancel
            .guard(tokio::task::spawn_blocking(move || {
                repo.restore_dir(&id, &src, &d, false)
            }))
            .await?;
        let restored = match restored {
            Ok(Ok(s)) => Ok(s),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        self.phase("restore", start, restored.is_ok());
        match restored {
            Ok(s) => self.check(
                "restore",
                "restore the files",
                true,
                format!(
                    "{} file(s), {}",
                    s.files + s.unchanged,
                    output::bytes(s.bytes)
                ),
            ),
            Err(e) => {
                self.check("restore", "restore the files", false, e);
                return Err(Stop::Failed);
            }
        }

        let start = Instant::now();
        let (files, d) = (fm.files.clone(), root.clone());
        let verified = self
            .cancel
            .guard(tokio::task::spawn_blocking(move || {
                verify_files(&files, &d)
            }))
            .await?
            .map_err(|e| Stop::Error(e.to_string()))?;
        let bad: Vec<_> = verified.iter().filter(|c| !c.ok).collect();
        self.check(
            "files",
            "every file's size and SHA-256",
            bad.is_empty(),
            format!(
                "{} of {} files match the manifest",
                verified.len() - bad.len(),
                verified.len()
            ),
        );
        for b in bad {
            self.check(
                "files",
                b.path.clone(),
                false,
                b.problem.clone().unwrap_or_default(),
            );
        }
        let dir_text = root.display().to_string();
        for rule in self.rules.clone() {
            let result = match &rule.command {
                Some(command) => {
                    self.cancel
                        .guard(run_command(
                            command,
                            &[("LIFEBOAT_DRILL_DIR", &dir_text)],
                            &Redacted::new(String::new()),
                        ))
                        .await?
                }
                None => Err("an SQL check cannot run against a files target".into()),
            };
            self.check(
                "command",
                rule.name.clone(),
                result.is_ok(),
                result.unwrap_or_else(|e| e),
            );
        }
        self.phase("checks", start, self.checks.iter().all(|c| c.passed));
        *verified_at = Some(self.since(Instant::now()));
        Ok(())
    }
}

/// `url` pointing at another database on the same server.
fn url_with_database(url: &str, database: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return format!("{url} dbname={database}");
    };
    let rest = &url[scheme_end + 3..];
    let (before_query, query) = match rest.find('?') {
        Some(q) => (&rest[..q], &rest[q..]),
        None => (rest, ""),
    };
    let authority = before_query.split('/').next().unwrap_or(before_query);
    format!("{}{authority}/{database}{query}", &url[..scheme_end + 3])
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
async fn run_command(
    command: &str,
    env: &[(&str, &str)],
    secret: &Redacted,
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
    let s = secret.expose();
    if !s.is_empty() {
        tail = tail.replace(s, &lifeboat_core::redact_url(s));
        if let Ok(t) = Target::parse(secret)
            && let Some(pw) = t.password()
        {
            tail = tail.replace(&pw, "[redacted]");
        }
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
        Ok(Ok(())) => written.push(format!("{}/{base}.html", repo.side().root().display())),
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
    println!(
        "drill of `{}`: {}",
        r.target,
        r.verdict.as_str().to_uppercase()
    );
    if let Some(e) = &r.error {
        println!("  error: {e}");
    }
    if !r.snapshot.is_empty() {
        println!(
            "  snapshot {} (restorable point {})",
            &r.snapshot[..8.min(r.snapshot.len())],
            r.restorable_at
        );
    }
    println!("  RTO {}", objective_text(&r.rto));
    println!("  RPO {}", objective_text(&r.rpo));
    let phases: Vec<String> = r
        .phases
        .iter()
        .map(|p| format!("{} {}", p.name, render::seconds(p.seconds)))
        .collect();
    println!("  phases: {}", phases.join(", "));
    let failed: Vec<&CheckResult> = r.failed_checks().collect();
    println!(
        "  checks: {} passed, {} failed",
        r.checks.len() - failed.len(),
        failed.len()
    );
    for c in failed {
        println!("  FAILED {} ({}): {}", c.name, c.kind, c.detail);
    }
    for w in written {
        println!("  report: {w}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_database_urls() {
        assert_eq!(
            url_with_database("postgres://u:p@h:5/db?sslmode=require", "x"),
            "postgres://u:p@h:5/x?sslmode=require"
        );
        assert_eq!(url_with_database("postgresql://h", "x"), "postgresql://h/x");
        assert_eq!(url_with_database("host=h", "x"), "host=h dbname=x");
    }

    #[test]
    fn times_in_both_spellings() {
        assert_eq!(
            parse_time("2026-11-22T10:01:00Z").unwrap(),
            parse_time("2026-11-22 10:01:00+00").unwrap()
        );
        assert!(parse_time("yesterday").is_err());
    }
}
