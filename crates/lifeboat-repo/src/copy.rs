//! Copies of a repository into another one with its own key (`lifeboat copy`).
//!
//! Snapshots go through rustic's copy: the blobs they need and the copy lacks are read,
//! decrypted, and written again under the copy's key, packed and indexed there, and only
//! then are the snapshot files saved — an interrupted copy leaves unindexed packs at
//! most (a prune removes them), never a snapshot whose data is missing. Snapshots are
//! matched by time and root tree, so a snapshot already in the copy is never sent twice.
//! Each copied snapshot is then verified in the copy before it counts: every tree read
//! back and authenticated under the copy's key, every data blob in the copy's index and
//! inside a pack that is there, the manifest byte for byte the same as the source's (and,
//! with `read_data`, every file read back); one that fails is deleted from the copy. A
//! snapshot found in the copy but not known as verified (a run stopped between saving and
//! verifying) is verified by the next run.
//!
//! The side area (WAL archive, change segments, drill reports, job history, incidents)
//! follows object by object: sealed objects are opened with this repository's side key
//! and sealed again with the copy's, under the same name. Runtime state that belongs to
//! the repository it lives in (locks, `serve`'s alerts and calendar, the copy records) is
//! not copied. Objects written once (WAL, change segments and their parts, drill reports,
//! job records) are copied when the copy lacks them or holds them in another size; a WAL
//! segment or change segment the copy holds with other content is an error, never
//! overwritten. The few small records rewritten in place (gap records, where a capture
//! stopped, incidents, recovery records) are read before anything else is listed and
//! copied every time. The order keeps the copy consistent at every moment: gap records
//! first, then data, then change segments — one after another per target, so that a
//! failure or a stop never leaves a hole a replay would step over — and the records last.
//! A copy whose newest change segments the repository pruned before they were copied gets
//! no newer ones (the error says what to do). Nothing is ever deleted from a copy.

use std::{
    collections::{HashMap, HashSet},
    path::Path,
    sync::atomic::{AtomicUsize, Ordering},
};

use lifeboat_core::manifest::MANIFEST_FILE;
use rustic_core::{LsOptions, Repository, repofile::SnapshotFile};

use crate::{Repo, RepoError, SnapshotInfo, first_line, full_id, off_async, rustic, seal};

/// Side-area folders never copied: they describe the repository they are in.
const NOT_COPIED: [&str; 4] = ["locks/", "serve/", "copies/", "removed/"];

/// One snapshot copied and verified.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CopiedSnapshot {
    /// Its id in this repository.
    pub id: String,
    /// Its id in the copy.
    pub copy_id: String,
    pub target: String,
    pub time: jiff::Timestamp,
}

/// What a copy of the snapshots did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SnapshotsCopied {
    pub copied: Vec<CopiedSnapshot>,
    /// Snapshots that were in the copy already.
    pub already: usize,
    /// Bytes of packs and index files the copy grew by.
    pub bytes_sent: u64,
    /// Ids (in this repository) of every snapshot the copy holds now, verified.
    pub present: Vec<String>,
    /// Snapshots found in the copy unverified (a run stopped before verifying) and
    /// verified by this one.
    pub verified_late: usize,
    /// Snapshots that failed verification in the copy, each with why and what became of
    /// it; the others count.
    pub failed: Vec<String>,
}

/// What a copy of the side area did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SideCopied {
    pub objects: usize,
    pub bytes: u64,
    /// Objects already in the copy as they are here.
    pub unchanged: usize,
}

/// The key a snapshot is matched by between repositories: its time and root tree (the
/// ids of snapshot files differ, blob ids do not).
fn match_key(s: &SnapshotFile) -> (i128, String) {
    (
        s.time.timestamp().as_nanosecond(),
        s.tree.to_hex().to_string(),
    )
}

