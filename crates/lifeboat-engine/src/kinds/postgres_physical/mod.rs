//! PostgreSQL, physical: base backups with archived WAL, recovered to a moment.

mod backup;
mod drill;
pub mod plan;
pub mod recover;
mod status;
mod table;
pub mod wal;

pub use recover::{
    PitrPlan, feed, materialize, plan as plan_recovery, recovery_to, start_and_wait,
};

use super::Summary;
use lifeboat_core::Manifest;

use crate::format;

kind!(
    Physical,
    "physical",
    backup::backup,
    recover::plan_restore,
    summary,
    drill::rehearse,
    crate::restore::live::nowhere;
    fn base_at<'s>(
        &self,
        name: &str,
        snaps: &'s [lifeboat_repo::SnapshotInfo],
        time: Option<jiff::Timestamp>,
    ) -> Result<&'s lifeboat_repo::SnapshotInfo, String> {
        base_at(name, snaps, time)
    }

    fn archive<'a>(
        &'a self,
        engine: &'a crate::Engine,
        name: &'a str,
        target: &'a lifeboat_core::TargetConfig,
        last: &'a lifeboat_repo::SnapshotInfo,
    ) -> crate::BoxFuture<'a, crate::EngineResult<Option<crate::wal::ArchiveState>>> {
        Box::pin(status::archive(engine, name, target, last))
    }
);

/// The base backup a drill at `time` recovers from: the newest that had *ended* by then,
/// as `restore --time` chooses it; without a time, the newest restorable one.
fn base_at<'s>(
    name: &str,
    snaps: &'s [lifeboat_repo::SnapshotInfo],
    time: Option<jiff::Timestamp>,
) -> Result<&'s lifeboat_repo::SnapshotInfo, String> {
    match time {
        Some(t) => plan::choose_base(snaps, "latest", &recovery_to(t)).map_err(|e| e.to_string()),
        None => crate::drill::rehearsal::newest_restorable(name, snaps, None),
    }
}

/// What a snapshot holds: a base backup.
fn summary(m: &Manifest) -> Summary {
    m.physical
        .as_ref()
        .map_or_else(Summary::default, |p| Summary {
            words: match &p.base_tar {
                Some(tar) => format!(
                    "base backup (a tar of {}), timeline {}",
                    format::bytes(tar.bytes),
                    p.timeline
                ),
                None => format!(
                    "base backup, {} files, timeline {}",
                    p.files.files.len(),
                    p.timeline
                ),
            },
            files: p.files.files.len(),
            ..Summary::default()
        })
}
