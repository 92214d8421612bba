//! `lifeboat check [--read-data]`: verify the repository (structure, index, snapshots; with
//! `--read-data` every pack's content) and every snapshot's manifest; exit 3 on a problem.
//! `lifeboat unlock`: remove locks, for an operator who knows their holders are gone.

use lifeboat_engine::maintenance;
use serde_json::json;

use super::Context;
use crate::{cli::CheckArgs, error::CliResult, output};

pub async fn run(ctx: &Context, args: CheckArgs) -> CliResult<i32> {
    let engine = ctx.engine().await?;
    let read_data = args.read_data;
    let checked = maintenance::check(
        &engine,
        if read_data {
            lifeboat_repo::ReadData::All
        } else {
            lifeboat_repo::ReadData::None
        },
    )
    .await?;
    let ok = checked.ok();
    if ctx.json {
        output::json(&json!({
            "ok": ok, "read_data": read_data, "errors": checked.errors,
            "manifest_problems": checked.manifest_problems, "snapshots": checked.snapshots,
            "object_lock": checked.object_lock,
        }));
    } else {
        for e in checked.errors.iter().chain(&checked.manifest_problems) {
            outln!("problem: {e}");
        }
        if let Some(lock) = checked.object_lock {
            outln!(
                "object lock: the config, every key, index file, snapshot and pack checked for {} retention of {} days",
                lock.mode,
                lock.days
            );
        }
        outln!(
            "{}: {} snapshot(s){}",
            if ok {
                "repository is healthy"
            } else {
                "repository has problems"
            },
            checked.snapshots,
            if read_data {
                ", all data read and verified"
            } else {
                ""
            }
        );
    }
    Ok(if ok { 0 } else { 3 })
}

pub async fn unlock(ctx: &Context) -> CliResult<i32> {
    let removed = maintenance::unlock(&ctx.engine().await?).await?;
    if ctx.json {
        output::json(&json!({ "removed": removed }));
    } else if removed.is_empty() {
        outln!("no locks");
    } else {
        for r in &removed {
            outln!("removed lock held by {r}");
        }
    }
    Ok(0)
}
