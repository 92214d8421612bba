//! `lifeboat status`: one row per target — the last backup and its age against the RPO
//! objective, the last drill's verdict and its measured RTO against the RTO objective.
//! Exit 3 when any objective is missed (no backup, backup too old, no drill or a failed
//! one while an RTO is declared, RTO too long), so it works as a cron or Nagios check.

use std::io::IsTerminal;

use lifeboat_drill::{DrillReport, Verdict, render::seconds};
use serde::Serialize;

use super::{
    Context,
    drill::{read_history, restorable_at},
};
use crate::{error::CliResult, output};

#[derive(Debug, Serialize)]
struct TargetStatus {
    target: String,
    kind: String,
    last_backup: Option<String>,
    last_backup_snapshot: Option<String>,
    /// Seconds since the newest restorable point of the last backup.
    backup_age_seconds: Option<f64>,
    rpo_objective_seconds: Option<f64>,
    last_drill: Option<String>,
    last_drill_verdict: Option<Verdict>,
    rto_seconds: Option<f64>,
    rto_objective_seconds: Option<f64>,
    /// WAL archiving state; physical targets only (none exist yet).
    wal: Option<serde_json::Value>,
    /// What is wrong, empty when every objective is met.
    problems: Vec<String>,
}

pub async fn run(ctx: &Context) -> CliResult<i32> {
    let config = ctx.load_config()?;
    let repo = ctx.open_repo(&config).await?;
    let r = repo.clone();
    let snaps = tokio::task::spawn_blocking(move || r.snapshots(None)).await??;
    let now = jiff::Timestamp::now();
    let mut rows = Vec::new();
    for (name, target) in &config.targets {
        let last = snaps
            .iter()
            .rev()
            .find(|s| &s.target == name && !s.emergency && s.is_good());
        let history = read_history(&repo, name).await?;
        let drill: Option<&DrillReport> = history.last();
        let age = last.and_then(|s| {
            let m = s.manifest.as_ref().ok()?;
            Some((now.as_millisecond() - restorable_at(s, m).as_millisecond()) as f64 / 1000.0)
        });
        let rpo = target.objectives.rpo.map(|d| d.as_secs() as f64);
        let rto = target.objectives.rto.map(|d| d.as_secs() as f64);
        let mut problems = Vec::new();
        match (age, rpo) {
            (None, _) => problems.push("no backup".to_string()),
            (Some(a), Some(o)) if a > o => problems.push(format!(
                "last backup is {} old, RPO objective {}",
                seconds(a),
                seconds(o)
            )),
            _ => {}
        }
        let measured_rto = drill.and_then(|d| d.rto.measured_seconds);
        if let Some(o) = rto {
            match (drill, measured_rto) {
                (None, _) => problems.push("RTO unproven: no drill yet".into()),
                (Some(d), _) if d.verdict != Verdict::Pass => problems.push(format!(
                    "last drill {}",
                    if d.verdict == Verdict::Fail {
                        "failed"
                    } else {
                        "did not finish"
                    }
                )),
                (Some(_), Some(m)) if m > o => problems.push(format!(
                    "RTO {} measured, objective {}",
                    seconds(m),
                    seconds(o)
                )),
                _ => {}
            }
        } else if let Some(d) = drill
            && d.verdict != Verdict::Pass
        {
            problems.push("last drill failed".into());
        }
        rows.push(TargetStatus {
            target: name.clone(),
            kind: target.kind.to_string(),
            last_backup: last.map(|s| s.time.timestamp().to_string()),
            last_backup_snapshot: last.map(|s| s.id.clone()),
            backup_age_seconds: age,
            rpo_objective_seconds: rpo,
            last_drill: drill.map(|d| d.started_at.clone()),
            last_drill_verdict: drill.map(|d| d.verdict),
            rto_seconds: measured_rto,
            rto_objective_seconds: rto,
            wal: None,
            problems,
        });
    }
    let missed = rows.iter().any(|r| !r.problems.is_empty());
    if ctx.json {
        output::json(&serde_json::json!({ "targets": rows, "ok": !missed }));
    } else {
        print_table(&rows);
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
                r.target.clone(),
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
                "—".into(),
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
