//! A logical restore. Plan: the snapshot, its manifest, the destination database (does it
//! exist, does it hold tables, does the table exist), the load's shape. Act: a database the
//! restore creates is created only after everything that can fail before the load; the dump
//! streams into `pg_restore` (one transaction, so a failed or stopped restore leaves the
//! destination as it was; a parallel load only into a database it created, dropped again
//! on failure); then every table's rows are counted and compared with the manifest.

use std::sync::{Arc, Mutex, atomic::Ordering};

use lifeboat_core::{Redacted, TargetConfig, manifest::TableRecord};
use lifeboat_postgres::{
    PgTools, Target,
    cdc::fold::Fold,
    restore::{self as pg, RowCheck},
};
use serde_json::json;

use super::load::{Load, load_dump, read_toc};
use crate::{
    Engine, EngineError, EngineResult, FsContext, format,
    restore::{
        act::{ActCx, RestoreOutcome, RestorePlan, act},
        choose::chosen_section,
        plan::{Emergency, Plan, Refusal, RestoreRequest},
    },
};

pub(crate) async fn plan(
    engine: &Engine,
    request: &RestoreRequest,
    target_cfg: &TargetConfig,
) -> EngineResult<RestorePlan> {
    plan_folding(engine, request, target_cfg, None).await
}

/// Where a cdc restore leaves the fold of captured changes for the load, once it has
/// built it (at act time, just before the load).
pub(crate) type FoldSlot = Arc<Mutex<Option<Arc<Fold>>>>;

