//! A bucket backup: list, read what changed since the previous snapshot of the same
//! bucket, link the rest from it, the manifest last.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use lifeboat_core::{
    TargetKind,
    manifest::{BucketManifest, LeftOut, ObjectRecord},
};
use lifeboat_repo::{
    HintKey, KeptIndex, Parent, SnapshotInfo, StreamStat,
    bucket::{self, Bucket, Gone, Head, Listed, Prefetched},
};

use super::{bucket_err, parallel};
use crate::{
    EngineResult,
    backup::store::{Linked, manifest_base, store_with_parent},
    kinds::{BackupJob, Prestarted, Stored},
};

/// The newest complete snapshot of a bucket target that holds the bucket's objects, with
/// its manifest; and the index read to find it, kept for the backup.
type Previous = (
    Option<(lifeboat_core::SnapshotId, BucketManifest)>,
    Option<KeptIndex>,
);

/// [`Previous`] of `name`, whose bucket is `url`.
fn previous(repo: &lifeboat_repo::Repo, name: &str, url: &str) -> EngineResult<Previous> {
    let of_bucket = |s: &SnapshotInfo| {
        s.is_good()
            && s.manifest
                .as_ref()
                .is_ok_and(|m| m.bucket.as_ref().is_some_and(|b| b.url == url))
    };
    let (found, kept) = repo.newest_snapshot(name, of_bucket)?;
    let found = found.and_then(|s| Some((s.id, s.manifest.ok()?.bucket?)));
    Ok((found, kept))
}

/// The listing of a backup's bucket, started before the repository was open
/// ([`crate::kinds::Kind::prestart`]), and when: the snapshot holds the bucket as listed
/// from then on.
struct EarlyList {
    started_at: jiff::Timestamp,
    /// The same moment on the monotonic clock (for its age).
    started: std::time::Instant,
    task: Listing,
}

/// How old an early listing may be when the backup starts: older (the lock was held by
/// another process a while), the bucket is listed again (and the early listing's fetches
/// are stopped).
const EARLY_FOR: std::time::Duration = std::time::Duration::from_secs(5);

type Listing =
    tokio::task::JoinHandle<Result<(Bucket, Vec<Listed>, Prefetched), lifeboat_repo::StoreError>>;

/// The bucket's listing, started on a blocking thread (it waits for the server); then the
/// objects modified after `since` start coming (see [`lifeboat_repo::HintKey`]).
fn start_listing(loc: lifeboat_core::S3Location, since: Option<jiff::Timestamp>) -> Listing {
    tokio::task::spawn_blocking(move || {
        let t = std::time::Instant::now();
        let source = Bucket::open(&loc)?;
        let listed = source.list()?;
        log::info!("listed {} objects in {:.1?}", listed.len(), t.elapsed());
        let early = match since {
            Some(since) => source.prefetch(&bucket::likely_changed(&listed, since)),
            None => Prefetched::default(),
        };
        if !early.is_empty() {
            log::info!(
                "fetching {} objects modified after {} (the newest the last backup listed)",
                early.len(),
                since.unwrap_or_default()
            );
        }
        Ok((source, listed, early))
    })
}

/// Whose hint a backup of `name` reads and leaves.
fn hint_key<'a>(repository: &'a str, name: &'a str, bucket: &'a str) -> HintKey<'a> {
    HintKey {
        repository,
        target: name,
        bucket,
    }
}

/// The bucket as the hint knows it: its URL and its server.
fn hint_bucket(loc: &lifeboat_core::S3Location) -> String {
    format!(
        "{} at {}",
        loc.url(),
        loc.endpoint.as_deref().unwrap_or("AWS")
    )
}

pub(super) fn prestart(
    name: &str,
    target: &lifeboat_core::TargetConfig,
    repository: &str,
) -> Option<Prestarted> {
    let loc = target.bucket_location(name).ok()?;
    tokio::runtime::Handle::try_current().ok()?;
    let since = hint_key(repository, name, &hint_bucket(&loc)).read();
    Some(Prestarted::new(EarlyList {
        started_at: jiff::Timestamp::now(),
        started: std::time::Instant::now(),
        task: start_listing(loc, since),
    }))
}

