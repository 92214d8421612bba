//! `lifeboat restore TARGET`: the engine plans (`--dry-run` prints that plan and stops),
//! then carries out exactly that plan; this prints the plan, the emergency backup and the
//! result, and exits 3 if what was restored does not match the manifest.

use lifeboat_core::Redacted;
use lifeboat_engine::restore::{self, Recovery, RestoreRequest};
use serde_json::{Value, json};

use super::Context;
use crate::{cli::RestoreArgs, error::CliResult, output};

pub async fn run(ctx: &Context, args: RestoreArgs) -> CliResult<i32> {
    let engine = ctx.engine().await?;
    let (dry_run, force, no_checks) = (args.dry_run, args.force, args.no_checks);
    let request = request_of(args);
    let plan = restore::plan(&engine, &request).await?;
    if dry_run {
        let refusal = plan.refuses(force);
        if ctx.json {
            output::json(&json!({
                "dry_run": true, "plan": plan.plan, "needs_force": refusal.is_some_and(|r| r.forceable),
            }));
            return Ok(0);
        }
        for line in plan.plan.lines(true) {
            outln!("{line}");
        }
        for line in &plan.plan.notes {
            outln!("{line}");
        }
        match refusal {
            Some(r) if r.forceable => outln!("  (would refuse without --force: {})", r.why),
            Some(r) => outln!("  (would refuse: {})", r.why),
            None => {}
        }
        outln!("nothing was changed");
        return Ok(0);
    }
    // A signal stops the restore: what it started is put back, and it exits 130.
    let cancel = crate::interrupt::on_signal("stopping the restore; putting the destination back");
    let done = restore::execute(&engine, plan, force, &cancel).await?;
    let outcome = done.outcome;
    // The target's `[[checks]]` on what was restored, as a drill runs them.
    let checks = if no_checks || !outcome.verified {
        Vec::new()
    } else {
        restore::checks::live_checks(&engine, &request).await?
    };
    if ctx.json {
        let mut out = json!({
            "plan": done.plan, "emergency_snapshot": done.emergency_snapshot, "checks": checks,
        });
        if let Value::Object(o) = &mut out {
            o.extend(outcome.facts);
        }
        output::json(&out);
    } else {
        for line in &outcome.lines {
            outln!("{line}");
        }
        for c in &checks {
            outln!(
                "  check {}: {} ({})",
                c.name,
                if c.passed { "passed" } else { "FAILED" },
                c.detail
            );
        }
    }
    if let Some(e) = restore::checks::failed(&request.target, &checks) {
        eprintln!("error: {}", e.message);
        return Ok(3);
    }
    if !outcome.verified {
        eprintln!(
            "error: {}",
            outcome
                .problem
                .as_deref()
                .unwrap_or("what was restored differs from the manifest")
        );
        return Ok(3);
    }
    Ok(0)
}

/// The engine's request, from the command line.
fn request_of(args: RestoreArgs) -> RestoreRequest {
    let p = args.pitr;
    RestoreRequest {
        target: args.target,
        snapshot: args.snapshot,
        time: p.time,
        to: args.to.map(Redacted::new),
        to_dir: args.to_dir,
        table: args.table,
        prefix: args.prefix,
        key: args.key,
        jobs: args.jobs,
        keep_owners: args.keep_owners,
        recovery: Recovery {
            lsn: p.lsn,
            xid: p.xid,
            name: p.name,
            latest: p.latest,
            pause: p.pause,
            start: p.start,
            port: p.port,
            no_archive: p.no_archive,
        },
    }
}
