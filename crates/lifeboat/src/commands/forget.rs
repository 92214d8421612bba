//! `lifeboat forget [--prune] [--dry-run]`: apply `[retention]` per target (a target's own
//! `retention` table overrides it), print what is kept and why, and with `--prune` free the
//! space. Runs under the exclusive repository lock: never beside a backup or restore.

use lifeboat_repo::LockKind;
use serde_json::json;

use super::Context;
use crate::{
    cli::ForgetArgs,
    error::{CliError, CliResult},
    output,
};

pub async fn run(ctx: &Context, args: ForgetArgs) -> CliResult<i32> {
    let config = ctx.load_config()?;
    let repo = ctx.open_repo(&config).await?;
    let r = repo.clone();
    let command = if args.prune {
        "lifeboat forget --prune"
    } else {
        "lifeboat forget"
    };
    let _lock = tokio::task::spawn_blocking(move || r.lock(LockKind::Exclusive, command)).await??;
    let r = repo.clone();
    let cfg = config.clone();
    let (decisions, snaps) = tokio::task::spawn_blocking(move || {
        let snaps = r.snapshots(None)?;
        let plan = r.forget_plan(snaps.clone(), |target| match cfg.target(target) {
            Some(t) => t.effective_retention(&cfg.retention).clone(),
            // Snapshots of targets no longer configured follow the global rules.
            None => cfg.retention.clone(),
        })?;
        Ok::<_, lifeboat_repo::RepoError>((plan, snaps))
    })
    .await??;
    let forget: Vec<String> = decisions
        .iter()
        .filter(|d| !d.keep)
        .map(|d| d.id.clone())
        .collect();
    if !ctx.json {
        let rows: Vec<Vec<String>> = decisions
            .iter()
            .map(|d| {
                vec![
                    d.id[..8].to_string(),
                    d.target.clone(),
                    output::time(&d.time),
                    if d.keep {
                        "keep".into()
                    } else {
                        "forget".into()
                    },
                    d.reasons.join(", "),
                ]
            })
            .collect();
        if rows.is_empty() {
            outln!("no snapshots");
        } else {
            output::table(&["ID", "TARGET", "TIME", "ACTION", "WHY"], &rows);
        }
    }
    if !args.dry_run && !forget.is_empty() {
        let (r, ids) = (repo.clone(), forget.clone());
        tokio::task::spawn_blocking(move || r.delete_snapshots(&ids)).await??;
    }
    let mut pruned = None;
    if args.prune {
        let r = repo.clone();
        let dry = args.dry_run;
        let p = tokio::task::spawn_blocking(move || r.prune(dry)).await??;
        pruned = Some(json!({
            "packs_removed": p.packs_removed,
            "packs_repacked": p.packs_repacked,
            "bytes_freed": p.bytes_freed,
        }));
        if !ctx.json {
            outln!(
                "prune{}: {} pack(s) removed, {} repacked, {} freed",
                if dry { " (dry run)" } else { "" },
                p.packs_removed,
                p.packs_repacked,
                output::bytes(p.bytes_freed)
            );
        }
    }
    let mut wal_pruned = None;
    if args.prune {
        let kept_snaps: Vec<&lifeboat_repo::SnapshotInfo> = snaps
            .iter()
            .filter(|s| decisions.iter().any(|d| d.keep && d.id == s.id))
            .collect();
        // A kept snapshot whose manifest cannot be read may be a base backup: which WAL it
        // needs is unknown, so no WAL is deleted.
        if let Some(s) = kept_snaps.iter().find(|s| s.manifest.is_err()) {
            return Err(CliError::failure(
                format!(
                    "cannot prune WAL: the manifest of kept snapshot `{}` of `{}` cannot be read, so the WAL it may need is unknown",
                    s.short_id(),
                    s.target
                ),
                Some(
                    "run `lifeboat check`; forget that snapshot if it is damaged, then prune again"
                        .into(),
                ),
            ));
        }
        let kept: Vec<lifeboat_core::manifest::PhysicalManifest> = kept_snaps
            .iter()
            .filter_map(|s| s.manifest.as_ref().ok().and_then(|m| m.physical.clone()))
            .collect();
        let (r, dry) = (repo.clone(), args.dry_run);
        let w = tokio::task::spawn_blocking(move || lifeboat_engine::wal::prune(&r, &kept, dry))
            .await??;
        if !ctx.json {
            outln!(
                "WAL{}: {} file(s) no kept base backup needs {}",
                if dry { " (dry run)" } else { "" },
                w.deleted,
                if dry { "would be deleted" } else { "deleted" }
            );
        }
        wal_pruned = Some(json!({ "deleted": w.deleted, "kept": w.kept }));
    }
    if ctx.json {
        output::json(&json!({
            "dry_run": args.dry_run,
            "wal": wal_pruned,
            "decisions": decisions.iter().map(|d| json!({
                "id": d.id, "target": d.target, "time": d.time.timestamp().to_string(),
                "keep": d.keep, "reasons": d.reasons,
            })).collect::<Vec<_>>(),
            "forgotten": if args.dry_run { Vec::new() } else { forget.clone() },
            "prune": pruned,
        }));
    } else {
        outln!(
            "{} snapshot(s) {}",
            forget.len(),
            if args.dry_run {
                "would be forgotten (dry run)"
            } else {
                "forgotten"
            }
        );
    }
    Ok(0)
}
