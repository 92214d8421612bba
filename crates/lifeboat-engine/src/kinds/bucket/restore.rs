//! A bucket restore: all objects, those under `--prefix`, or one `--key`, into `--to
//! s3://bucket[/p]` (default: the target's own bucket), with content type and metadata,
//! each hashed on the way and compared with the manifest. Existing objects are refused
//! without `--force`; with it, an emergency backup of the destination comes first.

use std::{collections::HashMap, path::PathBuf, sync::Arc};

use lifeboat_core::{
    TargetConfig,
    manifest::{BucketManifest, ObjectRecord},
};
use lifeboat_repo::{Repo, bucket::Bucket};
use serde_json::json;
use sha2::Digest;

use super::{PARALLEL, bucket_err};
use crate::{
    Engine, EngineError, EngineResult, FsContext,
    cancel::Cancel,
    format,
    restore::{
        act::{ActCx, RestoreOutcome, RestorePlan, act},
        choose::chosen_section,
        plan::{Emergency, Plan, Refusal, RestoreRequest},
    },
    snapshot_io::Measured,
};

/// Run `f` on every item, `PARALLEL` at a time; the results in order.
pub fn parallel<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
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

pub(super) async fn plan(
    engine: &Engine,
    request: &RestoreRequest,
    target: &TargetConfig,
) -> EngineResult<RestorePlan> {
    let name = &request.target;
    let (snapshot, bm) = chosen_section(engine, request, |m| &m.bucket, "bucket").await?;
    let selected: Vec<ObjectRecord> = bm
        .objects
        .iter()
        .filter(|o| match (&request.key, &request.prefix) {
            (Some(k), _) => &o.key == k,
            (None, Some(p)) => o.key.starts_with(p.as_str()),
            (None, None) => true,
        })
        .cloned()
        .collect();
    if selected.is_empty() {
        return Err(EngineError::usage(
            format!(
                "no object in snapshot `{}` matches {}",
                snapshot.short_id(),
                request
                    .key
                    .as_ref()
                    .map(|k| format!("key `{k}`"))
                    .or(request.prefix.as_ref().map(|p| format!("prefix `{p}`")))
                    .unwrap_or_else(|| "(the snapshot is empty)".into())
            ),
            Some(format!(
                "`lifeboat snapshots {name} --json` lists the keys in the manifest"
            )),
        ));
    }
    let mut dest_cfg = target.clone();
    if let Some(to) = &request.to {
        dest_cfg.url = Some(to.expose().to_string());
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
        format::bytes(total)
    ));
    steps.push("check every object's size and SHA-256 against the manifest".into());
    let mut plan = Plan::new(name, &snapshot, dest_loc.url(), steps, overwrites);
    plan.facts.insert(
        "objects".into(),
        selected
            .iter()
            .map(|o| json!({"key": o.key, "bytes": o.bytes, "exists": existing.contains(&o.key)}))
            .collect(),
    );
    plan.notes = selected
        .iter()
        .map(|o| {
            let mark = if existing.contains(&o.key) {
                "  (exists)"
            } else {
                ""
            };
            format!("  would write {} ({}){mark}", o.key, format::bytes(o.bytes))
        })
        .collect();
    // Before anything is saved or written: room to stage the objects.
    stage_room(&selected)?;
    let (id, url, there, target_name) = (
        snapshot.id.clone(),
        dest_loc.url(),
        existing.clone(),
        name.to_string(),
    );
    let mut restore = RestorePlan::new(
        plan,
        act(move |cx: ActCx| async move {
            let results = write_objects(
                &cx.engine.repo,
                &id,
                dest.clone(),
                selected.clone(),
                Some(cx.cancel.clone()),
            )
            .await?;
            if cx.cancel.is_cancelled() {
                return Err(put_back(&cx, &target_name, &dest, &selected, &results, &there).await);
            }
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
                return Err(EngineError::failure(
                    format!(
                        "{} of {} object(s) could not be written: {}",
                        failed.len(),
                        selected.len(),
                        failed[..failed.len().min(3)].join("; ")
                    ),
                    Some("run the restore again: objects already written are written again".into()),
                ));
            }
            let mut lines = vec![format!(
                "restored {} object(s), {} into `{url}`; {} of {} match the manifest (size and SHA-256)",
                selected.len(),
                format::bytes(total),
                selected.len() - mismatched.len(),
                selected.len()
            )];
            lines.extend(mismatched.iter().map(|k| format!("  MISMATCH {k}")));
            let ok = mismatched.is_empty();
            Ok(RestoreOutcome::new(
                ok,
                &format!("{} object(s) differ from the manifest", mismatched.len()),
                json!({
                    "objects": selected.len(), "bytes": total, "mismatched": mismatched,
                    "verified": ok,
                }),
                lines,
            ))
        }),
    );
    if overwrites {
        restore.refusal = Some(Refusal {
            message: format!(
                "refusing to overwrite {} existing object(s) in `{}` (first: `{}`)",
                existing.len(),
                dest_loc.url(),
                existing[0]
            ),
            hint: "restore into another bucket or prefix, or pass `--force` to overwrite after an emergency backup".into(),
            forceable: true,
            why: format!("{} object(s) exist", existing.len()),
        });
        restore.emergency = Some(Emergency {
            target: dest_cfg,
            source: None,
            optional_with_force: false,
            what: format!("`{}`", dest_loc.url()),
        });
    }
    Ok(restore)
}

