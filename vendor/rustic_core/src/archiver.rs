pub(crate) mod file_archiver;
pub(crate) mod parent;
pub(crate) mod tree;
pub(crate) mod tree_archiver;

use std::path::{Path, PathBuf};
use std::thread::scope;

use jiff::Zoned;
use log::warn;
use pariter::IteratorExt;

use crate::{
    Progress,
    archiver::{
        file_archiver::FileArchiver,
        parent::{ItemWithParent, Parent, ParentResult},
        tree::{TreeIterator, TreeType},
        tree_archiver::TreeArchiver,
    },
    backend::{ReadSource, ReadSourceEntry, decrypt::DecryptFullBackend, node::NodeType},
    blob::BlobType,
    error::RusticResult,
    index::{
        ReadGlobalIndex,
        indexer::{Indexer, SharedIndexer},
    },
    repofile::{configfile::ConfigFile, snapshotfile::SnapshotFile},
};

#[derive(thiserror::Error, Debug, displaydoc::Display)]
/// Tree stack empty
pub struct TreeStackEmptyError;

/// The `Archiver` is responsible for archiving files and trees.
/// It will read the file, chunk it, and write the chunks to the backend.
///
/// # Type Parameters
///
/// * `BE` - The backend type.
/// * `I` - The index to read from.
#[allow(missing_debug_implementations)]
#[allow(clippy::struct_field_names)]
pub struct Archiver<'a, BE: DecryptFullBackend, I: ReadGlobalIndex> {
    /// The `FileArchiver` is responsible for archiving files.
    file_archiver: FileArchiver<'a, BE, I>,

    /// The `TreeArchiver` is responsible for archiving trees.
    tree_archiver: TreeArchiver<'a, BE, I>,

    /// The parent snapshot to use.
    parent: Parent,

    /// The `SharedIndexer` is used to index the data.
    indexer: SharedIndexer<BE>,

    /// The backend to write to.
    be: BE,

    /// The backend to write to.
    index: &'a I,

    /// The `SnapshotFile` to write to.
    snap: SnapshotFile,
}

impl<'a, BE: DecryptFullBackend, I: ReadGlobalIndex> Archiver<'a, BE, I> {
    /// Creates a new `Archiver`.
    ///
    /// # Arguments
    ///
    /// * `be` - The backend to write to.
    /// * `index` - The index to read from.
    /// * `config` - The config file.
    /// * `parent` - The parent snapshot to use.
    /// * `snap` - The `SnapshotFile` to write to.
    ///
    /// # Errors
    ///
    /// * If sending the message to the raw packer fails.
    /// * If converting the data length to u64 fails
    pub fn new(
        be: BE,
        index: &'a I,
        config: &ConfigFile,
        parent: Parent,
        mut snap: SnapshotFile,
    ) -> RusticResult<Self> {
        let indexer = Indexer::new(be.clone()).into_shared();
        let mut summary = snap.summary.take().unwrap_or_default();
        summary.backup_start = Zoned::now();

        let file_archiver = FileArchiver::new(be.clone(), index, indexer.clone(), config)?;
        let tree_archiver = TreeArchiver::new(be.clone(), index, indexer.clone(), config, summary)?;

        Ok(Self {
            file_archiver,
            tree_archiver,
            parent,
            indexer,
            be,
            index,
            snap,
        })
    }

