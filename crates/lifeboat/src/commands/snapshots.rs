//! `lifeboat snapshots [TARGET]`: id, target, kind, time, logical size, stored (new) size.

use serde_json::json;

use super::Context;
use crate::{cli::SnapshotsArgs, error::CliResult, output};

pub async fn run(ctx: &Context, args: SnapshotsArgs) -> CliResult<i32> {
    let config = ctx.load_config()?;
    let repo = ctx.open_repo(&config).await?;
    let target = args.target.clone();
    let snaps = tokio::task::spawn_blocking(move || repo.snapshots(target.as_deref())).await??;
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
            let detail = match &s.manifest {
                Ok(m) if !m.complete => "INCOMPLETE".to_string(),
                Ok(m) => match (&m.postgres, &m.files) {
                    (Some(p), _) => format!(
                        "{} tables, {} rows",
                        p.tables.len(),
                        output::thousands(p.total_rows())
                    ),
                    (_, Some(f)) => format!("{} files", f.files.len()),
                    _ => match (&m.command, &m.bucket, &m.redis) {
                        (Some(c), _, _) => {
                            format!("command output ({})", output::bytes(c.output.bytes))
                        }
                        (_, Some(b), _) => {
                            let mut d =
                                format!("{} objects ({} downloaded", b.objects.len(), b.downloaded);
                            if !b.left_out.is_empty() {
                                d.push_str(&format!(", {} left out", b.left_out.len()));
                            }
                            d + ")"
                        }
                        (_, _, Some(r)) => {
                            format!("RDB, {} keys", r.keys_after.values().sum::<u64>())
                        }
                        _ => String::new(),
                    },
                },
                Err(_) => "NO MANIFEST".into(),
            };
            vec![
                s.short_id().to_string(),
                s.target.clone(),
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
