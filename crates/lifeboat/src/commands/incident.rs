//! `lifeboat incident open|note|close|list|show|report`: incidents kept in the repository's
//! side area; while one is open, every lifeboat action joins its timeline.

use lifeboat_engine::incidents::{self, report};
use serde_json::json;

use super::Context;
use crate::{
    cli::IncidentCommand,
    error::{CliError, CliResult},
    output,
};

pub async fn run(ctx: &Context, cmd: IncidentCommand) -> CliResult<i32> {
    let engine = ctx.engine().await?;
    match cmd {
        IncidentCommand::Open(a) => {
            let i = incidents::open(&engine, &a.title, a.severity).await?;
            if ctx.json {
                output::json(&json!({ "incident": i }));
            } else {
                outln!(
                    "opened incident {} (severity {}): {}",
                    i.id,
                    i.severity,
                    i.title
                );
                outln!("every lifeboat action joins its timeline until `lifeboat incident close`");
            }
        }
        IncidentCommand::Note(a) => {
            let i = incidents::note(&engine, &a.text).await?;
            if !ctx.json {
                outln!("noted on incident {}", i.id);
            }
        }
        IncidentCommand::Close(a) => {
            let i = incidents::close(&engine, a.summary.as_deref()).await?;
            if ctx.json {
                output::json(&json!({ "incident": i }));
            } else {
                outln!(
                    "closed incident {}; `lifeboat incident report {}` writes the post-mortem",
                    i.id,
                    i.id
                );
            }
        }
        IncidentCommand::List => {
            let all = incidents::list(&engine.repo).await?;
            if ctx.json {
                output::json(&json!({ "incidents": all }));
            } else if all.is_empty() {
                outln!("no incidents");
            } else {
                let at = |t: Option<jiff::Timestamp>| {
                    t.map_or_else(
                        || "open".to_string(),
                        |t| t.strftime("%Y-%m-%d %H:%M UTC").to_string(),
                    )
                };
                let rows: Vec<Vec<String>> = all
                    .iter()
                    .map(|i| {
                        vec![
                            i.id.clone(),
                            at(i.opened_at),
                            at(i.closed_at),
                            i.severity.to_string(),
                            i.title.clone(),
                        ]
                    })
                    .collect();
                output::table(&["ID", "OPENED", "CLOSED", "SEV", "TITLE"], &rows);
            }
        }
        IncidentCommand::Show(a) => {
            let (i, timeline) = incidents::show(&engine.repo, &a.id).await?;
            if ctx.json {
                output::json(&json!({ "incident": i, "timeline": timeline }));
            } else {
                outln!("incident {} (severity {}): {}", i.id, i.severity, i.title);
                for e in &timeline {
                    outln!(
                        "  {}  {:<16} {}",
                        e.time
                            .map(|t| t.strftime("%H:%M:%S").to_string())
                            .unwrap_or_default(),
                        e.kind,
                        e.text
                    );
                }
            }
        }
        IncidentCommand::Report(a) => {
            let (i, timeline) = incidents::show(&engine.repo, &a.id).await?;
            let r = report::build(&i, &timeline);
            let text = match a.format.as_str() {
                "html" => r.html(),
                "json" => serde_json::to_string_pretty(&r).unwrap_or_default() + "\n",
                _ => r.markdown(),
            };
            match &a.output {
                Some(path) => {
                    std::fs::write(path, text).map_err(|e| {
                        CliError::failure(format!("cannot write `{}`: {e}", path.display()), None)
                    })?;
                    if !ctx.json {
                        outln!("wrote {}", path.display());
                    }
                }
                None => print!("{text}"),
            }
        }
    }
    Ok(0)
}