impl Repo {
    /// lifeboat's snapshots here that `dest` lacks, oldest first, and how many it has.
    pub fn missing_in(&self, dest: &Repo) -> Result<(Vec<SnapshotInfo>, usize), RepoError> {
        let (missing, present) = self.split_by_copy(dest)?;
        Ok((missing.into_iter().map(|(_, i)| i).collect(), present.len()))
    }

    /// The id of the repository (its config's). Every `init` makes a new one, copies
    /// included: two places with one id are one repository.
    pub fn repository_id(&self) -> Result<String, RepoError> {
        self.with_open(|r| Ok(r.config().id.to_hex().to_string()))
    }

    /// This repository's lifeboat snapshots: those `dest` lacks, and those it has.
    #[allow(clippy::type_complexity)]
    fn split_by_copy(
        &self,
        dest: &Repo,
    ) -> Result<
        (
            Vec<(SnapshotFile, SnapshotInfo)>,
            Vec<(SnapshotFile, SnapshotInfo)>,
        ),
        RepoError,
    > {
        let there: HashSet<(i128, String)> = dest.all_snapshots()?.iter().map(match_key).collect();
        let (present, missing): (Vec<_>, Vec<_>) = self
            .list(None)?
            .into_iter()
            .partition(|(s, _)| there.contains(&match_key(s)));
        Ok((missing, present))
    }

    /// Copy every lifeboat snapshot `dest` lacks into it, and verify each there (see the
    /// module's doc), with those `dest` holds that are not in `verified` (ids here). A
    /// snapshot that fails verification is removed from `dest` and named in `failed`; the
    /// others count.
    pub fn copy_snapshots(
        &self,
        dest: &Repo,
        read_data: bool,
        verified: &HashSet<String>,
    ) -> Result<SnapshotsCopied, RepoError> {
        off_async(|| {
            let (missing, present) = self.split_by_copy(dest)?;
            let already = present.len();
            let (known, unverified): (Vec<_>, Vec<_>) = present
                .into_iter()
                .partition(|(_, i)| verified.contains(i.id.as_str()));
            let mut ids: Vec<String> = known.iter().map(|(_, i)| i.id.to_string()).collect();
            if missing.is_empty() && unverified.is_empty() {
                return Ok(SnapshotsCopied {
                    already,
                    present: ids,
                    ..Default::default()
                });
            }
            let before = dest.pack_bytes()?;
            let src = self
                .handle()?
                .to_indexed()
                .map_err(rustic("cannot read the repository index"))?;
            let outcome = (|| {
                if !missing.is_empty() {
                    let dst = dest
                        .handle()?
                        .to_indexed_ids()
                        .map_err(rustic(format!("cannot read the index of `{}`", dest.url)))?;
                    let result = src
                        .copy(&dst, missing.iter().map(|(s, _)| s))
                        .map_err(rustic(format!("cannot copy snapshots to `{}`", dest.url)));
                    dest.put_back(dst.drop_index());
                    result?;
                }
                let late = dest.verify_copies(&src, &unverified, read_data)?;
                let fresh = dest.verify_copies(&src, &missing, read_data)?;
                Ok::<_, RepoError>((late, fresh))
            })();
            self.put_back(src.drop_index());
            let ((late, mut failed), (copied, failed_fresh)) = outcome?;
            failed.extend(failed_fresh);
            let verified_late = late.len();
            ids.extend(late.iter().map(|c| c.id.clone()));
            ids.extend(copied.iter().map(|c| c.id.clone()));
            Ok(SnapshotsCopied {
                copied,
                already,
                bytes_sent: dest.pack_bytes()?.saturating_sub(before),
                present: ids,
                verified_late,
                failed,
            })
        })
    }

    /// Bytes in `data/` and `index/`.
    fn pack_bytes(&self) -> Result<u64, RepoError> {
        let mut total = 0;
        for dir in ["data", "index"] {
            total += self
                .store
                .list_files(dir)?
                .iter()
                .map(|(_, n)| n)
                .sum::<u64>();
        }
        Ok(total)
    }

