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
//! with `read_data`, every file read back); one that fails is deleted from the copy.
//!
//! The side area (WAL archive, change segments, drill reports, job history, incidents)
//! follows object by object: sealed objects are opened with this repository's side key
//! and sealed again with the copy's, under the same name. Runtime state that belongs to
//! the repository it lives in (locks, `serve`'s alerts and calendar, the copy records) is
//! not copied.

use std::{
    collections::{HashMap, HashSet},
    path::Path,
    sync::atomic::{AtomicUsize, Ordering},
};

use lifeboat_core::manifest::MANIFEST_FILE;
use rustic_core::{LsOptions, Repository, repofile::SnapshotFile};

use crate::{Repo, RepoError, SnapshotInfo, first_line, full_id, off_async, rustic, seal};

/// Side-area folders never copied: they describe the repository they are in.
const NOT_COPIED: [&str; 3] = ["locks/", "serve/", "copies/"];

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
    /// Ids (in this repository) of every snapshot the copy holds now.
    pub present: Vec<String>,
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

    /// This repository's lifeboat snapshots: those `dest` lacks, and the ids of those it has.
    #[allow(clippy::type_complexity)]
    fn split_by_copy(
        &self,
        dest: &Repo,
    ) -> Result<(Vec<(SnapshotFile, SnapshotInfo)>, Vec<String>), RepoError> {
        let there: HashSet<(i128, String)> = dest.all_snapshots()?.iter().map(match_key).collect();
        let (present, missing): (Vec<_>, Vec<_>) = self
            .list(None)?
            .into_iter()
            .partition(|(s, _)| there.contains(&match_key(s)));
        Ok((
            missing,
            present.into_iter().map(|(_, i)| i.id.to_string()).collect(),
        ))
    }

    /// Copy every lifeboat snapshot `dest` lacks into it, and verify each there (see the
    /// module's doc). A snapshot that fails verification is removed from `dest` and the
    /// copy fails naming it.
    pub fn copy_snapshots(
        &self,
        dest: &Repo,
        read_data: bool,
    ) -> Result<SnapshotsCopied, RepoError> {
        off_async(|| {
            let (missing, mut present) = self.split_by_copy(dest)?;
            let already = present.len();
            if missing.is_empty() {
                return Ok(SnapshotsCopied {
                    already,
                    present,
                    ..Default::default()
                });
            }
            let before = dest.pack_bytes()?;
            let src = self
                .handle()?
                .to_indexed()
                .map_err(rustic("cannot read the repository index"))?;
            let copied = (|| {
                let dst = dest
                    .handle()?
                    .to_indexed_ids()
                    .map_err(rustic(format!("cannot read the index of `{}`", dest.url)))?;
                let result = src
                    .copy(&dst, missing.iter().map(|(s, _)| s))
                    .map_err(rustic(format!("cannot copy snapshots to `{}`", dest.url)));
                dest.put_back(dst.drop_index());
                result?;
                dest.verify_copies(&src, &missing, read_data)
            })();
            self.put_back(src.drop_index());
            let copied = copied?;
            present.extend(copied.iter().map(|c| c.id.clone()));
            Ok(SnapshotsCopied {
                copied,
                already,
                bytes_sent: dest.pack_bytes()?.saturating_sub(before),
                present,
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
    /// those that fail.
    fn verify_copies(
        &self,
        src: &Repository<rustic_core::IndexedFullStatus>,
        copied: &[(SnapshotFile, SnapshotInfo)],
        read_data: bool,
    ) -> Result<Vec<CopiedSnapshot>, RepoError> {
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
                    Err(why) => {
                        failed.push(format!("{}: {why}", info.short_id()));
                        let _ = dst.delete_snapshots(&[copy.id]);
                    }
                }
            }
            if failed.is_empty() {
                Ok(done)
            } else {
                Err(RepoError::Rustic {
                    context: format!(
                        "{} snapshot(s) failed verification in `{}` and were removed from it",
                        failed.len(),
                        self.url
                    ),
                    message: failed.join("; "),
                })
            }
        })();
        self.put_back(dst.drop_index());
        result
    }

    /// Copy the side area into `dest`'s: what it lacks or holds in an older version.
    pub fn copy_side(&self, dest: &Repo) -> Result<SideCopied, RepoError> {
        off_async(|| {
            let (mine, theirs) = (self.side_key()?, dest.side_key()?);
            let there: HashMap<String, crate::store::ObjectStat> =
                dest.side.walk("")?.into_iter().collect();
            let mut todo = Vec::new();
            let mut unchanged = 0;
            for (rel, stat) in self.side.walk("")? {
                if NOT_COPIED.iter().any(|p| rel.starts_with(p)) {
                    continue;
                }
                let newer = match there.get(&rel) {
                    None => true,
                    Some(t) => {
                        t.size != stat.size
                            || matches!((stat.modified, t.modified), (Some(a), Some(b)) if a > b)
                    }
                };
                if newer {
                    todo.push(rel);
                } else {
                    unchanged += 1;
                }
            }
            // A few objects at a time: on S3 each is a round trip.
            let next = AtomicUsize::new(0);
            let results: Vec<Result<u64, RepoError>> = std::thread::scope(|s| {
                let workers: Vec<_> = (0..4)
                    .map(|_| {
                        s.spawn(|| -> Result<u64, RepoError> {
                            let mut bytes = 0;
                            loop {
                                let i = next.fetch_add(1, Ordering::Relaxed);
                                let Some(rel) = todo.get(i) else {
                                    return Ok(bytes);
                                };
                                let Some(raw) = self.side.get(rel)? else {
                                    continue; // removed meanwhile (retention)
                                };
                                let out = if seal::is_sealed(&raw) {
                                    let plain =
                                        mine.open(rel, &raw).map_err(|e| RepoError::Rustic {
                                            context: format!("cannot copy `{rel}`"),
                                            message: e.to_string(),
                                        })?;
                                    theirs.seal(rel, &plain).map_err(|e| RepoError::Rustic {
                                        context: format!("cannot copy `{rel}`"),
                                        message: e.to_string(),
                                    })?
                                } else {
                                    raw
                                };
                                dest.side.put(rel, &out)?;
                                bytes += out.len() as u64;
                            }
                        })
                    })
                    .collect();
                workers
                    .into_iter()
                    .map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                    .collect()
            });
            let mut bytes = 0;
            for r in results {
                bytes += r?;
            }
            Ok(SideCopied {
                objects: todo.len(),
                bytes,
                unchanged,
            })
        })
    }
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
        // No readable manifest at the source either (an incomplete backup): nothing to compare.
        (Err(_), _) => Ok(()),
    }
}
