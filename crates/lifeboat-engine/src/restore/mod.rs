//! Restores, whatever the kind: plan, then act.
//!
//! [`plan`] asks the target's kind for a [`RestorePlan`]: which snapshot (`latest` = the
//! newest complete, non-emergency one; `--time T` = the newest taken at or before T), into
//! where, the steps, whether it overwrites, what is saved first. It changes nothing:
//! `--dry-run` prints it. [`execute`] runs exactly that plan: it refuses to overwrite without
//! `force`, takes the emergency backup, then the kind's own act (load, verify).

//!
//! The parts: `plan.rs` (the request and the plan as data), `act.rs` (what a kind's planner
//! returns), `choose.rs` (the snapshot a request names). Kinds build on those three; this
//! file, which dispatches to the kinds, is built on them.

pub mod act;
pub mod checks;
pub mod choose;
pub mod live;
pub mod one_table;
pub mod plan;

use lifeboat_repo::LockKind;

pub use act::{Act, ActCx, RestoreOutcome, RestorePlan, act};
pub use choose::{chosen_section, chosen_snapshot};
pub use plan::{Emergency, Plan, Recovery, Refusal, RestoreRequest};

use crate::{
    Engine, EngineError, EngineResult,
    backup::{take_backup, unknown_target},
    cancel::Cancel,
    events::{Event, Op},
    kinds::{kind_of, kind_tagged},
};

/// Choose a snapshot for `request` and decide the restore. Changes nothing.
pub async fn plan(engine: &Engine, request: &RestoreRequest) -> EngineResult<RestorePlan> {
    let target = engine
        .config
        .target(&request.target)
        .ok_or_else(|| unknown_target(&engine.config, &request.target))?;
    let kind = kind_of(target);
    // The emergency dump a one-table restore of a cdc or physical target takes is a
    // logical snapshot: restored as one (its own emergency backup a logical dump too).
    if request.snapshot != "latest"
        && target.kind == lifeboat_core::TargetKind::Postgres
        && kind.tag() != "logical"
    {
        let (name, wanted) = (request.target.clone(), request.snapshot.clone());
        let found = engine
            .repo
            .call(move |r| r.find_snapshot_at(&name, &wanted, None))
            .await;
        if let Ok(s) = found
            && s.kind == "logical"
            && let Some(logical) = kind_tagged("logical")
        {
            let as_logical = one_table::logical_view(target);
            return logical.plan_restore(engine, request, &as_logical).await;
        }
    }
    kind.plan_restore(engine, request, target).await
}

/// What a restore did, with its plan and the emergency snapshot.
#[derive(Debug)]
pub struct Restored {
    pub plan: Plan,
    pub emergency_snapshot: Option<lifeboat_core::SnapshotId>,
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
        let saving = take_backup(&engine.repo, &name, &e.target, e.source.clone(), true, None);
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
    let began = std::time::Instant::now();
    let acted = act(ActCx {
        engine: engine.clone(),
        cancel: cancel.clone(),
        emergency_snapshot: emergency_snapshot.clone(),
    })
    .await;
    engine.events.event(match &acted {
        Ok(o) if o.verified => Event::Finished {
            op: Op::Restore,
            target: name.clone(),
            snapshot: Some(plan.snapshot.clone()),
            seconds: began.elapsed().as_secs_f64(),
            bytes: 0,
        },
        Ok(o) => Event::Failed {
            op: Op::Restore,
            target: name.clone(),
            error: o
                .problem
                .clone()
                .unwrap_or_else(|| "what was restored differs from the manifest".into()),
        },
        Err(e) => Event::Failed {
            op: Op::Restore,
            target: name.clone(),
            error: e.full_message(),
        },
    });
    let outcome = acted?;
    if cancel.is_cancelled() {
        // Every kind stops on the signal and puts the destination back; one that returns
        // a result had finished before it saw the signal.
        engine.events.event(Event::Warning {
            target: Some(name.clone()),
            text: "the signal came as the restore finished; it is complete".into(),
        });
    }
    Ok(Restored {
        plan,
        emergency_snapshot,
        outcome,
    })
}
