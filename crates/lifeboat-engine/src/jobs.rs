//! Job history: every backup — run by hand (`lifeboat backup`) or by `lifeboat serve` — is
//! recorded in the repository's side area (`lifeboat/jobs/<target>/<id>.json`) with its
//! outcome, so a failed or skipped backup is never invisible, and a fresh host running
//! `serve` against the same repository knows what ran.

use std::sync::Arc;

use lifeboat_core::{SnapshotId, TargetName};
use lifeboat_repo::{ReadData, Repo};
use serde::{Deserialize, Serialize};

use crate::{
    Engine, EngineError, EngineResult, Failure,
    backup::{self, BackupReport},
    cancel::Cancel,
    events::Event,
};

/// Where job records live in the side area.
pub const JOBS_DIR: &str = "jobs";

/// What started a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Trigger {
    /// A command run by hand.
    Command,
    /// A slot of the target's schedule.
    Schedule,
    /// `serve` found the last good backup older than one interval.
    CatchUp,
    /// A probe went down or up (its `on-down`, `on-up` hook).
    Probe,
}

impl Trigger {
    /// As the job history and the metrics spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Command => "command",
            Self::Schedule => "schedule",
            Self::CatchUp => "catch-up",
            Self::Probe => "probe",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Succeeded,
    Failed,
    /// Stopped by a signal or a shutdown; nothing half-done was left.
    Interrupted,
    /// Not started: the previous job of the target was still running at its slot.
    Skipped,
}

impl Outcome {
    /// As the job history and the metrics spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Interrupted => "interrupted",
            Self::Skipped => "skipped",
        }
    }
}

/// One job, as recorded.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct JobRecord {
    pub id: String,
    /// `backup` (later: `drill`, `forget`, `check`).
    pub job: String,
    pub target: TargetName,
    pub trigger: Trigger,
    pub outcome: Outcome,
    #[serde(with = "lifeboat_core::time::moment")]
    pub started_at: Option<jiff::Timestamp>,
    #[serde(with = "lifeboat_core::time::moment")]
    pub finished_at: Option<jiff::Timestamp>,
    pub seconds: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<SnapshotId>,
    #[serde(default)]
    pub bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What else the job did (a check: which part of the packs it read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    pub host: String,
}

impl JobRecord {
    /// A record of `job` on `target` that started at `started_at`, to be completed.
    pub fn new(job: &str, target: &str, trigger: Trigger, started_at: jiff::Timestamp) -> Self {
        let stamp = started_at
            .strftime("%Y%m%dT%H%M%S%.3fZ")
            .to_string()
            .replace('.', "");
        Self {
            id: format!("{stamp}-{job}-{target}"),
            job: job.to_string(),
            target: target.into(),
            trigger,
            outcome: Outcome::Skipped,
            started_at: Some(started_at),
            finished_at: None,
            seconds: 0.0,
            snapshot: None,
            bytes: 0,
            error: None,
            detail: None,
            host: lifeboat_repo::hostname(),
        }
    }
}

impl JobRecord {
    /// Complete the record of a job that started at `started`: its outcome, and the
    /// snapshot and bytes it made or the error.
    fn finish(
        &mut self,
        started: std::time::Instant,
        outcome: Result<(Option<SnapshotId>, u64), &EngineError>,
    ) {
        self.finished_at = Some(jiff::Timestamp::now());
        self.seconds = started.elapsed().as_secs_f64();
        match outcome {
            Ok((snapshot, bytes)) => {
                self.outcome = Outcome::Succeeded;
                self.snapshot = snapshot;
                self.bytes = bytes;
            }
            Err(e) => {
                self.outcome = if e.failure == Failure::Interrupted {
                    Outcome::Interrupted
                } else {
                    Outcome::Failed
                };
                self.error = Some(e.full_message());
            }
        }
    }
}

/// Back up `name` as a recorded job: [`backup::backup`], then its record. A record that
/// cannot be stored is a warning; the backup's outcome stands.
pub async fn run_backup(
    engine: &Engine,
    name: &str,
    trigger: Trigger,
    cancel: &Cancel,
) -> EngineResult<BackupReport> {
    backup_job(engine, name, trigger, cancel).await.1
}

