//! Drills: prove that a target can be recovered, and how fast.
//!
//! For one target: choose the snapshot (latest, `--snapshot` or the newest at `--time`, as
//! the target's kind decides), provision a scratch environment, restore into it, run the
//! checks, measure every phase, and compare RTO (start → verified) and RPO (start − the
//! restored point) with the target's objectives. The result is a [`DrillReport`].
//!
//! Each kind's part is a [`Rehearsal`] (provision, restore, recover, check, teardown) in
//! its folder under `kinds/` (`drill.rs`), started by its [`Kind::rehearse`]; this module is
//! the runner that times the phases, watches the cancellation token, decides the verdict;
//! [`history`] stores and reads the reports.
//!
//! The scratch environment is torn down on every path: success, failed checks, errors and
//! cancellation (the running phase is abandoned at its next await, then teardown runs as
//! usual).
//!
//! [`Kind::rehearse`]: crate::kinds::Kind::rehearse

pub mod checks;
pub mod history;

use std::{future::Future, time::Instant};

use lifeboat_core::{Manifest, Redacted, TargetConfig, TargetKind, config::CheckConfig};
use lifeboat_drill::{DrillReport, Objective, Phase, Verdict, report};
use lifeboat_repo::SnapshotInfo;

pub use checks::Findings;

use crate::{
    Engine,
    cancel::{Cancel, Cancelled},
    events::{Event, Op},
    format, kinds,
};

/// What to drill.
#[derive(Debug, Clone)]
pub struct DrillRequest {
    pub target: String,
    /// A snapshot id (prefix); `None`: the newest the kind would restore.
    pub snapshot: Option<String>,
    /// Drill the state at this moment (the newest backup then, or PITR to it).
    pub time: Option<jiff::Timestamp>,
    /// Parallel `pg_restore` jobs.
    pub jobs: u32,
    /// When the drill began (before the repository was opened: that counts in the RTO).
    pub began: Instant,
}

/// The snapshot a drill restores, with its manifest.
pub type Chosen = (SnapshotInfo, Manifest);

