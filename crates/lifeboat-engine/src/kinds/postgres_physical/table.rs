//! `restore TARGET --time T --table NAME` of a physical target: a throwaway data directory
//! recovered to T on a free port (never archiving), as a drill does, then that one table
//! copied into the live database ([`crate::restore::one_table`]); the throwaway server is
//! stopped and its folder removed whatever happened.

use lifeboat_core::TargetConfig;
use lifeboat_postgres::{PgTools, physical};

use super::recover::{self as pitr, recovery_target, stop_server_on};
use crate::{
    Engine, EngineError, EngineResult,
    drill::checks::scratch_dir,
    format,
    restore::{
        act::{ActCx, RestorePlan, act},
        one_table::{LiveSide, copy_table, table_named},
        plan::{Plan, RestoreRequest},
    },
};

pub(super) async fn plan(
    engine: &Engine,
    request: &RestoreRequest,
    cfg: &TargetConfig,
) -> EngineResult<RestorePlan> {
    if request.to_dir.is_some() || request.recovery.start || request.recovery.pause {
        return Err(EngineError::usage(
            "`--table` restores one table into the live database: `--to-dir`, `--start` and `--pause` do not apply",
            Some("`--to URL` names another live database".into()),
        ));
    }
    let Some(goal) = recovery_target(request.time.as_deref(), &request.recovery)? else {
        return Err(EngineError::usage(
            "say which moment the table comes from: `--time`, `--lsn`, `--xid`, `--name` or `--latest`",
            None,
        ));
    };
    let wanted = request.table.clone().unwrap_or_default();
    let table = table_named(&wanted);
    // Checked against the archive now, before anything is written.
    let recovery = pitr::plan(
        &engine.repo,
        (&engine.config_path, engine.config.using_copy.as_deref()),
        &request.target,
        &request.snapshot,
        &goal,
    )
    .await?;
    let live = LiveSide::inspect(request, cfg, &table).await?;
    let steps = vec![
        "create a throwaway data directory".to_string(),
        format!(
            "restore base backup {} ({}), WAL from the archive up to {}",
            recovery.base.short_id(),
            format::bytes(recovery.manifest.files.total_bytes),
            recovery.newest_wal
        ),
        format!(
            "{}, on a free port (the server does not archive)",
            match &goal {
                physical::RecoveryTarget::Latest => "recover to the end of the archive".into(),
                g => format!("recover to {}", g.describe()),
            }
        ),
        live.step(&table),
        format!(
            "verify `{}`'s row count against the recovered server's",
            table.qualified()
        ),
        "stop the throwaway server and remove its data directory".into(),
    ];
    let mut shown = Plan::new(
        &request.target,
        &recovery.base,
        format!("table `{}` in {}", table.qualified(), live.dest.redacted()),
        steps,
        live.existing_rows.is_some(),
    );
    if let physical::RecoveryTarget::Time(t) = &goal
        && let Ok(at) = crate::time::parse_time(t)
    {
        shown.restored_point = at.to_string();
    }
    shown.facts.insert("table".into(), table.qualified().into());
    let tools = PgTools::find(
        recovery.manifest.server_version_num / 10_000,
        cfg.pg_bin_dir.as_deref(),
    )
    .or_else(|_| PgTools::newest_installed())?;
    let (name, cfg) = (request.target.clone(), cfg.clone());
    let (dest, replace) = (live.dest.clone(), live.existing_rows.is_some());
    let mut restore = RestorePlan::new(
        shown,
        act(move |cx: ActCx| async move {
            let dir = scratch_dir("table").map_err(|e| EngineError::failure(e, None))?;
            physical::hand_over(dir.path()).map_err(|e| {
                EngineError::failure(
                    format!("cannot hand the throwaway data directory to the server's user: {e}"),
                    None,
                )
            })?;
            let data = dir.path().join("data");
            let done = async {
                let repo = &cx.engine.repo;
                let feed = pitr::feed(repo, &recovery).await?;
                pitr::materialize(
                    repo,
                    &name,
                    &recovery,
                    &data,
                    &goal,
                    (false, false),
                    &cx.cancel,
                )
                .await?;
                let port = lifeboat_postgres::cluster::free_port()?;
                let starting = pitr::start_and_wait(&cfg, &name, &recovery, &data, port, feed);
                let Ok(started) = cx.cancel.guard(starting).await else {
                    return Err(EngineError::interrupted("recovery was stopped"));
                };
                let (_, point, server) = started?;
                let mut outcome =
                    copy_table(&tools, &server, &table, &dest, replace, &cx.cancel).await?;
                outcome.lines.insert(
                    0,
                    format!(
                        "recovered a throwaway copy to its last commit {} (LSN {})",
                        point.last_commit_time.as_deref().unwrap_or("(none)"),
                        point.replay_lsn.as_deref().unwrap_or("?")
                    ),
                );
                Ok(outcome)
            }
            .await;
            match stop_server_on(&cfg, &recovery, &data).await {
                Ok(()) => {
                    if let Err(e) = dir.close() {
                        log::warn!("cannot remove the throwaway data directory: {e}");
                    }
                }
                // Never removed under a running server: kept, and said.
                Err(e) => {
                    let kept = dir.keep();
                    cx.engine.events.event(crate::events::Event::Warning {
                        target: Some(name.as_str().into()),
                        text: format!(
                            "the throwaway server on `{}` could not be stopped ({e}): stop it with `pg_ctl -D {}/data stop` and remove the folder",
                            kept.display(),
                            kept.display()
                        ),
                    });
                }
            }
            done
        }),
    );
    restore.refusal = live.refusal;
    restore.emergency = live.emergency;
    Ok(restore)
}
