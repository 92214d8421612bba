//! `lifeboat check [--read-data]`: verify the repository (structure, index, snapshots; with
//! `--read-data` every pack's content) and every snapshot's manifest. `lifeboat unlock`:
//! remove locks, for an operator who knows their holders are gone.

use serde_json::json;

use super::Context;
use crate::{cli::CheckArgs, error::CliResult, output};

pub async fn run(ctx: &Context, args: CheckArgs) -> CliResult<i32> {
    let config = ctx.load_config()?;
    let repo = ctx.open_repo(&config).await?;
    let read_data = args.read_data;
    let (errors, snaps) =
        tokio::task::spawn_blocking(move || -> Result<_, lifeboat_repo::RepoError> {
            // Shared: a prune running meanwhile would make packs look missing.
            let _lock = repo.lock(lifeboat_repo::LockKind::Shared, "lifeboat check")?;
            let errors = repo.check(read_data)?;
            let snaps = repo.snapshots(None)?;
            Ok((errors, snaps))
        })
        .await??;
    let bad_manifests: Vec<String> = snaps
        .iter()
        .filter(|s| !s.is_good())
        .map(|s| {
            format!(
                "snapshot {} of `{}`: {}",
                s.short_id(),
                s.target,
                match &s.manifest {
                    Ok(_) => "marked incomplete".to_string(),
                    Err(e) => format!("no readable manifest ({e})"),
                }
            )
        })
        .collect();
    let ok = errors.is_empty() && bad_manifests.is_empty();
    if ctx.json {
        output::json(&json!({
            "ok": ok, "read_data": read_data, "errors": errors,
            "manifest_problems": bad_manifests, "snapshots": snaps.len(),
        }));
    } else {
        for e in errors.iter().chain(&bad_manifests) {
            outln!("problem: {e}");
        }
        outln!(
            "{}: {} snapshot(s){}",
            if ok {
                "repository is healthy"
            } else {
                "repository has problems"
            },
            snaps.len(),
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
    let config = ctx.load_config()?;
    let repo = ctx.open_repo(&config).await?;
    let removed = tokio::task::spawn_blocking(move || {
        repo.side()
            .remove_locks()
            .map_err(lifeboat_repo::RepoError::from)
    })
    .await??;
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
