//! Restores, whatever the kind: plan, then act.
//!
//! [`plan`] asks the target's kind for a [`RestorePlan`]: which snapshot (`latest` = the
//! newest complete, non-emergency one; `--time T` = the newest taken at or before T), into
//! where, the steps, whether it overwrites, what is saved first. It changes nothing:
//! `--dry-run` prints it. [`execute`] runs exactly that plan: it refuses to overwrite without
//! `force`, takes the emergency backup, then the kind's own act (load, verify).

use std::path::PathBuf;

use lifeboat_core::{Manifest, Redacted, TargetConfig};
use lifeboat_repo::{LockKind, SnapshotInfo};
use serde::Serialize;

use crate::{
    Engine, EngineError, EngineResult,
    backup::{take_backup, unknown_target},
    cancel::Cancel,
    events::{Event, Op},
    format,
    kinds::{BoxFuture, kind_of},
};

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
    pub recovery: crate::kinds::postgres_physical::Recovery,
}

/// The part of a plan that is shown (`--dry-run`, `--json`) and reported.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub target: String,
    pub snapshot: String,
    pub snapshot_time: String,
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
            target: target.to_string(),
            snapshot: snapshot.id.clone(),
            snapshot_time: format::time(&snapshot.time),
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

/// What the kind's act gets: the engine, the token, and the emergency snapshot.
pub struct ActCx {
    pub engine: Engine,
    pub cancel: Cancel,
    pub emergency_snapshot: Option<String>,
}

/// The kind's part of carrying out a plan.
pub type Act = Box<dyn FnOnce(ActCx) -> BoxFuture<'static, EngineResult<RestoreOutcome>> + Send>;

/// Make an [`Act`] of an async closure.
pub fn act<F, Fut>(f: F) -> Act
where
    F: FnOnce(ActCx) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = EngineResult<RestoreOutcome>> + Send + 'static,
{
    Box::new(move |cx| Box::pin(f(cx)))
}

/// A decided restore: shown, then carried out exactly.
pub struct RestorePlan {
    pub plan: Plan,
    pub refusal: Option<Refusal>,
    pub emergency: Option<Emergency>,
    act: Act,
}

impl RestorePlan {
    pub fn new(plan: Plan, act: Act) -> Self {
        Self {
            plan,
            refusal: None,
            emergency: None,
            act,
        }
    }

    /// Whether the real run would refuse with this `force`.
    pub fn refuses(&self, force: bool) -> Option<&Refusal> {
        self.refusal.as_ref().filter(|r| r.stands(force))
    }
}

/// What a restore did.
#[derive(Debug, Default)]
pub struct RestoreOutcome {
    /// Everything read back matched the manifest.
    pub verified: bool,
    /// What failed verification, when it did: "restored row counts differ from the manifest".
    pub problem: Option<String>,
    /// The kind's results, as JSON fields.
    pub facts: serde_json::Map<String, serde_json::Value>,
    /// The same, as lines for a person.
    pub lines: Vec<String>,
}

impl RestoreOutcome {
    /// An outcome: `problem` is said only when not `verified`; `facts` is a JSON object.
    pub fn new(
        verified: bool,
        problem: &str,
        facts: serde_json::Value,
        lines: Vec<String>,
    ) -> Self {
        Self {
            verified,
            problem: (!verified).then(|| problem.to_string()),
            facts: match facts {
                serde_json::Value::Object(o) => o,
                _ => Default::default(),
            },
            lines,
        }
    }
}

/// Choose a snapshot for `request` and decide the restore. Changes nothing.
pub async fn plan(engine: &Engine, request: &RestoreRequest) -> EngineResult<RestorePlan> {
    let target = engine
        .config
        .target(&request.target)
        .ok_or_else(|| unknown_target(&engine.config, &request.target))?;
    kind_of(target).plan_restore(engine, request, target).await
}

