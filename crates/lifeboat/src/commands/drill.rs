//! `lifeboat drill`: prove that targets can be recovered, and how fast. The engine's
//! [`drill`](lifeboat_engine::drill) does the work per target; this command picks the
//! targets, stores each report, prints it (or one JSON document) and sets the exit code:
//! 0 passed, 3 a check or an objective failed, 1 an error of the environment, 130 on a
//! signal (the scratch environment is torn down first).

use std::time::Instant;

use lifeboat_drill::{CheckResult, DrillReport, Objective, Verdict, render};
use lifeboat_engine::{
    backup::select_targets,
    drill::{DrillRequest, drill, history::store},
};

use super::Context;
use crate::{cli::DrillArgs, error::CliError, error::CliResult, output};

pub async fn run(ctx: &Context, args: DrillArgs) -> CliResult<i32> {
    let cancel = crate::interrupt::on_signal("tearing down the scratch environment");
    if let Some(plan) = &args.plan {
        return drill_plan(ctx, plan, args.report_dir.clone(), &cancel).await;
    }
    let started = Instant::now();
    let config = ctx.load_config()?;
    let names = select_targets(&config, &args.targets)?;
    let time = args
        .time
        .as_deref()
        .map(lifeboat_engine::time::parse_time)
        .transpose()
        .map_err(|e| CliError::usage(e, Some("write it like 2026-11-22T10:01:00Z".into())))?;
    config.drill.scratch_url()?;
    let report_dir = args.report_dir.clone().or(config.drill.report_dir.clone());
    let engine = ctx.engine_on(config).await?;
    let request = |name: &String, began| DrillRequest {
        target: name.clone(),
        snapshot: args.snapshot.clone(),
        time,
        jobs: args.jobs,
        began,
    };
    if args.dry_run {
        return dry_run(ctx, &engine, names.iter().map(|n| request(n, started))).await;
    }
    let _lock = engine
        .repo
        .lock_async(lifeboat_repo::LockKind::Shared, "lifeboat drill")
        .await?;
    // Opening the repository is part of every drill's RTO.
    let opened = started.elapsed();

    let mut code = 0;
    let mut reports = Vec::new();
    for name in &names {
        let began = Instant::now()
            .checked_sub(opened)
            .unwrap_or_else(Instant::now);
        let report = drill(&engine, &request(name, began), &cancel).await;
        let written = store(&engine, &report, report_dir.as_deref()).await;
        if !ctx.json {
            print_report(&report, &written);
        }
        code = match (code, report.verdict) {
            (1, _) | (_, Verdict::Error) => 1,
            (3, _) | (_, Verdict::Fail) => 3,
            _ => 0,
        };
        reports.push((report, written));
        if cancel.is_cancelled() {
            break;
        }
    }
    if ctx.json {
        let items: Vec<serde_json::Value> = reports
            .iter()
            .map(|(r, w)| serde_json::json!({ "report": r, "written": w }))
            .collect();
        output::json(&serde_json::json!({ "drills": items }));
    }
    if cancel.is_cancelled() {
        eprintln!("error: interrupted; the scratch environment was torn down");
        return Ok(crate::interrupt::EXIT_INTERRUPTED);
    }
    Ok(code)
}

/// `--dry-run`: each target's plan, nothing provisioned; exit 1 if a target has none.
async fn dry_run(
    ctx: &Context,
    engine: &lifeboat_engine::Engine,
    requests: impl Iterator<Item = DrillRequest>,
) -> CliResult<i32> {
    let mut plans = Vec::new();
    let mut code = 0;
    for request in requests {
        match lifeboat_engine::drill::plan(engine, &request).await {
            Ok(p) => {
                if !ctx.json {
                    for line in p.lines() {
                        outln!("{line}");
                    }
                }
                plans.push(serde_json::json!({ "target": request.target, "plan": p }));
            }
            Err(e) => {
                code = 1;
                let e = CliError::from(e.context(format!("drill of `{}`", request.target)));
                if !ctx.json {
                    e.print();
                }
                plans.push(serde_json::json!({ "target": request.target, "error": e.message }));
            }
        }
    }
    if ctx.json {
        output::json(&serde_json::json!({ "dry_run": true, "drills": plans }));
    } else {
        outln!("nothing was provisioned");
    }
    Ok(code)
}

fn objective_text(o: &Objective) -> String {
    let measured = o.measured_seconds.map_or("—".into(), render::seconds);
    match (o.objective_seconds, o.met) {
        (Some(obj), Some(true)) => format!("{measured} (objective {}: met)", render::seconds(obj)),
        (Some(obj), Some(false)) => {
            format!("{measured} (objective {}: MISSED)", render::seconds(obj))
        }
        _ => format!("{measured} (no objective)"),
    }
}

fn print_report(r: &DrillReport, written: &[String]) {
    outln!(
        "drill of `{}`: {}",
        r.target,
        r.verdict.as_str().to_uppercase()
    );
    if let Some(e) = &r.error {
        outln!("  error: {e}");
    }
    if !r.snapshot.is_empty() {
        outln!(
            "  snapshot {} (restorable point {})",
            &r.snapshot[..8.min(r.snapshot.len())],
            r.restorable_at
        );
    }
    outln!("  RTO {}", objective_text(&r.rto));
    outln!("  RPO {}", objective_text(&r.rpo));
    let phases: Vec<String> = r
        .phases
        .iter()
        .map(|p| format!("{} {}", p.name, render::seconds(p.seconds)))
        .collect();
    outln!("  phases: {}", phases.join(", "));
    let failed: Vec<&CheckResult> = r.failed_checks().collect();
    outln!(
        "  checks: {} passed, {} failed",
        r.checks.len() - failed.len(),
        failed.len()
    );
    for c in failed {
        outln!("  FAILED {} ({}): {}", c.name, c.kind, c.detail);
    }
    for w in written {
        outln!("  report: {w}");
    }
}

/// `drill --plan NAME`: the whole plan against scratch environments; its report printed
/// (or as JSON) and written to the report folder; exit 0 passed, 3 failed, 130 on a
/// signal.
async fn drill_plan(
    ctx: &Context,
    plan: &str,
    report_dir: Option<std::path::PathBuf>,
    cancel: &lifeboat_engine::cancel::Cancel,
) -> CliResult<i32> {
    let config = ctx.load_config()?;
    config.drill.scratch_url()?;
    let report_dir = report_dir.or(config.drill.report_dir.clone());
    let engine = ctx.engine_on(config).await?;
    let report = lifeboat_engine::recovery::drill::drill_plan(&engine, plan, cancel).await?;
    if let Some(dir) = &report_dir {
        std::fs::create_dir_all(dir).map_err(|e| {
            CliError::failure(format!("cannot create `{}`: {e}", dir.display()), None)
        })?;
        for (ext, text) in [
            ("md", report.markdown()),
            ("html", report.html()),
            (
                "json",
                serde_json::to_string_pretty(&report).unwrap_or_default(),
            ),
        ] {
            let path = dir.join(format!("{}.{ext}", report.id));
            std::fs::write(&path, text).map_err(|e| {
                CliError::failure(format!("cannot write `{}`: {e}", path.display()), None)
            })?;
        }
    }
    if ctx.json {
        output::json(&serde_json::json!({ "plan_drill": report }));
    } else {
        outln!("{}", report.markdown());
    }
    Ok(if cancel.is_cancelled() {
        crate::interrupt::EXIT_INTERRUPTED
    } else {
        match report.verdict {
            Verdict::Pass => 0,
            Verdict::Fail => 3,
            _ => 1,
        }
    })
}
