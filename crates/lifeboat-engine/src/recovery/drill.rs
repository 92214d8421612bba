//! `lifeboat drill --plan PLAN`: a whole-system drill. The plan's steps run in order
//! against throwaway copies: each `restore` step drills its targets side by side (scratch
//! database, server, folder or bucket prefix, restored and checked as a drill of that
//! target does) and keeps them up; `run` steps get `$LIFEBOAT_DRILL_<TARGET>_URL` /
//! `_DIR` for every target restored so far, so the app's own smoke test runs against the
//! recovered set; `http` steps (production endpoints) and `manual` steps are recorded as
//! skipped; `checks` steps are the targets' drills' checks. When the plan is done every
//! scratch environment is torn down, each target's drill report goes into its history, and
//! the plan's report measures the whole-system RTO against `[plans.NAME] objectives`.
//!
//! Each report carries a hash of the plan and of the targets it touches, so `status` can
//! say that a plan changed since its last passing drill.

use std::time::Instant;

use lifeboat_core::plans::{StepConfig, StepKind};
use lifeboat_drill::{DrillReport, Verdict};
use serde::{Deserialize, Serialize};
use sha2::Digest;

use super::{steps, unknown_plan};
use crate::{
    Engine, EngineError, EngineResult,
    cancel::Cancel,
    drill::{self, DrillRequest, rehearsal::Hold},
    events::Op,
    incidents,
};

const DIR: &str = "drills/plans";

/// One step as the drill ran it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepDrill {
    pub number: usize,
    pub title: String,
    /// `done`, `failed` or `skipped`.
    pub state: String,
    /// From the drill's start.
    pub start_seconds: f64,
    pub seconds: f64,
    pub detail: String,
}

