//! Target kinds: one folder each, one [`Kind`] implementation each, and the one registry
//! ([`kind_of`], [`kind_tagged`]) that maps a target's config, or a snapshot's tag, to it.
//! Nothing outside this file matches on the kind.
//!
//! Adding a kind: a folder here with a `Kind` implementation (the compiler lists what it
//! must provide), one line in [`kind_of`] and one in [`ALL`]. See `crates/README.md`.

/// Implements [`Kind`] for a new unit struct from the kind's parts: its tag, its backup
/// (`async fn(BackupJob) -> EngineResult<Stored>`), its restore planner (`async fn(&Engine,
/// &RestoreRequest, &TargetConfig) -> EngineResult<RestorePlan>`), what its snapshots hold
/// (`fn(&Manifest) -> Summary`), its drill (`async fn(&mut Drill, &Chosen) ->
/// Result<(), Stop>`) and where its restore lands for checks (`fn(&str, &TargetConfig,
/// &RestoreRequest) -> EngineResult<Live>`, one of `restore::checks`' or its own). A part that is missing or has another signature fails the build at
/// this line. After a `;`, the kind's own versions of the trait's provided methods
/// ([`Kind::base_at`], [`Kind::archive`]).
macro_rules! kind {
    // With `prestart = path`: the kind starts reading before the repository opens
    // (`Kind::prestart`).
    ($kind:ident, $tag:literal, $backup:path, $plan:path, $summary:path, $rehearse:path,
     $live:path; prestart = $prestart:path) => {
        kind!($kind, $tag, $backup, $plan, $summary, $rehearse, $live;
            fn prestart(
                &self,
                name: &str,
                target: &lifeboat_core::TargetConfig,
                repository: &str,
            ) -> Option<$crate::kinds::Prestarted> {
                $prestart(name, target, repository)
            }
        );
    };
    ($kind:ident, $tag:literal, $backup:path, $plan:path, $summary:path, $rehearse:path,
     $live:path $(; $($own:tt)*)?) => {
        pub struct $kind;

        impl $crate::kinds::Kind for $kind {
            fn tag(&self) -> &'static str {
                $tag
            }

            fn backup<'a>(
                &'a self,
                job: $crate::kinds::BackupJob<'a>,
            ) -> $crate::BoxFuture<'a, $crate::EngineResult<$crate::kinds::Stored>> {
                Box::pin($backup(job))
            }

            fn summary(&self, manifest: &lifeboat_core::Manifest) -> $crate::kinds::Summary {
                $summary(manifest)
            }

            fn plan_restore<'a>(
                &'a self,
                engine: &'a $crate::Engine,
                request: &'a $crate::restore::plan::RestoreRequest,
                target: &'a lifeboat_core::TargetConfig,
            ) -> $crate::BoxFuture<'a, $crate::EngineResult<$crate::restore::act::RestorePlan>>
            {
                Box::pin($plan(engine, request, target))
            }

            fn rehearse<'a>(
                &'a self,
                drill: &'a mut $crate::drill::rehearsal::Drill,
                chosen: &'a $crate::drill::rehearsal::Chosen,
            ) -> $crate::BoxFuture<'a, Result<(), $crate::drill::rehearsal::Stop>> {
                Box::pin($rehearse(drill, chosen))
            }

            fn live(
                &self,
                name: &str,
                target: &lifeboat_core::TargetConfig,
                request: &$crate::restore::plan::RestoreRequest,
            ) -> $crate::EngineResult<$crate::restore::live::Live> {
                $live(name, target, request)
            }

            $($($own)*)?
        }
    };
}

pub mod bucket;
pub mod command;
pub mod files;
pub mod postgres_cdc;
pub mod postgres_logical;
pub mod postgres_physical;
pub mod redis;

use std::sync::Arc;

use lifeboat_core::{Manifest, Redacted, TargetConfig, TargetKind, config::PostgresMode};
use lifeboat_repo::{Repo, SnapshotInfo};

use crate::{
    BoxFuture, Engine, EngineResult,
    drill::rehearsal::{Chosen, Drill, Stop},
    restore::{act::RestorePlan, plan::RestoreRequest},
    wal::ArchiveState,
};

