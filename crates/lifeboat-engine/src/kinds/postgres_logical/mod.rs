//! PostgreSQL, logical: `pg_dump` of one exported snapshot, streamed into the repository
//! while the same snapshot's rows are counted; restored with `pg_restore` (one transaction,
//! or parallel into a database the restore creates) and verified by those counts.

mod backup;
pub(crate) mod drill;
pub mod load;
mod restore;

use lifeboat_core::Manifest;

use crate::format;

kind!(
    Logical,
    "logical",
    backup::backup,
    restore::plan,
    content,
    drill::rehearse
);

/// What a snapshot holds, in words.
fn content(m: &Manifest) -> String {
    m.postgres.as_ref().map_or_else(String::new, |p| {
        format!(
            "{} tables, {} rows",
            p.tables.len(),
            format::thousands(p.total_rows())
        )
    })
}
