//! Drills: prove that a target can be recovered, and how fast.
//!
//! For one target: choose the snapshot (latest, `--snapshot` or the newest at `--time`, as
//! the target's kind decides), provision a scratch environment, restore into it, run the
//! checks, measure every phase, and compare RTO (start → verified) and RPO (start − the
//! restored point) with the target's objectives. The result is a [`DrillReport`].
//!
//! Each kind's part is a [`Rehearsal`] (provision, restore, recover, check, teardown) in
//! its folder under `kinds/` (`drill.rs`), started by its [`Kind::rehearse`]. Kinds build
//! on `rehearsal.rs` (the trait, and the [`Drill`] under way that times the phases and
//! watches the cancellation token) and `checks.rs`; this file, which dispatches to the
//! kinds, chooses the snapshot and decides the verdict; [`history`] stores and reads the
//! reports.
//!
//! The scratch environment is torn down on every path: success, failed checks, errors and
//! cancellation (the running phase is abandoned at its next await, then teardown runs as
//! usual).
//!
//! [`Kind::rehearse`]: crate::kinds::Kind::rehearse

pub mod checks;
pub mod history;
pub mod rehearsal;

use std::time::Instant;

use lifeboat_core::{Manifest, SnapshotId, TargetName};
use lifeboat_drill::{DrillReport, Objective, Verdict, report};
use lifeboat_repo::SnapshotInfo;

pub use checks::Findings;
pub use rehearsal::{Chosen, Drill, Rehearsal, Stop, newest_restorable};

use serde::Serialize;

use crate::{
    Engine, EngineError, EngineResult,
    cancel::Cancel,
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

/// A drill decided before anything is provisioned: the snapshot, what the kind's rehearsal
/// will do, and the target's own checks. `drill --dry-run` shows it; [`drill`] decides it
/// the same way and then runs it.
#[derive(Debug, Clone, Serialize)]
pub struct DrillPlan {
    pub target: TargetName,
    pub kind: String,
    pub snapshot: SnapshotId,
    pub snapshot_time: String,
    /// The newest moment the restored state will hold.
    pub restorable_at: String,
    pub steps: Vec<String>,
    /// The target's `[[checks]]` rules, run after the kind's own checks.
    pub checks: Vec<String>,
}

impl DrillPlan {
    /// The plan in lines, as `drill --dry-run` prints it.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = vec![format!(
            "drill `{}` ({}) from snapshot {} of {}",
            self.target,
            self.kind,
            self.snapshot.short(),
            self.snapshot_time
        )];
        for (i, step) in self.steps.iter().enumerate() {
            lines.push(format!("  {}. {step}", i + 1));
        }
        if !self.checks.is_empty() {
            lines.push(format!(
                "  checks of the target: {}",
                self.checks.join(", ")
            ));
        }
        lines.push(format!(
            "  restorable point: {} (RPO measured from it)",
            self.restorable_at
        ));
        lines
    }
}

/// Decide the drill of `request` without provisioning anything: which snapshot, and what
/// the kind's rehearsal will do.
pub async fn plan(engine: &Engine, request: &DrillRequest) -> EngineResult<DrillPlan> {
    engine.config.drill.scratch_url()?;
    let mut d = new_drill(engine, request, &Cancel::new());
    d.dry_run = true;
    let chosen = choose(&d, request.snapshot.as_deref())
        .await
        .map_err(|e| EngineError::failure(e, Some("list them with `lifeboat snapshots`".into())))?;
    match kinds::kind_tagged(&chosen.0.kind) {
        Some(kind) => match kind.rehearse(&mut d, &chosen).await {
            Ok(()) => {}
            Err(Stop::Error(e)) => return Err(EngineError::failed(e)),
            Err(_) => {
                return Err(EngineError::failed(format!(
                    "snapshot `{}` cannot be drilled: its manifest has no section for its kind",
                    chosen.0.short_id()
                )));
            }
        },
        None => {
            return Err(EngineError::failed(format!(
                "snapshot `{}` is of a kind lifeboat does not know (`{}`)",
                chosen.0.short_id(),
                chosen.0.kind
            )));
        }
    }
    Ok(plan_of(&d, &chosen))
}

fn plan_of(d: &Drill, chosen: &Chosen) -> DrillPlan {
    DrillPlan {
        target: d.name.as_str().into(),
        kind: chosen.0.kind.clone(),
        snapshot: chosen.0.id.clone(),
        snapshot_time: format::time(&chosen.0.time),
        restorable_at: restorable_at(&chosen.0, &chosen.1).to_string(),
        steps: d.steps.clone(),
        checks: d.rules.iter().map(|r| r.name.clone()).collect(),
    }
}

fn new_drill(engine: &Engine, request: &DrillRequest, cancel: &Cancel) -> Drill {
    let name = &request.target;
    Drill {
        engine: engine.clone(),
        name: name.clone(),
        rules: engine
            .config
            .checks
            .iter()
            .filter(|c| &c.target == name && c.in_drills())
            .cloned()
            .collect(),
        cfg: engine.config.targets.get(name).cloned().unwrap_or_default(),
        t0: request.began,
        started_at: jiff::Timestamp::now(),
        cancel: cancel.clone(),
        scratch_url: engine.config.drill.scratch_url().ok().flatten(),
        scratch_bucket: engine.config.drill.scratch_bucket.clone(),
        jobs: request.jobs,
        time: request.time,
        phases: Vec::new(),
        findings: Findings::default(),
        chosen: None,
        scratch: String::new(),
        verified_at: None,
        restored_point: None,
        dry_run: false,
        steps: Vec::new(),
        hold: None,
    }
}

