//! `kind = "bucket"` targets: an S3-compatible bucket (or a prefix of one).
//!
//! backup: the objects are listed (key, size, ETag, last-modified); objects that changed
//! since the previous snapshot of the same bucket (or are new) are read (small ones ahead
//! of the archiver, large ones in ranged GETs), their content type and user metadata taken
//! from the GET replies (a HEAD only for empty objects); unchanged ones are linked from the
//! previous snapshot without a request (their records are carried over). An object deleted
//! since the listing, or whose reply came from another version than the one listed, is left
//! out: named in a warning and in the manifest's `left-out`, read again next time. Objects
//! are stored as `<target>/bucket/<key>`; the manifest holds every key with its size,
//! SHA-256, ETag, last-modified, content type and metadata.
//!
//! restore: all objects, those under `--prefix`, or one `--key`, into `--to s3://bucket[/p]`
//! (default: the target's own bucket), with content type and metadata, each hashed on the
//! way and compared with the manifest. Existing objects are refused without `--force`; with
//! it, an emergency backup of the destination comes first.

use std::{collections::HashMap, path::PathBuf, sync::Arc};

use lifeboat_core::{
    Manifest, TargetConfig, TargetKind,
    manifest::{BucketManifest, LeftOut, ObjectRecord},
};
use lifeboat_repo::{
    Parent, Repo, SnapshotInfo, StreamStat,
    bucket::{self, Bucket, Gone, Head, Listed},
};
use serde_json::json;
use sha2::Digest;

use super::{
    Context,
    backup::{manifest_base, store_with_parent},
    backup_target,
    restore::Plan,
    snapshot_io::{Measured, section},
};
use crate::{
    cli::RestoreArgs,
    error::{CliError, CliResult, FsContext},
    output,
};

/// How many objects are asked for their metadata, or written back, at once (an S3 PUT
/// waits tens of milliseconds for the server: many run at once).
const PARALLEL: usize = 16;

/// The newest complete snapshot of `name` that holds this bucket's objects.
fn previous(snaps: &[SnapshotInfo], url: &str) -> Option<(String, BucketManifest)> {
    snaps
        .iter()
        .filter(|s| s.is_good())
        .filter_map(|s| {
            let m = s.manifest.as_ref().ok()?.bucket.clone()?;
            (m.url == url).then(|| (s.time.clone(), s.id.clone(), m))
        })
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, id, m)| (id, m))
}

/// Run `f` on every item, `PARALLEL` at a time; the results in order.
pub(super) fn parallel<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<std::sync::Mutex<Option<R>>> =
        items.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..PARALLEL.min(items.len()) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    *results[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(f(item));
                }
            });
        }
    });
    results
        .into_iter()
        .map(|m| {
            m.into_inner()
                .unwrap_or_else(|p| p.into_inner())
                .expect("every item ran")
        })
        .collect()
}

