//! Keeping the repository: [`forget`] (retention, then with `prune` the space freed and the
//! WAL no kept base backup needs), [`check`] (the repository and every snapshot's
//! manifest) and [`unlock`]. Forget runs under the exclusive lock, check under a shared
//! one, so that neither runs beside what would make it wrong.

use lifeboat_core::{ObjectLock, SnapshotId};
use lifeboat_repo::{
    ForgetDecision, LockKind, PruneSummary, ReadData,
    object_lock::{Deferred, Extended},
};

use crate::{Engine, EngineResult, wal::WalPruned};

/// What `forget` decided and did.
#[derive(Debug)]
pub struct Forgotten {
    /// Per snapshot: kept or not, and why.
    pub decisions: Vec<ForgetDecision>,
    /// The snapshots forgotten (or, on a dry run, that would be).
    pub forget: Vec<SnapshotId>,
    /// With `prune`: the packs freed.
    pub pruned: Option<PruneSummary>,
    /// With `prune`: archived WAL that no kept base backup needs.
    pub wal: Option<WalPruned>,
    /// With `prune`: captured segments (cdc targets) older than every kept baseline.
    pub cdc_segments: Option<usize>,
    /// With Object Lock: what was left in place because it is still under retention (a
    /// later `forget --prune` removes it).
    pub retained: Deferred,
    /// With Object Lock and `prune`: the retention extended on what is still in use.
    pub extended: Option<Extended>,
}

/// Apply `[retention]` per target (a target's own `retention` table overrides it); with
/// `prune`, free the space and delete WAL no kept base backup needs. `dry_run` changes
/// nothing and reports what would be done.
pub async fn forget(engine: &Engine, prune: bool, dry_run: bool) -> EngineResult<Forgotten> {
    let repo = &engine.repo;
    let command = if prune {
        "lifeboat forget --prune"
    } else {
        "lifeboat forget"
    };
    let _lock = repo.lock_async(LockKind::Exclusive, command).await?;
    let cfg = engine.config.clone();
    let (decisions, snaps) = repo
        .call(move |r| {
            let snaps = r.snapshots(None)?;
            let plan = r.forget_plan(snaps.clone(), |target| match cfg.target(target) {
                Some(t) => t.effective_retention(&cfg.retention).clone(),
                // Snapshots of targets no longer configured follow the global rules.
                None => cfg.retention.clone(),
            })?;
            Ok::<_, lifeboat_repo::RepoError>((plan, snaps))
        })
        .await?;
    let mut decisions = decisions;
    let mut forget: Vec<SnapshotId> = decisions
        .iter()
        .filter(|d| !d.keep)
        .map(|d| d.id.clone())
        .collect();
    if !dry_run && !forget.is_empty() {
        let ids = forget.clone();
        repo.call(move |r| r.forget_snapshots(&ids)).await?;
    }
    // With Object Lock, snapshots still under retention stayed: they count as kept, and
    // the WAL and captured changes they need stay with them.
    let retained = repo
        .call(|r| Ok::<_, lifeboat_repo::RepoError>(r.retained()))
        .await?;
    let stayed = |id: &SnapshotId| retained.snapshot_ids.iter().any(|k| k == id.as_str());
    for d in decisions.iter_mut().filter(|d| !d.keep && stayed(&d.id)) {
        d.keep = true;
        d.reasons.push("object lock".into());
    }
    forget.retain(|id| !stayed(id));
    let mut done = Forgotten {
        decisions,
        forget,
        pruned: None,
        wal: None,
        cdc_segments: None,
        retained,
        extended: None,
    };
    if !prune {
        return Ok(done);
    }
    done.pruned = Some(repo.call(move |r| r.prune(dry_run)).await?);
    let kept = crate::wal::kept_bases(&snaps, &done.decisions)?;
    done.wal = Some(
        repo.call(move |r| crate::wal::prune(r, &kept, dry_run))
            .await?,
    );
    let mut segments = 0;
    for name in engine.config.targets.keys() {
        segments += crate::kinds::postgres_cdc::segments::prune(
            repo,
            name,
            &snaps,
            &done.decisions,
            dry_run,
        )
        .await?;
    }
    done.cdc_segments = Some(segments);
    let later = repo
        .call(|r| Ok::<_, lifeboat_repo::RepoError>(r.retained()))
        .await?;
    done.retained.merge(later);
    if !dry_run {
        // What is still in the repository stays protected: its retention is extended.
        let skip = done.retained.paths.clone();
        done.extended = repo.call(move |r| r.extend_retention(&skip)).await?;
    }
    Ok(done)
}

/// What `check` found.
#[derive(Debug)]
pub struct Checked {
    /// Problems of the repository itself (structure, index, packs).
    pub errors: Vec<String>,
    /// Snapshots without a readable, complete manifest.
    pub manifest_problems: Vec<String>,
    pub snapshots: usize,
    /// With Object Lock: the retention verified on the config and every version of every
    /// key, index file, snapshot and pack (what lacks it is in `errors`).
    pub object_lock: Option<ObjectLock>,
}

impl Checked {
    pub fn ok(&self) -> bool {
        self.errors.is_empty() && self.manifest_problems.is_empty()
    }
}

/// Verify the repository (with `read` the content of all or a part of the packs) and every
/// snapshot's manifest. Under a shared lock: a prune meanwhile would make packs look missing.
pub async fn check(engine: &Engine, read: ReadData) -> EngineResult<Checked> {
    let (errors, snaps, object_lock) = engine
        .repo
        .call(move |repo| -> Result<_, lifeboat_repo::RepoError> {
            let _lock = repo.lock(LockKind::Shared, "lifeboat check")?;
            let errors = repo.check(read)?;
            let snaps = repo.snapshots(None)?;
            Ok((errors, snaps, repo.object_lock()))
        })
        .await?;
    let manifest_problems = snaps
        .iter()
        .filter(|s| !s.is_good())
        .map(|s| {
            format!(
                "snapshot {} of `{}`: {}",
                s.short_id(),
                s.target,
                match &s.manifest {
                    Ok(_) => "marked incomplete".to_string(),
                    Err(e) => format!("no readable manifest ({e})"),
                }
            )
        })
        .collect();
    Ok(Checked {
        errors,
        manifest_problems,
        snapshots: snaps.len(),
        object_lock,
    })
}

/// Remove every lock (for an operator who knows their holders are gone); returns who held
/// them.
pub async fn unlock(engine: &Engine) -> EngineResult<Vec<String>> {
    Ok(engine.repo.call(|repo| repo.side().remove_locks()).await?)
}