/// One kind of target's part in a drill. The runner times every phase, abandons the running
/// one on cancellation, and always calls [`Rehearsal::teardown`], whatever happened before.
pub trait Rehearsal: Send {
    /// Create the scratch environment; returns what it is, for the report.
    fn provision(&mut self) -> impl Future<Output = Result<String, String>> + Send;
    /// Restore the snapshot into it; `Err`: the backup cannot be restored (a failed check).
    fn restore(&mut self) -> impl Future<Output = Result<String, String>> + Send;
    /// Bring what was restored to a consistent state (physical: start the server and
    /// replay the archived WAL); `None` for kinds without such a phase.
    fn recover(&mut self) -> impl Future<Output = Result<Option<String>, String>> + Send {
        async { Ok(None) }
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
    fn check(&mut self, findings: &mut Findings) -> impl Future<Output = ()> + Send;
    /// Remove the scratch environment; works in any state, also after a failed provision.
    fn teardown(&mut self) -> impl Future<Output = Result<(), String>> + Send;
}

/// Drill one target. Never fails: what went wrong is in the report (verdict `error` for the
/// environment, `fail` for the backup), and cancellation ends it early with the scratch
/// environment torn down.
pub async fn drill(engine: &Engine, request: &DrillRequest, cancel: &Cancel) -> DrillReport {
    let name = &request.target;
    let cfg = engine.config.targets.get(name).cloned().unwrap_or_default();
    engine.events.event(Event::Started {
        op: Op::Drill,
        target: name.clone(),
        kind: cfg.kind.to_string(),
    });
    let scratch_url = engine.config.drill.scratch_url();
    let mut drill = Drill {
        engine: engine.clone(),
        name: name.clone(),
        rules: engine
            .config
            .checks
            .iter()
            .filter(|c| &c.target == name)
            .cloned()
            .collect(),
        cfg,
        t0: request.began,
        started_at: jiff::Timestamp::now(),
        cancel: cancel.clone(),
        scratch_url: scratch_url.as_ref().ok().cloned().flatten(),
        scratch_bucket: engine.config.drill.scratch_bucket.clone(),
        jobs: request.jobs,
        time: request.time,
        phases: Vec::new(),
        findings: Findings::default(),
        chosen: None,
        scratch: String::new(),
        verified_at: None,
        restored_point: None,
    };
    let outcome = match scratch_url {
        Err(e) => Err(Stop::Error(e.to_string())),
        Ok(_) => drill.fetch_and_rehearse(request.snapshot.as_deref()).await,
    };
    let error = match outcome {
        Ok(()) | Err(Stop::Failed) => None,
        Err(Stop::Error(e)) => Some(e),
        Err(Stop::Interrupted) => Some("interrupted by a signal".into()),
    };
    let report = drill.finish(error);
    engine.events.event(match report.verdict {
        Verdict::Pass => Event::Finished {
            op: Op::Drill,
            target: name.clone(),
            snapshot: Some(report.snapshot.clone()).filter(|s| !s.is_empty()),
            seconds: report.rto.measured_seconds.unwrap_or_default(),
            bytes: 0,
        },
        v => Event::Failed {
            op: Op::Drill,
            target: name.clone(),
            error: report
                .error
                .clone()
                .unwrap_or_else(|| format!("verdict {}", v.as_str())),
        },
    });
    report
}

/// A drill of one target under way: what a kind's rehearsal reads (the engine, the target,
/// its rules, the scratch settings) and what the runner records.
pub struct Drill {
    pub engine: Engine,
    pub name: String,
    pub cfg: TargetConfig,
    /// The target's `[[checks]]` rules.
    pub rules: Vec<CheckConfig>,
    pub started_at: jiff::Timestamp,
    /// `[drill] scratch-url`, for logical PostgreSQL targets.
    pub scratch_url: Option<Redacted>,
    /// `[drill] scratch-bucket`, for bucket targets.
    pub scratch_bucket: Option<String>,
    pub jobs: u32,
    /// `--time`: the moment drilled.
    pub time: Option<jiff::Timestamp>,
    t0: Instant,
    cancel: Cancel,
    phases: Vec<Phase>,
    findings: Findings,
    chosen: Option<Chosen>,
    scratch: String,
    verified_at: Option<f64>,
    /// Set by kinds that learn it while restoring (physical recovery).
    restored_point: Option<jiff::Timestamp>,
}

/// How a drill stopped early: a failed check (the backup cannot be restored), an error of
/// the environment, or cancellation.
pub enum Stop {
    Failed,
    Error(String),
    Interrupted,
}

impl From<Cancelled> for Stop {
    fn from(_: Cancelled) -> Self {
        Self::Interrupted
    }
}

impl Drill {
    fn say(&self, text: String) {
        self.engine.step(Op::Drill, &self.name, text);
    }

    fn phase(&mut self, name: &str, start: Instant, ok: bool) {
        self.phases.push(Phase {
            name: name.to_string(),
            start: start.duration_since(self.t0).as_secs_f64(),
            seconds: start.elapsed().as_secs_f64(),
            ok,
        });
    }

    /// The snapshot's manifest has no section for its kind: a failed check.
    pub fn missing_section(&mut self) -> Stop {
        self.findings.add(
            "restore",
            "a readable manifest",
            false,
            "the manifest has no section for its kind".into(),
        );
        Stop::Failed
    }

    /// Fetch: choose the snapshot and read its manifest (the repository was opened before,
    /// and that time counts here). Then the kind's rehearsal.
    async fn fetch_and_rehearse(&mut self, snapshot: Option<&str>) -> Result<(), Stop> {
        let start = self.t0;
        let found = self.cancel.guard(self.choose(snapshot)).await?;
        self.phase("fetch", start, found.is_ok());
        let chosen = found.map_err(|e| {
            self.findings
                .add("restore", "a restorable snapshot", false, e);
            Stop::Failed
        })?;
        self.say(format!(
            "  snapshot {} of {}",
            chosen.0.short_id(),
            format::time(&chosen.0.time)
        ));
        self.chosen = Some(chosen.clone());
        match kinds::kind_tagged(&chosen.0.kind) {
            Some(kind) => kind.rehearse(self, &chosen).await,
            None => Err(self.missing_section()),
        }
    }