/// One target's drill within the plan's.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TargetDrill {
    pub target: String,
    pub verdict: Verdict,
    pub report: String,
    pub rto_seconds: Option<f64>,
    pub rpo_seconds: Option<f64>,
    pub failed_checks: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlanDrillReport {
    pub id: String,
    pub plan: String,
    pub started_at: String,
    pub verdict: Verdict,
    /// From the start until every step had run (before the teardown).
    pub rto_seconds: f64,
    pub rto_objective_seconds: Option<f64>,
    /// The plan and the targets it touches, hashed: a change makes the drill stale.
    pub plan_hash: String,
    pub steps: Vec<StepDrill>,
    pub targets: Vec<TargetDrill>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A hash of plan `name` and of every target it restores or checks, as configured now.
pub fn plan_hash(engine: &Engine, name: &str) -> Option<String> {
    let plan = engine.config.plans.get(name)?;
    let mut h = sha2::Sha256::new();
    h.update(serde_json::to_vec(plan).unwrap_or_default());
    let mut touched: Vec<&String> = plan
        .steps
        .iter()
        .flat_map(|s| s.restore.iter().chain(s.checks.iter()).flatten())
        .collect();
    touched.sort();
    touched.dedup();
    for t in touched {
        h.update(t.as_bytes());
        if let Some(cfg) = engine.config.targets.get(t.as_str()) {
            h.update(serde_json::to_vec(cfg).unwrap_or_default());
        }
        for c in engine.config.checks.iter().filter(|c| &c.target == t) {
            h.update(serde_json::to_vec(c).unwrap_or_default());
        }
    }
    Some(hex::encode(&h.finalize()[..8]))
}

/// The environment variable a target's scratch location goes into: `LIFEBOAT_DRILL_`, the
/// target's name in capitals (`-` as `_`), then `_URL` or `_DIR`.
pub fn env_name(target: &str, what: &str) -> String {
    format!(
        "LIFEBOAT_DRILL_{}_{what}",
        target.to_uppercase().replace('-', "_")
    )
}

/// Drill plan `name` as a whole.
pub async fn drill_plan(
    engine: &Engine,
    name: &str,
    cancel: &Cancel,
) -> EngineResult<PlanDrillReport> {
    let plan = engine
        .config
        .plans
        .get(name)
        .cloned()
        .ok_or_else(|| unknown_plan(engine, name))?;
    let t0 = Instant::now();
    let started_at = jiff::Timestamp::now();
    let mut env: Vec<(String, String)> = Vec::new();
    // Each held drill: its target, its task, and the release of its scratch environment.
    let mut held = Vec::new();
    let mut out = Vec::new();
    let mut stopped = false;
    let total = plan.steps.len();
    for (i, step) in plan.steps.iter().enumerate() {
        let number = i + 1;
        let title = step.title();
        let start = t0.elapsed().as_secs_f64();
        let (state, detail) = if stopped {
            ("skipped", "not run: an earlier step failed".to_string())
        } else {
            engine.step(
                Op::Drill,
                name,
                format!("plan step {number}/{total}: {title}"),
            );
            let (state, detail) = drill_step(engine, step, &mut env, &mut held, cancel).await;
            if state == "failed" && (!step.continue_on_error || cancel.is_cancelled()) {
                stopped = true;
            }
            (state, detail)
        };
        out.push(StepDrill {
            number,
            title,
            state: state.into(),
            start_seconds: start,
            seconds: t0.elapsed().as_secs_f64() - start,
            detail,
        });
    }
    let rto = t0.elapsed().as_secs_f64();
    // The plan is done: every scratch environment goes, and every target's report is kept.
    let mut targets = Vec::new();
    for (target, task, release) in held {
        let _ = release.send(());
        let report: DrillReport = match task.await {
            Ok(r) => r,
            Err(e) => {
                return Err(EngineError::failure(
                    format!("the drill of `{target}` did not end: {e}"),
                    None,
                ));
            }
        };
        drill::history::store(engine, &report, None).await;
        targets.push(TargetDrill {
            target,
            verdict: report.verdict,
            report: report.id.clone(),
            rto_seconds: report.rto.measured_seconds,
            rpo_seconds: report.rpo.measured_seconds,
            failed_checks: report.failed_checks().map(|c| c.name.clone()).collect(),
        });
    }
    // A `checks` step stands for the checks its targets' drills ran.
    for (i, step) in plan.steps.iter().enumerate() {
        if let (Ok(StepKind::Checks), Some(s)) = (step.kind(), out.get_mut(i))
            && s.state == "done"
        {
            let failed: Vec<String> = step
                .checks
                .iter()
                .flatten()
                .filter(|t| {
                    targets
                        .iter()
                        .any(|d| &&d.target == t && !d.failed_checks.is_empty())
                })
                .cloned()
                .collect();
            if !failed.is_empty() {
                s.state = "failed".into();
                s.detail = format!("checks failed in the drill of {}", failed.join(", "));
            }
        }
    }
    let objective = plan.objectives.rto.map(|d| d.as_secs() as f64);
    let verdict = if cancel.is_cancelled() {
        Verdict::Error
    } else if out.iter().any(|s| s.state == "failed")
        || targets.iter().any(|t| t.verdict != Verdict::Pass)
        || objective.is_some_and(|o| rto > o)
    {
        Verdict::Fail
    } else {
        Verdict::Pass
    };
    let report = PlanDrillReport {
        id: format!("{}-{name}", started_at.strftime("%Y%m%dT%H%M%SZ")),
        plan: name.to_string(),
        started_at: started_at.to_string(),
        verdict,
        rto_seconds: rto,
        rto_objective_seconds: objective,
        plan_hash: plan_hash(engine, name).unwrap_or_default(),
        steps: out,
        targets,
        error: cancel
            .is_cancelled()
            .then(|| "interrupted by a signal".to_string()),
    };
    let bytes = serde_json::to_vec_pretty(&report).unwrap_or_default();
    let path = format!("{DIR}/{name}/{}.json", report.id);
    if let Err(e) = incidents::put_sealed(&engine.repo, &path, &bytes).await {
        engine.events.event(crate::events::Event::Warning {
            target: None,
            text: format!("cannot keep the plan's drill report: {}", e.full_message()),
        });
    }
    Ok(report)
}

/// One step of a whole-system drill: its state (`done`, `failed`, `skipped`) and what it
/// did.
async fn drill_step(
    engine: &Engine,
    step: &StepConfig,
    env: &mut Vec<(String, String)>,
    held: &mut Vec<(
        String,
        tokio::task::JoinHandle<DrillReport>,
        tokio::sync::oneshot::Sender<()>,
    )>,
    cancel: &Cancel,
) -> (&'static str, String) {
    match step.kind() {
        Ok(StepKind::Restore) => {
            let mut waiting = Vec::new();
            for target in step.restore.iter().flatten() {
                let (ready, ready_rx) = tokio::sync::oneshot::channel();
                let (release_tx, release) = tokio::sync::oneshot::channel();
                let request = DrillRequest {
                    target: target.clone(),
                    snapshot: None,
                    time: None,
                    jobs: 1,
                    began: Instant::now(),
                };
                let (e, c) = (engine.clone(), cancel.clone());
                let task = tokio::spawn(async move {
                    drill::drill_held(&e, &request, &c, Some(Hold { ready, release })).await
                });
                held.push((target.clone(), task, release_tx));
                waiting.push((target.clone(), ready_rx));
            }
            let mut failed = Vec::new();
            for (target, ready) in waiting {
                match ready.await {
                    Ok((true, vars)) => {
                        env.extend(vars.into_iter().map(|(k, v)| (env_name(&target, k), v)));
                    }
                    _ => failed.push(format!("`{target}`")),
                }
            }
            if failed.is_empty() {
                (
                    "done",
                    "restored and checked in scratch environments".into(),
                )
            } else {
                (
                    "failed",
                    format!(
                        "the drill of {} failed (its report says why)",
                        failed.join(", ")
                    ),
                )
            }
        }
        Ok(StepKind::Run) => {
            let mut s = step.clone();
            let mut vars = s.env.take().unwrap_or_default();
            vars.extend(env.iter().cloned());
            s.env = Some(vars);
            match steps::run_command(&s, cancel).await {
                Ok(d) => ("done", d),
                Err(e) => ("failed", e.message),
            }
        }
        Ok(StepKind::Checks) => ("done", "the targets' checks run with their drills".into()),
        Ok(StepKind::Http) => (
            "skipped",
            "not run in a drill: it reaches the production service".into(),
        ),
        Ok(StepKind::Manual) => ("skipped", "a person's step: recorded, not done".into()),
        Ok(StepKind::Probe) => (
            "skipped",
            "not run in a drill: it watches the production service".into(),
        ),
        Err(_) => ("skipped", "not supported".into()),
    }
}

/// The newest whole-system drill of plan `name`, if any.
pub async fn last_drill(engine: &Engine, name: &str) -> EngineResult<Option<PlanDrillReport>> {
    let dir = format!("{DIR}/{name}");
    let d = dir.clone();
    let mut names = engine.repo.call(move |r| r.side().list(&d)).await?;
    names.sort();
    let Some(last) = names.pop() else {
        return Ok(None);
    };
    let bytes = incidents::get_sealed(&engine.repo, &format!("{dir}/{last}")).await?;
    Ok(bytes.and_then(|b| serde_json::from_slice(&b).ok()))
}

impl PlanDrillReport {
    pub fn markdown(&self) -> String {
        let secs = lifeboat_drill::render::seconds;
        let mut out = format!(
            "# Drill of plan `{}`: {}\n\n| | |\n| --- | --- |\n| started | {} |\n| whole-system RTO | {}{} |\n| plan hash | {} |\n\n## Steps\n\n| # | step | state | at | took | |\n| --- | --- | --- | --- | --- | --- |\n",
            self.plan,
            self.verdict.as_str().to_uppercase(),
            self.started_at,
            secs(self.rto_seconds),
            self.rto_objective_seconds
                .map(|o| format!(" (objective {})", secs(o)))
                .unwrap_or_default(),
            self.plan_hash,
        );
        for s in &self.steps {
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} |\n",
                s.number,
                s.title.replace('|', "\\|"),
                s.state,
                secs(s.start_seconds),
                secs(s.seconds),
                s.detail.replace('|', "\\|").replace('\n', " ")
            ));
        }
        out.push_str("\n## Targets\n\n| target | verdict | RTO | RPO | failed checks | report |\n| --- | --- | --- | --- | --- | --- |\n");
        for t in &self.targets {
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} |\n",
                t.target,
                t.verdict.as_str(),
                t.rto_seconds.map_or("—".into(), secs),
                t.rpo_seconds.map_or("—".into(), secs),
                t.failed_checks.join(", "),
                t.report
            ));
        }
        out
    }

    /// A page with the steps as a timeline chart.
    pub fn html(&self) -> String {
        let esc = lifeboat_drill::render::esc;
        let span = self.rto_seconds.max(0.001);
        let (width, row) = (1000.0, 22.0);
        let height = row * self.steps.len() as f64 + 20.0;
        let mut svg = format!(
            "<svg id=\"timeline\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\"><rect x=\"0\" y=\"0\" width=\"{width}\" height=\"{height}\" fill=\"#fafafa\"/>"
        );
        for (n, s) in self.steps.iter().enumerate() {
            let x = 10.0 + s.start_seconds / span * 500.0;
            let w = (s.seconds / span * 500.0).max(2.0);
            let y = 10.0 + n as f64 * row;
            let colour = match s.state.as_str() {
                "done" => "#2e7d32",
                "failed" => "#c62828",
                _ => "#9e9e9e",
            };
            svg.push_str(&format!(
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"14\" fill=\"{colour}\"/><circle cx=\"{x:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"#000\"/><text x=\"530\" y=\"{:.1}\" font-size=\"12\">{}. {}</text>",
                y + 7.0,
                y + 11.0,
                s.number,
                esc(&s.title)
            ));
        }
        svg.push_str("</svg>");
        format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>Drill of plan {plan}</title><style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}pre{{white-space:pre-wrap}}</style></head><body><h1>Drill of plan {plan}: {verdict}</h1>{svg}<pre>{md}</pre></body></html>\n",
            plan = esc(&self.plan),
            verdict = self.verdict.as_str().to_uppercase(),
            md = esc(&self.markdown()),
        )
    }
}