/// The snapshot `request` names and its complete manifest: what most kinds restore from.
pub async fn chosen_snapshot(
    engine: &Engine,
    request: &RestoreRequest,
) -> EngineResult<(SnapshotInfo, Manifest)> {
    // `--time T`: the newest backup taken at or before T.
    let at = match &request.time {
        Some(_) if request.snapshot != "latest" => {
            return Err(EngineError::usage(
                "give `--snapshot` or `--time`, not both",
                None,
            ));
        }
        Some(t) => Some(crate::time::parse_time(t).map_err(|e| {
            EngineError::usage(e, Some("RFC 3339, or `2026-11-22 10:01:00+00`".into()))
        })?),
        None => None,
    };
    let (r, name, wanted) = (
        engine.repo.clone(),
        request.target.clone(),
        request.snapshot.clone(),
    );
    let snapshot = r
        .call(move |r| r.find_snapshot_at(&name, &wanted, at))
        .await
        .map_err(|e| {
            EngineError::from(e)
                .context("cannot choose a snapshot")
                .with_hint(format!(
                    "list them with `lifeboat snapshots {}`",
                    request.target
                ))
        })?;
    let manifest = match &snapshot.manifest {
        Ok(m) if m.complete => m.clone(),
        Ok(_) => {
            return Err(EngineError::failure(
                format!("snapshot `{}` is an incomplete backup", snapshot.short_id()),
                Some("choose another with `--snapshot`".into()),
            ));
        }
        Err(e) => {
            return Err(EngineError::failure(
                format!(
                    "snapshot `{}` has no readable manifest: {e}",
                    snapshot.short_id()
                ),
                None,
            ));
        }
    };
    Ok((snapshot, manifest))
}

/// [`chosen_snapshot`] and its manifest's section for the kind (`part`), or an error naming
/// the snapshot when it holds another kind's.
pub async fn chosen_section<T: Clone>(
    engine: &Engine,
    request: &RestoreRequest,
    part: fn(&Manifest) -> &Option<T>,
    what: &str,
) -> EngineResult<(SnapshotInfo, T)> {
    let (snapshot, manifest) = chosen_snapshot(engine, request).await?;
    let section = crate::snapshot_io::section(part(&manifest), &snapshot, what)?;
    Ok((snapshot, section))
}

/// What a restore did, with its plan and the emergency snapshot.
#[derive(Debug)]
pub struct Restored {
    pub plan: Plan,
    pub emergency_snapshot: Option<String>,
    pub outcome: RestoreOutcome,
}

/// Carry out `plan`: refuse where it overwrites without `force`, save what is there, act.
pub async fn execute(
    engine: &Engine,
    plan: RestorePlan,
    force: bool,
    cancel: &Cancel,
) -> EngineResult<Restored> {
    let RestorePlan {
        plan,
        refusal,
        emergency,
        act,
    } = plan;
    if let Some(r) = refusal.filter(|r| r.stands(force)) {
        return Err(EngineError::failure(r.message, Some(r.hint)));
    }
    let _lock = engine
        .repo
        .lock_async(LockKind::Shared, "lifeboat restore")
        .await?;
    let name = plan.target.clone();
    engine.events.event(Event::Planned {
        plan: Box::new(plan.clone()),
    });
    let mut emergency_snapshot = None;
    if let Some(e) = emergency {
        engine.step(
            Op::Restore,
            &name,
            format!("taking an emergency backup of {}", e.what),
        );
        let saving = take_backup(&engine.repo, &name, &e.target, e.source.clone(), true);
        let Ok(saved) = cancel.guard(saving).await else {
            return Err(EngineError::interrupted(
                "interrupted: the emergency backup was stopped; nothing was changed",
            ));
        };
        match saved {
            Ok(report) => {
                engine.events.event(Event::EmergencyBackup {
                    target: name.clone(),
                    snapshot: report.snapshot.clone(),
                    bytes: report.bytes,
                });
                emergency_snapshot = Some(report.snapshot);
            }
            Err(err) if e.optional_with_force && force => {
                engine.events.event(Event::Warning {
                    target: Some(name.clone()),
                    text: format!(
                        "the emergency backup failed ({}); restoring anyway (--force)",
                        err.message
                    ),
                });
            }
            Err(err) => {
                let err = err.context("emergency backup failed; nothing was changed");
                return Err(if e.optional_with_force {
                    err.with_hint(
                        "the current state could not be saved; `--force` restores without it"
                            .into(),
                    )
                } else {
                    err
                });
            }
        }
    }
    let outcome = act(ActCx {
        engine: engine.clone(),
        cancel: cancel.clone(),
        emergency_snapshot: emergency_snapshot.clone(),
    })
    .await?;
    Ok(Restored {
        plan,
        emergency_snapshot,
        outcome,
    })
}