/// What a kind's backup is asked to do.
pub struct BackupJob<'a> {
    pub repo: &'a Arc<Repo>,
    /// The target's name: the snapshot's tag and its paths' first component.
    pub name: &'a str,
    pub target: &'a TargetConfig,
    /// Where the data is, when not where the config says: the destination a restore is
    /// about to overwrite, saved first.
    pub source: Option<Redacted>,
    /// Tagged `emergency`, so that `latest` never picks it.
    pub emergency: bool,
    pub started_at: jiff::Timestamp,
    /// What [`Kind::prestart`] started for this backup, if anything.
    pub prestarted: Option<Prestarted>,
}

/// Work a kind's backup started before the repository was open (see [`Kind::prestart`]),
/// in the kind's own type. Dropped unused, it stops that work.
pub struct Prestarted(Box<dyn std::any::Any + Send>);

impl Prestarted {
    pub(crate) fn new<T: Send + 'static>(early: T) -> Self {
        Self(Box::new(early))
    }

    /// The kind's own start, if this is one of that type.
    pub(crate) fn into<T: 'static>(self) -> Option<T> {
        self.0.downcast().ok().map(|b| *b)
    }
}

impl BackupJob<'_> {
    /// Where the data is: the overriding source, or the target's own URL.
    pub fn url(&self) -> EngineResult<Redacted> {
        match &self.source {
            Some(u) => Ok(u.clone()),
            None => Ok(self.target.connection_url(self.name)?),
        }
    }
}

/// A stored snapshot and its manifest's bytes.
pub type Stored = (SnapshotInfo, Vec<u8>);

pub trait Kind: Send + Sync {
    /// The kind's one spelling: the tag on its snapshots and the kind in every report,
    /// event and status row: `logical`, `physical`, `files`, `command`, `redis`, `bucket`.
    /// (The config says `kind = "postgres"` with `mode`; a manifest records the config's
    /// kind and its `method`, as it always has.)
    fn tag(&self) -> &'static str;

    /// Back up one target into one snapshot, the manifest last; a failure leaves none.
    fn backup<'a>(&'a self, job: BackupJob<'a>) -> BoxFuture<'a, EngineResult<Stored>>;

    /// Start reading the target before the repository is open (opening it derives the key
    /// from the password, a few tenths of a second), for a backup of `name` that follows:
    /// it then goes on from there. `repository` is the repository's URL. Needs a tokio
    /// runtime. `None`: nothing to start early.
    fn prestart(
        &self,
        _name: &str,
        _target: &TargetConfig,
        _repository: &str,
    ) -> Option<Prestarted> {
        None
    }

    /// What a snapshot of this kind holds: words for lists ("3 tables, 1,200 rows"), the
    /// counts reports carry, and the moment it holds when that is not its start.
    fn summary(&self, manifest: &Manifest) -> Summary;

    /// Decide a restore: which snapshot, into where, which steps, what is overwritten and
    /// what is saved first. Changes nothing.
    fn plan_restore<'a>(
        &'a self,
        engine: &'a Engine,
        request: &'a RestoreRequest,
        target: &'a TargetConfig,
    ) -> BoxFuture<'a, EngineResult<RestorePlan>>;

    /// Rehearse a restore of `chosen` in a scratch environment: provision, restore, check,
    /// teardown, each timed by the `drill` runner.
    fn rehearse<'a>(
        &'a self,
        drill: &'a mut Drill,
        chosen: &'a Chosen,
    ) -> BoxFuture<'a, Result<(), Stop>>;

    /// The snapshot a drill restores among `snaps` (oldest first): the newest restorable
    /// one (at or before `time`).
    fn base_at<'s>(
        &self,
        name: &str,
        snaps: &'s [SnapshotInfo],
        time: Option<jiff::Timestamp>,
    ) -> Result<&'s SnapshotInfo, String> {
        crate::drill::rehearsal::newest_restorable(name, snaps, time)
    }

    /// Where a restore of `name` as `request` asks puts the data, for the target's
    /// `[[checks]]` after a real restore: a database (SQL rules), a server or bucket URL, or
    /// a folder; none of them: the checks run in drills only (`restore/live.rs`).
    fn live(
        &self,
        name: &str,
        target: &TargetConfig,
        request: &RestoreRequest,
    ) -> EngineResult<crate::restore::live::Live>;

    /// Where the target's continuous archive stands (physical: the WAL archive and the
    /// server's archiver), for `status`; `last` is its newest good snapshot. `None` for
    /// kinds without one.
    fn archive<'a>(
        &'a self,
        engine: &'a Engine,
        name: &'a str,
        target: &'a TargetConfig,
        last: &'a SnapshotInfo,
    ) -> BoxFuture<'a, EngineResult<Option<ArchiveState>>> {
        let _ = (engine, name, target, last);
        Box::pin(async { Ok(None) })
    }
}