    /// Verify, in this repository (the copy), the snapshots just copied from `src`; remove
    /// those that fail. Those that passed, and why each other one failed.
    #[allow(clippy::type_complexity)]
    fn verify_copies(
        &self,
        src: &Repository<rustic_core::IndexedFullStatus>,
        copied: &[(SnapshotFile, SnapshotInfo)],
        read_data: bool,
    ) -> Result<(Vec<CopiedSnapshot>, Vec<String>), RepoError> {
        if copied.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let dst = self
            .handle()?
            .to_indexed()
            .map_err(rustic(format!("cannot read the index of `{}`", self.url)))?;
        let result = (|| {
            let here: HashMap<(i128, String), SnapshotFile> = dst
                .get_all_snapshots()
                .map_err(rustic(format!(
                    "cannot list the snapshots of `{}`",
                    self.url
                )))?
                .into_iter()
                .map(|s| (match_key(&s), s))
                .collect();
            let packs: HashMap<String, u64> = self.store.list_files("data")?.into_iter().collect();
            let mut done = Vec::new();
            let mut failed = Vec::new();
            for (snap, info) in copied {
                let Some(copy) = here.get(&match_key(snap)) else {
                    failed.push(format!(
                        "{}: not in the copy after copying",
                        info.short_id()
                    ));
                    continue;
                };
                match verify_one(src, &dst, snap, copy, &info.target, &packs, read_data) {
                    Ok(()) => done.push(CopiedSnapshot {
                        id: info.id.to_string(),
                        copy_id: full_id(&copy.id),
                        target: info.target.to_string(),
                        time: snap.time.timestamp(),
                    }),
                    Err(why) => match dst.delete_snapshots(&[copy.id]) {
                        Ok(()) => failed.push(format!(
                            "{} ({}): {why}; removed from the copy",
                            info.short_id(),
                            info.target
                        )),
                        Err(e) => failed.push(format!(
                            "{} ({}): {why}; and it could not be removed from the copy ({}): remove snapshot {} there by hand",
                            info.short_id(),
                            info.target,
                            first_line(&e.to_string()),
                            full_id(&copy.id),
                        )),
                    },
                }
            }
            Ok((done, failed))
        })();
        self.put_back(dst.drop_index());
        result
    }

