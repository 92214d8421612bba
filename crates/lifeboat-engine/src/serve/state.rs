//! What `serve` knows between jobs, kept in memory and served from there (a scrape never
//! touches the repository): per target, the last good backup and the jobs' outcomes and
//! durations; rendered as Prometheus text.

use std::{collections::BTreeMap, fmt::Write};

use crate::jobs::{JobRecord, Outcome};

#[derive(Debug, Default, Clone)]
pub struct TargetState {
    /// When the newest good backup started (its restorable point, roughly).
    pub last_success: Option<jiff::Timestamp>,
    pub last_bytes: u64,
    /// (job, outcome) → count since `serve` started.
    pub jobs: BTreeMap<(String, String), u64>,
    /// job → seconds of its last run.
    pub last_seconds: BTreeMap<String, f64>,
    pub running: bool,
}

#[derive(Debug, Default)]
pub struct State {
    pub targets: BTreeMap<String, TargetState>,
    /// The scheduler's last tick: `/healthz` answers 200 while it is recent.
    pub tick: Option<std::time::Instant>,
    /// The last evaluation of the objectives, as `status` makes it.
    pub status: Vec<crate::status::TargetStatus>,
}

impl State {
    /// Count a finished job in.
    pub fn record(&mut self, job: &JobRecord) {
        let t = self.targets.entry(job.target.to_string()).or_default();
        *t.jobs
            .entry((job.job.clone(), job.outcome.as_str().to_string()))
            .or_insert(0) += 1;
        if job.outcome != Outcome::Skipped {
            t.last_seconds.insert(job.job.clone(), job.seconds);
        }
        if job.outcome == Outcome::Succeeded && job.job == "backup" {
            t.last_success = job.started_at.or(t.last_success);
            t.last_bytes = job.bytes;
        }
    }

    /// The Prometheus text exposition of the state at `now`.
    pub fn metrics(&self, now: jiff::Timestamp) -> String {
        let mut out = String::new();
        let label = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
        let _ = writeln!(
            out,
            "# HELP lifeboat_last_backup_success_timestamp_seconds When the newest good backup of the target started.\n# TYPE lifeboat_last_backup_success_timestamp_seconds gauge"
        );
        for (name, t) in &self.targets {
            if let Some(at) = t.last_success {
                let _ = writeln!(
                    out,
                    "lifeboat_last_backup_success_timestamp_seconds{{target=\"{}\"}} {}",
                    label(name),
                    at.as_second()
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP lifeboat_restorable_point_age_seconds Age of the newest good backup.\n# TYPE lifeboat_restorable_point_age_seconds gauge"
        );
        for (name, t) in &self.targets {
            if let Some(at) = t.last_success {
                let _ = writeln!(
                    out,
                    "lifeboat_restorable_point_age_seconds{{target=\"{}\"}} {}",
                    label(name),
                    (now.as_millisecond() - at.as_millisecond()) as f64 / 1000.0
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP lifeboat_backup_bytes Bytes of the newest good backup.\n# TYPE lifeboat_backup_bytes gauge"
        );
        for (name, t) in &self.targets {
            if t.last_success.is_some() {
                let _ = writeln!(
                    out,
                    "lifeboat_backup_bytes{{target=\"{}\"}} {}",
                    label(name),
                    t.last_bytes
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP lifeboat_jobs_total Jobs run by this serve, by outcome.\n# TYPE lifeboat_jobs_total counter"
        );
        for (name, t) in &self.targets {
            for ((job, outcome), n) in &t.jobs {
                let _ = writeln!(
                    out,
                    "lifeboat_jobs_total{{target=\"{}\",job=\"{}\",outcome=\"{}\"}} {n}",
                    label(name),
                    label(job),
                    label(outcome)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP lifeboat_job_duration_seconds How long the target's last job of each kind took.\n# TYPE lifeboat_job_duration_seconds gauge"
        );
        for (name, t) in &self.targets {
            for (job, s) in &t.last_seconds {
                let _ = writeln!(
                    out,
                    "lifeboat_job_duration_seconds{{target=\"{}\",job=\"{}\"}} {s}",
                    label(name),
                    label(job)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP lifeboat_objective_met Whether the target meets its declared objective (1) or not (0), as `status` judged it last.\n# TYPE lifeboat_objective_met gauge"
        );
        for row in &self.status {
            let met = |measured: Option<f64>, objective: f64| {
                u8::from(measured.is_some_and(|m| m <= objective))
            };
            if let Some(rpo) = row.rpo_objective_seconds {
                let _ = writeln!(
                    out,
                    "lifeboat_objective_met{{target=\"{}\",objective=\"rpo\"}} {}",
                    label(&row.target),
                    met(row.backup_age_seconds, rpo)
                );
            }
            if let Some(rto) = row.rto_objective_seconds {
                let _ = writeln!(
                    out,
                    "lifeboat_objective_met{{target=\"{}\",objective=\"rto\"}} {}",
                    label(&row.target),
                    met(row.rto_seconds, rto)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP lifeboat_last_drill_rto_seconds The RTO the target's last drill measured.\n# TYPE lifeboat_last_drill_rto_seconds gauge"
        );
        for row in &self.status {
            if let Some(rto) = row.rto_seconds {
                let _ = writeln!(
                    out,
                    "lifeboat_last_drill_rto_seconds{{target=\"{}\"}} {rto}",
                    label(&row.target)
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::{JobRecord, Trigger};

    #[test]
    fn jobs_are_counted_and_the_newest_good_backup_is_exposed() {
        let at: jiff::Timestamp = "2026-12-06T10:00:00Z".parse().unwrap();
        let mut state = State::default();
        let mut ok = JobRecord::new("backup", "db", Trigger::Schedule, at);
        ok.outcome = Outcome::Succeeded;
        ok.bytes = 1234;
        ok.seconds = 2.5;
        let mut failed = JobRecord::new("backup", "db", Trigger::Schedule, at);
        failed.outcome = Outcome::Failed;
        failed.seconds = 0.5;
        state.record(&ok);
        state.record(&failed);
        state.record(&failed);
        let text = state.metrics("2026-12-06T10:01:00Z".parse().unwrap());
        for line in [
            "lifeboat_last_backup_success_timestamp_seconds{target=\"db\"} 1796551200",
            "lifeboat_restorable_point_age_seconds{target=\"db\"} 60",
            "lifeboat_backup_bytes{target=\"db\"} 1234",
            "lifeboat_jobs_total{target=\"db\",job=\"backup\",outcome=\"succeeded\"} 1",
            "lifeboat_jobs_total{target=\"db\",job=\"backup\",outcome=\"failed\"} 2",
            "lifeboat_job_duration_seconds{target=\"db\",job=\"backup\"} 0.5",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
        }
    }
}
