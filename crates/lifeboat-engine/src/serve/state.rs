//! What `serve` knows between jobs, kept in memory and served from there (a scrape never
//! touches the repository): per target, the last good backup and the jobs' outcomes and
//! durations; rendered as Prometheus text.

use std::{
    collections::{BTreeMap, VecDeque},
    fmt::Write,
};

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
    /// job → whether its last run (not skipped, not interrupted) failed.
    pub last_failed: BTreeMap<String, bool>,
    /// job → when the run going on now started.
    pub running: BTreeMap<String, jiff::Timestamp>,
    /// When the recent good backups started, oldest first (the dashboard's RPO chart).
    pub backups: VecDeque<jiff::Timestamp>,
    /// A cdc target: when its capture last stored (or found nothing to store), and the
    /// transactions it stored since `serve` started it last.
    pub capture_stored: Option<jiff::Timestamp>,
    pub capture_transactions: u64,
}

/// Recent jobs and good backups kept for the dashboard, per `serve`.
pub const KEPT_RECENT: usize = 200;

#[derive(Debug, Default)]
pub struct State {
    pub targets: BTreeMap<String, TargetState>,
    /// The scheduler's last tick: `/healthz` answers 200 while it is recent.
    pub tick: Option<std::time::Instant>,
    /// The last evaluation of the objectives, as `status` makes it.
    pub status: Vec<crate::status::TargetStatus>,
    /// Each copy's lag, as `status` judged it last.
    pub copies: Vec<crate::copies::CopyLag>,
    /// Each probe's state and recent runs.
    pub probes: BTreeMap<String, crate::probes::status::Status>,
    /// The latest finished jobs, oldest first.
    pub recent: VecDeque<JobRecord>,
}

impl State {
    /// Count a finished job in.
    pub fn record(&mut self, job: &JobRecord) {
        self.recent.push_back(job.clone());
        if self.recent.len() > KEPT_RECENT {
            self.recent.pop_front();
        }
        // A probe's hook is no target's job: in the history, not in the target metrics.
        if job.trigger == crate::jobs::Trigger::Probe {
            return;
        }
        let t = self.targets.entry(job.target.to_string()).or_default();
        *t.jobs
            .entry((job.job.clone(), job.outcome.as_str().to_string()))
            .or_insert(0) += 1;
        if job.outcome != Outcome::Skipped {
            t.last_seconds.insert(job.job.clone(), job.seconds);
        }
        if matches!(job.outcome, Outcome::Succeeded | Outcome::Failed) {
            t.last_failed
                .insert(job.job.clone(), job.outcome == Outcome::Failed);
        }
        if job.outcome == Outcome::Succeeded && job.job == "backup" {
            t.last_success = job.started_at.or(t.last_success);
            t.last_bytes = job.bytes;
            if let Some(at) = job.started_at {
                t.backups.push_back(at);
                if t.backups.len() > KEPT_RECENT {
                    t.backups.pop_front();
                }
            }
        }
    }