    /// Copy the side area into `dest`'s (see the module's doc for what, and in which
    /// order).
    pub fn copy_side(&self, dest: &Repo) -> Result<SideCopied, RepoError> {
        off_async(|| {
            let (mine, theirs) = (self.side_key()?, dest.side_key()?);
            let skipped = |rel: &str| NOT_COPIED.iter().any(|p| rel.starts_with(p));
            // The records rewritten in place are read first, before the data is listed:
            // what they say (where a capture stopped) is then covered by what is copied.
            let mut records: [Vec<(String, Vec<u8>)>; 2] = Default::default();
            for (rel, _) in self.side.walk("")? {
                let phase = phase_of(&rel);
                if skipped(&rel) || !matches!(phase, Phase::Gaps | Phase::Rewritten) {
                    continue;
                }
                if let Some(raw) = self.side.get(&rel)? {
                    let slot = usize::from(phase == Phase::Rewritten);
                    records[slot].push((rel, raw));
                }
            }
            let there: HashMap<String, u64> = dest
                .side
                .walk("")?
                .into_iter()
                .map(|(rel, stat)| (rel, stat.size))
                .collect();
            let mut data = Vec::new();
            let mut segments: std::collections::BTreeMap<String, Vec<String>> = Default::default();
            let mut unchanged = 0;
            let mut conflicts = Vec::new();
            for (rel, stat) in self.side.walk("")? {
                let phase = phase_of(&rel);
                if skipped(&rel) || matches!(phase, Phase::Gaps | Phase::Rewritten) {
                    continue;
                }
                match there.get(&rel) {
                    Some(&size) if size == stat.size => {
                        unchanged += 1;
                        continue;
                    }
                    // Reports and job records: this repository's version is the one.
                    Some(_) if !holds_data(&rel) => {}
                    // WAL or changes in another size: sealed by another build (the same
                    // content), or really another stream. Only the content decides.
                    Some(_) => {
                        match same_content(self, dest, (&mine, &theirs), &rel) {
                            Ok(true) => unchanged += 1,
                            Ok(false) => conflicts.push(format!(
                                "the copy holds another `{rel}`: a restored server that reused WAL positions, or another repository copied there; it is not overwritten"
                            )),
                            Err(e) => conflicts.push(e.to_string()),
                        }
                        continue;
                    }
                    None => {}
                }
                if phase == Phase::Segments {
                    let folder = rel.rsplit_once('/').map_or("", |(d, _)| d).to_string();
                    segments.entry(folder).or_default().push(rel);
                } else {
                    data.push(rel);
                }
            }
            // A copy whose newest change segment ends before what retention deleted here
            // (`pruned-through`, written by the prune before it deletes): segments were
            // pruned before it received them, and a replay from the copy would step over
            // them.
            for (folder, todo) in &mut segments {
                let prefix = format!("{folder}/");
                let newest_there = there
                    .keys()
                    .filter(|r| r.starts_with(&prefix) && phase_of(r) == Phase::Segments)
                    .max();
                let pruned_through = self
                    .side
                    .get(&format!("{folder}/pruned-through"))?
                    .and_then(|b| u64::from_str_radix(String::from_utf8_lossy(&b).trim(), 16).ok());
                if let (Some(newest), Some(pruned)) = (newest_there, pruned_through)
                    && segment_end(newest).is_some_and(|end| end < pruned)
                    && !todo.is_empty()
                {
                    conflicts.push(format!(
                        "`{folder}`: the repository no longer holds the change segments after the copy's newest (`{newest}`): they were pruned before this copy; its segments are not copied, so no restore from the copy steps over the missing ones (move the copy's `{folder}` aside, then copy again: its baselines restore to their own moments)"
                    ));
                    todo.clear();
                }
            }
            let copy_one = |rel: &str, raw: Option<Vec<u8>>| -> Result<u64, RepoError> {
                let raw = match raw {
                    Some(r) => r,
                    None => match self.side.get(rel)? {
                        Some(r) => r,
                        None => return Ok(0), // removed meanwhile (retention)
                    },
                };
                let failed = |e: seal::SealError| RepoError::Rustic {
                    context: format!("cannot copy `{rel}`"),
                    message: e.to_string(),
                };
                let out = if seal::is_sealed(&raw) {
                    theirs
                        .seal(rel, &mine.open(rel, &raw).map_err(failed)?)
                        .map_err(failed)?
                } else {
                    raw
                };
                dest.side.put(rel, &out)?;
                Ok(out.len() as u64)
            };
            let mut copied = SideCopied {
                unchanged,
                ..Default::default()
            };
            let mut add = |results: Vec<Option<Result<(usize, u64), RepoError>>>| {
                let mut first_error = None;
                for r in results.into_iter().flatten() {
                    match r {
                        Ok((n, bytes)) => {
                            copied.objects += n;
                            copied.bytes += bytes;
                        }
                        Err(e) => {
                            first_error.get_or_insert(e);
                        }
                    }
                }
                first_error.map_or(Ok(()), Err)
            };
            // Gap records, then data, then change segments — one after another per
            // target, so that a failure or a stop never leaves a hole — then the records.
            let [gaps, rewritten] = records;
            let gap_names: Vec<String> = gaps.iter().map(|(r, _)| r.clone()).collect();
            add(in_parallel(&gap_names, &|rel: &str| {
                let raw = gaps.iter().find(|(r, _)| r == rel).map(|(_, b)| b.clone());
                copy_one(rel, raw).map(|b| (1, b))
            }))?;
            add(in_parallel(&data, &|rel: &str| {
                copy_one(rel, None).map(|b| (1, b))
            }))?;
            let folders: Vec<String> = segments.keys().cloned().collect();
            add(in_parallel(&folders, &|folder: &str| {
                let (mut n, mut bytes) = (0, 0);
                for rel in &segments[folder] {
                    bytes += copy_one(rel, None)?;
                    n += 1;
                }
                Ok((n, bytes))
            }))?;
            let record_names: Vec<String> = rewritten.iter().map(|(r, _)| r.clone()).collect();
            add(in_parallel(&record_names, &|rel: &str| {
                let raw = rewritten
                    .iter()
                    .find(|(r, _)| r == rel)
                    .map(|(_, b)| b.clone());
                copy_one(rel, raw).map(|b| (1, b))
            }))?;
            if !conflicts.is_empty() {
                return Err(RepoError::Rustic {
                    context: format!(
                        "the side area was copied but for {} object(s)",
                        conflicts.len()
                    ),
                    message: conflicts.join("; "),
                });
            }
            Ok(copied)
        })
    }
}

