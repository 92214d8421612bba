//! PostgreSQL, `mode = "cdc"`: continuous point-in-time recovery for servers lifeboat
//! cannot reach the files of (Supabase, RDS, Neon), through logical replication.
//!
//! - [`baseline`]: a backup is a `pg_dump` of a temporary replication slot's exported
//!   snapshot, its consistent LSN in the manifest (snapshots of kind `cdc`);
//! - [`capture`]: `lifeboat cdc run` streams the slot's committed transactions into sealed,
//!   create-only segments in the side area ([`segments`]) and acknowledges to the server only
//!   what a stored segment holds;
//! - [`replay`]: `restore --time T` restores the newest baseline at or before T, then replays
//!   every transaction committed after its consistent point and at or before T, in commit
//!   order, resumably, and sets the sequences; the first stretch of changes, as far as it
//!   folds exactly, goes into the baseline's load instead ([`fold`]).

pub mod baseline;
pub mod capture;
pub mod fold;
pub mod replay;
mod schema;
pub mod segments;
mod status;
mod table;

kind!(
    Cdc,
    "cdc",
    baseline::backup,
    replay::plan,
    super::postgres_logical::summary,
    super::postgres_logical::drill::rehearse_cdc,
    crate::restore::live::database;

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
