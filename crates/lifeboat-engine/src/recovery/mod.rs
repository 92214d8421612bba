//! Recovery plans (`[plans.NAME]`, `lifeboat recover`): the whole stack brought back in a
//! declared order. [`decide`] turns a plan into a [`Recovery`] — every restore planned by
//! its kind up front (the snapshot, the point it restores to and the data that implies
//! losing), nothing changed — which `--dry-run` prints; [`run`] carries out exactly that,
//! step by step, keeping a [`record::RunRecord`] in the side area after every step so that
//! `--resume` continues after a failed or interrupted run without repeating what was done.
//! Every step joins the open incident's timeline (`recover` opens one if none is).
//!
//! `steps.rs` runs the steps that are not restores: commands, HTTP waits, confirmations.

pub mod drill;
pub mod record;
pub mod steps;

use std::collections::BTreeMap;

use lifeboat_core::{
    SnapshotId,
    plans::{PlanConfig, StepConfig, StepKind},
};
use serde::Serialize;
use serde_json::json;

use crate::{
    Engine, EngineError, EngineResult,
    cancel::Cancel,
    events::Op,
    incidents::{self, Entry},
    restore::{self, RestorePlan, RestoreRequest, checks::live_checks},
};
use record::{RunRecord, StepState};

/// What `recover` is asked.
#[derive(Debug, Clone, Default)]
pub struct RecoverRequest {
    pub plan: String,
    /// Bring every target to its state at this moment.
    pub time: Option<String>,
    /// Continue the newest failed or interrupted run of the plan.
    pub resume: bool,
}

/// A decided recovery: shown, then carried out exactly.
#[derive(Serialize)]
pub struct Recovery {
    pub plan: String,
    pub description: Option<String>,
    /// The moment asked for (RFC 3339), if one was.
    pub time: Option<String>,
    pub rto_objective_seconds: Option<f64>,
    /// The run this one continues (`--resume`).
    pub resumes: Option<String>,
    pub steps: Vec<StepPlan>,
    #[serde(skip)]
    restores: BTreeMap<usize, Vec<(RestoreRequest, RestorePlan)>>,
    #[serde(skip)]
    config: PlanConfig,
    #[serde(skip)]
    record: Option<RunRecord>,
}

/// One step as decided.
#[derive(Debug, Serialize)]
pub struct StepPlan {
    /// 1-based.
    pub number: usize,
    pub title: String,
    /// `restore`, `run`, `http`, `checks`, `manual`.
    pub action: &'static str,
    pub continue_on_error: bool,
    /// Done by the run this one resumes: not done again.
    pub done: bool,
    /// A restore step's targets.
    pub targets: Vec<TargetPoint>,
    /// A restore step's targets that the run resumed restored already.
    pub already: Vec<String>,
}

/// Where a restore step brings a target.
#[derive(Debug, Serialize)]
pub struct TargetPoint {
    pub target: String,
    pub snapshot: SnapshotId,
    /// When the snapshot was taken: the point restored to.
    pub restored_point: String,
    /// From the restored point to the moment asked for (or now): the data that implies
    /// losing, in seconds.
    pub data_loss_seconds: Option<f64>,
    pub destination: String,
    /// Existing data is overwritten (an emergency backup is taken first).
    pub overwrites: bool,
    /// The kind's own plan, in words.
    pub steps: Vec<String>,
}

fn action_of(kind: StepKind) -> &'static str {
    match kind {
        StepKind::Restore => "restore",
        StepKind::Run => "run",
        StepKind::Http => "http",
        StepKind::Checks => "checks",
        StepKind::Probe => "probe",
        StepKind::Manual => "manual",
    }
}

fn unknown_plan(engine: &Engine, name: &str) -> EngineError {
    let known: Vec<&str> = engine.config.plans.keys().map(String::as_str).collect();
    EngineError::usage(
        format!("no plan named `{name}`"),
        Some(if known.is_empty() {
            "declare one as `[plans.NAME]` with `[[plans.NAME.steps]]` in the config".into()
        } else {
            format!("the config has: {}", known.join(", "))
        }),
    )
}

