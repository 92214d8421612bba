//! PostgreSQL, physical: base backups with archived WAL, recovered to a moment.

mod backup;
pub mod plan;
pub mod recover;

pub use recover::{
    PitrPlan, Recovery, feed, materialize, plan as plan_recovery, recovery_to, start_and_wait,
};

use lifeboat_core::Manifest;

use crate::format;

kind!(
    Physical,
    "physical",
    backup::backup,
    recover::plan_restore,
    content
);

/// What a snapshot holds, in words.
fn content(m: &Manifest) -> String {
    m.physical
        .as_ref()
        .map_or_else(String::new, |p| match &p.base_tar {
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
        })
}