/// Whether the side object `rel` here and in `dest` hold the same content (each opened
/// with its repository's side key when sealed).
fn same_content(
    here: &Repo,
    dest: &Repo,
    (mine, theirs): (&crate::SideKey, &crate::SideKey),
    rel: &str,
) -> Result<bool, RepoError> {
    let open = |repo: &Repo, key: &crate::SideKey| -> Result<Option<Vec<u8>>, RepoError> {
        let Some(raw) = repo.side.get(rel)? else {
            return Ok(None);
        };
        if !seal::is_sealed(&raw) {
            return Ok(Some(raw));
        }
        key.open(rel, &raw)
            .map(Some)
            .map_err(|e| RepoError::Rustic {
                context: format!("cannot compare `{rel}` with the copy's"),
                message: e.to_string(),
            })
    };
    Ok(open(here, mine)? == open(dest, theirs)?)
}

/// The order side objects are copied in (see the module's doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Gaps = 0,
    Data = 1,
    Segments = 2,
    Rewritten = 3,
}

/// The end LSN of the change segment `cdc/<t>/<first>-<last>.seg` (its last part, hex).
fn segment_end(rel: &str) -> Option<u64> {
    let name = rel.rsplit('/').next()?.strip_suffix(".seg")?;
    u64::from_str_radix(name.split_once('-')?.1, 16).ok()
}

/// WAL and captured changes: written once, and never overwritten in a copy.
fn holds_data(rel: &str) -> bool {
    rel.starts_with("wal/") || rel.starts_with("cdc/")
}

fn phase_of(rel: &str) -> Phase {
    let parts: Vec<&str> = rel.split('/').collect();
    match parts.as_slice() {
        ["cdc", _, "gaps.json"] => Phase::Gaps,
        ["cdc", _, name] if name.ends_with(".seg") => Phase::Segments,
        ["cdc", _, "parts", ..] | ["wal" | "drills" | "jobs", ..] => Phase::Data,
        _ => Phase::Rewritten,
    }
}

/// `f` over `items` on four threads, in order of the items: each item's result, `None` for
/// those not started because an earlier one failed.
fn in_parallel<T: Send>(
    items: &[String],
    f: &(impl Fn(&str) -> Result<T, RepoError> + Sync),
) -> Vec<Option<Result<T, RepoError>>> {
    let next = AtomicUsize::new(0);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let slots: Vec<std::sync::Mutex<Option<Result<T, RepoError>>>> =
        items.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..4.min(items.len()) {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else {
                        return;
                    };
                    let r = f(item);
                    if r.is_err() {
                        stop.store(true, Ordering::Relaxed);
                    }
                    *slots[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
                }
            });
        }
    });
    slots
        .into_iter()
        .map(|m| m.into_inner().unwrap_or_else(|p| p.into_inner()))
        .collect()
}

