//! `lifeboat recover PLAN [--time T] [--dry-run] [--yes] [--resume]`: the engine decides the
//! recovery (every restore planned, nothing changed); this prints it, asks once unless
//! `--yes`, then runs it, and prints how each step went. Exit 0 when every step went well,
//! 1 when one failed (the run can be resumed), 130 on a signal.

use std::io::{BufRead, Write};

use lifeboat_engine::recovery::{self, RecoverRequest, record::Outcome};
use serde_json::json;

use super::Context;
use crate::{cli::RecoverArgs, error::CliResult, output};

pub async fn run(ctx: &Context, args: RecoverArgs) -> CliResult<i32> {
    let engine = ctx.engine().await?;
    let request = RecoverRequest {
        plan: args.plan.clone(),
        time: args.time.clone(),
        resume: args.resume,
    };
    let decided = recovery::decide(&engine, &request).await?;
    if args.dry_run {
        if ctx.json {
            output::json(&json!({ "dry_run": true, "recovery": decided }));
        } else {
            for line in decided.lines() {
                outln!("{line}");
            }
            outln!("nothing was changed");
        }
        return Ok(0);
    }
    if !ctx.json {
        for line in decided.lines() {
            outln!("{line}");
        }
    }
    if !args.yes && !ask(&format!("run plan `{}` now?", args.plan)) {
        eprintln!("not started: nothing was changed");
        return Ok(1);
    }
    let cancel = crate::interrupt::on_signal(
        "stopping the recovery; the running step puts back what it started",
    );
    let confirm: recovery::Confirm =
        std::sync::Arc::new(|text: &str| ask(&format!("manual step: {text} — done?")));
    let record = recovery::run(&engine, decided, &cancel, &confirm).await?;
    if ctx.json {
        output::json(&json!({ "run": record }));
    } else {
        for s in &record.steps {
            outln!(
                "  {}. {} — {:?}{}",
                s.number,
                s.title,
                s.state,
                if s.detail.is_empty() {
                    String::new()
                } else {
                    format!(": {}", s.detail)
                }
            );
        }
        outln!(
            "recovery {} ({} run {})",
            record.outcome.as_str(),
            record.plan,
            record.id
        );
    }
    Ok(match record.outcome {
        Outcome::Succeeded => 0,
        Outcome::Interrupted => crate::interrupt::EXIT_INTERRUPTED,
        Outcome::Failed | Outcome::Running => {
            eprintln!(
                "hint: fix the cause, then `lifeboat recover {} --resume` continues after the steps that are done",
                record.plan
            );
            1
        }
    })
}

/// Ask `question` on stderr and read the answer from stdin (a terminal, or a line piped
/// in): yes on `y` or `yes`.
fn ask(question: &str) -> bool {
    let mut err = std::io::stderr();
    let _ = write!(err, "{question} [y/N] ");
    let _ = err.flush();
    let mut line = String::new();
    // At a terminal, or piped: one line per question.
    match std::io::stdin().lock().read_line(&mut line) {
        Ok(0) | Err(_) => {
            eprintln!("(no answer)");
            false
        }
        Ok(_) => matches!(line.trim().to_lowercase().as_str(), "y" | "yes"),
    }
}
