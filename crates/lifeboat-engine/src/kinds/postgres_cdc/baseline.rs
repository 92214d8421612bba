//! A cdc baseline: the publication and the slot exist first (so the slot's stream has
//! every transaction after the baseline), then a temporary slot exports a snapshot, and the
//! logical backup dumps exactly that snapshot — its consistent LSN is the manifest's
//! `snapshot_lsn`, from which a restore replays.

use lifeboat_postgres::{
    Target,
    cdc::{preflight, stream},
    logical,
};

use crate::{
    EngineResult,
    kinds::{
        BackupJob, Stored,
        postgres_logical::backup::{Source, backup_in},
    },
};

pub(super) async fn backup(job: BackupJob<'_>) -> EngineResult<Stored> {
    let url = job.url()?;
    let target = Target::parse(&url)?;
    let (slot, publication) = job.target.cdc_names(job.name);
    // Once there is a history, a missing slot is a gap that `cdc run` records: a backup
    // does not quietly make a new slot over it.
    let missing = preflight::slot_state(&target, &slot).await?.is_none();
    if missing
        && super::segments::durable(job.repo, job.name)
            .await?
            .is_some()
    {
        return Err(crate::EngineError::failure(
            format!(
                "replication slot `{slot}` of `{}` is gone: changes since the last capture are lost",
                job.name
            ),
            Some(format!(
                "`lifeboat cdc run {}` records the gap and takes the new baseline",
                job.name
            )),
        ));
    }
    preflight::ensure_slot(&target, &slot, &publication).await?;
    // Temporary: dropped with its session, after the dump.
    // Unique per process and call: a baseline beside the capture and a scheduled one may
    // overlap in one `serve`.
    static CALLS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let temp = format!("{slot}_base_{}_{call}", std::process::id());
    let exported = stream::export_snapshot(&target, &temp).await?;
    let session =
        logical::SnapshotSession::import(&target, &exported.name, &exported.consistent_lsn).await?;
    let extra = ["--no-publications", "--no-subscriptions"];
    let stored = match Source::start(target, session, job.target, &extra, false).await {
        Ok(source) => backup_in(job, source, "cdc").await,
        Err(e) => Err(e),
    };
    drop(exported);
    stored
}
