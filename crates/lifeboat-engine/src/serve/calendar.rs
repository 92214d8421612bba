//! The schedule's state, kept in the side area (`lifeboat/serve/calendar.json`) so that a
//! `serve` restarted, or started on a fresh host against the same repository, knows what
//! ran: per job, when it last started and last succeeded; and which part of the packs the
//! next check reads (`[maintenance] check-read-data`).

use std::{collections::BTreeMap, sync::Arc};

use lifeboat_repo::Repo;
use serde::{Deserialize, Serialize};

use crate::jobs::{JobRecord, Outcome};

/// Where the state is kept.
const PATH: &str = "serve/calendar.json";

/// One job's marks.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Mark {
    #[serde(default, with = "lifeboat_core::time::moment")]
    pub last_started: Option<jiff::Timestamp>,
    #[serde(default, with = "lifeboat_core::time::moment")]
    pub last_succeeded: Option<jiff::Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_outcome: Option<Outcome>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Calendar {
    /// Job key (`backup:app`, `check:repository`) → its marks.
    #[serde(default)]
    pub jobs: BTreeMap<String, Mark>,
    /// The part of the packs the next check reads (0-based, modulo the parts).
    #[serde(default)]
    pub next_check_part: u32,
}

impl Calendar {
    /// The state the last `serve` kept (empty if none or unreadable, with a log line).
    pub async fn load(repo: &Arc<Repo>) -> Self {
        match repo.call(|r| r.side().get(PATH)).await {
            Ok(Some(bytes)) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                log::warn!("unreadable schedule state `{PATH}`: {e}; starting afresh");
                Self::default()
            }),
            Ok(None) => Self::default(),
            Err(e) => {
                log::warn!("cannot read the schedule state: {e}");
                Self::default()
            }
        }
    }

    /// Mark a finished job (a skipped one changes nothing); a check that read a part of
    /// the packs moves on to the next part, whatever it found.
    pub fn record(&mut self, key: &str, job: &JobRecord, read_part: bool) {
        if job.outcome == Outcome::Skipped {
            return;
        }
        let mark = self.jobs.entry(key.to_string()).or_default();
        mark.last_started = job.started_at;
        mark.last_outcome = Some(job.outcome);
        if job.outcome == Outcome::Succeeded {
            mark.last_succeeded = job.started_at;
        }
        if read_part && matches!(job.outcome, Outcome::Succeeded | Outcome::Failed) {
            self.next_check_part = self.next_check_part.wrapping_add(1);
        }
    }

    /// When the job `key` last succeeded, as far as the kept state knows.
    pub fn last_succeeded(&self, key: &str) -> Option<jiff::Timestamp> {
        self.jobs.get(key).and_then(|m| m.last_succeeded)
    }

    pub fn bytes(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// Keep `bytes` (from [`Calendar::bytes`]).
    pub async fn keep(repo: &Arc<Repo>, bytes: Vec<u8>) {
        if let Err(e) = repo.call(move |r| r.side().put(PATH, &bytes)).await {
            log::warn!("cannot keep the schedule state: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::Trigger;

    fn job(outcome: Outcome, at: &str) -> JobRecord {
        let mut r = JobRecord::new(
            "check",
            "repository",
            Trigger::Schedule,
            at.parse().unwrap(),
        );
        r.outcome = outcome;
        r
    }

    #[test]
    fn marks_follow_outcomes_and_the_check_part_rotates() {
        let mut c = Calendar::default();
        for (outcome, hour) in [
            (Outcome::Succeeded, 10),
            (Outcome::Failed, 11),
            (Outcome::Skipped, 12),
            (Outcome::Interrupted, 13),
        ] {
            let at = format!("2026-12-06T{hour}:00:00Z");
            c.record("check:repository", &job(outcome, &at), true);
        }
        let mark = &c.jobs["check:repository"];
        assert_eq!(
            mark.last_succeeded.unwrap().to_string(),
            "2026-12-06T10:00:00Z"
        );
        assert_eq!(
            mark.last_started.unwrap().to_string(),
            "2026-12-06T13:00:00Z"
        );
        // A good and a failed check each read their part; skipped and interrupted did not.
        assert_eq!(c.next_check_part, 2);
        let back: Calendar = serde_json::from_slice(&c.bytes()).unwrap();
        assert_eq!(back.next_check_part, 2);
        assert_eq!(back.last_succeeded("check:repository"), mark.last_succeeded);
        assert_eq!(back.last_succeeded("backup:app"), None);
    }
}
