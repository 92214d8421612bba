//! `lifeboat forget [--prune] [--dry-run]`: apply `[retention]` per target (a target's own
//! `retention` table overrides it), print what is kept and why, and with `--prune` free the
//! space and the WAL no kept base backup needs. The engine's
//! [`maintenance::forget`](lifeboat_engine::maintenance::forget) does it under the exclusive
//! repository lock: never beside a backup or restore.

use lifeboat_engine::maintenance::forget;
use serde_json::json;

use super::Context;
use crate::{cli::ForgetArgs, error::CliResult, output};

pub async fn run(ctx: &Context, args: ForgetArgs) -> CliResult<i32> {
    let engine = ctx.engine().await?;
    let dry = args.dry_run;
    let done = forget(&engine, args.prune, dry).await?;
    let when_dry = if dry { " (dry run)" } else { "" };
    if ctx.json {
        output::json(&json!({
            "dry_run": dry,
            "wal": done.wal.map(|w| json!({ "deleted": w.deleted, "kept": w.kept })),
            "cdc_segments_deleted": done.cdc_segments,
            "retained": (!done.retained.is_empty()).then(|| json!({
                "snapshots": done.retained.snapshots,
                "packs": done.retained.packs,
                "other": done.retained.other,
                "kept_snapshots": done.retained.snapshot_ids,
                "until": done.retained.until.map(until),
            })),
            "retention_extended": done.extended.map(|e| json!({
                "checked": e.checked, "extended": e.extended,
            })),
            "decisions": done.decisions.iter().map(|d| json!({
                "id": d.id, "target": d.target, "time": d.time.timestamp().to_string(),
                "keep": d.keep, "reasons": d.reasons,
            })).collect::<Vec<_>>(),
            // Snapshots still under Object Lock retention stayed (kept, "object lock").
            "forgotten": if dry { Vec::new() } else { done.forget.clone() },
            "prune": done.pruned.map(|p| json!({
                "packs_removed": p.packs_removed,
                "packs_repacked": p.packs_repacked,
                "bytes_freed": p.bytes_freed,
            })),
        }));
        return Ok(0);
    }
    let rows: Vec<Vec<String>> = done
        .decisions
        .iter()
        .map(|d| {
            vec![
                d.id[..8].to_string(),
                d.target.to_string(),
                output::time(&d.time),
                if d.keep { "keep" } else { "forget" }.into(),
                d.reasons.join(", "),
            ]
        })
        .collect();
    if rows.is_empty() {
        outln!("no snapshots");
    } else {
        output::table(&["ID", "TARGET", "TIME", "ACTION", "WHY"], &rows);
    }
    if let Some(p) = done.pruned {
        outln!(
            "prune{when_dry}: {} pack(s) removed, {} repacked, {} freed",
            p.packs_removed,
            p.packs_repacked,
            output::bytes(p.bytes_freed)
        );
    }
    if let Some(w) = done.wal {
        outln!(
            "WAL{when_dry}: {} file(s) no kept base backup needs {}",
            w.deleted,
            if dry { "would be deleted" } else { "deleted" }
        );
    }
    if let Some(n) = done.cdc_segments.filter(|n| *n > 0) {
        outln!(
            "captured changes{when_dry}: {n} segment(s) older than every kept baseline {}",
            if dry { "would be deleted" } else { "deleted" }
        );
    }
    let r = &done.retained;
    if !r.is_empty() {
        outln!(
            "object lock: {} snapshot(s), {} pack(s) and {} other file(s) are under retention until {}: left in place, a `forget --prune` after that date removes them",
            r.snapshots,
            r.packs,
            r.other,
            r.until.map(until).unwrap_or_default()
        );
    }
    if let Some(e) = done.extended {
        outln!(
            "object lock: retention extended on {} of the {} objects still in the repository",
            e.extended,
            e.checked
        );
    }
    outln!(
        "{} snapshot(s) {}",
        done.forget.len(),
        if dry {
            "would be forgotten (dry run)"
        } else {
            "forgotten"
        }
    );
    Ok(0)
}

/// A retention date, as `check` and S3 show it.
fn until(t: std::time::SystemTime) -> String {
    jiff::Timestamp::try_from(t)
        .map(|t| t.to_string())
        .unwrap_or_default()
}
