//! `lifeboat drills [TARGET]`: the drill history kept in the repository's side area.

use serde_json::json;

use lifeboat_engine::drill::history::history_of;

use super::Context;
use crate::{
    cli::DrillsArgs,
    error::{CliError, CliResult},
    output,
};

pub async fn run(ctx: &Context, args: DrillsArgs) -> CliResult<i32> {
    let config = ctx.load_config()?;
    if let Some(t) = &args.target
        && !config.targets.contains_key(t)
    {
        return Err(CliError::usage(
            format!("no target `{t}` in the config"),
            Some("`lifeboat config check` lists the targets".into()),
        ));
    }
    let repo = ctx.open_repo(&config).await?;
    let reports = history_of(&repo, &config, args.target.as_deref()).await?;
    if ctx.json {
        let items: Vec<_> = reports
            .iter()
            .map(|r| {
                json!({
                    "id": r.id,
                    "target": r.target,
                    "started_at": r.started_at,
                    "verdict": r.verdict,
                    "rto_seconds": r.rto.measured_seconds,
                    "rto_objective_seconds": r.rto.objective_seconds,
                    "rpo_seconds": r.rpo.measured_seconds,
                    "rpo_objective_seconds": r.rpo.objective_seconds,
                    "snapshot": r.snapshot,
                    "failed_checks": r.failed_checks().map(|c| &c.name).collect::<Vec<_>>(),
                })
            })
            .collect();
        output::json(&json!({ "drills": items }));
        return Ok(0);
    }
    if reports.is_empty() {
        outln!("no drills yet; run `lifeboat drill`");
        return Ok(0);
    }
    let seconds = |s: Option<f64>| s.map_or("—".into(), lifeboat_drill::render::seconds);
    let rows: Vec<Vec<String>> = reports
        .iter()
        .map(|r| {
            let failed: Vec<&str> = r.failed_checks().map(|c| c.name.as_str()).collect();
            vec![
                r.started_at.clone(),
                r.target.clone(),
                r.verdict.as_str().to_uppercase(),
                seconds(r.rto.measured_seconds),
                seconds(r.rpo.measured_seconds),
                match (&r.error, failed.is_empty()) {
                    (Some(e), _) => e.clone(),
                    (None, false) => format!("failed: {}", failed.join(", ")),
                    (None, true) => format!("{} checks passed", r.checks.len()),
                },
            ]
        })
        .collect();
    output::table(&["TIME", "TARGET", "VERDICT", "RTO", "RPO", ""], &rows);
    Ok(0)
}