    /// Archives the given source.
    ///
    /// This will archive all files and trees in the given source.
    ///
    /// # Type Parameters
    ///
    /// * `R` - The type of the source.
    ///
    /// # Arguments
    ///
    /// * `index` - The index to read from.
    /// * `src` - The source to archive.
    /// * `backup_path` - The path to the backup.
    /// * `as_path` - The path to archive the backup as.
    /// * `skip_identical_parent` - skip saving of snapshot if tree is identical to parent tree.
    /// * `p` - The progress bar.
    ///
    /// # Errors
    ///
    /// * If sending the message to the raw packer fails.
    /// * If the index file could not be serialized.
    /// * If the time is not in the range of `Local::now()`.
    pub fn archive<R>(
        mut self,
        src: &R,
        backup_path: &Path,
        as_path: Option<&PathBuf>,
        skip_identical_parent: bool,
        no_scan: bool,
        p: &Progress,
    ) -> RusticResult<SnapshotFile>
    where
        R: ReadSource + 'static,
        <R as ReadSource>::Open: Send,
        <R as ReadSource>::Iter: Send,
    {
        scope(|s| -> RusticResult<_> {
            // determine backup size in parallel to running backup
            let src_size_handle = s.spawn(|| {
                if !no_scan && !p.is_hidden() {
                    match src.size() {
                        Ok(Some(size)) => p.set_length(size),
                        Ok(None) => {}
                        Err(err) => warn!("error determining backup size: {}", err.display_log()),
                    }
                }
            });

            // filter out errors and handle as_path
            let iter = src.entries().filter_map(|item| match item {
                Err(err) => {
                    warn!("ignoring error: {}", err.display_log());
                    None
                }
                Ok(ReadSourceEntry { path, node, open }) => {
                    let snapshot_path = if let Some(as_path) = as_path {
                        as_path
                            .clone()
                            .join(path.strip_prefix(backup_path).unwrap())
                    } else {
                        path
                    };
                    Some(if node.is_dir() {
                        (snapshot_path, node, open)
                    } else {
                        (
                            snapshot_path
                                .parent()
                                .expect("file path should have a parent!")
                                .to_path_buf(),
                            node,
                            open,
                        )
                    })
                }
            });
            // handle beginning and ending of trees
            let iter = TreeIterator::new(iter);

            // use parent snapshot
            iter.filter_map(
                |item| match self.parent.process(&self.be, self.index, item) {
                    Ok(item) => Some(item),
                    Err(err) => {
                        warn!("ignoring error reading parent snapshot: {err:?}");
                        None
                    }
                },
            )
            // lifeboat patch: in batches (see `Batches`)
            .batches()
            // archive files in parallel
            .parallel_map_scoped(s, |batch| {
                batch
                    .into_iter()
                    .map(|item| self.file_archiver.process(item, p))
                    .collect::<Vec<_>>()
            })
            .readahead_scoped(s)
            .flatten()
            .filter_map(|item| match item {
                Ok(item) => Some(item),
                Err(err) => {
                    warn!("ignoring error: {}", err.display_log());
                    None
                }
            })
            .try_for_each(|item| self.tree_archiver.add(item))?;

            src_size_handle
                .join()
                .expect("Scoped Size Handler thread should not panic!");

            Ok(())
        })?;

        let stats = self.file_archiver.finalize()?;
        let (id, mut summary) = self.tree_archiver.finalize(self.parent.tree_id())?;
        stats.apply(&mut summary, BlobType::Data);
        self.snap.tree = id;

        self.indexer.write().unwrap().finalize()?;

        summary.finalize(&self.snap.time);
        self.snap.summary = Some(summary);

        if !skip_identical_parent || Some(self.snap.tree) != self.parent.tree_id() {
            let id = self.be.save_file(&self.snap)?;
            self.snap.id = id.into();
        }

        p.finish();
        Ok(self.snap)
    }
}

// lifeboat patch: the archiver's items go to the file archiver's threads in batches. 0.13
// sent every item (each file, each tree's start and end) through pariter's channels on its
// own: two hand-offs between threads per item, each a wake-up. An incremental backup of
// 10,000 unchanged files spent most of its archiving time there (crossbeam's futex waits
// and `sched_yield`s), for items that need no work: a file matched with its parent keeps
// the parent's content, a tree's start and end carry nothing to read. A batch ends after
// an item that must be read (a file not matched with the parent), so files to read still
// go to the threads one by one and are read in parallel as before; cheap items ride along,
// at most `BATCH_MAX` per batch. The order of items is unchanged.

/// The most items in one batch.
const BATCH_MAX: usize = 256;

