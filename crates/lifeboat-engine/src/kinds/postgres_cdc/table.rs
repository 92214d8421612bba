//! `restore TARGET --time T --table NAME` of a cdc target: the database restored to T in a
//! scratch PostgreSQL (the baseline, then the replay, exactly as a whole restore), then that
//! one table copied into the live database ([`crate::restore::one_table`]): "bring back the
//! credit tables as of 10:01" without touching the rest.

use lifeboat_core::TargetConfig;
use lifeboat_postgres::{PgTools, Target, cdc::stream};

use super::replay::{Chain, chain};
use crate::{
    Engine, EngineError, EngineResult,
    restore::{
        act::{ActCx, RestorePlan, act},
        one_table::{LiveSide, Scratch, copy_table, table_named},
        plan::{Plan, RestoreRequest},
    },
};

pub(super) async fn plan(
    engine: &Engine,
    request: &RestoreRequest,
    target_cfg: &TargetConfig,
) -> EngineResult<RestorePlan> {
    let wanted = request.table.clone().unwrap_or_default();
    // Decided now (the baseline, the gaps), carried out into the scratch database later.
    let Chain {
        request: chosen,
        baseline,
        manifest,
        base_lsn,
        until,
        segments,
    } = chain(engine, request).await?;
    let pgm = manifest.postgres.clone().ok_or_else(|| {
        EngineError::failure(
            format!("baseline `{}` has no PostgreSQL dump", baseline.short_id()),
            None,
        )
    })?;
    // In the baseline, or made later by a captured CREATE TABLE: found at the moment or not.
    let table = pgm
        .table(&wanted)
        .cloned()
        .unwrap_or_else(|| table_named(&wanted));
    let live = LiveSide::inspect(request, target_cfg, &table).await?;
    let moment = match (until.time, until.lsn) {
        (Some(t), _) => t.to_string(),
        (None, Some(l)) => format!("WAL position {}", stream::lsn_text(l)),
        (None, None) => "the last change captured".into(),
    };
    let steps = vec![
        match engine.config.drill.scratch_url()? {
            Some(_) => "create a scratch database on `[drill] scratch-url`".to_string(),
            None => "start a throwaway PostgreSQL".to_string(),
        },
        format!(
            "restore baseline {} (LSN {}) into it and replay {} segment(s) up to {moment}",
            baseline.short_id(),
            stream::lsn_text(base_lsn),
            segments.len()
        ),
        live.step(&table),
        format!(
            "verify `{}`'s row count against the scratch's",
            table.qualified()
        ),
        "remove the scratch database".into(),
    ];
    let mut shown = Plan::new(
        &request.target,
        &baseline,
        format!("table `{}` in {}", table.qualified(), live.dest.redacted()),
        steps,
        live.existing_rows.is_some(),
    );
    if let Some(t) = until.time {
        shown.restored_point = t.to_string();
    }
    shown.facts.insert("table".into(), table.qualified().into());
    let tools = PgTools::find(
        pgm.server_version_num / 10_000,
        target_cfg.pg_bin_dir.as_deref(),
    )
    .or_else(|_| PgTools::newest_installed())?;
    let scratch_url = engine.config.drill.scratch_url()?;
    let cfg = target_cfg.clone();
    let (dest, replace) = (live.dest.clone(), live.existing_rows.is_some());
    let database = pgm.database.clone();
    let mut restore = RestorePlan::new(
        shown,
        act(move |cx: ActCx| async move {
            let scratch = Scratch::provision(scratch_url, &tools, &database).await?;
            cx.engine.step(
                crate::events::Op::Restore,
                &chosen.target,
                format!(
                    "bringing the database to the moment in {}",
                    scratch.describe()
                ),
            );
            let done = async {
                // The scratch has none of the live roles: owners and grants stay out.
                let whole = RestoreRequest {
                    to: Some(scratch.url().clone()),
                    table: None,
                    keep_owners: false,
                    ..chosen.clone()
                };
                let planned = super::replay::whole(&cx.engine, &whole, &cfg).await?;
                let mut outcome = (planned.act)(ActCx {
                    engine: cx.engine.clone(),
                    cancel: cx.cancel.clone(),
                    emergency_snapshot: None,
                })
                .await?;
                if !outcome.verified {
                    return Ok(outcome);
                }
                let from = Target::parse(scratch.url())?;
                let copied = copy_table(&tools, &from, &table, &dest, replace, &cx.cancel).await?;
                outcome.lines.extend(copied.lines);
                outcome.facts.extend(copied.facts);
                outcome.verified = copied.verified;
                outcome.problem = copied.problem;
                Ok(outcome)
            }
            .await;
            scratch.remove().await;
            done
        }),
    );
    restore.refusal = live.refusal;
    restore.emergency = live.emergency;
    Ok(restore)
}
