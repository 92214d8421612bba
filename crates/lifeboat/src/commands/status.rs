//! `lifeboat status`: one row per target — the last backup and its age against the RPO
//! objective, the last drill's verdict and its measured RTO against the RTO objective.
//! Exit 3 when any objective is missed (no backup, backup too old, no drill or a failed
//! one while an RTO is declared, RTO too long), so it works as a cron or Nagios check.

use std::io::IsTerminal;

use lifeboat_drill::render::seconds;
use lifeboat_engine::status::{TargetStatus, status};

use super::Context;
use crate::{error::CliResult, output};

pub async fn run(ctx: &Context) -> CliResult<i32> {
    let engine = ctx.engine().await?;
    let rows = status(&engine).await?;
    let plans = lifeboat_engine::recovery::drill::plan_status(&engine).await?;
    let copies = lifeboat_engine::copies::lags(&engine, &rows).await?;
    let missed = rows.iter().any(|r| !r.problems.is_empty())
        || plans.iter().any(|p| !p.problems.is_empty())
        || copies.iter().any(|c| !c.problems.is_empty());
    if ctx.json {
        output::json(
            &serde_json::json!({ "targets": rows, "plans": plans, "copies": copies, "ok": !missed }),
        );
    } else {
        print_table(&rows);
        if !copies.is_empty() {
            let table: Vec<Vec<String>> = copies
                .iter()
                .map(|c| {
                    vec![
                        c.copy.clone(),
                        c.last_copy.map_or("never".into(), |t| t.to_string()),
                        c.missing.to_string(),
                        seconds(c.lag_seconds),
                        c.max_lag_seconds.map_or("—".into(), seconds),
                        if c.problems.is_empty() {
                            "OK".into()
                        } else {
                            format!("MISSED: {}", c.problems.join("; "))
                        },
                    ]
                })
                .collect();
            outln!("");
            output::table(
                &["COPY", "LAST COPY", "LACKS", "LAG", "MAX LAG", "STATUS"],
                &table,
            );
        }
        if !plans.is_empty() {
            let table: Vec<Vec<String>> = plans
                .iter()
                .map(|p| {
                    vec![
                        p.plan.clone(),
                        match (&p.verdict, &p.last_drill) {
                            (Some(v), Some(t)) => format!("{} {t}", v.as_str()),
                            _ => "never".into(),
                        },
                        p.rto_seconds.map_or("—".into(), seconds),
                        p.rto_objective_seconds.map_or("—".into(), seconds),
                        if p.problems.is_empty() {
                            "OK".into()
                        } else {
                            format!("MISSED: {}", p.problems.join("; "))
                        },
                    ]
                })
                .collect();
            outln!("");
            output::table(&["PLAN", "LAST DRILL", "RTO", "RTO OBJ", "STATUS"], &table);
        }
    }
    Ok(if missed { 3 } else { 0 })
}

fn print_table(rows: &[TargetStatus]) {
    let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let paint = |ok: bool, text: String| {
        if !color {
            text
        } else if ok {
            format!("\x1b[32m{text}\x1b[0m")
        } else {
            format!("\x1b[1;31m{text}\x1b[0m")
        }
    };
    let opt = |s: Option<f64>| s.map_or("—".into(), seconds);
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.target.to_string(),
                r.kind.clone(),
                r.last_backup.clone().unwrap_or_else(|| "never".into()),
                opt(r.backup_age_seconds),
                opt(r.rpo_objective_seconds),
                match (&r.last_drill_verdict, &r.last_drill) {
                    (Some(v), Some(t)) => format!("{} {t}", v.as_str()),
                    _ => "never".into(),
                },
                opt(r.rto_seconds),
                opt(r.rto_objective_seconds),
                match r.wal.as_ref() {
                    Some(w) if let Some(s) = &w.slot => format!(
                        "slot {}{}, keeps {}, {} unconfirmed",
                        s.wal_status,
                        if s.active { ", active" } else { "" },
                        lifeboat_engine::format::bytes(s.retained_bytes.max(0) as u64),
                        lifeboat_engine::format::bytes(s.pending_bytes.max(0) as u64)
                    ),
                    w => w
                        .and_then(|w| w.last_archived.clone())
                        .unwrap_or_else(|| "—".into()),
                },
                paint(
                    r.problems.is_empty(),
                    if r.problems.is_empty() {
                        "OK".into()
                    } else {
                        format!("MISSED: {}", r.problems.join("; "))
                    },
                ),
            ]
        })
        .collect();
    output::table(
        &[
            "TARGET",
            "KIND",
            "LAST BACKUP",
            "AGE",
            "RPO",
            "LAST DRILL",
            "RTO",
            "RTO OBJ",
            "WAL",
            "STATUS",
        ],
        &table,
    );
}