/// [`run_backup`], with the record as stored.
pub async fn backup_job(
    engine: &Engine,
    name: &str,
    trigger: Trigger,
    cancel: &Cancel,
) -> (JobRecord, EngineResult<BackupReport>) {
    let mut record = JobRecord::new("backup", name, trigger, jiff::Timestamp::now());
    let started = std::time::Instant::now();
    let outcome = backup::backup(engine, name, cancel).await;
    record.finish(
        started,
        outcome
            .as_ref()
            .map(|r| (Some(r.snapshot.clone()), r.bytes)),
    );
    store(engine, &record).await;
    (record, outcome)
}

/// The subject of jobs on the whole repository (`forget`, `check`) in the job history.
pub const REPOSITORY: &str = "repository";

/// A job `serve` runs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Job {
    Backup(String),
    Drill(String),
    /// Retention, then prune (`forget --prune`).
    Forget,
    /// A check of the repository, reading that much of the packs' content.
    Check(ReadData),
    /// `lifeboat copy NAME`: bring the copy `[copies.NAME]` up to date.
    Copy(String),
}

impl Job {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Backup(_) => "backup",
            Self::Drill(_) => "drill",
            Self::Forget => "forget",
            Self::Check(_) => "check",
            Self::Copy(_) => "copy",
        }
    }

    /// The target it is about; [`REPOSITORY`] for upkeep of the whole repository; the
    /// copy's name for a copy.
    pub fn subject(&self) -> &str {
        match self {
            Self::Backup(t) | Self::Drill(t) => t,
            // Each copy's history, alerts and metrics are its own.
            Self::Copy(name) => name,
            Self::Forget | Self::Check(_) => REPOSITORY,
        }
    }

    /// One job of a kind per subject at a time: the key of that.
    pub fn key(&self) -> String {
        format!("{}:{}", self.name(), self.subject())
    }
}

/// Run `job` and record it; the record says how it went.
pub async fn run_job(engine: &Engine, job: &Job, trigger: Trigger, cancel: &Cancel) -> JobRecord {
    if let Job::Backup(name) = job {
        return backup_job(engine, name, trigger, cancel).await.0;
    }
    let mut record = JobRecord::new(job.name(), job.subject(), trigger, jiff::Timestamp::now());
    let started = std::time::Instant::now();
    let outcome: Result<Option<SnapshotId>, EngineError> = match job {
        Job::Backup(_) => unreachable!("returned above"),
        Job::Drill(name) => {
            let request = crate::drill::DrillRequest {
                target: name.clone(),
                snapshot: None,
                time: None,
                jobs: 1,
                began: std::time::Instant::now(),
            };
            let report = crate::drill::drill(engine, &request, cancel).await;
            crate::drill::history::store(engine, &report, None).await;
            match (report.verdict, &report.error) {
                (lifeboat_drill::Verdict::Pass, _) => Ok(Some(report.snapshot.as_str().into())),
                (_, Some(e)) if cancel.is_cancelled() => Err(EngineError::interrupted(e.clone())),
                (v, error) => Err(EngineError::failed(error.clone().unwrap_or_else(|| {
                    let failed: Vec<&str> =
                        report.failed_checks().map(|c| c.name.as_str()).collect();
                    format!("verdict {}: {}", v.as_str(), failed.join(", "))
                }))),
            }
        }
        Job::Forget => crate::maintenance::forget(engine, true, false)
            .await
            .map(|_| None),
        Job::Copy(name) => {
            match crate::copies::copy(engine, name, false, false, lifeboat_repo::Bars::default())
                .await
            {
                Ok(r) => {
                    record.detail = Some(format!(
                        "copy `{name}`: {} snapshot(s) copied and verified, {} already there, {} bytes sent; {} side object(s)",
                        r.snapshots.copied.len(),
                        r.snapshots.already,
                        r.snapshots.bytes_sent,
                        r.side.objects
                    ));
                    Ok(None)
                }
                Err(e) => Err(e),
            }
        }
        Job::Check(read) => match crate::maintenance::check(engine, *read).await {
            Ok(c) if c.ok() => Ok(None),
            Ok(c) => Err(EngineError::verification(
                c.errors
                    .iter()
                    .chain(&c.manifest_problems)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("; "),
            )),
            Err(e) => Err(e),
        },
    };
    if let Job::Check(ReadData::Part { n, of }) = job {
        record.detail = Some(format!("read part {} of {of} of the packs", n + 1));
    }
    record.finish(
        started,
        outcome
            .as_ref()
            .map(|s| (s.clone().filter(|s| !s.is_empty()), 0)),
    );
    store(engine, &record).await;
    record
}

