//! A full index read for one step of a job and kept for the next: a bucket backup reads its
//! previous manifest (which needs the index), then archives against the same index instead
//! of reading another. Used only if it was read whole (the index files listed before and
//! after reading it are the same), and by a caller holding the repository's shared lock
//! from the read to the archive (`lifeboat backup`, `serve`, a restore's emergency backup):
//! a blob leaves the repository only with the index file that lists it, which only prune
//! and index repair rewrite, under the exclusive lock. Index files another backup adds
//! meanwhile hold blobs it does not know: those it stores again, as rustic does for blobs
//! another backup adds while it runs.

use rustic_core::{IndexedFullStatus, Repository, repofile::SnapshotFile};

use crate::{Repo, RepoError, SnapshotInfo, off_async, rustic};

/// The repository's full index as it was when read, with the index files it came from.
pub struct KeptIndex {
    /// The index files read (sorted); `None` when they changed while being read.
    files: Option<Vec<rustic_core::repofile::IndexId>>,
    indexed: Repository<IndexedFullStatus>,
}

impl std::fmt::Debug for KeptIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeptIndex")
            .field("files", &self.files.as_ref().map(Vec::len))
            .finish_non_exhaustive()
    }
}

/// The index files of the repository, sorted.
fn index_files<S: rustic_core::Open>(
    repo: &Repository<S>,
) -> Result<Vec<rustic_core::repofile::IndexId>, RepoError> {
    let mut files: Vec<_> = repo
        .list()
        .map_err(rustic("cannot list the repository's index files"))?
        .collect();
    files.sort_unstable();
    Ok(files)
}

impl Repo {
    /// Read the full index, noting the index files it came from.
    fn read_index(&self) -> Result<KeptIndex, RepoError> {
        let repo = self.handle()?;
        let before = index_files(&repo)?;
        let indexed = repo
            .to_indexed()
            .map_err(rustic("cannot read the repository index"))?;
        let after = index_files(&indexed)?;
        Ok(KeptIndex {
            files: (before == after).then_some(after),
            indexed,
        })
    }

    /// The index `kept` holds, if it was read whole (its index files did not change
    /// meanwhile); else `None` (its handle given back).
    pub(crate) fn still_current(
        &self,
        kept: KeptIndex,
    ) -> Result<Option<Repository<IndexedFullStatus>>, RepoError> {
        if kept.files.is_some() {
            return Ok(Some(kept.indexed));
        }
        self.put_back(kept.indexed.drop_index());
        Ok(None)
    }

    /// The newest of `target`'s snapshots (oldest first as [`Repo::snapshots`] lists them)
    /// for which `wanted` holds, its manifest read; manifests are read newest first and no
    /// further than that one, from this machine's cache where kept there
    /// ([`Repo::cache_manifest`]). With the index read meanwhile, to keep for the backup
    /// ([`Repo::backup_with_parent`]); none read if the target has no snapshot.
    pub fn newest_snapshot(
        &self,
        target: &str,
        wanted: impl Fn(&SnapshotInfo) -> bool + Send + Sync,
    ) -> Result<(Option<SnapshotInfo>, Option<KeptIndex>), RepoError> {
        let mut items = self.list(Some(target))?;
        if items.is_empty() {
            return Ok((None, None));
        }
        let cache = self.manifest_cache();
        off_async(|| {
            std::thread::scope(|s| {
                let index = s.spawn(|| self.read_index());
                // Newest first, while cached.
                let mut found = None;
                while let Some((snap, mut info)) = items.pop() {
                    match cache.as_ref().and_then(|c| c.get(target, &info.id)) {
                        Some(m) => {
                            info.manifest = Ok(m);
                            if wanted(&info) {
                                found = Some(info);
                                break;
                            }
                        }
                        None => {
                            items.push((snap, info));
                            break;
                        }
                    }
                }
                match index
                    .join()
                    .unwrap_or_else(|p| std::panic::resume_unwind(p))
                {
                    Ok(kept) => {
                        if found.is_none() {
                            found = newest(&kept.indexed, items, &wanted);
                        }
                        Ok((found, Some(kept)))
                    }
                    // Found without it: the backup reads the index it needs itself.
                    Err(e) if found.is_some() => {
                        log::debug!("the index, read beside the cached manifest: {e}");
                        Ok((found, None))
                    }
                    Err(e) => Err(e),
                }
            })
        })
    }
}

/// The newest of `items` (oldest first) whose manifest `wanted` accepts.
fn newest(
    indexed: &Repository<IndexedFullStatus>,
    items: Vec<(SnapshotFile, SnapshotInfo)>,
    wanted: &impl Fn(&SnapshotInfo) -> bool,
) -> Option<SnapshotInfo> {
    items.into_iter().rev().find_map(|(snap, mut info)| {
        info.manifest = Repo::read_manifest(indexed, &snap, &info.target);
        wanted(&info).then_some(info)
    })
}
