//! `lifeboat status`: one row per target — the last backup and its age against the RPO
//! objective, the last drill's verdict and its measured RTO against the RTO objective.
//! Exit 3 when any objective is missed (no backup, backup too old, no drill or a failed
//! one while an RTO is declared, RTO too long), so it works as a cron or Nagios check.

use std::io::IsTerminal;

use lifeboat_drill::{DrillReport, Verdict, render::seconds};
use lifeboat_engine::objectives;
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
    /// WAL archiving state; physical targets only.
    wal: Option<WalState>,
    /// What is wrong, empty when every objective is met.
    problems: Vec<String>,
}

/// Where a physical target's WAL archiving stands.
#[derive(Debug, Serialize)]
struct WalState {
    /// The newest segment in the repository, and when it was written there.
    last_archived: Option<String>,
    last_archived_at: Option<String>,
    /// The server's own view (`pg_stat_archiver`); `None` when it cannot be reached.
    server: Option<lifeboat_postgres::physical::ArchiverStats>,
    server_error: Option<String>,
}

/// The archive's newest segment of the cluster of `manifest`, with its write time.
async fn wal_state(
    repo: &std::sync::Arc<lifeboat_repo::Repo>,
    target: &lifeboat_core::TargetConfig,
    name: &str,
    p: &lifeboat_core::manifest::PhysicalManifest,
) -> CliResult<WalState> {
    let system_id = p.system_id.0;
    let (r, sid) = (repo.clone(), system_id);
    let files = tokio::task::spawn_blocking(move || lifeboat_engine::wal::list(&r, sid)).await??;
    let last = files
        .iter()
        .filter(|w| w.kind == lifeboat_postgres::wal::WalKind::Segment)
        .max_by(|a, b| (a.position, a.timeline).cmp(&(b.position, b.timeline)));
    let at = match last {
        Some(w) => repo
            .side()
            .written_at(&lifeboat_engine::wal::object_name(system_id, w))
            .ok()
            .flatten()
            .and_then(|t| jiff::Timestamp::try_from(t).ok()),
        None => None,
    };
    let (server, server_error) = match target.connection_url(name) {
        Ok(url) => match lifeboat_postgres::Target::parse(&url) {
            Ok(t) => match lifeboat_postgres::physical::archiver_stats(&t).await {
                Ok(s) => (Some(s), None),
                Err(e) => (None, Some(e.to_string())),
            },
            Err(e) => (None, Some(e.to_string())),
        },
        Err(e) => (None, Some(e.to_string())),
    };
    Ok(WalState {
        last_archived: last.map(|w| w.name.clone()),
        last_archived_at: at.map(|t| t.to_string()),
        server,
        server_error,
    })
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
        // Physical: the restorable point is the newest archived WAL, not the base backup.
        let physical = last.and_then(|s| s.manifest.as_ref().ok()?.physical.clone());
        let wal = match &physical {
            Some(p) => Some(wal_state(&repo, target, name, p).await?),
            None => None,
        };
        let age = objectives::backup_age(
            now,
            last.and_then(|s| Some(restorable_at(s, s.manifest.as_ref().ok()?))),
            wal.as_ref()
                .and_then(|w| w.last_archived_at.as_deref())
                .and_then(|t| t.parse::<jiff::Timestamp>().ok()),
        );
        let rpo = target.objectives.rpo.map(|d| d.as_secs() as f64);
        let rto = target.objectives.rto.map(|d| d.as_secs() as f64);
        let measured_rto = drill.and_then(|d| d.rto.measured_seconds);
        let problems = objectives::problems(&objectives::Evidence {
            backup_age_seconds: age,
            rpo_seconds: rpo,
            archiver: wal.as_ref().and_then(|w| w.server.as_ref()),
            drill: drill.map(|d| objectives::DrillFacts {
                verdict: d.verdict,
                rto_seconds: measured_rto,
            }),
            rto_seconds: rto,
        });
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
            wal,
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
                r.wal
                    .as_ref()
                    .and_then(|w| w.last_archived.clone())
                    .unwrap_or_else(|| "—".into()),
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