/// Whether the file archiver must read `item` (a file not matched with its parent).
fn must_read<O>(item: &ItemWithParent<O>) -> bool {
    matches!(item, TreeType::Other((_, node, (_, parent)))
        if node.node_type == NodeType::File && !matches!(parent, ParentResult::Matched(())))
}

/// Items in batches: each ends after an item that must be read, or at `BATCH_MAX` items.
struct Batches<I> {
    iter: I,
}

impl<O, I: Iterator<Item = ItemWithParent<O>>> Iterator for Batches<I> {
    type Item = Vec<ItemWithParent<O>>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut batch = Vec::new();
        for item in self.iter.by_ref() {
            let read = must_read(&item);
            batch.push(item);
            if read || batch.len() >= BATCH_MAX {
                break;
            }
        }
        (!batch.is_empty()).then_some(batch)
    }
}

trait BatchesExt: Sized {
    fn batches(self) -> Batches<Self>;
}

impl<O, I: Iterator<Item = ItemWithParent<O>>> BatchesExt for I {
    fn batches(self) -> Batches<Self> {
        Batches { iter: self }
    }
}

#[cfg(test)]
mod lifeboat_patch_tests {
    use std::path::PathBuf;

    use super::{BATCH_MAX, BatchesExt, ItemWithParent, ParentResult, TreeType};
    use crate::backend::node::{Metadata, Node, NodeType};

    fn file(name: &str, matched: bool) -> ItemWithParent<u32> {
        let parent = if matched {
            ParentResult::Matched(())
        } else {
            ParentResult::NotMatched
        };
        let node = Node::new_node(
            std::ffi::OsStr::new(name),
            NodeType::File,
            Metadata::default(),
        );
        TreeType::Other((PathBuf::from(name), node, (0, parent)))
    }

    fn dir(name: &str) -> ItemWithParent<u32> {
        let node = Node::new_node(
            std::ffi::OsStr::new(name),
            NodeType::Dir,
            Metadata::default(),
        );
        TreeType::NewTree((PathBuf::from(name), node, ParentResult::NotFound))
    }

    fn names(batch: &[ItemWithParent<u32>]) -> Vec<String> {
        batch
            .iter()
            .map(|item| match item {
                TreeType::NewTree((p, _, _)) => format!("<{}", p.display()),
                TreeType::EndTree => ">".into(),
                TreeType::Other((p, _, _)) => p.display().to_string(),
            })
            .collect()
    }

    #[test]
    fn lifeboat_patch_a_batch_ends_after_a_file_to_read_and_keeps_the_order() {
        let items = vec![
            dir("d"),
            file("a", true),
            file("b", false),
            file("c", false),
            TreeType::EndTree,
            dir("e"),
            file("f", true),
            TreeType::EndTree,
        ];
        let batches: Vec<Vec<String>> = items.into_iter().batches().map(|b| names(&b)).collect();
        assert_eq!(
            batches,
            vec![vec!["<d", "a", "b"], vec!["c"], vec![">", "<e", "f", ">"],]
        );
    }

    #[test]
    fn lifeboat_patch_cheap_items_come_in_batches_of_at_most_the_maximum() {
        let n = BATCH_MAX * 2 + 3;
        let items = (0..n).map(|i| file(&i.to_string(), true));
        let sizes: Vec<usize> = items.batches().map(|b| b.len()).collect();
        assert_eq!(sizes, vec![BATCH_MAX, BATCH_MAX, 3]);
        let none: Vec<ItemWithParent<u32>> = Vec::new();
        assert_eq!(none.into_iter().batches().count(), 0);
        // A directory's entry that is not a file is never read: it rides along.
        let other = Node::new_node(
            std::ffi::OsStr::new("l"),
            NodeType::Dir,
            Metadata::default(),
        );
        let items = vec![
            TreeType::Other((PathBuf::from("l"), other, (0, ParentResult::NotFound))),
            file("x", false),
        ];
        let sizes: Vec<usize> = items.into_iter().batches().map(|b| b.len()).collect();
        assert_eq!(sizes, vec![2]);
    }
}