/// One copied snapshot checked in the copy `dst` against the source `src`.
fn verify_one(
    src: &Repository<rustic_core::IndexedFullStatus>,
    dst: &Repository<rustic_core::IndexedFullStatus>,
    snap: &SnapshotFile,
    copy: &SnapshotFile,
    target: &str,
    packs: &HashMap<String, u64>,
    read_data: bool,
) -> Result<(), String> {
    let root = dst
        .node_from_path(copy.tree, Path::new(""))
        .map_err(|e| first_line(&e.to_string()))?;
    // Every tree is read from the copy (decrypted and authenticated under its key).
    for item in dst
        .ls(&root, &LsOptions::default())
        .map_err(|e| first_line(&e.to_string()))?
    {
        let (path, node) =
            item.map_err(|e| format!("a tree does not read back: {}", first_line(&e.to_string())))?;
        if !node.is_file() {
            continue;
        }
        for id in node.content.iter().flatten() {
            let entry = dst.get_index_entry(id).map_err(|_| {
                format!(
                    "`{}`: a data blob is not in the copy's index",
                    path.display()
                )
            })?;
            let pack = entry.pack.to_hex().to_string();
            let end = u64::from(entry.location.offset) + u64::from(entry.location.length);
            match packs.get(&pack) {
                Some(&size) if size >= end => {}
                Some(_) => return Err(format!("pack {pack} is shorter than its index says")),
                None => return Err(format!("pack {pack} is missing")),
            }
        }
        if read_data {
            dst.dump(&node, &mut std::io::sink()).map_err(|e| {
                format!(
                    "`{}` does not read back: {}",
                    path.display(),
                    first_line(&e.to_string())
                )
            })?;
        }
    }
    let manifest = |repo: &Repository<rustic_core::IndexedFullStatus>, s: &SnapshotFile| {
        let mut buf = Vec::new();
        repo.node_from_snapshot_and_path(s, &format!("{target}/{MANIFEST_FILE}"))
            .and_then(|node| repo.dump(&node, &mut buf))
            .map(|()| buf)
            .map_err(|e| first_line(&e.to_string()))
    };
    match (manifest(src, snap), manifest(dst, copy)) {
        (Ok(a), Ok(b)) if a == b => Ok(()),
        (Ok(_), Ok(_)) => Err("its manifest differs from the source's".into()),
        (Ok(_), Err(e)) => Err(format!("its manifest does not read back: {e}")),
        // No manifest at the source either (a backup that failed before writing it).
        (Err(_), Err(_)) => Ok(()),
        (Err(e), Ok(_)) => Err(format!("its manifest does not read here: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn side_objects_are_ordered_by_what_they_hold() {
        assert_eq!(phase_of("cdc/shop/gaps.json"), Phase::Gaps);
        assert_eq!(
            phase_of("cdc/shop/0000000001a2b3c4-0000000001a2b3ff.seg"),
            Phase::Segments
        );
        assert_eq!(
            phase_of("cdc/shop/parts/0000000001a2b3ff-0.part"),
            Phase::Data
        );
        assert_eq!(
            phase_of("wal/7311/00000001/000000010000000000000003"),
            Phase::Data
        );
        assert_eq!(phase_of("drills/db/20261206T1200Z.json"), Phase::Data);
        assert_eq!(phase_of("cdc/shop/stopped.json"), Phase::Rewritten);
        assert_eq!(phase_of("cdc/shop/pruned-through"), Phase::Rewritten);
        assert_eq!(phase_of("incidents/open"), Phase::Rewritten);
        assert!(holds_data("wal/7311/00000001/000000010000000000000003"));
        assert!(!holds_data("jobs/db/x.json"));
    }

    #[test]
    fn a_segment_ends_at_the_last_part_of_its_name() {
        assert_eq!(
            segment_end("cdc/shop/0000000001a2b3c4-0000000001a2b3ff.seg"),
            Some(0x1a2b3ff)
        );
        assert_eq!(segment_end("cdc/shop/gaps.json"), None);
        assert_eq!(segment_end("cdc/shop/zz-yy.seg"), None);
    }
}