/// What a snapshot holds, as a kind tells it.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// In words, as lists show it.
    pub words: String,
    /// PostgreSQL (logical): tables and rows in the dump.
    pub tables: usize,
    pub rows: u64,
    /// Files, objects, or a base backup's files.
    pub files: usize,
    /// The moment the data is from, when not the backup's start (a dump's exported
    /// snapshot).
    pub point: Option<jiff::Timestamp>,
}

impl Summary {
    /// The newest moment `snapshot` (with `manifest`) holds: the kind's point, else the
    /// backup's start.
    pub fn restorable_at(&self, snapshot: &SnapshotInfo, manifest: &Manifest) -> jiff::Timestamp {
        self.point
            .or(manifest.started_at)
            .unwrap_or_else(|| snapshot.time.timestamp())
    }
}

static LOGICAL: postgres_logical::Logical = postgres_logical::Logical;
static CDC: postgres_cdc::Cdc = postgres_cdc::Cdc;
static PHYSICAL: postgres_physical::Physical = postgres_physical::Physical;
static FILES: files::Files = files::Files;
static COMMAND: command::CommandKind = command::CommandKind;
static REDIS: redis::RedisKind = redis::RedisKind;
static BUCKET: bucket::BucketKind = bucket::BucketKind;

/// Every kind, for lookups by tag.
const ALL: [&dyn Kind; 7] = [&LOGICAL, &CDC, &PHYSICAL, &FILES, &COMMAND, &REDIS, &BUCKET];

/// The kind of a configured target.
pub fn kind_of(target: &TargetConfig) -> &'static dyn Kind {
    match (target.kind, target.mode) {
        (TargetKind::Postgres, Some(PostgresMode::Physical)) => &PHYSICAL,
        (TargetKind::Postgres, Some(PostgresMode::Cdc)) => &CDC,
        (TargetKind::Postgres, _) => &LOGICAL,
        (TargetKind::Files, _) => &FILES,
        (TargetKind::Command, _) => &COMMAND,
        (TargetKind::Redis, _) => &REDIS,
        (TargetKind::Bucket, _) => &BUCKET,
    }
}

/// The kind of a snapshot, by its tag; `None` for a tag no kind writes.
pub fn kind_tagged(tag: &str) -> Option<&'static dyn Kind> {
    ALL.into_iter().find(|k| k.tag() == tag)
}

/// What a snapshot holds, in words, as lists show it.
pub fn content_of(snapshot: &SnapshotInfo) -> String {
    match (&snapshot.manifest, kind_tagged(&snapshot.kind)) {
        (Err(_), _) => "NO MANIFEST".into(),
        (Ok(m), _) if !m.complete => "INCOMPLETE".into(),
        (Ok(m), Some(k)) => k.summary(m).words,
        (Ok(_), None) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_own_tag_and_is_found_by_it() {
        for k in ALL {
            assert!(std::ptr::addr_eq(kind_tagged(k.tag()).unwrap(), k));
        }
        let mut tags: Vec<&str> = ALL.iter().map(|k| k.tag()).collect();
        tags.sort();
        tags.dedup();
        assert_eq!(tags.len(), ALL.len());
        assert!(kind_tagged("mysql").is_none());
    }

    #[test]
    fn a_physical_postgres_target_is_its_own_kind() {
        let mut t = TargetConfig {
            kind: TargetKind::Postgres,
            ..Default::default()
        };
        assert_eq!(kind_of(&t).tag(), "logical");
        t.mode = Some(PostgresMode::Physical);
        assert_eq!(kind_of(&t).tag(), "physical");
    }
}