/// After a signal: the objects the restore wrote are taken back — those that were not
/// there before deleted, those it overwrote written again from the emergency snapshot —
/// so the bucket is as it was. The error says what was done, or what could not be.
async fn put_back(
    cx: &ActCx,
    name: &str,
    dest: &Bucket,
    selected: &[ObjectRecord],
    results: &[Result<bool, String>],
    existing: &[String],
) -> EngineError {
    let written: Vec<&ObjectRecord> = selected
        .iter()
        .zip(results)
        .filter(|(_, r)| r.is_ok())
        .map(|(o, _)| o)
        .collect();
    let existing: std::collections::HashSet<&str> = existing.iter().map(String::as_str).collect();
    let (overwritten, added): (Vec<&ObjectRecord>, Vec<&ObjectRecord>) = written
        .iter()
        .partition(|o| existing.contains(o.key.as_str()));
    let url = dest.url().to_string();
    let keys: Vec<String> = added.iter().map(|o| o.key.clone()).collect();
    let d = dest.clone();
    let deleted = lifeboat_repo::blocking(move || {
        keys.iter()
            .map(|k| d.delete(k).map_err(|e| format!("`{k}`: {e}")))
            .collect::<Result<Vec<()>, String>>()
    })
    .await;
    let restored = match (&cx.emergency_snapshot, overwritten.is_empty()) {
        (_, true) => Ok(0),
        (None, false) => Err("no emergency snapshot holds them".to_string()),
        (Some(snap), false) => put_back_from(cx, name, dest, snap, &overwritten).await,
    };
    match (deleted, restored) {
        (Ok(_), Ok(n)) => EngineError::interrupted(format!(
            "interrupted: {} of {} object(s) had been written into `{url}`; the bucket is as it was: {} new one(s) deleted, {n} overwritten one(s) written again from the emergency snapshot",
            written.len(),
            selected.len(),
            added.len(),
        )),
        (deleted, restored) => {
            let why: Vec<String> = [deleted.err(), restored.err()]
                .into_iter()
                .flatten()
                .collect();
            let mut e = EngineError::interrupted(format!(
                "interrupted after {} object(s) were written into `{url}`, and they could not all be taken back: {}",
                written.len(),
                why.join("; ")
            ));
            if let Some(snap) = &cx.emergency_snapshot {
                e = e.with_hint(format!(
                    "the emergency snapshot {} holds the bucket as it was: restore it with `--snapshot {}`",
                    snap.short(),
                    snap.short()
                ));
            }
            e
        }
    }
}

