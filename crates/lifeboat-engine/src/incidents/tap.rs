//! The engine's events as timeline entries: a [`Tap`] passes every event on to the
//! reporter it wraps and keeps those an incident's timeline wants (work that finished or
//! failed, restore plans, emergency backups, warnings); [`Tap::take`] hands them over to be
//! added to the open incident when the command is done.

use std::sync::Mutex;

use serde_json::json;

use super::Entry;
use crate::events::{Event, Events, Reporter};

pub struct Tap {
    inner: Events,
    kept: Mutex<Vec<Entry>>,
}

impl Tap {
    pub fn new(inner: Events) -> Self {
        Self {
            inner,
            kept: Mutex::new(Vec::new()),
        }
    }

    /// The entries kept so far (and no more of them).
    pub fn take(&self) -> Vec<Entry> {
        std::mem::take(&mut *self.kept.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl Reporter for Tap {
    fn event(&self, event: Event) {
        if let Some(entry) = entry_of(&event) {
            self.kept
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(entry);
        }
        self.inner.event(event);
    }
}

/// The timeline entry an event makes, if it makes one.
pub fn entry_of(event: &Event) -> Option<Entry> {
    Some(match event {
        Event::Planned { plan } => Entry::new(
            "restore-planned",
            Some(&plan.target),
            format!(
                "restore of `{}` from snapshot {} (taken {}) into {}",
                plan.target,
                plan.snapshot.short(),
                plan.snapshot_time,
                plan.destination
            ),
        )
        .with(json!({
            "snapshot": plan.snapshot, "snapshot_time": plan.restored_point,
            "destination": plan.destination, "overwrites": plan.overwrites,
        })),
        Event::EmergencyBackup {
            target,
            snapshot,
            bytes,
        } => Entry::new(
            "emergency-backup",
            Some(target),
            format!(
                "emergency backup of `{target}` before the restore: snapshot {}",
                snapshot.short()
            ),
        )
        .with(json!({ "snapshot": snapshot, "bytes": bytes })),
        Event::Finished {
            op,
            target,
            snapshot,
            seconds,
            bytes,
        } => Entry::new(
            op.as_str(),
            Some(target),
            format!(
                "{} of `{target}` finished in {}{}",
                op.as_str(),
                lifeboat_drill::render::seconds(*seconds),
                snapshot
                    .as_ref()
                    .map(|s| format!(" (snapshot {})", s.short()))
                    .unwrap_or_default()
            ),
        )
        .with(json!({ "ok": true, "snapshot": snapshot, "seconds": seconds, "bytes": bytes })),
        Event::Failed { op, target, error } => Entry::new(
            op.as_str(),
            Some(target),
            format!("{} of `{target}` failed: {error}", op.as_str()),
        )
        .with(json!({ "ok": false, "error": error })),
        Event::Warning { target, text } => Entry::new("warning", target.as_deref(), text.clone()),
        Event::Started { .. } | Event::Step { .. } => return None,
    })
}
