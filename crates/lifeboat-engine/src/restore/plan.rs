//! What a restore is asked ([`RestoreRequest`]) and what it decided, as data: the [`Plan`]
//! that is shown and reported, the [`Refusal`] where it would overwrite, the [`Emergency`]
//! backup to take first. No behaviour here but the words.

use std::path::PathBuf;

use lifeboat_core::{Redacted, SnapshotId, TargetConfig, TargetName};
use lifeboat_repo::SnapshotInfo;
use serde::Serialize;

use crate::format;

/// What to restore, where: from the command line, a recovery plan or the daemon.
#[derive(Debug, Clone, Default)]
pub struct RestoreRequest {
    pub target: String,
    /// A snapshot id (or a unique prefix), or `latest`.
    pub snapshot: String,
    /// The newest backup at or before this moment (physical targets: recover to it).
    pub time: Option<String>,
    /// PostgreSQL: the database; Redis: the server; bucket: `s3://bucket[/prefix]`.
    pub to: Option<Redacted>,
    /// Files, Redis, command output and physical targets: a folder.
    pub to_dir: Option<PathBuf>,
    /// PostgreSQL: only this table.
    pub table: Option<String>,
    /// Bucket: only the objects under this prefix, or this one object.
    pub prefix: Option<String>,
    pub key: Option<String>,
    /// Parallel `pg_restore` jobs into a database the restore creates.
    pub jobs: u32,
    pub keep_owners: bool,
    /// Point-in-time recovery of a physical target.
    pub recovery: Recovery,
}

/// Where recovery stops (besides the request's `time`) and what follows, as asked.
#[derive(Debug, Clone, Default)]
pub struct Recovery {
    pub lsn: Option<String>,
    pub xid: Option<String>,
    pub name: Option<String>,
    pub latest: bool,
    /// Pause at the target instead of promoting.
    pub pause: bool,
    /// Start the server and wait until it reaches the target.
    pub start: bool,
    pub port: Option<u16>,
    /// The restored server does not archive WAL.
    pub no_archive: bool,
}

/// The part of a plan that is shown (`--dry-run`, `--json`) and reported.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub target: TargetName,
    pub snapshot: SnapshotId,
    pub snapshot_time: String,
    /// The moment the restored data holds (RFC 3339): the snapshot's time, or for a
    /// point-in-time recovery the moment asked for.
    pub restored_point: String,
    pub destination: String,
    pub steps: Vec<String>,
    /// Existing data would be overwritten (needs `force`, takes an emergency backup).
    pub overwrites: bool,
    /// The kind's own facts (a physical plan's WAL range and `restore_command`, the
    /// objects a bucket restore writes).
    #[serde(flatten)]
    pub facts: serde_json::Map<String, serde_json::Value>,
    /// Further lines a dry run shows below the steps.
    #[serde(skip)]
    pub notes: Vec<String>,
}

impl Plan {
    pub fn new(
        target: &str,
        snapshot: &SnapshotInfo,
        destination: String,
        steps: Vec<String>,
        overwrites: bool,
    ) -> Self {
        Self {
            target: target.to_string().into(),
            snapshot: snapshot.id.clone(),
            snapshot_time: format::time(&snapshot.time),
            restored_point: snapshot.time.timestamp().to_string(),
            destination,
            steps,
            overwrites,
            facts: Default::default(),
            notes: Vec::new(),
        }
    }

    /// The plan as lines: the header, the destination, the numbered steps.
    pub fn lines(&self, dry_run: bool) -> Vec<String> {
        let mut lines = vec![
            format!(
                "{}restore `{}` from snapshot {} ({})",
                if dry_run { "plan (dry run): " } else { "" },
                self.target,
                format::short(&self.snapshot),
                self.snapshot_time
            ),
            format!("  into {}", self.destination),
        ];
        for (i, s) in self.steps.iter().enumerate() {
            lines.push(format!("  {}. {s}", i + 1));
        }
        lines
    }
}

/// Why the restore would not go ahead as planned.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub message: String,
    pub hint: String,
    /// `force` overrides it (after an emergency backup); otherwise nothing does.
    pub forceable: bool,
    /// In a few words, for a dry run: "the destination holds data".
    pub why: String,
}

impl Refusal {
    /// Whether it stops a run with this `force`.
    pub fn stands(&self, force: bool) -> bool {
        !(self.forceable && force)
    }
}

/// The emergency backup taken before a restore overwrites.
#[derive(Debug, Clone)]
pub struct Emergency {
    /// What to back up: the target's config, or one made for what is overwritten.
    pub target: TargetConfig,
    /// Where the data is, when not where `target` says.
    pub source: Option<Redacted>,
    /// With `force`, a failed emergency backup is a warning and the restore goes on (the
    /// kind cannot know what it overwrites, so the backup may not be possible).
    pub optional_with_force: bool,
    /// What is saved, for the step line: "database `shop`".
    pub what: String,
}
