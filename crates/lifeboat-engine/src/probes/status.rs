//! From runs to a state: a probe is down after `fail-after` failed runs in a row and up
//! again after `recover-after` good ones. Its recent runs are kept for the dashboard.

use std::collections::VecDeque;

use serde::Serialize;

use super::Finding;

/// Runs kept per probe (at 30 s, an hour).
pub const KEPT_RUNS: usize = 120;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// Not enough runs yet.
    Unknown,
    Up,
    Down,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Up => "up",
            Self::Down => "down",
        }
    }
}

/// One run, as the history keeps it.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    #[serde(with = "lifeboat_core::time::moment")]
    pub at: Option<jiff::Timestamp>,
    pub ok: bool,
    pub latency_seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub state: State,
    /// Failed runs in a row (0 after a good one).
    pub failures: u32,
    /// Good runs in a row.
    pub successes: u32,
    /// When the state began.
    #[serde(with = "lifeboat_core::time::moment")]
    pub since: Option<jiff::Timestamp>,
    pub last: Option<Finding>,
    pub history: VecDeque<Run>,
    /// What the hook of the latest change did (for the alert).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hook: Option<String>,
    /// The latest change's hook is running: its alert waits for it.
    pub hook_pending: bool,
    /// The hook the last run of which was not skipped (`on-down`, `on-up`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_hook: Option<String>,
    /// A hook the cooldown held back, run when the cooldown ends if the state still calls
    /// for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owed: Option<String>,
}

impl Status {
    /// A probe not yet run; `down` when the last `serve` left it down (its alert still
    /// firing), so it is not announced, nor its hook run, a second time.
    pub fn new(down: bool) -> Self {
        Self {
            state: if down { State::Down } else { State::Unknown },
            failures: 0,
            successes: 0,
            since: None,
            last: None,
            history: VecDeque::new(),
            hook: None,
            hook_pending: false,
            // Left down by the last `serve`: its `on-down` ran then.
            last_hook: down.then(|| "on-down".to_string()),
            owed: None,
        }
    }

    /// Count `finding` in: the new state, if it changed.
    pub fn record(
        &mut self,
        finding: &Finding,
        fail_after: u32,
        recover_after: u32,
    ) -> Option<State> {
        if finding.ok {
            self.successes += 1;
            self.failures = 0;
        } else {
            self.failures += 1;
            self.successes = 0;
        }
        if self.history.len() == KEPT_RUNS {
            self.history.pop_front();
        }
        self.history.push_back(Run {
            at: finding.at,
            ok: finding.ok,
            latency_seconds: finding.latency_seconds,
        });
        self.last = Some(finding.clone());
        let next = match self.state {
            State::Down if self.successes >= recover_after => State::Up,
            State::Up | State::Unknown if self.failures >= fail_after => State::Down,
            State::Unknown if self.successes >= 1 => State::Up,
            s => s,
        };
        if next == self.state {
            return None;
        }
        self.state = next;
        self.since = finding.at;
        Some(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(ok: bool) -> Finding {
        Finding {
            probe: "db".into(),
            kind: "tcp",
            ok,
            at: Some(jiff::Timestamp::now()),
            latency_seconds: 0.01,
            detail: String::new(),
            problems: Vec::new(),
            queues: Vec::new(),
        }
    }

    #[test]
    fn down_after_fail_after_failures_in_a_row_and_up_after_recover_after() {
        let mut s = Status::new(false);
        assert_eq!(s.record(&run(true), 2, 2), Some(State::Up));
        assert_eq!(s.record(&run(false), 2, 2), None, "one failure is not down");
        assert_eq!(s.record(&run(true), 2, 2), None);
        assert_eq!(s.record(&run(false), 2, 2), None, "the count restarted");
        assert_eq!(s.record(&run(false), 2, 2), Some(State::Down));
        assert_eq!(s.record(&run(false), 2, 2), None, "down once, not per run");
        assert_eq!(s.record(&run(true), 2, 2), None, "recover-after is 2");
        assert_eq!(s.record(&run(true), 2, 2), Some(State::Up));
        assert_eq!(s.history.len(), 8);
    }

    #[test]
    fn a_probe_left_down_by_the_last_serve_is_not_down_again() {
        let mut s = Status::new(true);
        assert_eq!(s.record(&run(false), 1, 1), None);
        assert_eq!(s.record(&run(true), 1, 1), Some(State::Up));
        let mut fresh = Status::new(false);
        assert_eq!(fresh.record(&run(false), 1, 1), Some(State::Down));
    }

    #[test]
    fn the_history_keeps_the_latest_runs() {
        let mut s = Status::new(false);
        for _ in 0..KEPT_RUNS + 5 {
            s.record(&run(true), 1, 1);
        }
        assert_eq!(s.history.len(), KEPT_RUNS);
    }
}
