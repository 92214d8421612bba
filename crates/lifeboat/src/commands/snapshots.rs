//! `lifeboat snapshots [TARGET]`: id, target, kind, time, logical size, stored (new) size.

use serde_json::json;

use super::Context;
use crate::{cli::SnapshotsArgs, error::CliResult, output};

pub async fn run(ctx: &Context, args: SnapshotsArgs) -> CliResult<i32> {
    let config = ctx.load_config()?;
    let repo = ctx.open_repo(&config).await?;
    let snaps = repo.list_snapshots(args.target.as_deref()).await?;
    if ctx.json {
        let items: Vec<_> = snaps
            .iter()
            .map(|s| {
                json!({
                    "id": s.id,
                    "target": s.target,
                    "kind": s.kind,
                    "time": s.time.timestamp().to_string(),
                    "emergency": s.emergency,
                    "complete": s.is_good(),
                    "bytes": s.manifest.as_ref().map(|m| m.logical_bytes()).ok(),
                    "stored_bytes": s.stored_bytes(),
                    "manifest": s.manifest.as_ref().ok(),
                })
            })
            .collect();
        output::json(&json!({ "snapshots": items }));
        return Ok(0);
    }
    if snaps.is_empty() {
        outln!("no snapshots");
        return Ok(0);
    }
    let rows: Vec<Vec<String>> = snaps
        .iter()
        .map(|s| {
            let mut kind = s.kind.clone();
            if s.emergency {
                kind.push_str(" (emergency)");
            }
            let detail = lifeboat_engine::kinds::content_of(s);
            vec![
                s.short_id().to_string(),
                s.target.to_string(),
                kind,
                output::time(&s.time),
                s.manifest
                    .as_ref()
                    .map_or("-".into(), |m| output::bytes(m.logical_bytes())),
                output::bytes(s.stored_bytes()),
                detail,
            ]
        })
        .collect();
    output::table(
        &["ID", "TARGET", "KIND", "TIME", "SIZE", "STORED", "CONTENT"],
        &rows,
    );
    Ok(0)
}
