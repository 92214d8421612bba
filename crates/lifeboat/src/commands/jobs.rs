//! `lifeboat jobs [TARGET] [--failed]`: the job history kept in the repository's side area —
//! every backup run by hand or by `serve`, with its trigger and outcome.

use lifeboat_engine::jobs::{Outcome, history};
use serde_json::json;

use super::Context;
use crate::{cli::JobsArgs, error::CliResult, output};

pub async fn run(ctx: &Context, args: JobsArgs) -> CliResult<i32> {
    let engine = ctx.engine().await?;
    // A target, the repository's upkeep (`repository`) or a copy's jobs (its name).
    if let Some(t) = &args.target
        && t != lifeboat_engine::jobs::REPOSITORY
        && !engine.config.copies.contains_key(t)
    {
        lifeboat_engine::backup::select_targets(&engine.config, std::slice::from_ref(t))?;
    }
    let mut jobs = history(&engine.repo, args.target.as_deref()).await?;
    if args.failed {
        jobs.retain(|j| j.outcome != Outcome::Succeeded);
    }
    if ctx.json {
        output::json(&json!({ "jobs": jobs }));
        return Ok(0);
    }
    if jobs.is_empty() {
        outln!("no jobs");
        return Ok(0);
    }
    let rows: Vec<Vec<String>> = jobs
        .iter()
        .map(|j| {
            vec![
                j.started_at
                    .map_or("?".into(), |t| t.strftime("%Y-%m-%d %H:%M:%S").to_string()),
                j.target.to_string(),
                j.job.clone(),
                j.trigger.as_str().to_string(),
                j.outcome.as_str().to_string(),
                format!("{:.1} s", j.seconds),
                match (&j.snapshot, &j.error) {
                    (Some(s), _) => format!("snapshot {} ({})", s.short(), output::bytes(j.bytes)),
                    (None, Some(e)) => e.clone(),
                    (None, None) => String::new(),
                },
            ]
        })
        .collect();
    output::table(
        &[
            "STARTED", "TARGET", "JOB", "TRIGGER", "OUTCOME", "TIME", "RESULT",
        ],
        &rows,
    );
    Ok(0)
}