/// Decide the recovery `request` asks for: every restore planned by its kind (snapshot,
/// destination, what is overwritten), nothing changed.
pub async fn decide(engine: &Engine, request: &RecoverRequest) -> EngineResult<Recovery> {
    let config = engine
        .config
        .plans
        .get(&request.plan)
        .cloned()
        .ok_or_else(|| unknown_plan(engine, &request.plan))?;
    let record = if request.resume {
        Some(
            record::resumable(&engine.repo, &request.plan)
                .await?
                .ok_or_else(|| {
                    EngineError::usage(
                        format!(
                            "plan `{}` has no failed or interrupted run to resume",
                            request.plan
                        ),
                        Some(format!("run it with `lifeboat recover {}`", request.plan)),
                    )
                })?,
        )
    } else {
        None
    };
    let asked = request
        .time
        .as_deref()
        .map(|t| {
            crate::time::parse_time(t)
                .map(|t| t.to_string())
                .map_err(|e| {
                    EngineError::usage(e, Some("RFC 3339, or `2026-11-22 10:01:00+00`".into()))
                })
        })
        .transpose()?;
    // A resumed run keeps the moment its first run was asked for, and its snapshots.
    let time = match (asked, &record) {
        (Some(t), Some(r)) if Some(&t) != r.time.as_ref() => {
            return Err(EngineError::usage(
                format!(
                    "the run being resumed brings every target to {}; `--time {t}` would mix two moments",
                    r.time.as_deref().unwrap_or("its newest backup")
                ),
                Some("resume without `--time`, or start a new run without `--resume`".into()),
            ));
        }
        (asked, Some(r)) => asked.or(r.time.clone()),
        (asked, None) => asked,
    };
    let reference = time
        .as_deref()
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .unwrap_or_else(jiff::Timestamp::now);
    let mut steps = Vec::new();
    let mut restores = BTreeMap::new();
    for (i, step) in config.steps.iter().enumerate() {
        let number = i + 1;
        let kind = step.kind().map_err(|e| {
            EngineError::usage(format!("plan `{}` step {number} {e}", request.plan), None)
        })?;
        let done = record
            .as_ref()
            .is_some_and(|r| r.state_of(number) == Some(StepState::Done));
        let mut targets = Vec::new();
        let mut already = Vec::new();
        if kind == StepKind::Restore && !done {
            let mut planned = Vec::new();
            for name in step.restore.iter().flatten() {
                if record.as_ref().is_some_and(|r| r.restored(number, name)) {
                    already.push(name.clone());
                    continue;
                }
                let decided = record.as_ref().and_then(|r| r.snapshots.get(name));
                let req = RestoreRequest {
                    target: name.clone(),
                    snapshot: decided.map_or_else(|| "latest".into(), |s| s.to_string()),
                    time: if decided.is_some() {
                        None
                    } else {
                        time.clone()
                    },
                    jobs: 1,
                    ..RestoreRequest::default()
                };
                let plan = restore::plan(engine, &req).await.map_err(|e| {
                    e.context(format!(
                        "plan `{}` step {number}: restore `{name}`",
                        request.plan
                    ))
                })?;
                let point = plan.plan.restored_point.clone();
                let loss = point.parse::<jiff::Timestamp>().ok().map(|p| {
                    ((reference.as_millisecond() - p.as_millisecond()) as f64 / 1000.0).max(0.0)
                });
                targets.push(TargetPoint {
                    target: name.clone(),
                    snapshot: plan.plan.snapshot.clone(),
                    restored_point: point,
                    data_loss_seconds: loss,
                    destination: plan.plan.destination.clone(),
                    overwrites: plan.plan.overwrites,
                    steps: plan.plan.steps.clone(),
                });
                planned.push((req, plan));
            }
            restores.insert(number, planned);
        }
        steps.push(StepPlan {
            number,
            title: step.title(),
            action: action_of(kind),
            continue_on_error: step.continue_on_error,
            done,
            targets,
            already,
        });
    }
    Ok(Recovery {
        plan: request.plan.clone(),
        description: config.description.clone(),
        time,
        rto_objective_seconds: config.objectives.rto.map(|d| d.as_secs() as f64),
        resumes: record.as_ref().map(|r| r.id.clone()),
        steps,
        restores,
        config,
        record,
    })
}