    /// The Prometheus text exposition of the state at `now`.
    pub fn metrics(&self, now: jiff::Timestamp) -> String {
        let mut out = Metrics::default();
        let age =
            |at: jiff::Timestamp| (now.as_millisecond() - at.as_millisecond()) as f64 / 1000.0;
        // One sample per target that has a good backup.
        let backed_up: [(&str, &str, &ValueOf<'_>); 3] = [
            (
                "lifeboat_last_backup_success_timestamp_seconds",
                "When the newest good backup of the target started.",
                &|_, at| at.as_second() as f64,
            ),
            (
                "lifeboat_restorable_point_age_seconds",
                "Age of the newest good backup.",
                &|_, at| age(at),
            ),
            (
                "lifeboat_backup_bytes",
                "Bytes of the newest good backup.",
                &|t, _| t.last_bytes as f64,
            ),
        ];
        for (family, help, value) in backed_up {
            out.family(family, "gauge", help);
            for (name, t) in &self.targets {
                if let Some(at) = t.last_success {
                    out.sample(&[("target", name)], value(t, at));
                }
            }
        }
        out.family(
            "lifeboat_jobs_total",
            "counter",
            "Jobs run by this serve, by outcome.",
        );
        for (name, t) in &self.targets {
            for ((job, outcome), n) in &t.jobs {
                out.sample(&[("target", name), ("job", job), ("outcome", outcome)], n);
            }
        }
        out.family(
            "lifeboat_job_duration_seconds",
            "gauge",
            "How long the target's last job of each kind took.",
        );
        for (name, t) in &self.targets {
            for (job, s) in &t.last_seconds {
                out.sample(&[("target", name), ("job", job)], s);
            }
        }
        out.family(
            "lifeboat_last_job_failed",
            "gauge",
            "Whether the target's last job of each kind failed (1) or succeeded (0).",
        );
        for (name, t) in &self.targets {
            for (job, failed) in &t.last_failed {
                out.sample(&[("target", name), ("job", job)], u8::from(*failed));
            }
        }
        out.family(
            "lifeboat_job_running_seconds",
            "gauge",
            "How long the job running now has run.",
        );
        for (name, t) in &self.targets {
            for (job, since) in &t.running {
                out.sample(&[("target", name), ("job", job)], age(*since).max(0.0));
            }
        }
        out.family(
            "lifeboat_objective_problems",
            "gauge",
            "How many of the target's objectives are missed (no backup, RPO, RTO, drill-every, a failed drill, failing WAL archiving), as `status` judged it last.",
        );
        for row in &self.status {
            out.sample(&[("target", &row.target)], row.problems.len());
        }
        out.family(
            "lifeboat_wal_archiving_failing",
            "gauge",
            "Whether the server's WAL archiving is failing (physical targets whose server answered).",
        );
        for row in &self.status {
            if let Some(server) = row.wal.as_ref().and_then(|w| w.server.as_ref()) {
                out.sample(&[("target", &row.target)], u8::from(server.failing));
            }
        }
        out.family(
            "lifeboat_objective_met",
            "gauge",
            "Whether the target meets its declared objective (1) or not (0), as `status` judged it last.",
        );
        let met = |measured: Option<f64>, objective: f64| {
            u8::from(measured.is_some_and(|m| m <= objective))
        };
        for row in &self.status {
            if let Some(rpo) = row.rpo_objective_seconds {
                out.sample(
                    &[("target", &row.target), ("objective", "rpo")],
                    met(row.backup_age_seconds, rpo),
                );
            }
            if let Some(rto) = row.rto_objective_seconds {
                out.sample(
                    &[("target", &row.target), ("objective", "rto")],
                    met(row.rto_seconds, rto),
                );
            }
        }
        out.family(
            "lifeboat_last_drill_rto_seconds",
            "gauge",
            "The RTO the target's last drill measured.",
        );
        for row in &self.status {
            if let Some(rto) = row.rto_seconds {
                out.sample(&[("target", &row.target)], rto);
            }
        }
        out.family(
            "lifeboat_cdc_stored_age_seconds",
            "gauge",
            "A cdc target: seconds since its capture last stored changes or found none to store.",
        );
        for (name, t) in &self.targets {
            if let Some(at) = t.capture_stored {
                out.sample(&[("target", name)], age(at).max(0.0));
            }
        }
        out.family(
            "lifeboat_cdc_transactions",
            "gauge",
            "A cdc target: transactions its running capture has stored.",
        );
        for (name, t) in &self.targets {
            if t.capture_stored.is_some() {
                out.sample(&[("target", name)], t.capture_transactions);
            }
        }
        self.copy_metrics(&mut out);
        self.probe_metrics(&mut out);
        out.text
    }

    fn copy_metrics(&self, out: &mut Metrics) {
        out.family(
            "lifeboat_copy_lag_seconds",
            "gauge",
            "A copy ([copies.NAME]): age of the oldest snapshot it lacks, or of the WAL and changes archived since its side area was last copied whole; 0 when it holds everything.",
        );
        for c in &self.copies {
            out.sample(&[("copy", &c.copy)], c.lag_seconds);
        }
        out.family(
            "lifeboat_copy_missing_snapshots",
            "gauge",
            "A copy: snapshots of the repository it lacks.",
        );
        for c in &self.copies {
            out.sample(&[("copy", &c.copy)], c.missing);
        }
        out.family(
            "lifeboat_copy_objective_met",
            "gauge",
            "A copy with max-lag: whether its lag is within it (1) or not (0).",
        );
        for c in &self.copies {
            if c.max_lag_seconds.is_some() {
                out.sample(&[("copy", &c.copy)], u8::from(c.problems.is_empty()));
            }
        }
    }

    fn probe_metrics(&self, out: &mut Metrics) {
        use crate::probes::status::State as S;
        out.family(
            "lifeboat_probe_up",
            "gauge",
            "Whether the probe is up (1) or down (0); absent until it has run.",
        );
        for (name, p) in &self.probes {
            match p.state {
                S::Up => out.sample(&[("probe", name)], 1),
                S::Down => out.sample(&[("probe", name)], 0),
                S::Unknown => {}
            }
        }
        out.family(
            "lifeboat_probe_latency_seconds",
            "gauge",
            "How long the probe's last run took.",
        );
        for (name, p) in &self.probes {
            if let Some(last) = &p.last {
                out.sample(&[("probe", name)], last.latency_seconds);
            }
        }
        out.family(
            "lifeboat_queue_jobs",
            "gauge",
            "Jobs of each BullMQ queue by state (stuck: active longer than `stuck-after`), at the probe's last run.",
        );
        for (name, p) in &self.probes {
            for q in p.last.iter().flat_map(|l| &l.queues) {
                for (state, n) in q.states() {
                    out.sample(&[("probe", name), ("queue", &q.queue), ("state", state)], n);
                }
            }
        }
    }
}

/// A metric's value for a target from its state and its newest good backup's time.
type ValueOf<'a> = dyn Fn(&TargetState, jiff::Timestamp) -> f64 + 'a;

/// Prometheus text being written: a family's header, then its samples.
#[derive(Default)]
struct Metrics {
    text: String,
    /// The family being written.
    name: &'static str,
}

impl Metrics {
    fn family(&mut self, name: &'static str, kind: &str, help: &str) {
        self.name = name;
        let _ = writeln!(self.text, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        let labels: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
            .collect();
        let _ = writeln!(self.text, "{}{{{}}} {value}", self.name, labels.join(","));
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
        state
            .targets
            .get_mut("db")
            .unwrap()
            .running
            .insert("drill".into(), "2026-12-06T09:59:00Z".parse().unwrap());
        let text = state.metrics("2026-12-06T10:01:00Z".parse().unwrap());
        for line in [
            "lifeboat_last_backup_success_timestamp_seconds{target=\"db\"} 1796551200",
            "lifeboat_restorable_point_age_seconds{target=\"db\"} 60",
            "lifeboat_backup_bytes{target=\"db\"} 1234",
            "lifeboat_jobs_total{target=\"db\",job=\"backup\",outcome=\"succeeded\"} 1",
            "lifeboat_jobs_total{target=\"db\",job=\"backup\",outcome=\"failed\"} 2",
            "lifeboat_job_duration_seconds{target=\"db\",job=\"backup\"} 0.5",
            "lifeboat_last_job_failed{target=\"db\",job=\"backup\"} 1",
            "lifeboat_job_running_seconds{target=\"db\",job=\"drill\"} 120",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
        }
    }
}