/// Store `record`; a failure to is a warning.
pub async fn store(engine: &Engine, record: &JobRecord) {
    let path = format!("{JOBS_DIR}/{}/{}.json", record.target, record.id);
    let bytes = serde_json::to_vec_pretty(record).unwrap_or_default();
    let stored = engine.repo.call(move |r| r.side().put(&path, &bytes)).await;
    if let Err(e) = stored {
        engine.events.event(Event::Warning {
            target: Some(record.target.clone()),
            text: format!("cannot record the job in the repository: {e}"),
        });
    }
}

/// How many records `serve` keeps per target; older ones are deleted as new ones come.
pub const KEPT_PER_TARGET: usize = 1000;

/// Delete all but the newest `keep` records of `subject` (record names start with their
/// start time, so name order is time order). A failure is a log line.
pub async fn prune(repo: &Arc<Repo>, subject: &str, keep: usize) {
    let dir = format!("{JOBS_DIR}/{subject}");
    let pruned = repo
        .call(move |r| -> Result<usize, lifeboat_repo::SideError> {
            let mut names = r.side().list(&dir)?;
            names.retain(|n| n.ends_with(".json"));
            if names.len() <= keep {
                return Ok(0);
            }
            names.sort();
            let old = names.len() - keep;
            for n in &names[..old] {
                // With Object Lock, a record still under retention stays until later.
                r.side()
                    .delete_unless_retained(&format!("{dir}/{n}"), false)?;
            }
            Ok(old)
        })
        .await;
    if let Err(e) = pruned {
        log::warn!("cannot prune the job history: {e}");
    }
}

/// Every recorded job (of `target`), oldest first. An unreadable record is skipped with a
/// log line.
pub async fn history(repo: &Arc<Repo>, target: Option<&str>) -> EngineResult<Vec<JobRecord>> {
    let target = target.map(str::to_string);
    repo.call(move |r| {
        let targets = match target {
            Some(t) => vec![t],
            None => r.side().list(JOBS_DIR)?,
        };
        let mut jobs = Vec::new();
        for t in targets {
            let dir = format!("{JOBS_DIR}/{t}");
            for n in r.side().list(&dir)? {
                if !n.ends_with(".json") {
                    continue;
                }
                if let Some(bytes) = r.side().get(&format!("{dir}/{n}"))? {
                    match serde_json::from_slice::<JobRecord>(&bytes) {
                        Ok(j) => jobs.push(j),
                        Err(e) => log::warn!("unreadable job record `{dir}/{n}`: {e}"),
                    }
                }
            }
        }
        jobs.sort_by(|a, b| a.started_at.cmp(&b.started_at).then(a.id.cmp(&b.id)));
        Ok::<_, lifeboat_repo::SideError>(jobs)
    })
    .await
    .map_err(|e| EngineError::from(e).context("cannot read the job history"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spellings_of_triggers_and_outcomes_are_serde_s() {
        for t in [Trigger::Command, Trigger::Schedule, Trigger::CatchUp] {
            assert_eq!(serde_json::to_value(t).unwrap(), t.as_str());
        }
        for o in [
            Outcome::Succeeded,
            Outcome::Failed,
            Outcome::Interrupted,
            Outcome::Skipped,
        ] {
            assert_eq!(serde_json::to_value(o).unwrap(), o.as_str());
        }
    }
}