pub(super) async fn backup(mut job: BackupJob<'_>) -> EngineResult<Stored> {
    let (repo, name, target) = (job.repo, job.name, job.target);
    let loc = target.bucket_location(name)?;
    let url = loc.url();
    let hint_bucket = hint_bucket(&loc);
    // The bucket is listed while the previous snapshot is read.
    let (listing, started_at) = match job
        .prestarted
        .take()
        .and_then(Prestarted::into::<EarlyList>)
    {
        // Not if the lock kept it waiting: the snapshot would hold an old view.
        Some(early) if early.started.elapsed() < EARLY_FOR => {
            (early.task, early.started_at.min(job.started_at))
        }
        _ => {
            let since = hint_key(repo.url(), name, &hint_bucket).read();
            (start_listing(loc, since), job.started_at)
        }
    };
    let (n, u) = (name.to_string(), url.clone());
    let (prev, kept) = repo.call(move |r| previous(r, &n, &u)).await?;
    let (source, listed, early) = listing.await?.map_err(bucket_err)?;
    let newest = listed
        .iter()
        .filter_map(|o| o.last_modified.parse::<jiff::Timestamp>().ok())
        .max();
    let (parent_id, prev) = prev.unzip();
    // The previous records by key (taken, not copied), and the keys it left out.
    let (old, left_out_before): (HashMap<String, ObjectRecord>, HashSet<String>) = prev
        .map(|m| {
            let old = m.objects.into_iter().map(|o| (o.key.clone(), o)).collect();
            (old, m.left_out.into_iter().map(|l| l.key).collect())
        })
        .unwrap_or_default();
    // What changed (or is new) is read; what did not is linked from the parent and keeps
    // its record.
    let changed: Vec<bool> = listed
        .iter()
        .map(|o| !old.get(&o.key).is_some_and(|p| unchanged(p, o)))
        .collect();
    let root = format!("{name}/bucket");
    // What the parent cannot give is read: changed objects (those with a fresh HEAD).
    let (with_index, seen) = bucket::entries(&source, &root, &listed, |i| changed[i], early);
    let mut stats: Vec<Option<Arc<StreamStat>>> = vec![None; listed.len()];
    let mut paths: Vec<String> = vec![String::new(); listed.len()];
    // An object the parent left out is in its tree anyway (listed size, mtime and ETag,
    // no content): a ctime of this backup's start keeps rustic from linking that node,
    // which would leave the object unread (and the manifest waiting for it).
    let mut entries = Vec::with_capacity(with_index.len());
    for (i, mut e) in with_index {
        if left_out_before.contains(listed[i].key.as_str()) {
            e.meta.ctime = Some(started_at);
        }
        stats[i] = e.stat.clone();
        paths[i] = e.path.display().to_string();
        entries.push(e);
    }
    let mut reusable = HashMap::new();
    for (i, &c) in changed.iter().enumerate() {
        if !c {
            reusable.insert(paths[i].clone().into(), listed[i].size);
        }
    }
    let parent = parent_id.as_ref().map(|id| Parent {
        snapshot: id.to_string(),
        reusable,
    });
    let mut manifest = manifest_base(
        name,
        TargetKind::Bucket,
        "objects",
        started_at,
        job.emergency,
    );
    let produce = move || {
        // What was read: every changed object, once its stream has ended, but those deleted
        // or replaced since the listing, whose streams failed.
        let mut read = vec![None; listed.len()];
        let mut failed = Vec::new();
        for (i, o) in listed.iter().enumerate().filter(|&(i, _)| changed[i]) {
            let stat = stats[i].as_ref().ok_or("an object without a record")?;
            match stat.wait() {
                Ok(out) => read[i] = Some(out),
                Err(e) => failed.push((i, format!("`{}`: {e}", o.key))),
            }
        }
        let mut gone = seen.left_out();
        if let Some((_, e)) = failed.into_iter().find(|(i, _)| !gone.contains_key(i)) {
            return Err(e);
        }
        // A replaced object whose HEAD still shows the listed version: the server's replies
        // contradict each other, and would have every object left out.
        let replaced: Vec<usize> = gone
            .iter()
            .filter(|(_, why)| matches!(why, Gone::Changed(_)))
            .map(|(&i, _)| i)
            .collect();
        let heads_of = |keys: &[usize]| {
            parallel(keys, |&i| {
                source
                    .head_if_present(&listed[i].key)
                    .map_err(|e| format!("bucket {e}"))
            })
        };
        for (&i, head) in replaced.iter().zip(heads_of(&replaced)) {
            if let Some(head) = head?
                && listed[i].shown_by(&head)
            {
                return Err(format!(
                    "`{}` {}, yet a HEAD shows the version listed: the server's listing and \
                     its replies disagree, so no version of it can be read as listed",
                    listed[i].key, gone[&i]
                ));
            }
        }
        // Its content type and metadata: from its GET replies, or a HEAD where none showed
        // them (an empty object is not fetched).
        let mut heads: Vec<Option<Head>> = (0..listed.len()).map(|i| seen.take(i)).collect();
        let unseen: Vec<usize> = (0..listed.len())
            .filter(|&i| changed[i] && heads[i].is_none() && !gone.contains_key(&i))
            .collect();
        for (&i, head) in unseen.iter().zip(heads_of(&unseen)) {
            match head? {
                Some(head) if listed[i].shown_by(&head) => heads[i] = Some(head),
                Some(_) => {
                    gone.insert(i, Gone::Changed("a HEAD shows another version".into()));
                }
                None => {
                    gone.insert(i, Gone::Deleted);
                }
            }
        }
        // Every object read gone: the snapshot would hold nothing new (a busy object
        // rewritten during every read, the bucket emptied meanwhile). It fails rather than
        // look good; the previous snapshots hold what it would have linked.
        let read_count = changed.iter().filter(|&&c| c).count();
        if read_count > 0 && gone.len() == read_count {
            let (i, why) = gone.iter().next().expect("not empty");
            return Err(format!(
                "every object read ({read_count}) was deleted or replaced while it was read \
                 (e.g. `{}` {why}): nothing new of `{url}` would be stored (hint: back it up \
                 again when the bucket is quieter)",
                listed[*i].key
            ));
        }
        let left_out: Vec<LeftOut> = gone
            .iter()
            .map(|(&i, reason)| LeftOut {
                key: listed[i].key.clone(),
                reason: reason.to_string(),
            })
            .collect();
        // An emergency backup must hold everything the restore is about to overwrite.
        if job.emergency && !left_out.is_empty() {
            return Err(format!(
                "{} object(s) of `{url}` changed while the emergency backup read them (e.g. \
                 `{}` {}): they would be overwritten without a copy, so nothing is restored \
                 (hint: try again when the bucket is quiet)",
                left_out.len(),
                left_out[0].key,
                left_out[0].reason
            ));
        }
        if !left_out.is_empty() {
            let some: Vec<&str> = left_out.iter().take(5).map(|l| l.key.as_str()).collect();
            log::warn!(
                "{} object(s) of `{url}` were deleted or replaced while the backup read them \
                 and are left out of this snapshot (the next backup reads what is there \
                 then): {}{}",
                left_out.len(),
                some.join(", "),
                if left_out.len() > some.len() {
                    ", ..."
                } else {
                    ""
                }
            );
        }
        let mut objects = Vec::with_capacity(listed.len());
        let (mut downloaded, mut downloaded_bytes) = (0, 0);
        for (i, o) in listed.into_iter().enumerate() {
            if gone.contains_key(&i) {
                continue;
            }
            let record = match (read[i].take(), old.get(&o.key)) {
                (Some(out), _) => {
                    downloaded += 1;
                    downloaded_bytes += out.bytes;
                    let Head {
                        content_type,
                        metadata,
                        ..
                    } = heads[i].take().unwrap_or_default();
                    ObjectRecord {
                        key: o.key,
                        path: paths[i].clone(),
                        bytes: out.bytes,
                        sha256: out.sha256,
                        etag: o.etag,
                        last_modified: o.last_modified,
                        content_type,
                        metadata,
                    }
                }
                (None, Some(p)) => ObjectRecord {
                    path: paths[i].clone(),
                    ..p.clone()
                },
                (None, None) => return Err(format!("`{}`: neither read nor in the parent", o.key)),
            };
            objects.push(record);
        }
        manifest.bucket = Some(BucketManifest {
            url,
            total_bytes: objects.iter().map(|o| o.bytes).sum(),
            objects,
            downloaded,
            downloaded_bytes,
            parent: parent_id,
            left_out,
        });
        Ok(manifest)
    };
    let (info, bytes) = store_with_parent(
        repo,
        name,
        "bucket",
        job.emergency,
        entries,
        produce,
        Linked {
            parent,
            index: kept,
        },
    )
    .await?;
    // The next backup of the target guesses from the newest time listed what changed, and
    // reads its previous manifest from this machine.
    let (n, id) = (name.to_string(), info.id.to_string());
    let bytes = repo
        .call(move |r| {
            if let Some(newest) = newest {
                hint_key(r.url(), &n, &hint_bucket).write(newest);
            }
            r.cache_manifest(&n, &id, &bytes);
            bytes
        })
        .await;
    Ok((info, bytes))
}

/// The listing shows the same object as the record: same size, ETag and last-modified.
fn unchanged(old: &ObjectRecord, now: &Listed) -> bool {
    old.bytes == now.size && old.etag == now.etag && old.last_modified == now.last_modified
}