impl Recovery {
    /// The plan in lines for a person.
    pub fn lines(&self) -> Vec<String> {
        let mut out = vec![format!(
            "plan `{}`{}{}",
            self.plan,
            self.description
                .as_deref()
                .map(|d| format!(": {d}"))
                .unwrap_or_default(),
            self.time
                .as_deref()
                .map(|t| format!(" — every target as it was at {t}"))
                .unwrap_or_default()
        )];
        if let Some(r) = &self.resumes {
            out.push(format!(
                "  resuming run {r}: steps done there are not done again"
            ));
        }
        for s in &self.steps {
            let mark = if s.done { "  (done)" } else { "" };
            let cont = if s.continue_on_error {
                "  (a failure does not stop the plan)"
            } else {
                ""
            };
            out.push(format!("  {}. {}{mark}{cont}", s.number, s.title));
            for t in &s.already {
                out.push(format!(
                    "       `{t}`: restored by the run resumed; not again"
                ));
            }
            for t in &s.targets {
                out.push(format!(
                    "       `{}`: snapshot {} → {}; restored to {}, data lost: {}{}",
                    t.target,
                    t.snapshot.short(),
                    t.destination,
                    t.restored_point,
                    t.data_loss_seconds
                        .map_or_else(|| "unknown".into(), lifeboat_drill::render::seconds),
                    if t.overwrites {
                        " (overwrites: emergency backup first)"
                    } else {
                        ""
                    }
                ));
            }
        }
        if let Some(rto) = self.rto_objective_seconds {
            out.push(format!(
                "  objective: done within {}",
                lifeboat_drill::render::seconds(rto)
            ));
        }
        out
    }
}

