//! What the engine reports while it works: typed events, not printed lines. The CLI renders
//! them as its output (progress on stderr, the plan and results on stdout); the daemon
//! records them into job history, alerts and metrics. The engine never writes to stdout.

use std::sync::Arc;

use lifeboat_core::{SnapshotId, TargetName};
use serde::Serialize;

use crate::restore::plan::Plan;

/// The operation an event belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Backup,
    Restore,
    Drill,
    /// A recovery plan (`recover`).
    Recover,
    /// A cdc target's change capture (`cdc run`).
    Capture,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Backup => "backup",
            Self::Restore => "restore",
            Self::Drill => "drill",
            Self::Recover => "recover",
            Self::Capture => "capture",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// Work on a target began.
    Started {
        op: Op,
        target: TargetName,
        kind: String,
    },
    /// A phase of it, in words: "taking an emergency backup of `shop`".
    Step {
        op: Op,
        target: TargetName,
        text: String,
    },
    /// A restore's plan, decided before anything is changed: what runs next is exactly it.
    Planned { plan: Box<Plan> },
    /// What was there before a restore overwrote it is saved in this snapshot.
    EmergencyBackup {
        target: TargetName,
        snapshot: SnapshotId,
        bytes: u64,
    },
    /// Something the person should know; the operation goes on.
    Warning {
        target: Option<TargetName>,
        text: String,
    },
    /// Work on a target ended well.
    Finished {
        op: Op,
        target: TargetName,
        snapshot: Option<SnapshotId>,
        seconds: f64,
        bytes: u64,
    },
    /// Work on a target failed; nothing it started is left half-done.
    Failed {
        op: Op,
        target: TargetName,
        error: String,
    },
}

/// Where events go. Called from any task or thread, in the order they happen per operation.
pub trait Reporter: Send + Sync {
    fn event(&self, event: Event);
}

/// Drops every event (tests, and callers that only want the result).
pub struct Silent;

impl Reporter for Silent {
    fn event(&self, _: Event) {}
}

/// Keeps every event, for tests and job history.
#[derive(Default)]
pub struct Recorded(pub std::sync::Mutex<Vec<Event>>);

impl Reporter for Recorded {
    fn event(&self, event: Event) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(event);
    }
}

/// A shared reporter.
pub type Events = Arc<dyn Reporter>;
