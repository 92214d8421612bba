//! The drill report: what was restored, each phase's timing, each check's result, the
//! measured RTO and RPO against the target's objectives, and the verdict.
//!
//! Stored as JSON in the repository's side area (`lifeboat/drills/<target>/<id>/`), next
//! to its Markdown and HTML renderings, so the history survives losing the host.

use serde::{Deserialize, Serialize};

pub const REPORT_FORMAT: u32 = 1;

/// The outcome of a drill. `Fail`: a check failed or an objective was missed (exit 3).
/// `Error`: the drill could not run to the end (exit 1), e.g. no scratch server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Pass,
    Fail,
    Error,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Fail => "fail",
            Self::Error => "error",
        }
    }

    /// The process exit code of a drill with this verdict.
    pub fn exit_code(self) -> i32 {
        match self {
            Self::Pass => 0,
            Self::Fail => 3,
            Self::Error => 1,
        }
    }
}

/// One timed phase: provision, fetch, restore, recovery, checks, teardown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Phase {
    pub name: String,
    /// Seconds from the drill's start to the phase's start.
    pub start: f64,
    pub seconds: f64,
    pub ok: bool,
}

/// One check and its result. `kind`: `restore`, `rows`, `sql`, `command`, `amcheck`,
/// `constraints`, `indexes`, `files`, `objective`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct CheckResult {
    pub name: String,
    pub kind: String,
    pub passed: bool,
    /// What was found, e.g. "5,000,000 rows = manifest" or "expected 0, got 3".
    pub detail: String,
}

/// An objective against what the drill measured. `met` is `None` when nothing is
/// declared or nothing could be measured.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Objective {
    pub objective_seconds: Option<f64>,
    pub measured_seconds: Option<f64>,
    pub met: Option<bool>,
}

impl Objective {
    pub fn new(objective_seconds: Option<f64>, measured_seconds: Option<f64>) -> Self {
        let met = match (objective_seconds, measured_seconds) {
            (Some(o), Some(m)) => Some(m <= o),
            _ => None,
        };
        Self {
            objective_seconds,
            measured_seconds,
            met,
        }
    }

    pub fn missed(&self) -> bool {
        self.met == Some(false)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct DrillReport {
    pub format: u32,
    /// Unique and sortable: `<UTC start, 20261122T061502Z>-<target>`.
    pub id: String,
    pub target: String,
    /// The kind, as snapshot tags spell it: `logical`, `physical`, `files`, ... (reports
    /// written before 0.2 say `postgres-logical`, `postgres-physical`)
    pub kind: String,
    /// RFC 3339.
    pub started_at: String,
    pub finished_at: String,
    pub host: String,
    pub lifeboat_version: String,
    /// Full id of the snapshot restored (empty if none could be chosen).
    pub snapshot: String,
    /// The newest restorable point of the restored state (RFC 3339): for a logical dump
    /// the moment of its exported snapshot.
    pub restorable_at: String,
    /// What the drill restored into, credentials removed.
    pub scratch: String,
    pub phases: Vec<Phase>,
    pub checks: Vec<CheckResult>,
    /// RTO: drill start → verified. RPO: drill start − `restorable_at`.
    pub rto: Objective,
    pub rpo: Objective,
    pub verdict: Verdict,
    /// Why the drill could not finish (verdict `error`), or was interrupted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl DrillReport {
    /// Fail if any check failed or an objective was missed; `Error` wins.
    pub fn decide(&mut self) {
        if self.error.is_some() {
            self.verdict = Verdict::Error;
        } else if self.checks.iter().any(|c| !c.passed) || self.rto.missed() || self.rpo.missed() {
            self.verdict = Verdict::Fail;
        } else {
            self.verdict = Verdict::Pass;
        }
    }

    pub fn failed_checks(&self) -> impl Iterator<Item = &CheckResult> {
        self.checks.iter().filter(|c| !c.passed)
    }

    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).unwrap_or_default();
        v.push(b'\n');
        v
    }

    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    pub fn history_point(&self) -> HistoryPoint {
        HistoryPoint {
            id: self.id.clone(),
            started_at: self.started_at.clone(),
            verdict: self.verdict,
            rto_seconds: self.rto.measured_seconds,
            rpo_seconds: self.rpo.measured_seconds,
        }
    }
}

/// One earlier drill of the same target, for the trend charts and `lifeboat drills`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct HistoryPoint {
    pub id: String,
    pub started_at: String,
    pub verdict: Verdict,
    pub rto_seconds: Option<f64>,
    pub rpo_seconds: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> DrillReport {
        DrillReport {
            format: REPORT_FORMAT,
            id: "20261122T061502Z-app".into(),
            target: "app".into(),
            kind: "logical".into(),
            started_at: "2026-11-22T06:15:02Z".into(),
            finished_at: "2026-11-22T06:15:14Z".into(),
            host: "db1".into(),
            lifeboat_version: "0.1.0".into(),
            snapshot: "ab".repeat(32),
            restorable_at: "2026-11-22T06:00:00Z".into(),
            scratch: "throwaway PostgreSQL 15 on 127.0.0.1:5999".into(),
            phases: vec![Phase {
                name: "restore".into(),
                start: 1.0,
                seconds: 4.0,
                ok: true,
            }],
            checks: vec![CheckResult {
                name: "rows public.users".into(),
                kind: "rows".into(),
                passed: true,
                detail: "2,000 = manifest".into(),
            }],
            rto: Objective::new(Some(7200.0), Some(12.0)),
            rpo: Objective::new(Some(900.0), Some(902.0)),
            verdict: Verdict::Error,
            error: None,
        }
    }

    #[test]
    fn verdict_follows_checks_and_objectives() {
        let mut r = sample();
        r.decide();
        assert_eq!(r.verdict, Verdict::Fail, "RPO 902 s > 900 s is a miss");
        r.rpo = Objective::new(Some(900.0), Some(10.0));
        r.decide();
        assert_eq!(r.verdict, Verdict::Pass);
        r.checks[0].passed = false;
        r.decide();
        assert_eq!(r.verdict, Verdict::Fail);
        r.error = Some("no scratch server".into());
        r.decide();
        assert_eq!(r.verdict, Verdict::Error);
        assert_eq!(r.verdict.exit_code(), 1);
    }

    #[test]
    fn objective_without_declaration_is_neither_met_nor_missed() {
        let o = Objective::new(None, Some(3.0));
        assert_eq!(o.met, None);
        assert!(!o.missed());
    }

    #[test]
    fn json_round_trip() {
        let r = sample();
        assert_eq!(DrillReport::from_json(&r.to_json()).unwrap(), r);
    }
}