/// Write `objects`' keys again as the emergency snapshot `snap` holds them; how many.
async fn put_back_from(
    cx: &ActCx,
    name: &str,
    dest: &Bucket,
    snap: &lifeboat_core::SnapshotId,
    objects: &[&ObjectRecord],
) -> Result<usize, String> {
    let (r, id, name) = (cx.engine.repo.clone(), snap.to_string(), name.to_string());
    let info = r
        .call(move |r| r.find_snapshot(&name, &id))
        .await
        .map_err(|e| format!("cannot read the emergency snapshot: {e}"))?;
    let saved = info
        .manifest
        .ok()
        .and_then(|m| m.bucket)
        .ok_or("the emergency snapshot has no bucket manifest")?;
    let wanted: Vec<ObjectRecord> = saved
        .objects
        .into_iter()
        .filter(|o| objects.iter().any(|w| w.key == o.key))
        .collect();
    if wanted.len() != objects.len() {
        return Err(format!(
            "the emergency snapshot holds {} of the {} overwritten object(s)",
            wanted.len(),
            objects.len()
        ));
    }
    let n = wanted.len();
    let results = write_objects(&cx.engine.repo, &info.id, dest.clone(), wanted, None)
        .await
        .map_err(|e| e.message)?;
    match results.into_iter().find_map(|r| match r {
        Ok(true) => None,
        Ok(false) => Some("an object written again differs from the emergency snapshot".into()),
        Err(e) => Some(e),
    }) {
        None => Ok(n),
        Some(e) => Err(e),
    }
}

/// Write `objects` of snapshot `id` into `dest`, `PARALLEL` at a time, each hashed on the
/// way: per object, whether its size and SHA-256 match the record, or why it failed. Once
/// `cancel` is set no more objects start (those not written say so); those under way end.
///
/// Many objects are first restored into a temporary folder with rustic's restore, which
/// reads each pack in a few large ranges; one GET per object's blob is slow on S3 (one
/// request per object instead of per pack). They are staged in batches of `STAGE_BATCH`,
/// each uploaded and removed while the next restores. A few objects are streamed one by
/// one.
pub async fn write_objects(
    repo: &Arc<Repo>,
    id: &str,
    dest: Bucket,
    objects: Vec<ObjectRecord>,
    cancel: Option<Cancel>,
) -> EngineResult<Vec<Result<bool, String>>> {
    let stopped = {
        let cancel = cancel.clone();
        move || cancel.as_ref().is_some_and(Cancel::is_cancelled)
    };
    let stopped_batches = move || cancel.as_ref().is_some_and(Cancel::is_cancelled);
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
        if stopped() {
            return Err("not written: the restore was stopped".into());
        }
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
        return r
            .call(move |r| -> EngineResult<_> {
                let index: HashMap<PathBuf, usize> = objects
                    .iter()
                    .enumerate()
                    .map(|(i, o)| (o.path.strip_prefix(&below).unwrap_or(&o.path).into(), i))
                    .collect();
                let mut results: Vec<Option<Result<bool, String>>> = vec![None; objects.len()];
                let wanted = |p: &std::path::Path| index.contains_key(p);
                r.restore_dir_in_batches(
                    &id,
                    &common,
                    &dir,
                    STAGE_BATCH,
                    wanted,
                    |folder, files| {
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
                        !stopped_batches()
                    },
                )?;
                Ok(results
                    .into_iter()
                    .zip(&objects)
                    .map(|(r, o)| {
                        r.unwrap_or_else(|| Err(format!("`{}` was not restored", o.path)))
                    })
                    .collect())
            })
            .await;
    }
    Ok(r.call(move |r| {
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
    .await?)
}

/// From how many objects a restore stages them in a temporary folder first.
const STAGE_FROM: usize = 64;

/// Whether the temporary folder has room for what staging `objects` may hold at once:
/// three batches (one uploading, one waiting, one restoring), each up to `STAGE_BATCH` and
/// one object more — or all of them, if that is less.
fn stage_room(objects: &[ObjectRecord]) -> EngineResult<()> {
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
            EngineError::failure(
                format!("cannot read the free space of `{}`: {e}", tmp.display()),
                None,
            )
        })?;
    if free < need {
        return Err(EngineError::failure(
            format!(
                "not enough room to stage the objects in `{}`: {} free, the restore needs up to {}",
                tmp.display(),
                format::bytes(free),
                format::bytes(need)
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
pub fn as_files(name: &str, bm: &BucketManifest) -> lifeboat_core::manifest::FilesManifest {
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