/// A plan as `status` judges it: its last whole-system drill, and what is wrong.
#[derive(Debug, Serialize)]
pub struct PlanStatus {
    pub plan: String,
    pub last_drill: Option<String>,
    pub verdict: Option<Verdict>,
    pub rto_seconds: Option<f64>,
    pub rto_objective_seconds: Option<f64>,
    /// Empty when the plan is verified.
    pub problems: Vec<String>,
}

/// Every plan's status: a failed last drill, a plan (or a target it touches) changed since
/// its last passing drill, or — when it declares an RTO — no drill yet.
pub async fn plan_status(engine: &Engine) -> EngineResult<Vec<PlanStatus>> {
    let mut out = Vec::new();
    for (name, plan) in &engine.config.plans {
        let last = last_drill(engine, name).await?;
        let objective = plan.objectives.rto.map(|d| d.as_secs() as f64);
        let mut problems = Vec::new();
        match &last {
            None if objective.is_some() => problems.push("RTO unproven: never drilled".into()),
            None => {}
            Some(d) if d.verdict != Verdict::Pass => problems.push("last drill failed".into()),
            Some(d) if Some(&d.plan_hash) != plan_hash(engine, name).as_ref() => {
                problems.push("not verified since changed".into());
            }
            Some(_) => {}
        }
        out.push(PlanStatus {
            plan: name.clone(),
            last_drill: last.as_ref().map(|d| d.started_at.clone()),
            verdict: last.as_ref().map(|d| d.verdict),
            rto_seconds: last.as_ref().map(|d| d.rto_seconds),
            rto_objective_seconds: objective,
            problems,
        });
    }
    Ok(out)
}
