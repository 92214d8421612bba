//! Where every target stands against its objectives: the last backup and its age against
//! the RPO, the last drill's verdict and its measured RTO against the RTO, and for physical
//! targets the WAL archive's newest segment and the server's archiver. The evidence is
//! gathered here; [`crate::objectives`] judges it.

use lifeboat_core::{SnapshotId, TargetName};
use lifeboat_drill::{DrillReport, Verdict};
use serde::Serialize;

use crate::{
    Engine, EngineResult,
    drill::{history::read_history, restorable_at},
    kinds::{kind_of, kind_tagged},
    objectives,
    wal::ArchiveState,
};

/// One target's row.
#[derive(Debug, Clone, Serialize)]
pub struct TargetStatus {
    pub target: TargetName,
    pub kind: String,
    pub last_backup: Option<String>,
    pub last_backup_snapshot: Option<SnapshotId>,
    /// Seconds since the newest restorable point of the last backup.
    pub backup_age_seconds: Option<f64>,
    pub rpo_objective_seconds: Option<f64>,
    pub last_drill: Option<String>,
    pub last_drill_verdict: Option<Verdict>,
    /// The last drill's report id (`drills/<target>/<id>.html` in the side area).
    pub last_drill_id: Option<String>,
    pub rto_seconds: Option<f64>,
    pub rto_objective_seconds: Option<f64>,
    /// WAL archiving state; physical targets only.
    pub wal: Option<ArchiveState>,
    /// What is wrong, empty when every objective is met.
    pub problems: Vec<String>,
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
        // With a continuous archive (physical: WAL), the restorable point is its newest
        // part, not the last backup.
        let wal = match last.and_then(|s| Some((s, kind_tagged(&s.kind)?))) {
            Some((s, kind)) => kind.archive(engine, name, target, s).await?,
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
        let mut problems = objectives::problems(&objectives::Evidence {
            backup_age_seconds: age,
            rpo_seconds: rpo,
            archiver: wal.as_ref().and_then(|w| w.server.as_ref()),
            drill: drill.map(|d| objectives::DrillFacts {
                verdict: d.verdict,
                rto_seconds: measured_rto,
            }),
            rto_seconds: rto,
            drill_age_seconds: drill
                .and_then(|d| d.started_at.parse::<jiff::Timestamp>().ok())
                .map(|t| (now.as_millisecond() - t.as_millisecond()) as f64 / 1000.0),
            drill_every_seconds: target.objectives.drill_every.map(|d| d.as_secs() as f64),
        });
        // A cdc target whose slot is missing or lost captures nothing: said at once, not
        // only once the RPO has passed.
        if kind_of(target).tag() == "cdc"
            && let Some(e) = wal.as_ref().and_then(|w| w.server_error.clone())
        {
            problems.push(e);
        }
        rows.push(TargetStatus {
            target: name.as_str().into(),
            kind: kind_of(target).tag().to_string(),
            last_backup: last.map(|s| s.time.timestamp().to_string()),
            last_backup_snapshot: last.map(|s| s.id.clone()),
            backup_age_seconds: age,
            rpo_objective_seconds: rpo,
            last_drill: drill.map(|d| d.started_at.clone()),
            last_drill_verdict: drill.map(|d| d.verdict),
            last_drill_id: drill.map(|d| d.id.clone()),
            rto_seconds: measured_rto,
            rto_objective_seconds: rto,
            wal,
            problems,
        });
    }
    Ok(rows)
}