/// How the steps of a run are confirmed (`manual` steps): the CLI asks at a terminal. It
/// may block; it runs off the async threads, and a signal abandons it.
pub type Confirm = std::sync::Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// Carry out `recovery`: step by step, restores of one step in parallel; the run record is
/// kept after every step, and every step joins the open incident (one is opened if none
/// is). A failed step stops the plan unless it may fail; the record says what was done.
pub async fn run(
    engine: &Engine,
    mut recovery: Recovery,
    cancel: &Cancel,
    confirm: &Confirm,
) -> EngineResult<RunRecord> {
    if incidents::current(&engine.repo).await?.is_none() {
        let opened = incidents::open(
            engine,
            &format!("Recovery with plan `{}`", recovery.plan),
            2,
        )
        .await?;
        engine.step(
            Op::Recover,
            &recovery.plan,
            format!("opened incident {}", opened.id),
        );
    }
    let mut record = recovery
        .record
        .take()
        .unwrap_or_else(|| RunRecord::new(&recovery.plan, recovery.time.clone(), &recovery.steps));
    record.outcome = record::Outcome::Running;
    for t in recovery.steps.iter().flat_map(|s| &s.targets) {
        record
            .snapshots
            .entry(t.target.clone())
            .or_insert_with(|| t.snapshot.clone());
    }
    record.keep(&engine.repo).await?;
    let began = if recovery.resumes.is_some() {
        "resumed"
    } else {
        "started"
    };
    let data = json!({ "plan": recovery.plan, "time": recovery.time, "run": record.id });
    incidents::record(engine, plan_entry(&recovery.plan, began, data)).await;
    let total = recovery.steps.len();
    let started = std::time::Instant::now();
    let mut failed_step = None;
    let mut interrupted = false;
    for (i, config) in recovery.config.steps.clone().iter().enumerate() {
        let number = i + 1;
        if recovery.steps[i].done {
            continue;
        }
        if cancel.is_cancelled() {
            break;
        }
        let title = recovery.steps[i].title.clone();
        engine.step(
            Op::Recover,
            &recovery.plan,
            format!("step {number}/{total}: {title}"),
        );
        record.start(number);
        let t0 = std::time::Instant::now();
        let result = run_step(engine, &mut recovery, number, config, cancel, confirm).await;
        let seconds = t0.elapsed().as_secs_f64();
        let (ok, detail, targets) = match result {
            Ok((detail, targets)) => (true, detail, targets),
            Err((e, targets)) => (false, e.full_message(), targets),
        };
        record.finish(number, ok, &detail, seconds, targets);
        engine.keep_timeline().await;
        incidents::record(
            engine,
            vec![
                Entry::new(
                    "plan-step",
                    None,
                    format!(
                        "step {number} ({title}) {} in {}: {detail}",
                        if ok { "done" } else { "FAILED" },
                        lifeboat_drill::render::seconds(seconds)
                    ),
                )
                .with(json!({
                    "ok": ok, "step": number, "seconds": seconds,
                    "command": config.run, "plan": recovery.plan,
                })),
            ],
        )
        .await;
        if !ok && cancel.is_cancelled() {
            interrupted = true;
            break;
        }
        if !ok && !config.continue_on_error {
            failed_step = Some(number);
            break;
        }
        record.keep(&engine.repo).await?;
    }
    record.outcome = match (failed_step, interrupted || cancel.is_cancelled()) {
        (_, true) => record::Outcome::Interrupted,
        (Some(_), false) => record::Outcome::Failed,
        (None, false) => record::Outcome::Succeeded,
    };
    record.seconds += started.elapsed().as_secs_f64();
    record.finished_at = Some(jiff::Timestamp::now());
    record.keep(&engine.repo).await?;
    let data = json!({ "ok": record.outcome == record::Outcome::Succeeded, "run": record.id });
    incidents::record(
        engine,
        plan_entry(&recovery.plan, record.outcome.as_str(), data),
    )
    .await;
    Ok(record)
}

/// The timeline entry of a plan's run beginning or ending (`what`: started, succeeded…).
fn plan_entry(plan: &str, what: &str, data: serde_json::Value) -> Vec<Entry> {
    vec![Entry::new("plan", None, format!("recovery with plan `{plan}` {what}")).with(data)]
}

type StepResult = Result<(String, Vec<record::TargetDone>), (EngineError, Vec<record::TargetDone>)>;

/// One step.
async fn run_step(
    engine: &Engine,
    recovery: &mut Recovery,
    number: usize,
    step: &StepConfig,
    cancel: &Cancel,
    confirm: &Confirm,
) -> StepResult {
    let kind = step
        .kind()
        .map_err(|e| (EngineError::usage(e, None), vec![]))?;
    let plain = |r: EngineResult<String>| r.map(|d| (d, vec![])).map_err(|e| (e, vec![]));
    match kind {
        StepKind::Restore => {
            let planned = recovery.restores.remove(&number).unwrap_or_default();
            restore_all(engine, planned, cancel).await
        }
        StepKind::Run => plain(steps::run_command(step, cancel).await),
        StepKind::Http => plain(steps::wait_http(step, cancel).await),
        StepKind::Checks => {
            let mut lines = Vec::new();
            for name in step.checks.iter().flatten() {
                let req = RestoreRequest {
                    target: name.clone(),
                    ..RestoreRequest::default()
                };
                let results = live_checks(engine, &req).await.map_err(|e| (e, vec![]))?;
                if let Some(e) = restore::checks::failed(name, &results) {
                    return Err((e, vec![]));
                }
                lines.push(format!("`{name}`: {} check(s) passed", results.len()));
            }
            Ok((lines.join("; "), vec![]))
        }
        StepKind::Manual => {
            let text = step.manual.clone().unwrap_or_default();
            let (ask, t) = (confirm.clone(), text.clone());
            let answered = cancel.guard(lifeboat_repo::blocking(move || ask(&t))).await;
            let Ok(confirmed) = answered else {
                return Err((
                    EngineError::interrupted(format!("stopped while waiting for: {text}")),
                    vec![],
                ));
            };
            if confirmed {
                Ok(("confirmed".into(), vec![]))
            } else {
                Err((
                    EngineError::failure(format!("not confirmed: {text}"), None),
                    vec![],
                ))
            }
        }
        StepKind::Probe => plain(steps::wait_probe(&engine.config, step, cancel).await),
    }
}