/// Drill one target. Never fails: what went wrong is in the report (verdict `error` for the
/// environment, `fail` for the backup), and cancellation ends it early with the scratch
/// environment torn down.
pub async fn drill(engine: &Engine, request: &DrillRequest, cancel: &Cancel) -> DrillReport {
    drill_held(engine, request, cancel, None).await
}

/// [`drill`], keeping the scratch environment for a whole-system drill (`hold`) until it
/// is released.
pub async fn drill_held(
    engine: &Engine,
    request: &DrillRequest,
    cancel: &Cancel,
    hold: Option<rehearsal::Hold>,
) -> DrillReport {
    let name = &request.target;
    let mut drill = new_drill(engine, request, cancel);
    drill.hold = hold;
    engine.events.event(Event::Started {
        op: Op::Drill,
        target: name.as_str().into(),
        kind: kinds::kind_of(&drill.cfg).tag().to_string(),
    });
    let outcome = match engine.config.drill.scratch_url() {
        Err(e) => Err(Stop::Error(e.to_string())),
        Ok(_) => fetch_and_rehearse(&mut drill, request.snapshot.as_deref()).await,
    };
    let error = match outcome {
        Ok(()) | Err(Stop::Failed) => None,
        Err(Stop::Error(e)) => Some(e),
        Err(Stop::Interrupted) => Some("interrupted by a signal".into()),
    };
    let report = finish(drill, error);
    engine.events.event(match report.verdict {
        Verdict::Pass => Event::Finished {
            op: Op::Drill,
            target: name.as_str().into(),
            snapshot: Some(report.snapshot.as_str().into()).filter(|s: &SnapshotId| !s.is_empty()),
            seconds: report.rto.measured_seconds.unwrap_or_default(),
            bytes: 0,
        },
        v => Event::Failed {
            op: Op::Drill,
            target: name.as_str().into(),
            error: report
                .error
                .clone()
                .unwrap_or_else(|| format!("verdict {}", v.as_str())),
        },
    });
    report
}

/// Fetch: choose the snapshot and read its manifest (the repository was opened before,
/// and that time counts here). Then the kind's rehearsal.
async fn fetch_and_rehearse(d: &mut Drill, snapshot: Option<&str>) -> Result<(), Stop> {
    let start = d.t0;
    let found = d.cancel.guard(choose(d, snapshot)).await?;
    d.phase("fetch", start, found.is_ok());
    let chosen = found.map_err(|e| {
        d.findings.add("restore", "a restorable snapshot", false, e);
        Stop::Failed
    })?;
    d.say(format!(
        "  snapshot {} of {}",
        chosen.0.short_id(),
        format::time(&chosen.0.time)
    ));
    d.chosen = Some(chosen.clone());
    match kinds::kind_tagged(&chosen.0.kind) {
        Some(kind) => kind.rehearse(d, &chosen).await,
        None => Err(d.missing_section()),
    }
}

async fn choose(d: &Drill, snapshot: Option<&str>) -> Result<Chosen, String> {
    let (name, time) = (d.name.clone(), d.time);
    let snapshot = snapshot.map(str::to_string);
    let kind = kinds::kind_of(&d.cfg);
    let info = d
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

fn finish(d: Drill, error: Option<String>) -> DrillReport {
    let restorable_at = d
        .restored_point
        .or_else(|| d.chosen.as_ref().map(|(s, m)| restorable_at(s, m)));
    let rpo =
        restorable_at.map(|t| (d.started_at.as_millisecond() - t.as_millisecond()) as f64 / 1000.0);
    let objective = |o: Option<lifeboat_core::HumanDuration>| o.map(|o| o.as_secs() as f64);
    let kind = match &d.chosen {
        Some((s, _)) => s.kind.clone(),
        None => kinds::kind_of(&d.cfg).tag().to_string(),
    };
    let stamp = d
        .started_at
        .strftime("%Y%m%dT%H%M%S%.3fZ")
        .to_string()
        .replace('.', "");
    let mut report = DrillReport {
        format: report::REPORT_FORMAT,
        id: format!("{stamp}-{}", d.name),
        target: d.name.clone(),
        kind,
        started_at: d.started_at.to_string(),
        finished_at: jiff::Timestamp::now().to_string(),
        host: lifeboat_repo::hostname(),
        lifeboat_version: env!("CARGO_PKG_VERSION").to_string(),
        snapshot: d
            .chosen
            .as_ref()
            .map(|(s, _)| s.id.clone())
            .unwrap_or_default()
            .to_string(),
        restorable_at: restorable_at.map(|t| t.to_string()).unwrap_or_default(),
        scratch: d.scratch,
        phases: d.phases,
        checks: d.findings.0,
        rto: Objective::new(objective(d.cfg.objectives.rto), d.verified_at),
        rpo: Objective::new(objective(d.cfg.objectives.rpo), rpo),
        verdict: Verdict::Error,
        error,
    };
    report.decide();
    report
}

/// The newest point the restored state holds, as the snapshot's kind tells it (a logical
/// dump's exported snapshot), else the backup's start.
pub fn restorable_at(info: &SnapshotInfo, m: &Manifest) -> jiff::Timestamp {
    kinds::kind_tagged(&info.kind)
        .map(|k| k.summary(m))
        .unwrap_or_default()
        .restorable_at(info, m)
}
