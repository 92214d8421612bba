//! `lifeboat backup [TARGET...]`: one snapshot per target, through the engine; a line per
//! snapshot (or `--json`), exit 1 if any target failed, 130 if interrupted.

use lifeboat_engine::{
    EngineError, Failure,
    backup::{BackupReport, select_targets},
    jobs,
};
use lifeboat_repo::LockKind;

use super::Context;
use crate::{
    cli::BackupArgs,
    error::{CliError, CliResult},
    output,
};

pub async fn run(ctx: &Context, args: BackupArgs) -> CliResult<i32> {
    // A signal abandons the running backup: its snapshot is never written (rustic writes
    // it last), the lock goes with `_lock`, and the command exits 130. Set before anything
    // starts: the first backup starts before the repository is open.
    let cancel = crate::interrupt::on_signal("stopping the backup; no snapshot is written");
    let config = ctx.load_config()?;
    let names = select_targets(&config, &args.targets)?;
    // The first target's backup starts reading while the repository opens (deriving the
    // key from the password takes a few tenths of a second); dropped, and its dump
    // stopped, if opening or locking fails or a signal comes first (a bucket's listing and
    // its early fetches, which change nothing, end on their own or with the process).
    let early = names
        .first()
        .and_then(|n| Some((n.clone(), lifeboat_engine::backup::prestart(&config, n)?)));
    let stopped = |_| {
        CliError::from(EngineError::interrupted(format!(
            "interrupted: the backup of `{}` was stopped; no snapshot of it was written",
            names.join("`, `")
        )))
    };
    let engine = cancel
        .guard(ctx.engine_on(config))
        .await
        .map_err(stopped)??;
    let _lock = cancel
        .guard(engine.repo.lock_async(LockKind::Shared, "lifeboat backup"))
        .await
        .map_err(stopped)??;
    if let Some((name, early)) = early {
        engine.give_prestarted(&name, early);
    }
    let mut reports = Vec::new();
    let mut failed = Vec::new();
    for name in &names {
        match jobs::run_backup(&engine, name, jobs::Trigger::Command, &cancel).await {
            Ok(r) => {
                if !ctx.json {
                    print_report(&r);
                }
                reports.push(r);
            }
            Err(e) if e.failure == Failure::Interrupted => return Err(e.into()),
            Err(e) => {
                let e = CliError::from(e);
                e.print();
                failed.push(serde_json::json!({ "target": name, "error": e.message }));
            }
        }
    }
    if ctx.json {
        output::json(&serde_json::json!({ "backups": reports, "failed": failed }));
    }
    Ok(if failed.is_empty() { 0 } else { 1 })
}

fn print_report(r: &BackupReport) {
    outln!(
        "{}  snapshot {}  {} ({}), {} new in repository, {:.1} s",
        r.target,
        lifeboat_engine::format::short(&r.snapshot),
        output::bytes(r.bytes),
        r.content,
        output::bytes(r.stored_bytes),
        r.seconds
    );
}