/// The restores of one step, side by side; then each target's checks. Every target's
/// outcome is kept, also when another failed.
async fn restore_all(
    engine: &Engine,
    planned: Vec<(RestoreRequest, RestorePlan)>,
    cancel: &Cancel,
) -> StepResult {
    let mut tasks = Vec::new();
    for (req, shown) in planned {
        let (engine, cancel) = (engine.clone(), cancel.clone());
        tasks.push(tokio::spawn(async move {
            // Decided again now, from the snapshot shown: what is overwritten (and so
            // saved first) is what is there now, not when the plan was shown.
            let req = RestoreRequest {
                snapshot: shown.plan.snapshot.to_string(),
                time: None,
                ..req
            };
            let done = match restore::plan(&engine, &req).await {
                Ok(plan) => restore::execute(&engine, plan, true, &cancel).await,
                Err(e) => Err(e),
            };
            let checks = match &done {
                Ok(d) if d.outcome.verified => Some(live_checks(&engine, &req).await),
                _ => None,
            };
            (req.target, done, checks)
        }));
    }
    let mut targets = Vec::new();
    let mut problems = Vec::new();
    for t in tasks {
        let (name, done, checks) = match t.await {
            Ok(x) => x,
            Err(e) => {
                problems.push(format!("a restore task failed: {e}"));
                continue;
            }
        };
        let mut out = record::TargetDone {
            target: name.clone(),
            ..Default::default()
        };
        match done {
            Ok(d) => {
                out.snapshot = Some(d.plan.snapshot.clone());
                out.restored_point = Some(d.plan.restored_point.clone());
                out.emergency_snapshot = d.emergency_snapshot.clone();
                out.verified = d.outcome.verified;
                if !d.outcome.verified {
                    problems.push(format!(
                        "`{name}`: {}",
                        d.outcome.problem.unwrap_or_else(|| "not verified".into())
                    ));
                }
            }
            Err(e) => problems.push(format!("`{name}`: {}", e.full_message())),
        }
        match checks {
            Some(Ok(results)) => {
                out.checks_passed = results.iter().all(|c| c.passed);
                out.checks = format!(
                    "{} of {} check(s) passed",
                    results.iter().filter(|c| c.passed).count(),
                    results.len()
                );
                if let Some(e) = restore::checks::failed(&name, &results) {
                    problems.push(e.message);
                }
                incidents::record(
                    engine,
                    vec![
                        Entry::new("checks", Some(&name), out.checks.clone())
                            .with(json!({ "ok": results.iter().all(|c| c.passed) })),
                    ],
                )
                .await;
            }
            Some(Err(e)) => {
                problems.push(format!("`{name}`: the checks did not run: {}", e.message))
            }
            None => {}
        }
        targets.push(out);
    }
    if problems.is_empty() {
        let words: Vec<String> = targets
            .iter()
            .map(|t| {
                format!(
                    "`{}` from {}{}",
                    t.target,
                    t.snapshot.as_ref().map_or("?", |s| s.short()),
                    if t.checks.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", t.checks)
                    }
                )
            })
            .collect();
        Ok((
            format!("restored and verified {}", words.join(", ")),
            targets,
        ))
    } else if cancel.is_cancelled() {
        Err((EngineError::interrupted(problems.join("; ")), targets))
    } else {
        Err((EngineError::failure(problems.join("; "), None), targets))
    }
}