pub async fn backup(
    repo: &Arc<Repo>,
    name: &str,
    target: &TargetConfig,
    emergency: bool,
    started_at: jiff::Timestamp,
) -> CliResult<(SnapshotInfo, Vec<u8>)> {
    let loc = target.bucket_location(name)?;
    let url = loc.url();
    let source = Bucket::open(&loc).map_err(bucket_err)?;
    let (r, n, b, u) = (repo.clone(), name.to_string(), source.clone(), url.clone());
    let (listed, prev) = tokio::task::spawn_blocking(move || -> CliResult<_> {
        let t = std::time::Instant::now();
        let listed = b.list().map_err(bucket_err)?;
        log::info!("listed {} objects in {:.1?}", listed.len(), t.elapsed());
        let snaps = r.snapshots(Some(&n))?;
        Ok((listed, previous(&snaps, &u)))
    })
    .await??;
    let old: HashMap<String, ObjectRecord> = prev
        .as_ref()
        .map(|(_, m)| {
            m.objects
                .iter()
                .map(|o| (o.key.clone(), o.clone()))
                .collect()
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
    let (with_index, seen) = bucket::entries(&source, &root, &listed, |i| changed[i]);
    let mut stats: Vec<Option<Arc<StreamStat>>> = vec![None; listed.len()];
    let mut paths: Vec<String> = vec![String::new(); listed.len()];
    // An object the parent left out is in its tree anyway (listed size, mtime and ETag,
    // no content): a ctime of this backup's start keeps rustic from linking that node,
    // which would leave the object unread (and the manifest waiting for it).
    let left_out_before: std::collections::HashSet<&str> = prev
        .as_ref()
        .map(|(_, m)| m.left_out.iter().map(|l| l.key.as_str()).collect())
        .unwrap_or_default();
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
    let parent = prev.as_ref().map(|(id, _)| Parent {
        snapshot: id.clone(),
        reusable,
    });
    let parent_id = prev.map(|(id, _)| id);
    let mut manifest = manifest_base(name, TargetKind::Bucket, "objects", started_at);
    manifest.emergency = emergency;
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
        if emergency && !left_out.is_empty() {
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
    store_with_parent(repo, name, "bucket", emergency, entries, produce, parent).await
}

/// An error of the bucket backed up or restored into (not of the repository).
fn bucket_err(e: lifeboat_repo::StoreError) -> CliError {
    CliError::failure(format!("bucket {e}"), e.hint())
}

/// The listing shows the same object as the record: same size, ETag and last-modified.
fn unchanged(old: &ObjectRecord, now: &Listed) -> bool {
    old.bytes == now.size && old.etag == now.etag && old.last_modified == now.last_modified
}

pub async fn restore(
    ctx: &Context,
    args: &RestoreArgs,
    repo: &Arc<Repo>,
    target: &TargetConfig,
    snapshot: &SnapshotInfo,
    manifest: &Manifest,
) -> CliResult<i32> {
    let name = &args.target;
    let bm = section(&manifest.bucket, snapshot, "bucket")?;
    let selected: Vec<ObjectRecord> = bm
        .objects
        .iter()
        .filter(|o| match (&args.key, &args.prefix) {
            (Some(k), _) => &o.key == k,
            (None, Some(p)) => o.key.starts_with(p.as_str()),
            (None, None) => true,
        })
        .cloned()
        .collect();
    if selected.is_empty() {
        return Err(CliError::usage(
            format!(
                "no object in snapshot `{}` matches {}",
                snapshot.short_id(),
                args.key
                    .as_ref()
                    .map(|k| format!("key `{k}`"))
                    .or(args.prefix.as_ref().map(|p| format!("prefix `{p}`")))
                    .unwrap_or_else(|| "(the snapshot is empty)".into())
            ),
            Some(format!(
                "`lifeboat snapshots {name} --json` lists the keys in the manifest"
            )),
        ));
    }
    let mut dest_cfg = target.clone();
    if let Some(to) = &args.to {
        dest_cfg.url = Some(to.clone());
    }
    let dest_loc = dest_cfg.bucket_location(name)?;
    let dest = Bucket::open(&dest_loc).map_err(bucket_err)?;
    let keys: Vec<String> = selected.iter().map(|o| o.key.clone()).collect();
    let d = dest.clone();
    let existing = tokio::task::spawn_blocking(move || d.existing(&keys))
        .await?
        .map_err(bucket_err)?;
    let overwrites = !existing.is_empty();
    let total: u64 = selected.iter().map(|o| o.bytes).sum();
    let mut steps = Vec::new();
    if overwrites {
        steps.push(format!(
            "emergency backup of `{}` ({} of the objects exist there)",
            dest_loc.url(),
            existing.len()
        ));
    }
    steps.push(format!(
        "write {} object(s), {}, with their content types and metadata",
        selected.len(),
        output::bytes(total)
    ));
    steps.push("check every object's size and SHA-256 against the manifest".into());
    let plan = Plan::new(name, snapshot, dest_loc.url(), steps, overwrites);
    if args.dry_run {
        if ctx.json {
            output::json(&json!({
                "dry_run": true, "plan": plan, "needs_force": overwrites && !args.force,
                "objects": selected.iter().map(|o| json!({"key": o.key, "bytes": o.bytes, "exists": existing.contains(&o.key)})).collect::<Vec<_>>(),
            }));
            return Ok(0);
        }
        plan.print_dry_run(
            ctx,
            args.force,
            &format!("{} object(s) exist", existing.len()),
        );
        for o in &selected {
            let mark = if existing.contains(&o.key) {
                "  (exists)"
            } else {
                ""
            };
            outln!("  would write {} ({}){mark}", o.key, output::bytes(o.bytes));
        }
        return Ok(0);
    }
    if overwrites && !args.force {
        return Err(CliError::failure(
            format!(
                "refusing to overwrite {} existing object(s) in `{}` (first: `{}`)",
                existing.len(),
                dest_loc.url(),
                existing[0]
            ),
            Some("restore into another bucket or prefix, or pass `--force` to overwrite after an emergency backup".into()),
        ));
    }
    if !ctx.json {
        plan.print(false);
    }
    // Before anything is saved or written: room to stage the objects.
    stage_room(&selected)?;
    let mut emergency = None;
    if overwrites {
        let report = backup_target(repo, name, &dest_cfg, None, true)
            .await
            .map_err(|e| e.context("emergency backup failed; nothing was changed"))?;
        if !ctx.json {
            outln!("emergency backup: snapshot {}", &report.snapshot[..8]);
        }
        emergency = Some(report.snapshot);
    }
    let results = write_objects(repo, &snapshot.id, dest, selected.clone()).await?;
    let mut failed = Vec::new();
    let mut mismatched = Vec::new();
    for (o, r) in selected.iter().zip(results) {
        match r {
            Ok(true) => {}
            Ok(false) => mismatched.push(o.key.clone()),
            Err(e) => failed.push(format!("`{}`: {e}", o.key)),
        }
    }
    if !failed.is_empty() {
        return Err(CliError::failure(
            format!(
                "{} of {} object(s) could not be written: {}",
                failed.len(),
                selected.len(),
                failed[..failed.len().min(3)].join("; ")
            ),
            Some("run the restore again: objects already written are written again".into()),
        ));
    }
    if ctx.json {
        output::json(&json!({
            "plan": plan, "emergency_snapshot": emergency, "objects": selected.len(),
            "bytes": total, "mismatched": mismatched, "verified": mismatched.is_empty(),
        }));
    } else {
        outln!(
            "restored {} object(s), {} into `{}`; {} of {} match the manifest (size and SHA-256)",
            selected.len(),
            output::bytes(total),
            dest_loc.url(),
            selected.len() - mismatched.len(),
            selected.len()
        );
        for k in &mismatched {
            outln!("  MISMATCH {k}");
        }
    }
    Ok(if mismatched.is_empty() { 0 } else { 3 })
}

/// Write `objects` of snapshot `id` into `dest`, `PARALLEL` at a time, each hashed on the
/// way: per object, whether its size and SHA-256 match the record, or why it failed.
///
/// Many objects are first restored into a temporary folder with rustic's restore, which
/// reads each pack in a few large ranges; one GET per object's blob is slow on S3 (one
/// request per object instead of per pack). They are staged in batches of `STAGE_BATCH`,
/// each uploaded and removed while the next restores. A few objects are streamed one by
/// one.
pub(super) async fn write_objects(
    repo: &Arc<Repo>,
    id: &str,
    dest: Bucket,
    objects: Vec<ObjectRecord>,
) -> CliResult<Vec<Result<bool, String>>> {
    let (r, id) = (repo.clone(), id.to_string());
    // Every object's path: `<target>/bucket/<key>`.
    let root = objects
        .first()
        .and_then(|o| o.path.split('/').next())
        .map(|t| format!("{t}/bucket"))
        .unwrap_or_default();
    let upload = move |o: &ObjectRecord,
                       content: &mut dyn FnMut(&mut dyn std::io::Write) -> Result<(), String>|
          -> Result<bool, String> {
        let w = dest
            .writer(&o.key, o.content_type.as_deref(), &o.metadata)
            .map_err(|e| e.to_string())?;
        let mut h = Measured::new(w);
        content(&mut h)?;
        let ok = h.bytes == o.bytes && hex::encode(h.hash.finalize()) == o.sha256;
        h.inner.finish().map_err(|e| e.to_string())?;
        Ok(ok)
    };
    if objects.len() >= STAGE_FROM {
        stage_room(&objects)?;
        let stage = tempfile::Builder::new()
            .prefix("lifeboat-bucket-restore-")
            .tempdir()
            .fs("create a staging folder in", &std::env::temp_dir())?;
        let dir = stage.path().to_path_buf();
        // Only the folder that holds them all (a `--prefix` restores a part of the tree).
        let common = objects
            .iter()
            .map(|o| o.path.rsplit_once('/').map_or("", |(d, _)| d))
            .reduce(|a, b| {
                let n = a
                    .split('/')
                    .zip(b.split('/'))
                    .take_while(|(x, y)| x == y)
                    .map(|(x, _)| x.len() + 1)
                    .sum::<usize>();
                &a[..n.saturating_sub(1).min(a.len())]
            })
            .unwrap_or(&root)
            .to_string();
        let below = format!("{common}/");
        return tokio::task::spawn_blocking(move || -> CliResult<_> {
            let index: HashMap<PathBuf, usize> = objects
                .iter()
                .enumerate()
                .map(|(i, o)| (o.path.strip_prefix(&below).unwrap_or(&o.path).into(), i))
                .collect();
            let mut results: Vec<Option<Result<bool, String>>> = vec![None; objects.len()];
            let wanted = |p: &std::path::Path| index.contains_key(p);
            r.restore_dir_in_batches(&id, &common, &dir, STAGE_BATCH, wanted, |folder, files| {
                let batch: Vec<(usize, &PathBuf)> = files
                    .iter()
                    .filter_map(|f| index.get(f).map(|&i| (i, f)))
                    .collect();
                let written = parallel(&batch, |&(i, f)| {
                    let file = folder.join(f);
                    upload(&objects[i], &mut |w| {
                        let f = std::fs::File::open(&file)
                            .map_err(|e| format!("`{}`: {e}", file.display()))?;
                        std::io::copy(&mut std::io::BufReader::with_capacity(1 << 20, f), w)
                            .map(|_| ())
                            .map_err(|e| e.to_string())
                    })
                });
                for (&(i, _), w) in batch.iter().zip(written) {
                    results[i] = Some(w);
                }
                let _ = std::fs::remove_dir_all(&folder);
                log::debug!(
                    "uploaded {} objects from `{}`",
                    batch.len(),
                    folder.display()
                );
            })?;
            Ok(results
                .into_iter()
                .zip(&objects)
                .map(|(r, o)| r.unwrap_or_else(|| Err(format!("`{}` was not restored", o.path))))
                .collect())
        })
        .await?;
    }
    Ok(tokio::task::spawn_blocking(move || {
        r.reading(|reader| {
            let nodes = if objects.is_empty() {
                Default::default()
            } else {
                reader.files_below(&id, &root)?
            };
            Ok(parallel(&objects, |o: &ObjectRecord| {
                let node = nodes
                    .get(&o.path)
                    .ok_or_else(|| format!("`{}` is not in the snapshot", o.path))?;
                upload(o, &mut |mut w| {
                    reader.dump_node(node, &mut w).map_err(|e| e.to_string())
                })
            }))
        })
    })
    .await??)
}

/// From how many objects a restore stages them in a temporary folder first.
const STAGE_FROM: usize = 64;

/// Whether the temporary folder has room for what staging `objects` may hold at once:
/// three batches (one uploading, one waiting, one restoring), each up to `STAGE_BATCH` and
/// one object more — or all of them, if that is less.
fn stage_room(objects: &[ObjectRecord]) -> CliResult<()> {
    if objects.len() < STAGE_FROM {
        return Ok(());
    }
    let largest = objects.iter().map(|o| o.bytes).max().unwrap_or(0);
    let total: u64 = objects.iter().map(|o| o.bytes).sum();
    let need = total.min(3 * (STAGE_BATCH + largest));
    let tmp = std::env::temp_dir();
    let free = rustix::fs::statvfs(&tmp)
        .map(|s| s.f_bavail.saturating_mul(s.f_frsize))
        .map_err(|e| {
            CliError::failure(
                format!("cannot read the free space of `{}`: {e}", tmp.display()),
                None,
            )
        })?;
    if free < need {
        return Err(CliError::failure(
            format!(
                "not enough room to stage the objects in `{}`: {} free, the restore needs up to {}",
                tmp.display(),
                output::bytes(free),
                output::bytes(need)
            ),
            Some(
                "free space there, or point TMPDIR at a folder with more room; nothing was written"
                    .into(),
            ),
        ));
    }
    Ok(())
}

/// How much is staged at a time: one batch uploads (and is removed) while the next
/// restores, so a large bucket needs only a few batches' room on the local disk.
const STAGE_BATCH: u64 = 128 << 20;

/// The objects of a bucket manifest as file records below `<target>/bucket` (for drills,
/// which restore them into a folder and check each one).
pub(super) fn as_files(name: &str, bm: &BucketManifest) -> lifeboat_core::manifest::FilesManifest {
    let root = format!("{name}/bucket/");
    let files: Vec<lifeboat_core::manifest::FileRecord> = bm
        .objects
        .iter()
        .map(|o| lifeboat_core::manifest::FileRecord {
            path: o.path.strip_prefix(&root).unwrap_or(&o.path).to_string(),
            bytes: o.bytes,
            sha256: o.sha256.clone(),
        })
        .collect();
    lifeboat_core::manifest::FilesManifest {
        roots: vec![bm.url.clone()],
        total_bytes: bm.total_bytes,
        files,
        symlinks: 0,
    }
}
