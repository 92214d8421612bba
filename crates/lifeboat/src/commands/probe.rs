//! `lifeboat probe [NAME…]`: run the health probes once, all at the same time, and show
//! what each found. Exit 3 if one failed (one run decides here; `fail-after` is for `serve`).
//! Needs neither the repository nor `serve`.

use std::sync::Arc;

use lifeboat_engine::probes::{self, Memory};
use serde_json::json;

use super::Context;
use crate::{
    cli::ProbeArgs,
    error::{CliError, CliResult},
    output,
};

pub async fn run(ctx: &Context, args: ProbeArgs) -> CliResult<i32> {
    let config = Arc::new(ctx.load_config()?);
    let chosen = probes::select(&config.probes, &args.names).map_err(|e| {
        CliError::usage(
            e,
            Some("probes are `[[probes]]` tables in the config; see README.md".into()),
        )
    })?;
    let names: Vec<String> = chosen.iter().map(|p| p.name.clone()).collect();
    let mut runs = Vec::new();
    for name in names {
        let config = config.clone();
        runs.push(tokio::spawn(async move {
            let probe = config.probes.iter().find(|p| p.name == name).cloned();
            match probe {
                Some(p) => Some(probes::run_once(&config, &p, &mut Memory::default()).await),
                None => None,
            }
        }));
    }
    let mut found = Vec::new();
    for r in runs {
        if let Ok(Some(f)) = r.await {
            found.push(f);
        }
    }
    let all_ok = found.iter().all(|f| f.ok);
    if ctx.json {
        output::json(&json!({ "probes": found, "ok": all_ok }));
    } else if found.is_empty() {
        outln!("no probes: add `[[probes]]` tables to the config");
    } else {
        let rows: Vec<Vec<String>> = found
            .iter()
            .map(|f| {
                vec![
                    f.probe.clone(),
                    f.kind.to_string(),
                    if f.ok { "up" } else { "DOWN" }.to_string(),
                    format!("{} ms", (f.latency_seconds * 1000.0).round()),
                    f.detail.clone(),
                ]
            })
            .collect();
        output::table(&["PROBE", "KIND", "STATE", "TIME", "DETAIL"], &rows);
    }
    Ok(if all_ok { 0 } else { 3 })
}