    /// Provision, restore, recover, check — each timed, each abandoned on cancellation —
    /// then teardown, whatever happened.
    pub async fn rehearse(&mut self, r: &mut impl Rehearsal) -> Result<(), Stop> {
        let outcome = self.provision_restore_check(r).await;
        let start = Instant::now();
        let torn = r.teardown().await;
        if let Err(e) = &torn {
            self.engine.events.event(Event::Warning {
                target: Some(self.name.clone()),
                text: format!("teardown of the scratch environment: {e}"),
            });
        }
        self.phase("teardown", start, torn.is_ok());
        outcome
    }

    async fn provision_restore_check(&mut self, r: &mut impl Rehearsal) -> Result<(), Stop> {
        let start = Instant::now();
        let provisioned = self.cancel.guard(r.provision()).await?;
        self.phase("provision", start, provisioned.is_ok());
        self.scratch = provisioned.map_err(|e| Stop::Error(format!("cannot provision: {e}")))?;
        self.say(format!("  scratch: {}", self.scratch));

        let start = Instant::now();
        self.say("  restoring".into());
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
        self.say("  checking".into());
        let checked = self.cancel.guard(r.check(&mut self.findings)).await;
        let ok = self.findings.0.iter().all(|c| c.passed);
        self.phase("checks", start, ok);
        checked?;
        self.verified_at = Some(self.t0.elapsed().as_secs_f64());
        Ok(())
    }

    async fn choose(&self, snapshot: Option<&str>) -> Result<Chosen, String> {
        let (name, time) = (self.name.clone(), self.time);
        let snapshot = snapshot.map(str::to_string);
        let kind = kinds::kind_of(&self.cfg);
        let info = self
            .engine
            .repo
            .call(move |repo| -> Result<SnapshotInfo, String> {
                if let Some(wanted) = snapshot {
                    return repo
                        .find_snapshot(&name, &wanted)
                        .map_err(|e| e.to_string());
                }
                let snaps = repo.snapshots(Some(&name)).map_err(|e| e.to_string())?;
                kind.base_at(&name, &snaps, time).cloned()
            })
            .await?;
        match &info.manifest {
            Ok(m) if m.complete => Ok((info.clone(), m.clone())),
            Ok(_) => Err(format!("snapshot `{}` is incomplete", info.short_id())),
            Err(e) => Err(format!(
                "snapshot `{}` of {} cannot be read: {e}",
                info.short_id(),
                format::time(&info.time)
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

/// The snapshot a drill (or `status`) takes as the target's newest restorable state: the
/// newest non-emergency one (taken at or before `time`) that is not an incomplete backup.
/// An unreadable one is chosen too: it is a finding, not a reason to quietly drill an older
/// one.
pub fn newest_restorable<'s>(
    name: &str,
    snaps: &'s [SnapshotInfo],
    time: Option<jiff::Timestamp>,
) -> Result<&'s SnapshotInfo, String> {
    snaps
        .iter()
        .rev()
        .filter(|s| !s.emergency && time.is_none_or(|t| s.time.timestamp() <= t))
        .find(|s| !matches!(&s.manifest, Ok(m) if !m.complete))
        .ok_or_else(|| match time {
            Some(t) => format!("no complete snapshot of `{name}` at or before {t}"),
            None => format!("no complete snapshot of `{name}`"),
        })
}

/// The newest point the restored state holds: a logical dump's exported snapshot, else the
/// backup's start.
pub fn restorable_at(info: &SnapshotInfo, m: &Manifest) -> jiff::Timestamp {
    m.postgres
        .as_ref()
        .and_then(|p| p.snapshot_time.parse::<jiff::Timestamp>().ok())
        .or_else(|| m.started_at.parse().ok())
        .unwrap_or_else(|| info.time.timestamp())
}
