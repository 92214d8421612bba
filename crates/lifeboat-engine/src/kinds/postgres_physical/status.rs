//! The physical kind's part of `status`: the WAL archive's newest segment (and when it
//! was stored), and the server's own archiver statistics.

use lifeboat_core::TargetConfig;
use lifeboat_repo::SnapshotInfo;

use crate::{Engine, EngineResult, wal::ArchiveState};

/// Where the archive of `name` stands, for the cluster of its newest base backup `last`.
pub async fn archive(
    engine: &Engine,
    name: &str,
    target: &TargetConfig,
    last: &SnapshotInfo,
) -> EngineResult<Option<ArchiveState>> {
    match last
        .manifest
        .as_ref()
        .ok()
        .and_then(|m| m.physical.as_ref())
    {
        Some(p) => Ok(Some(wal_state(&engine.repo, target, name, p).await?)),
        None => Ok(None),
    }
}

/// The archive's newest segment of the cluster of `manifest`, with its write time.
async fn wal_state(
    repo: &std::sync::Arc<lifeboat_repo::Repo>,
    target: &lifeboat_core::TargetConfig,
    name: &str,
    p: &lifeboat_core::manifest::PhysicalManifest,
) -> EngineResult<ArchiveState> {
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
    Ok(ArchiveState {
        last_archived: last.map(|w| w.name.clone()),
        last_archived_at: at.map(|t| t.to_string()),
        server,
        server_error,
        slot: None,
    })
}
