//! Backups, whatever the kind: which targets, one snapshot each through the target's
//! [`Kind`](crate::kinds::Kind), and the manifest written after every stream ended well.
//! Any failure deletes the snapshot: a failed backup never looks good.
//!
//! `store.rs` holds what each kind's backup builds on (the manifest's common part, storing
//! entries with the manifest last, the tags); this file, which dispatches to the kinds, is
//! built on it.

pub mod store;

use std::{sync::Arc, time::Instant};

use lifeboat_core::{Config, Manifest, Redacted, SnapshotId, TargetConfig, TargetName};
use lifeboat_repo::Repo;
use serde::Serialize;

use crate::{
    Engine, EngineError, EngineResult,
    cancel::Cancel,
    events::{Event, Op},
    kinds::{BackupJob, Prestarted, kind_of},
};

#[derive(Debug, Clone, Serialize)]
pub struct BackupReport {
    pub target: TargetName,
    pub snapshot: SnapshotId,
    pub kind: String,
    /// What it holds, in words ("3 tables, 1,200 rows").
    pub content: String,
    pub bytes: u64,
    pub stored_bytes: u64,
    /// PostgreSQL (logical): tables and rows in the dump.
    pub tables: usize,
    pub rows: u64,
    /// Files, objects, or a base backup's files.
    pub files: usize,
    pub seconds: f64,
}

/// The targets `wanted` names (all configured ones if none), or a usage error naming the
/// one that is not configured.
pub fn select_targets(config: &Config, wanted: &[String]) -> EngineResult<Vec<String>> {
    if wanted.is_empty() {
        if config.targets.is_empty() {
            return Err(EngineError::usage(
                "no targets configured",
                Some("add a `[targets.<name>]` table to the config".into()),
            ));
        }
        return Ok(config.targets.keys().cloned().collect());
    }
    for w in wanted {
        if !config.targets.contains_key(w) {
            return Err(unknown_target(config, w));
        }
    }
    Ok(wanted.to_vec())
}

/// "no target `x` in the config", with the ones there are.
pub fn unknown_target(config: &Config, name: &str) -> EngineError {
    let known: Vec<&str> = config.targets.keys().map(String::as_str).collect();
    EngineError::usage(
        format!("no target `{name}` in the config"),
        Some(format!("configured targets: {}", known.join(", "))),
    )
}

/// Back up the configured target `name`, reporting its start and end. A cancellation
/// abandons it: its snapshot is never written (the repository writes it last).
pub async fn backup(engine: &Engine, name: &str, cancel: &Cancel) -> EngineResult<BackupReport> {
    let target = engine
        .config
        .target(name)
        .ok_or_else(|| unknown_target(&engine.config, name))?;
    engine.events.event(Event::Started {
        op: Op::Backup,
        target: name.into(),
        kind: kind_of(target).tag().to_string(),
    });
    let outcome = match cancel
        .guard(take_backup(
            &engine.repo,
            name,
            target,
            None,
            false,
            engine.take_prestarted(name),
        ))
        .await
    {
        Ok(outcome) => outcome,
        Err(_) => Err(EngineError::interrupted(format!(
            "interrupted: the backup of `{name}` was stopped; no snapshot of it was written"
        ))),
    };
    let outcome = outcome.map_err(|e| {
        if e.message.contains(&format!("`{name}`")) {
            e
        } else {
            e.context(format!("backup of `{name}` failed"))
        }
    });
    engine.events.event(match &outcome {
        Ok(r) => Event::Finished {
            op: Op::Backup,
            target: name.to_string().into(),
            snapshot: Some(r.snapshot.clone()),
            seconds: r.seconds,
            bytes: r.bytes,
        },
        Err(e) => Event::Failed {
            op: Op::Backup,
            target: name.to_string().into(),
            error: e.message.clone(),
        },
    });
    outcome
}

/// Start the backup of the configured target `name` before the repository is open, where
/// its kind can ([`crate::kinds::Kind::prestart`]); give the result to the engine
/// ([`Engine::give_prestarted`]) once it is made. Needs a tokio runtime.
pub fn prestart(config: &Config, name: &str) -> Option<Prestarted> {
    let target = config.target(name)?;
    let repository = config
        .repository_location()
        .map(|l| l.url())
        .unwrap_or_default();
    kind_of(target).prestart(name, target, &repository)
}

/// Back up one target. `source` overrides where its data is (emergency backups of a restore
/// destination); `emergency` tags the snapshot so `latest` never picks it; `prestarted` is
/// what [`prestart`] started for it.
pub async fn take_backup(
    repo: &Arc<Repo>,
    name: &str,
    target: &TargetConfig,
    source: Option<Redacted>,
    emergency: bool,
    prestarted: Option<Prestarted>,
) -> EngineResult<BackupReport> {
    let started = Instant::now();
    let kind = kind_of(target);
    let (info, manifest_bytes) = kind
        .backup(BackupJob {
            repo,
            name,
            target,
            source,
            emergency,
            started_at: jiff::Timestamp::now(),
            prestarted,
        })
        .await?;
    let manifest = Manifest::from_json(&manifest_bytes).ok();
    let summary = manifest
        .as_ref()
        .map(|m| kind.summary(m))
        .unwrap_or_default();
    Ok(BackupReport {
        tables: summary.tables,
        rows: summary.rows,
        files: summary.files,
        target: name.to_string().into(),
        snapshot: info.id.clone(),
        kind: info.kind.clone(),
        content: summary.words,
        bytes: manifest.as_ref().map_or(0, Manifest::logical_bytes),
        stored_bytes: info.stored_bytes(),
        seconds: started.elapsed().as_secs_f64(),
    })
}