/// [`plan`], its load taking the fold left in `fold` (if any): the rows of the tables it
/// holds go through it, and their expected row counts follow what it left out and added.
pub(crate) async fn plan_folding(
    engine: &Engine,
    request: &RestoreRequest,
    target_cfg: &TargetConfig,
    fold: Option<FoldSlot>,
) -> EngineResult<RestorePlan> {
    if request.to_dir.is_some() {
        return Err(EngineError::usage(
            "`--to-dir` is for files targets; a PostgreSQL target restores into a database",
            Some("use `--to postgres://...`".into()),
        ));
    }
    let (snapshot, pgm) =
        chosen_section(engine, request, |m| &m.postgres, "PostgreSQL dump").await?;
    let url = match &request.to {
        Some(u) => u.clone(),
        None => target_cfg.connection_url(&request.target)?,
    };
    let dest = Target::parse(&url)?;
    let table: Option<TableRecord> = match &request.table {
        Some(t) => Some(pgm.table(t).cloned().ok_or_else(|| {
            let names: Vec<String> = pgm.tables.iter().map(TableRecord::qualified).collect();
            EngineError::failure(
                format!("table `{t}` is not in snapshot `{}`", snapshot.short_id()),
                Some(format!("tables in it: {}", names.join(", "))),
            )
        })?),
        None => None,
    };
    let state = pg::inspect(&dest).await?;
    let existing_table_rows = match (&table, state.exists) {
        (Some(t), true) => pg::table_rows(&dest, t).await?,
        _ => None,
    };

    let mut steps = Vec::new();
    let overwrites = match &table {
        Some(_) => existing_table_rows.is_some(),
        None => state.exists && state.tables > 0,
    };
    if !state.exists {
        steps.push(format!("create database `{}`", dest.database()));
    }
    if overwrites {
        steps.push(format!(
            "emergency backup of database `{}` (tagged `emergency`)",
            dest.database()
        ));
    }
    let dump_path = pgm.dump.path.clone();
    let restore_step = match (&table, overwrites) {
        (Some(t), true) => format!(
            "replace table `{}` ({} rows now) with its {} rows, indexes and constraints",
            t.qualified(),
            existing_table_rows.unwrap_or(0),
            format::thousands(t.rows)
        ),
        (Some(t), false) => format!(
            "restore table `{}` ({} rows) with its indexes and constraints",
            t.qualified(),
            format::thousands(t.rows)
        ),
        (None, true) => format!(
            "restore {} over the existing {} tables (pg_restore --clean, one transaction)",
            format::bytes(pgm.dump.bytes),
            state.tables
        ),
        (None, false) => format!(
            "restore {} dump ({} tables, {} rows)",
            format::bytes(pgm.dump.bytes),
            pgm.tables.len(),
            format::thousands(pgm.total_rows())
        ),
    };
    // Several jobs cannot share one transaction. Only a database this restore creates can
    // be loaded in parallel, because only that one can be put back as it was (dropped) if
    // the load fails part-way; anywhere else the restore is one transaction.
    let parallel = request.jobs > 1 && !state.exists && table.is_none();
    let jobs = if parallel { request.jobs } else { 1 };
    let opts = pg::RestoreOptions {
        clean: overwrites,
        keep_owners: request.keep_owners,
        jobs,
        list_file: None,
        input: None,
        section: None,
    };
    let load = Load::planned(&pgm, &opts, table.is_some());
    let one_transaction = if request.jobs > 1 && !parallel {
        " in one transaction (`--jobs` applies to a database the restore creates)"
    } else {
        ""
    };
    steps.push(format!(
        "{restore_step}{}{one_transaction}",
        load.describe(jobs)
    ));
    let verify_tables: Vec<TableRecord> = match &table {
        Some(t) => vec![t.clone()],
        None => pgm.tables.clone(),
    };
    steps.push(format!(
        "verify row counts of {} table(s) against the manifest",
        verify_tables.len()
    ));
    let plan = Plan::new(
        &request.target,
        &snapshot,
        dest.redacted(),
        steps,
        overwrites,
    );
    let refusal = overwrites.then(|| {
        let what = match &table {
            Some(t) => format!(
                "table `{}` exists in database `{}`",
                t.qualified(),
                dest.database()
            ),
            None => format!(
                "database `{}` on `{}` is not empty ({} tables)",
                dest.database(),
                dest.server(),
                state.tables
            ),
        };
        Refusal {
            message: format!("refusing to overwrite: {what}"),
            hint: "restore into a new database with `--to`, or pass `--force` to overwrite it after an emergency backup".into(),
            forceable: true,
            why: "the destination holds data".into(),
        }
    });
    let emergency = overwrites.then(|| Emergency {
        target: target_cfg.clone(),
        source: Some(Redacted::new(url.expose().to_string())),
        optional_with_force: false,
        what: format!("`{}`", dest.database()),
    });
    let (id, bin_dir, exists) = (
        snapshot.id.clone(),
        target_cfg.pg_bin_dir.clone(),
        state.exists,
    );
    let mut restore = RestorePlan::new(
        plan,
        act(move |cx: ActCx| async move {
            let repo = &cx.engine.repo;
            let tools = PgTools::find(pgm.server_version_num / 10_000, bin_dir.as_deref())
                .or_else(|_| PgTools::newest_installed())?;
            let started = std::time::Instant::now();
            let stage = tempfile::Builder::new()
                .prefix("lifeboat-restore-")
                .tempdir()
                .fs("create a staging folder in", &std::env::temp_dir())?;
            let mut opts = opts;
            if let Some(t) = &table {
                let toc = read_toc(repo, &id, &dump_path, &tools).await?;
                let list = pg::table_list(&toc, t);
                let list_file = stage.path().join("table.list");
                std::fs::write(&list_file, list).fs("write", &list_file)?;
                opts.list_file = Some(list_file);
            }
            // Created only now, after everything that can fail before the load: a failed or
            // stopped load drops it again.
            if !exists {
                pg::create_database(&dest).await?;
            }
            // A cancellation stops the load: the server ends the restore's sessions (rolling
            // back its transaction), and a database the restore created is dropped again.
            let fold = fold
                .as_ref()
                .and_then(|f| f.lock().unwrap_or_else(|p| p.into_inner()).clone());
            let loading = load_dump(
                repo,
                &id,
                &pgm,
                &tools,
                &dest,
                opts,
                stage.path(),
                fold.clone(),
            );
            let Ok(loaded) = cx.cancel.guard(loading).await else {
                return Err(EngineError::interrupted(format!(
                    "interrupted: the restore was stopped; {}",
                    put_back(&dest, exists).await
                )));
            };
            let load = match loaded {
                Ok(load) => load,
                Err(e) if !exists => {
                    // A parallel load is no transaction: what it created goes with the database.
                    let dropped = match pg::drop_database(&dest).await {
                        Ok(()) => format!("database `{}` was dropped again", dest.database()),
                        Err(d) => format!(
                            "database `{}` could not be dropped again ({d}); drop it by hand",
                            dest.database()
                        ),
                    };
                    return Err(e.context(format!("restore failed, {dropped}")));
                }
                Err(e) => {
                    return Err(e.context(format!(
                        "restore failed and was rolled back, database `{}` is as it was",
                        dest.database()
                    )));
                }
            };
            let restore_secs = started.elapsed().as_secs_f64();
            // Rows a fold left out or added change what each table should hold.
            let mut verify_tables = verify_tables;
            for t in fold.iter().flat_map(|f| f.tables()) {
                if let Some(v) = verify_tables
                    .iter_mut()
                    .find(|v| v.schema == t.schema && v.name == t.name)
                {
                    v.rows = (v.rows + t.appended.load(Ordering::SeqCst))
                        .saturating_sub(t.dropped.load(Ordering::SeqCst));
                }
            }
            let checks = pg::verify_rows(&dest, &verify_tables).await?;
            let ok = checks.iter().all(RowCheck::ok);
            let mut lines = vec![format!(
                "restored in {restore_secs:.1} s; row counts against the manifest:"
            )];
            let rows: Vec<Vec<String>> = checks
                .iter()
                .map(|c| {
                    vec![
                        c.table.clone(),
                        format::thousands(c.expected),
                        c.restored.map_or("missing".into(), format::thousands),
                        if c.ok() { "ok" } else { "MISMATCH" }.into(),
                    ]
                })
                .collect();
            lines.extend(format::table(&["TABLE", "EXPECTED", "RESTORED", ""], &rows));
            if ok {
                lines.push(format!("verified: {} table(s) match", checks.len()));
            }
            Ok(RestoreOutcome::new(
                ok,
                "restored row counts differ from the manifest",
                json!({
                    "restore_seconds": restore_secs,
                    "load": load,
                    "row_checks": checks,
                    "verified": ok,
                }),
                lines,
            ))
        }),
    );
    restore.refusal = refusal;
    restore.emergency = emergency;
    Ok(restore)
}

/// After a stopped load: end the restore's sessions (their transaction rolls back) in a
/// database that was there, or drop the one the restore created. What was done, in words.
async fn put_back(dest: &Target, existed: bool) -> String {
    let undone = if existed {
        pg::end_restore_sessions(dest).await.map(|ended| {
            if ended > 0 {
                format!(
                    "its transaction was rolled back, database `{}` is as it was",
                    dest.database()
                )
            } else {
                format!(
                    "no restore session was open on database `{}`: nothing was committed unless the restore had just finished",
                    dest.database()
                )
            }
        })
    } else {
        pg::drop_database(dest)
            .await
            .map(|()| format!("database `{}` was dropped again", dest.database()))
    };
    undone.unwrap_or_else(|e| {
        format!(
            "putting database `{}` back failed ({e}); check it by hand",
            dest.database()
        )
    })
}
