//! `lifeboat copy [NAME...] [--read-data] [--dry-run]`: bring second copies of the
//! repository (`[copies.NAME]`) up to date. The engine's
//! [`copies::copy`](lifeboat_engine::copies::copy) copies the snapshots each copy lacks,
//! verifies them there, then the side area; a copy's repository is created once with
//! `lifeboat init --repo NAME`.
//! Every copy is tried; the exit code is 1 if any failed.

use lifeboat_engine::copies::{self, CopyReport};

use super::Context;
use crate::{
    cli::CopyArgs,
    error::{CliError, CliResult},
    output,
};

pub async fn run(ctx: &Context, args: CopyArgs) -> CliResult<i32> {
    let engine = ctx.engine().await?;
    let names: Vec<String> = if args.names.is_empty() {
        engine.config.copies.keys().cloned().collect()
    } else {
        args.names.clone()
    };
    if names.is_empty() {
        return Err(CliError::usage(
            "the config declares no copies",
            Some("add a `[copies.NAME]` section with `url` and a password, as `[repository]` has (README: 3-2-1)".into()),
        ));
    }
    for n in &names {
        if !engine.config.copies.contains_key(n) {
            let known: Vec<&str> = engine.config.copies.keys().map(String::as_str).collect();
            return Err(CliError::usage(
                format!("no copy named `{n}`"),
                Some(format!("the config declares {}", known.join(", "))),
            ));
        }
    }
    let mut reports = Vec::new();
    let mut failures = Vec::new();
    for name in &names {
        if !ctx.json && !ctx.quiet {
            outln!(
                "{} copy `{name}`…",
                if args.dry_run {
                    "planning"
                } else {
                    "bringing up to date"
                }
            );
        }
        match copies::copy(&engine, name, args.read_data, args.dry_run, ctx.bars()).await {
            Ok(r) => {
                if !ctx.json {
                    print_report(&r);
                }
                reports.push(r);
            }
            Err(e) => {
                let e = CliError::from(e);
                if !ctx.json {
                    e.print();
                }
                failures.push((name.clone(), e));
            }
        }
    }
    if ctx.json {
        output::json(&serde_json::json!({
            "copies": reports,
            "failed": failures.iter().map(|(n, e)| serde_json::json!({
                "copy": n, "error": e.message, "hint": e.hint,
            })).collect::<Vec<_>>(),
        }));
    }
    Ok(if failures.is_empty() { 0 } else { 1 })
}

fn print_report(r: &CopyReport) {
    if r.dry_run {
        if r.pending.is_empty() {
            outln!(
                "  nothing to copy: {} snapshot(s) already there (dry run)",
                r.snapshots.already
            );
            return;
        }
        let rows: Vec<Vec<String>> = r
            .pending
            .iter()
            .map(|p| {
                vec![
                    p.id.chars().take(8).collect(),
                    p.target.clone(),
                    p.time.to_string(),
                ]
            })
            .collect();
        output::table(&["WOULD COPY", "TARGET", "TIME"], &rows);
        outln!(
            "  {} snapshot(s) to copy, {} already there (dry run: nothing changed)",
            r.pending.len(),
            r.snapshots.already
        );
        return;
    }
    outln!(
        "  {} snapshot(s) copied and verified, {} already there; {} sent",
        r.snapshots.copied.len(),
        r.snapshots.already,
        output::bytes(r.snapshots.bytes_sent)
    );
    outln!(
        "  side area: {} object(s) copied ({}), {} unchanged; {:.1} s",
        r.side.objects,
        output::bytes(r.side.bytes),
        r.side.unchanged,
        r.seconds
    );
}
