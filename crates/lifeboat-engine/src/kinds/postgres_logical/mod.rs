//! PostgreSQL, logical: `pg_dump` of one exported snapshot, streamed into the repository
//! while its rows are counted; restored with `pg_restore` (one transaction,
//! or parallel into a database the restore creates) and verified by those counts.

pub(crate) mod backup;
pub(crate) mod drill;
pub mod load;
pub(crate) mod restore;

use super::Summary;
use lifeboat_core::Manifest;

use crate::format;

kind!(
    Logical,
    "logical",
    backup::backup,
    restore::plan,
    summary,
    drill::rehearse,
    crate::restore::live::database;
    prestart = backup::prestart
);

/// What a snapshot holds: tables and rows, as of the dump's exported snapshot.
pub(crate) fn summary(m: &Manifest) -> Summary {
    m.postgres
        .as_ref()
        .map_or_else(Summary::default, |p| Summary {
            words: format!(
                "{} tables, {} rows",
                p.tables.len(),
                format::thousands(p.total_rows())
            ),
            tables: p.tables.len(),
            rows: p.total_rows(),
            point: p.snapshot_time,
            ..Summary::default()
        })
}
