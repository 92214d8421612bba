//! Where every target stands against its objectives: the last backup and its age against
//! the RPO, the last drill's verdict and its measured RTO against the RTO, and for physical
//! targets the WAL archive's newest segment and the server's archiver. The evidence is
//! gathered here; [`crate::objectives`] judges it.

use lifeboat_drill::{DrillReport, Verdict};
use serde::Serialize;

use crate::{
    Engine, EngineResult,
    drill::{history::read_history, restorable_at},
    objectives,
};

/// One target's row.
#[derive(Debug, Serialize)]
pub struct TargetStatus {
    pub target: String,
    pub kind: String,
    pub last_backup: Option<String>,
    pub last_backup_snapshot: Option<String>,
    /// Seconds since the newest restorable point of the last backup.
    pub backup_age_seconds: Option<f64>,
    pub rpo_objective_seconds: Option<f64>,
    pub last_drill: Option<String>,
    pub last_drill_verdict: Option<Verdict>,
    pub rto_seconds: Option<f64>,
    pub rto_objective_seconds: Option<f64>,
    /// WAL archiving state; physical targets only.
    pub wal: Option<WalState>,
    /// What is wrong, empty when every objective is met.
    pub problems: Vec<String>,
}

/// Where a physical target's WAL archiving stands.
#[derive(Debug, Serialize)]
pub struct WalState {
    /// The newest segment in the repository, and when it was written there.
    pub last_archived: Option<String>,
    pub last_archived_at: Option<String>,
    /// The server's own view (`pg_stat_archiver`); `None` when it cannot be reached.
    pub server: Option<lifeboat_postgres::physical::ArchiverStats>,
    pub server_error: Option<String>,
}

/// The archive's newest segment of the cluster of `manifest`, with its write time.
async fn wal_state(
    repo: &std::sync::Arc<lifeboat_repo::Repo>,
    target: &lifeboat_core::TargetConfig,
    name: &str,
    p: &lifeboat_core::manifest::PhysicalManifest,
) -> EngineResult<WalState> {
    let system_id = p.system_id.0;
    let files = repo.call(move |r| crate::wal::list(r, system_id)).await?;
    let last = files
        .iter()
        .filter(|w| w.kind == lifeboat_postgres::wal::WalKind::Segment)
        .max_by(|a, b| (a.position, a.timeline).cmp(&(b.position, b.timeline)));
    let at = match last {
        Some(w) => repo
            .side()
            .written_at(&crate::wal::object_name(system_id, w))
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

/// Every configured target's row, in the config's order.
pub async fn status(engine: &Engine) -> EngineResult<Vec<TargetStatus>> {
    let (config, repo) = (&engine.config, &engine.repo);
    let snaps = repo.list_snapshots(None).await?;
    let now = jiff::Timestamp::now();
    let mut rows = Vec::new();
    for (name, target) in &config.targets {
        let last = snaps
            .iter()
            .rev()
            .find(|s| &s.target == name && !s.emergency && s.is_good());
        let history = read_history(repo, name).await?;
        let drill: Option<&DrillReport> = history.last();
        // Physical: the restorable point is the newest archived WAL, not the base backup.
        let physical = last.and_then(|s| s.manifest.as_ref().ok()?.physical.clone());
        let wal = match &physical {
            Some(p) => Some(wal_state(repo, target, name, p).await?),
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
    Ok(rows)
}
