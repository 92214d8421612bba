//! A recovery run as recorded in the side area (sealed), after every step:
//! `recoveries/<plan>/<id>.json`. `--resume` continues the newest run that failed or was
//! interrupted, skipping its done steps and the targets its failed step did restore.

use std::sync::Arc;

use lifeboat_core::SnapshotId;
use lifeboat_repo::Repo;
use serde::{Deserialize, Serialize};

use super::StepPlan;
use crate::{EngineError, EngineResult, incidents};

const DIR: &str = "recoveries";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Running,
    Succeeded,
    Failed,
    Interrupted,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Interrupted => "interrupted",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepState {
    Pending,
    Running,
    Done,
    Failed,
}

/// A target a restore step restored (or tried to).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct TargetDone {
    pub target: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<SnapshotId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored_point: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emergency_snapshot: Option<SnapshotId>,
    /// Restored and verified against the manifest.
    #[serde(default)]
    pub verified: bool,
    /// Its `[[checks]]` passed on what was restored (or it has none).
    #[serde(default)]
    pub checks_passed: bool,
    /// Its `[[checks]]`, in words.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub checks: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct StepRecord {
    pub number: usize,
    pub title: String,
    pub state: StepState,
    #[serde(default, with = "lifeboat_core::time::moment")]
    pub started_at: Option<jiff::Timestamp>,
    #[serde(default)]
    pub seconds: f64,
    #[serde(default)]
    pub detail: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<TargetDone>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RunRecord {
    pub id: String,
    pub plan: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    pub outcome: Outcome,
    #[serde(with = "lifeboat_core::time::moment")]
    pub started_at: Option<jiff::Timestamp>,
    #[serde(default, with = "lifeboat_core::time::moment")]
    pub finished_at: Option<jiff::Timestamp>,
    /// Time spent running steps, over every resumed run.
    #[serde(default)]
    pub seconds: f64,
    /// The snapshot each target restores, as decided by the first run: a resumed run
    /// restores the same, whatever was backed up meanwhile.
    #[serde(default)]
    pub snapshots: std::collections::BTreeMap<String, SnapshotId>,
    pub steps: Vec<StepRecord>,
    pub host: String,
}

impl RunRecord {
    pub fn new(plan: &str, time: Option<String>, steps: &[StepPlan]) -> Self {
        let now = jiff::Timestamp::now();
        Self {
            id: now.strftime("%Y%m%dT%H%M%SZ").to_string(),
            plan: plan.to_string(),
            time,
            outcome: Outcome::Running,
            started_at: Some(now),
            finished_at: None,
            seconds: 0.0,
            snapshots: steps
                .iter()
                .flat_map(|s| &s.targets)
                .map(|t| (t.target.clone(), t.snapshot.clone()))
                .collect(),
            steps: steps
                .iter()
                .map(|s| StepRecord {
                    number: s.number,
                    title: s.title.clone(),
                    state: StepState::Pending,
                    started_at: None,
                    seconds: 0.0,
                    detail: String::new(),
                    targets: Vec::new(),
                })
                .collect(),
            host: lifeboat_repo::hostname(),
        }
    }

    fn step_mut(&mut self, number: usize) -> Option<&mut StepRecord> {
        self.steps.iter_mut().find(|s| s.number == number)
    }

    pub fn state_of(&self, number: usize) -> Option<StepState> {
        self.steps
            .iter()
            .find(|s| s.number == number)
            .map(|s| s.state)
    }

    /// Whether step `number` restored `target`, verified it and passed its checks (in a
    /// run that then failed for another target or step).
    pub fn restored(&self, number: usize, target: &str) -> bool {
        self.steps
            .iter()
            .find(|s| s.number == number)
            .is_some_and(|s| {
                s.targets
                    .iter()
                    .any(|t| t.target == target && t.verified && t.checks_passed)
            })
    }

    pub fn start(&mut self, number: usize) {
        if let Some(s) = self.step_mut(number) {
            s.state = StepState::Running;
            s.started_at = Some(jiff::Timestamp::now());
        }
    }

    /// Step `number` ended; the targets it restored join those an earlier run restored.
    pub fn finish(
        &mut self,
        number: usize,
        ok: bool,
        detail: &str,
        seconds: f64,
        targets: Vec<TargetDone>,
    ) {
        if let Some(s) = self.step_mut(number) {
            s.state = if ok {
                StepState::Done
            } else {
                StepState::Failed
            };
            s.detail = detail.to_string();
            s.seconds += seconds;
            for t in targets {
                s.targets.retain(|o| o.target != t.target);
                s.targets.push(t);
            }
        }
    }

    fn path(&self) -> String {
        format!("{DIR}/{}/{}.json", self.plan, self.id)
    }

    /// Keep the record in the side area.
    pub async fn keep(&self, repo: &Arc<Repo>) -> EngineResult<()> {
        let bytes = serde_json::to_vec_pretty(self).unwrap_or_default();
        incidents::put_sealed(repo, &self.path(), &bytes)
            .await
            .map_err(|e| e.context("cannot keep the recovery's record"))
    }
}

/// Every recorded run of `plan`, oldest first.
pub async fn runs(repo: &Arc<Repo>, plan: &str) -> EngineResult<Vec<RunRecord>> {
    let dir = format!("{DIR}/{plan}");
    let d = dir.clone();
    let mut names = repo.call(move |r| r.side().list(&d)).await?;
    names.sort();
    let mut out = Vec::new();
    for n in names {
        if let Some(bytes) = incidents::get_sealed(repo, &format!("{dir}/{n}")).await? {
            let r: RunRecord = serde_json::from_slice(&bytes).map_err(|e| {
                EngineError::failure(
                    format!("the recovery record `{dir}/{n}` is unreadable: {e}"),
                    None,
                )
            })?;
            out.push(r);
        }
    }
    Ok(out)
}

/// The newest run of `plan` if it failed, was interrupted, or never finished (the process
/// was killed): the one `--resume` continues.
pub async fn resumable(repo: &Arc<Repo>, plan: &str) -> EngineResult<Option<RunRecord>> {
    Ok(runs(repo, plan)
        .await?
        .pop()
        .filter(|r| r.outcome != Outcome::Succeeded))
}
