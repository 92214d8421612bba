//! lifeboat's repository: a restic-format repository (v2, zstd, encrypted) reached through
//! rustic_core, plus lifeboat's side area and locks.
//!
//! This is the only crate that names rustic_core; its pitfalls (notes/rustic_core.md) are
//! handled here: streams are read through a full-read wrapper, entries record what was
//! read so that a failed stream deletes its snapshot instead of leaving a truncated one,
//! and parent reuse is forced off. rustic_core is synchronous: async callers go through
//! [`Repo::call`] and the other methods of `async_face.rs`, never `spawn_blocking`. This
//! crate knows nothing of PostgreSQL or of the CLI.

mod async_face;
mod backend;
pub mod bucket;
mod change_hint;
pub mod copy;
pub mod files;
mod kept_index;
pub mod keys;
mod manifest_cache;
pub mod object_lock;
pub mod seal;
pub mod side;
pub mod source;
pub mod store;

use std::{
    collections::{BTreeMap, HashMap},
    io::Write,
    path::{Path, PathBuf},
    sync::Arc,
};

use lifeboat_core::{
    Location, Manifest, Redacted, SnapshotId, TargetName, config::Retention,
    manifest::MANIFEST_FILE,
};
use rustic_backend::BackendOptions;
use rustic_core::{
    CheckOptions, ConfigOptions, Credentials, KeepOptions, LocalDestination, LsOptions, OpenStatus,
    PruneOptions, Repository, RepositoryOptions, RestoreOptions, RusticError, SnapshotOptions,
    repofile::{SnapshotFile, SnapshotSummary},
};

pub use async_face::{Started, blocking};
pub use change_hint::HintKey;
pub use kept_index::KeptIndex;
pub use rustic_core::{Progress, ProgressBars, ProgressType, RusticProgress};
pub use seal::{SealError, SideKey};
pub use side::{LockGuard, LockKind, SideArea, SideError, hostname};
pub use source::{Content, EntrySource, LEFT_OUT, LeftOut, SourceEntry, StreamOutcome, StreamStat};
pub use store::{Store, StoreError};

/// The tag every lifeboat snapshot carries.
pub const TAG: &str = "lifeboat";
pub const TAG_EMERGENCY: &str = "emergency";

#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("cannot open repository `{url}`: wrong password")]
    WrongPassword { url: String },
    #[error("no repository at `{url}`")]
    NotARepository { url: String },
    #[error("a repository already exists at `{url}`")]
    AlreadyExists { url: String },
    #[error("{context}: {message}")]
    Rustic { context: String, message: String },
    /// A rustic call failed because a local file system (the repository's, or its cache)
    /// is full.
    #[error("{context}: {message}")]
    NoSpace { context: String, message: String },
    /// A rustic call failed because the storage under it did.
    #[error("{context}: {source}")]
    Backend { context: String, source: StoreError },
    #[error(transparent)]
    Side(#[from] side::SideError),
    #[error("repository {0}")]
    Store(#[from] StoreError),
    #[error("snapshot `{0}` not found")]
    SnapshotNotFound(String),
    #[error("backup failed: {0}; the incomplete snapshot was deleted")]
    BackupFailed(String),
    #[error("snapshot `{id}` has no readable manifest: {message}")]
    BadManifest { id: String, message: String },
    #[error("not enough room in `{dest}`: {free} MiB free, the restore writes {need} MiB")]
    NoRoom { dest: String, free: u64, need: u64 },
    /// rustic's restore panicked (it unwraps its writes: a full disk, a vanished folder).
    #[error("restore into `{dest}` stopped: {message}")]
    RestoreStopped { dest: String, message: String },
    /// The caller's [`StopFlag`] stopped the restore; what it wrote is partial.
    #[error("restore into `{dest}` was stopped before it finished")]
    Stopped { dest: String },
}

/// A flag that stops a running restore between packs, set from any thread (the engine sets
/// it when its cancellation token is). One leaked byte per flag: rustic's options are
/// `Copy`, so the flag it reads is `'static`.
#[derive(Debug, Clone, Copy)]
pub struct StopFlag(&'static std::sync::atomic::AtomicBool);

impl Default for StopFlag {
    fn default() -> Self {
        Self::new()
    }
}

impl StopFlag {
    pub fn new() -> Self {
        Self(Box::leak(Box::new(std::sync::atomic::AtomicBool::new(
            false,
        ))))
    }

    pub fn stop(&self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn is_set(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl RepoError {
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::NotARepository { .. } => {
                Some("create it with `lifeboat init`, or check `repository.url`".into())
            }
            Self::AlreadyExists { .. } => {
                Some("`lifeboat init` never touches an existing repository".into())
            }
            Self::NoSpace { .. } => Some(
                "the repository's filesystem is full: free space there; no snapshot was saved"
                    .into(),
            ),
            Self::Side(side::SideError::Locked { .. }) => Some(
                "wait for it to finish; if its process is gone, the lock expires within 5 minutes (or run `lifeboat unlock`)"
                    .into(),
            ),
            Self::Side(side::SideError::Store(e))
            | Self::Store(e)
            | Self::Backend { source: e, .. } => e.hint(),
            Self::NoRoom { .. } => Some(
                "free space there, or restore somewhere else (for a bucket, point TMPDIR at a folder with more room); nothing was written".into(),
            ),
            Self::Stopped { .. } => None,
            Self::RestoreStopped { .. } => Some(
                "if the destination filled up, free space there and restore again (what was written is rewritten)".into(),
            ),
            _ => None,
        }
    }
}

/// rustic's restore of `plan` into `local` (the folder `dest`), with what rustic 0.13 does
/// not handle: a destination without room for what the plan writes is refused before
/// anything is written, and a write that fails anyway — rustic unwraps its writes in
/// worker threads, so a full disk panicked (test `a_full_destination_is_an_error`) —
/// becomes an error.
fn restore_checked(
    indexed: &Repository<rustic_core::IndexedFullStatus>,
    plan: rustic_core::RestorePlan,
    nodes: impl Iterator<Item = rustic_core::RusticResult<(PathBuf, rustic_core::repofile::Node)>>,
    local: &LocalDestination,
    dest: &Path,
    stop: Option<StopFlag>,
) -> Result<(), RepoError> {
    let need = plan.restore_size;
    // The folder may not exist yet (a file restored to a new path): its nearest ancestor
    // (`.` after the last part of a relative path).
    let room = dest
        .ancestors()
        .chain([Path::new(".")])
        .filter(|a| !a.as_os_str().is_empty())
        .find_map(|a| rustix::fs::statvfs(a).ok())
        .map(|s| s.f_bavail.saturating_mul(s.f_frsize));
    // Files already there are rewritten in place: their room counts (only looked at when
    // the free space alone is short).
    if let Some(free) = room
        && free < need
        && free.saturating_add(bytes_under(dest)) < need
    {
        return Err(RepoError::NoRoom {
            dest: dest.display().to_string(),
            free: free >> 20,
            need: need.div_ceil(1 << 20),
        });
    }
    let opts = RestoreOptions::default().stop(stop.map(|s| s.0));
    let _quiet = QuietPanics::new();
    let restored = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        indexed.restore(plan, &opts, nodes, local)
    }));
    if stop.is_some_and(|s| s.is_set()) {
        return Err(RepoError::Stopped {
            dest: dest.display().to_string(),
        });
    }
    restored
        .map_err(|panic| RepoError::RestoreStopped {
            dest: dest.display().to_string(),
            // The first panic says why: the one that reaches here may be another thread's
            // (a lock the first one poisoned).
            message: first_caught_panic()
                .or_else(|| panic_message(&*panic))
                .unwrap_or_else(|| "rustic's restore panicked".into()),
        })?
        .map_err(rustic("restore failed"))
}

/// The message a caught panic carried, if it was text.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> Option<String> {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
}

/// The bytes of the files under `path` (the file itself if it is one), links not followed.
fn bytes_under(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return if meta.is_file() { meta.len() } else { 0 };
    }
    std::fs::read_dir(path)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| bytes_under(&e.path()))
        .sum()
}

/// How many restores are catching rustic's panics now (see [`quiet_panics`]).
static CATCHING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Counts one restore in [`CATCHING`] while it lives.
struct QuietPanics;

/// The message of the first panic caught since the catching began (see [`note_caught_panic`]).
static FIRST_CAUGHT: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

impl QuietPanics {
    fn new() -> Self {
        if CATCHING.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            FIRST_CAUGHT
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take();
        }
        Self
    }
}

/// Called by the panic hook for a panic in rustic_core while [`quiet_panics`]: keeps the
/// first message, the one a caught restore reports.
pub fn note_caught_panic(message: &str) {
    FIRST_CAUGHT
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get_or_insert_with(|| message.to_string());
}

fn first_caught_panic() -> Option<String> {
    FIRST_CAUGHT
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
}

impl Drop for QuietPanics {
    fn drop(&mut self) {
        CATCHING.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Whether a restore is running that catches rustic_core's panics (it unwraps its writes)
/// and reports them as errors: a panic hook may keep their raw message out of sight then.
/// The panic may happen on any of rustic's threads, so this is process-wide.
pub fn quiet_panics() -> bool {
    CATCHING.load(std::sync::atomic::Ordering::SeqCst) > 0
}

fn rustic(context: impl Into<String>) -> impl FnOnce(Box<RusticError>) -> RepoError {
    let context = context.into();
    move |e| match store_cause(&e) {
        Some(source) => RepoError::Backend { context, source },
        None if lifeboat_core::cause::io_kind(&*e) == Some(std::io::ErrorKind::StorageFull) => {
            RepoError::NoSpace {
                context,
                message: describe(&e),
            }
        }
        None => RepoError::Rustic {
            context,
            message: describe(&e),
        },
    }
}

/// The storage error under a rustic error, if one is.
fn store_cause(e: &RusticError) -> Option<StoreError> {
    lifeboat_core::cause::find_cause::<StoreError>(e).map(StoreError::duplicate)
}

/// rustic's errors span many lines of guidance, and the first is often generic
/// ("an error related to input/output operations"): add the root cause (the OS error).
fn describe(e: &RusticError) -> String {
    let first = first_line(&e.to_string());
    match store::root_cause(e).map(|c| store::tidy_opendal(&first_line(&c))) {
        Some(c) if !first.contains(&c) => format!("{}: {c}", first.trim_end_matches('.')),
        _ => first,
    }
}

/// The first non-empty line of a message.
fn first_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("unknown error")
        .to_string()
}

/// Progress bars handed to rustic (the binary shows them on a TTY).
#[derive(Debug, Clone, Default)]
pub struct Bars(pub Option<Arc<dyn ProgressBars>>);

impl ProgressBars for Bars {
    fn progress(&self, t: ProgressType, prefix: &str) -> Progress {
        match &self.0 {
            Some(p) => p.progress(t, prefix),
            None => Progress::hidden(),
        }
    }
}

/// An open repository.
pub struct Repo {
    /// Open rustic handles not in use. rustic's index-loading calls consume a handle, so
    /// each operation takes one, or opens one more from `unopened` with the master key (one
    /// read of the config, no password derivation), and gives it back when done: one `Repo`
    /// serves any number of operations at once.
    idle: std::sync::Mutex<Vec<Repository<OpenStatus>>>,
    unopened: Repository<()>,
    key: rustic_core::repofile::MasterKey,
    /// The key file the password opened (`None` when opened another way).
    key_id: Option<String>,
    /// The repository's id (its config's), in hex.
    repo_id: String,
    url: String,
    side: SideArea,
    store: Store,
}

/// Reads files out of snapshots of an indexed repository.
pub struct Reader<'a> {
    indexed: &'a Repository<rustic_core::IndexedFullStatus>,
}

/// A file of a snapshot, found once and read any number of times.
pub struct FileNode(rustic_core::repofile::Node);

impl Reader<'_> {
    /// Every file below the folder `dir` of a snapshot, by its path (`dir/...`): one walk
    /// of the tree instead of one lookup from the snapshot's root per file.
    pub fn files_below(
        &self,
        snapshot_id: &str,
        dir: &str,
    ) -> Result<std::collections::HashMap<String, FileNode>, RepoError> {
        let node = node_at(self.indexed, snapshot_id, dir)?;
        let mut files = std::collections::HashMap::new();
        for item in self
            .indexed
            .ls(&node, &LsOptions::default())
            .map_err(rustic("cannot list snapshot"))?
        {
            let (path, node) = item.map_err(rustic("cannot list snapshot"))?;
            if node.is_file() {
                files.insert(format!("{dir}/{}", path.display()), FileNode(node));
            }
        }
        Ok(files)
    }

    pub fn dump_node(&self, node: &FileNode, w: &mut impl Write) -> Result<(), RepoError> {
        self.indexed
            .dump(&node.0, w)
            .map_err(rustic("cannot read a file of the snapshot"))
    }

    pub fn dump(&self, snapshot_id: &str, path: &str, w: &mut impl Write) -> Result<(), RepoError> {
        let node = node_at(self.indexed, snapshot_id, path)?;
        self.indexed.dump(&node, w).map_err(rustic(format!(
            "cannot read `{path}` from snapshot `{snapshot_id}`"
        )))
    }
}

/// A file of a snapshot opened for reading from any offset.
pub struct OpenedFile(rustic_core::vfs::OpenFile);

impl Reader<'_> {
    pub fn open(&self, snapshot_id: &str, path: &str) -> Result<OpenedFile, RepoError> {
        let node = node_at(self.indexed, snapshot_id, path)?;
        self.indexed
            .open_file(&node)
            .map(OpenedFile)
            .map_err(rustic(format!(
                "cannot open `{path}` of snapshot `{snapshot_id}`"
            )))
    }

    /// Write `len` bytes of `file` from `offset` into `w`, read in pieces of 8 MiB. Fails if
    /// the file ends first.
    pub fn copy_range(
        &self,
        file: &OpenedFile,
        offset: u64,
        len: u64,
        w: &mut impl Write,
    ) -> Result<(), RepoError> {
        const PIECE: u64 = 8 << 20;
        let mut done = 0;
        while done < len {
            let want = (len - done).min(PIECE);
            let at = offset + done;
            let bytes = self
                .indexed
                .read_file_at(&file.0, at as usize, want as usize)
                .map_err(rustic(format!("cannot read {want} bytes at {at}")))?;
            if bytes.is_empty() {
                return Err(RepoError::Rustic {
                    context: format!("cannot read {want} bytes at {at}"),
                    message: "the file ends before".into(),
                });
            }
            w.write_all(&bytes).map_err(|e| RepoError::Rustic {
                context: "cannot pass on what was read".into(),
                message: e.to_string(),
            })?;
            done += bytes.len() as u64;
        }
        Ok(())
    }
}

/// The snapshot a backup may link unchanged entries from, and which entries (by path,
/// with their sizes) it may link.
#[derive(Debug, Clone)]
pub struct Parent {
    pub snapshot: String,
    pub reusable: std::collections::HashMap<PathBuf, u64>,
}

/// A lifeboat snapshot with its manifest.
#[derive(Debug, Clone)]
pub struct SnapshotInfo {
    pub id: SnapshotId,
    pub time: jiff::Zoned,
    pub target: TargetName,
    pub kind: String,
    pub emergency: bool,
    pub summary: Option<SnapshotSummary>,
    pub manifest: Result<Manifest, String>,
}

impl SnapshotInfo {
    pub fn short_id(&self) -> &str {
        self.id.short()
    }

    /// Complete, with a manifest: a snapshot that counts as a backup.
    pub fn is_good(&self) -> bool {
        self.manifest.as_ref().is_ok_and(|m| m.complete)
    }

    /// Bytes this snapshot added to the repository (after dedup and compression).
    pub fn stored_bytes(&self) -> u64 {
        self.summary.as_ref().map_or(0, |s| s.data_added_packed)
    }
}

/// The content of a file made of `blobs`, read all at once (a manifest of a large bucket is
/// a few blobs; rustic's `dump` reads two at a time, and every read waits for the server).
fn read_blobs(
    indexed: &Repository<rustic_core::IndexedFullStatus>,
    blobs: &[rustic_core::DataId],
) -> rustic_core::RusticResult<Vec<u8>> {
    /// Reads at once, at most.
    const AT_ONCE: usize = 8;
    let read = |id: &rustic_core::DataId| {
        indexed.get_blob_cached(
            &rustic_core::BlobId::from(**id),
            rustic_core::repofile::BlobType::Data,
        )
    };
    if let [one] = blobs {
        return Ok(read(one)?.to_vec());
    }
    let mut out = Vec::new();
    for group in blobs.chunks(AT_ONCE) {
        let got: Vec<_> = std::thread::scope(|s| {
            let reads: Vec<_> = group.iter().map(|id| s.spawn(move || read(id))).collect();
            reads
                .into_iter()
                .map(|r| r.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        });
        for bytes in got {
            out.extend_from_slice(&bytes?);
        }
    }
    Ok(out)
}

/// Store `source` below `target` as the snapshot `snap`.
fn archive<S: rustic_core::IndexedIds>(
    indexed: &Repository<S>,
    opts: &rustic_core::BackupOptions,
    source: &EntrySource,
    snap: SnapshotFile,
    target: &str,
) -> Result<SnapshotFile, RepoError> {
    indexed
        .archive(opts, source, snap, &[PathBuf::from(target)])
        .map_err(rustic(format!("backup of `{target}` failed")))
}

/// The backend rustic reads and writes `location` through (see [`backend`]).
fn backends(
    location: &Location,
    store: &Store,
) -> Result<rustic_core::RepositoryBackends, RepoError> {
    let be = match location {
        Location::Local(p) => {
            let local = BackendOptions::default()
                .repository(p.display().to_string())
                .to_backends()
                .map_err(rustic(format!("cannot reach repository `{location}`")))?;
            backend::Backend::local(local.repository(), store.clone())
        }
        Location::S3(_) => backend::Backend::s3(store.clone()),
    };
    Ok(rustic_core::RepositoryBackends::new(be, None))
}

/// Run `f` where blocking is allowed. rustic's S3 backend blocks on a runtime of its own,
/// which panics on a thread that drives async tasks: called from one (an async command
/// that reads a small object without `spawn_blocking`), `f` runs on a scoped thread.
fn off_async<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    if tokio::runtime::Handle::try_current().is_err() {
        return f();
    }
    std::thread::scope(|s| {
        s.spawn(f)
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

impl Repo {
    /// Create a repository; refuses an existing one (even a foreign restic repository).
    pub fn init(location: &Location, password: &Redacted, bars: Bars) -> Result<Self, RepoError> {
        let url = location.url();
        let store = Store::open(location)?;
        if store.exists("config")? || !store.list(side::SIDE_DIR)?.is_empty() {
            return Err(RepoError::AlreadyExists { url });
        }
        if !store.is_empty()? {
            return Err(RepoError::Rustic {
                context: format!("cannot create repository `{url}`"),
                message: "the location exists and is not empty".into(),
            });
        }
        if let Some(lock) = store.locked() {
            object_lock::prepare(lock)?;
        }
        let be = backends(location, &store)?;
        let repo = Repository::new_with_progress(&RepositoryOptions::default(), &be, bars)
            .map_err(rustic("cannot create repository"))?;
        let unopened = repo.clone();
        let inner = repo
            .init(
                &Credentials::password(password.expose()),
                &keys::key_options(None),
                &ConfigOptions::default(),
            )
            .map_err(rustic(format!("cannot create repository `{url}`")))?;
        Self::with_side_area(inner, unopened, url, store)
    }

    pub fn open(location: &Location, password: &Redacted, bars: Bars) -> Result<Self, RepoError> {
        let url = location.url();
        let store = Store::open(location)?;
        if !store.exists("config")? {
            return Err(RepoError::NotARepository { url });
        }
        let be = backends(location, &store)?;
        let repo = Repository::new_with_progress(&RepositoryOptions::default(), &be, bars)
            .map_err(rustic(format!("cannot open repository `{url}`")))?;
        let unopened = repo.clone();
        let inner = repo
            .open(&Credentials::password(password.expose()))
            .map_err(|e| {
                if e.is_incorrect_password() {
                    RepoError::WrongPassword { url: url.clone() }
                } else {
                    rustic(format!("cannot open repository `{url}`"))(e)
                }
            })?;
        Self::with_side_area(inner, unopened, url, store)
    }

    /// Wrap an open repository, creating its side area if missing.
    fn with_side_area(
        inner: Repository<OpenStatus>,
        unopened: Repository<()>,
        url: String,
        store: Store,
    ) -> Result<Self, RepoError> {
        let side = SideArea::new(&store);
        side.create()?;
        Ok(Self {
            key: inner.key(),
            key_id: inner.key_id().map(|id| id.to_hex().to_string()),
            repo_id: inner.config().id.to_hex().to_string(),
            idle: std::sync::Mutex::new(vec![inner]),
            unopened,
            url,
            side,
            store,
        })
    }

    /// A handle of this repository for one operation: an idle one, or a new one.
    fn handle(&self) -> Result<Repository<OpenStatus>, RepoError> {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match idle {
            Some(repo) => Ok(repo),
            None => self
                .unopened
                .clone()
                .open(&Credentials::Masterkey(self.key.clone()))
                .map_err(rustic(format!("cannot open repository `{}`", self.url))),
        }
    }

    /// Give a handle back for the next operation. A few are kept; more (after many
    /// operations at once, as `serve` runs twenty backups on one slot) are dropped, so
    /// what each holds (its snapshot cache, its backend's buffers) does not stay between
    /// jobs. Opening another later takes no I/O (the key is known).
    fn put_back(&self, repo: Repository<OpenStatus>) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < IDLE_HANDLES {
            idle.push(repo);
        }
    }

    /// Run `f` on the fully indexed repository.
    fn with_indexed<T: Send>(
        &self,
        f: impl FnOnce(&Repository<rustic_core::IndexedFullStatus>) -> Result<T, RepoError> + Send,
    ) -> Result<T, RepoError> {
        off_async(|| {
            let indexed = self
                .handle()?
                .to_indexed()
                .map_err(rustic("cannot read the repository index"))?;
            let result = f(&indexed);
            self.put_back(indexed.drop_index());
            result
        })
    }

    /// Run `f` on the open (not indexed) repository.
    fn with_open<T: Send>(
        &self,
        f: impl FnOnce(&Repository<OpenStatus>) -> Result<T, RepoError> + Send,
    ) -> Result<T, RepoError> {
        off_async(|| {
            let repo = self.handle()?;
            let result = f(&repo);
            self.put_back(repo);
            result
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The key for sealed side objects, derived from the repository's master key.
    pub fn side_key(&self) -> Result<SideKey, RepoError> {
        let mut material = self.key.encrypt.clone();
        material.extend_from_slice(&self.key.mac.k);
        material.extend_from_slice(&self.key.mac.r);
        Ok(SideKey::derive(&material))
    }

    pub fn side(&self) -> &SideArea {
        &self.side
    }

    pub fn lock(&self, kind: LockKind, command: &str) -> Result<LockGuard, RepoError> {
        let wait = std::env::var("LIFEBOAT_LOCK_WAIT")
            .ok()
            .and_then(|s| s.parse().ok())
            .map_or(
                std::time::Duration::from_secs(30),
                std::time::Duration::from_secs,
            );
        Ok(self.side.lock(kind, command, wait)?)
    }

    /// Store `entries` (paths below `target/`) as one snapshot. If any entry was not read
    /// to its end, or the snapshot does not hold exactly the bytes read, the snapshot is
    /// deleted and the backup fails.
    pub fn backup(
        &self,
        target: &str,
        kind_tag: &str,
        extra_tags: &[&str],
        entries: Vec<SourceEntry>,
    ) -> Result<SnapshotInfo, RepoError> {
        self.backup_with_parent(target, kind_tag, extra_tags, entries, None, None)
    }

    /// [`Repo::backup`], letting rustic link unchanged entries from a parent snapshot
    /// without reading them (bucket objects). Only entries whose node has a real size and
    /// mtime (and ctime) may match, so `parent.reusable` names them with their sizes: one
    /// of them that was not read must be stored with exactly that size. Stream entries
    /// (size 0, fresh mtime) never match. `kept`: the index read to find the parent
    /// ([`Repo::newest_snapshot`]), archived against if still current.
    pub fn backup_with_parent(
        &self,
        target: &str,
        kind_tag: &str,
        extra_tags: &[&str],
        entries: Vec<SourceEntry>,
        parent: Option<Parent>,
        kept: Option<KeptIndex>,
    ) -> Result<SnapshotInfo, RepoError> {
        let stats: Vec<(PathBuf, Arc<StreamStat>)> = entries
            .iter()
            .filter_map(|e| e.stat.clone().map(|s| (e.path.clone(), s)))
            .collect();
        let mut tags = vec![
            TAG.to_string(),
            format!("target={target}"),
            format!("kind={kind_tag}"),
        ];
        tags.extend(extra_tags.iter().map(|t| t.to_string()));
        let snap = SnapshotOptions::default()
            .add_tags(&tags.join(","))
            .and_then(|o| o.to_snapshot())
            .map_err(rustic("cannot prepare snapshot"))?;
        let mut opts = rustic_core::BackupOptions::default().no_scan(true);
        // Stream entries have no size or mtime, so they would "match" the parent snapshot
        // and never be read (pitfall 3): no parent, unless the caller names one and the
        // entries it may reuse.
        let reusable = match parent {
            Some(p) => {
                opts.parent_opts.parents = vec![p.snapshot];
                p.reusable
            }
            None => {
                opts.parent_opts.force = true;
                Default::default()
            }
        };
        let source = EntrySource::new(entries, None);
        // The index the parent was found with, if still current; else the smaller one
        // backups need (data blobs' ids only).
        let current = match kept {
            Some(kept) => self.still_current(kept)?,
            None => None,
        };
        let saved = if let Some(indexed) = current {
            let saved = archive(&indexed, &opts, &source, snap, target);
            self.put_back(indexed.drop_index());
            saved
        } else {
            let indexed = self
                .handle()?
                .to_indexed_ids()
                .map_err(rustic("cannot read the repository index"))?;
            let saved = archive(&indexed, &opts, &source, snap, target);
            self.put_back(indexed.drop_index());
            saved
        };
        // Whatever the archiver said, the records decide.
        let (read, linked): (Vec<_>, Vec<_>) = stats
            .into_iter()
            .partition(|(path, s)| !reusable.contains_key(path) || s.was_opened());
        let (left_out, read): (Vec<_>, Vec<_>) =
            read.into_iter().partition(|(_, s)| s.was_left_out());
        let mut failures: Vec<String> = read
            .iter()
            .filter_map(|(path, s)| {
                s.outcome_now()
                    .err()
                    .map(|e| format!("`{}`: {e}", path.display()))
            })
            .collect();
        if let (Ok(snap), true) = (&saved, failures.is_empty()) {
            match self.stored_sizes(&full_id(&snap.id), target) {
                Ok(sizes) => {
                    failures.extend(size_mismatches(&read, &sizes));
                    for (path, _) in left_out.iter().filter(|(p, _)| sizes.contains_key(p)) {
                        failures.push(format!(
                            "`{}` was left out, yet the snapshot holds it",
                            path.display()
                        ));
                    }
                    for (path, _) in &linked {
                        let want = reusable[path];
                        match sizes.get(path) {
                            Some(&n) if n == want => {}
                            None if want == 0 => {}
                            got => failures.push(format!(
                                "`{}`: linked from the parent snapshot with {got:?} bytes, expected {want}",
                                path.display()
                            )),
                        }
                    }
                }
                Err(e) => failures.push(format!("cannot verify the snapshot: {e}")),
            }
        }
        match saved {
            Ok(snap) if failures.is_empty() => Ok(self.info(snap)),
            Ok(snap) => {
                if let Err(e) = self.with_open(|r| {
                    r.delete_snapshots(&[snap.id])
                        .map_err(rustic("cannot delete snapshot"))
                }) {
                    return Err(RepoError::Rustic {
                        context: format!(
                            "backup failed ({}) and its snapshot `{}` could not be deleted",
                            failures.join("; "),
                            snap.id
                        ),
                        message: e.to_string(),
                    });
                }
                Err(RepoError::BackupFailed(failures.join("; ")))
            }
            Err(e) if failures.is_empty() => Err(e),
            Err(e) => Err(RepoError::BackupFailed(format!(
                "{}; {e}",
                failures.join("; ")
            ))),
        }
    }

    /// Content bytes of every file below `target` in a snapshot, by path inside it. Its
    /// trees are read level by level, [`TREE_READERS`] at a time (parsing them is most of
    /// the work: a bucket of 10,000 objects has 10,000 nodes).
    fn stored_sizes(&self, id: &str, target: &str) -> Result<HashMap<PathBuf, u64>, RepoError> {
        self.with_indexed(|indexed| {
            let node = indexed
                .node_from_snapshot_path(&format!("{id}:{target}"), |_| true)
                .map_err(rustic("cannot read the new snapshot"))?;
            let mut sizes = HashMap::with_capacity(1024);
            if let Some(tree) = node.subtree {
                let mut level = vec![(PathBuf::from(target), tree)];
                while !level.is_empty() {
                    let readers = TREE_READERS.min(level.len());
                    let parts: Vec<_> = if readers == 1 {
                        vec![read_trees(indexed, &level)]
                    } else {
                        std::thread::scope(|s| {
                            let running: Vec<_> = level
                                .chunks(level.len().div_ceil(readers))
                                .map(|part| s.spawn(move || read_trees(indexed, part)))
                                .collect();
                            running
                                .into_iter()
                                .map(|r| r.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                                .collect()
                        })
                    };
                    level = Vec::new();
                    for part in parts {
                        let (files, folders) = part?;
                        sizes.extend(files);
                        level.extend(folders);
                    }
                }
                return Ok(sizes);
            }
            for item in indexed
                .ls(&node, &LsOptions::default())
                .map_err(rustic("cannot list the new snapshot"))?
            {
                let (path, node) = item.map_err(rustic("cannot list the new snapshot"))?;
                let Some(content) = &node.content else {
                    continue;
                };
                sizes.insert(
                    PathBuf::from(target).join(path),
                    content_bytes(indexed, content)?,
                );
            }
            Ok(sizes)
        })
    }

    fn info(&self, snap: SnapshotFile) -> SnapshotInfo {
        let tag = |prefix: &str| {
            snap.tags
                .iter()
                .find_map(|t| t.strip_prefix(prefix).map(str::to_string))
                .unwrap_or_default()
        };
        let target = tag("target=");
        let kind = tag("kind=");
        let emergency = snap.tags.contains(TAG_EMERGENCY);
        SnapshotInfo {
            id: full_id(&snap.id).into(),
            time: snap.time.clone(),
            target: target.into(),
            kind,
            emergency,
            summary: snap.summary.clone(),
            manifest: Err("not read".into()),
        }
    }

    /// lifeboat's snapshots (of `target`, if given), oldest first, manifests not read.
    fn list(&self, target: Option<&str>) -> Result<Vec<(SnapshotFile, SnapshotInfo)>, RepoError> {
        let mut snaps = self.all_snapshots()?;
        snaps.retain(|s| s.tags.contains(TAG));
        snaps.sort_by(|a, b| a.time.cmp(&b.time));
        Ok(snaps
            .into_iter()
            .map(|s| {
                let info = self.info(s.clone());
                (s, info)
            })
            .filter(|(_, i)| target.is_none_or(|t| i.target == t))
            .collect())
    }

    fn read_manifest(
        indexed: &Repository<rustic_core::IndexedFullStatus>,
        snap: &SnapshotFile,
        target: &str,
    ) -> Result<Manifest, String> {
        let node = indexed
            .node_from_snapshot_and_path(snap, &format!("{target}/{MANIFEST_FILE}"))
            .map_err(|e| first_line(&e.to_string()))?;
        if !node.is_file() {
            return Err(format!("{target}/{MANIFEST_FILE} is not a file"));
        }
        let buf = read_blobs(indexed, node.content.as_deref().unwrap_or_default())
            .map_err(|e| first_line(&e.to_string()))?;
        Manifest::from_json(&buf).map_err(|e| e.to_string())
    }

    /// All lifeboat snapshots, oldest first, with manifests read.
    pub fn snapshots(&self, target: Option<&str>) -> Result<Vec<SnapshotInfo>, RepoError> {
        let mut items = self.list(target)?;
        if items.is_empty() {
            return Ok(Vec::new());
        }
        self.with_indexed(|indexed| {
            for (snap, info) in &mut items {
                info.manifest = Self::read_manifest(indexed, snap, &info.target);
            }
            Ok(())
        })?;
        Ok(items.into_iter().map(|(_, info)| info).collect())
    }

    /// Find a snapshot by id prefix or `latest` (newest complete, non-emergency) of a target.
    /// Reads manifests newest first and stops at the first that qualifies.
    pub fn find_snapshot(&self, target: &str, wanted: &str) -> Result<SnapshotInfo, RepoError> {
        self.find_snapshot_at(target, wanted, None)
    }

    /// [`Repo::find_snapshot`]; with `at`, `latest` means the newest good one taken at or
    /// before that time.
    pub fn find_snapshot_at(
        &self,
        target: &str,
        wanted: &str,
        at: Option<jiff::Timestamp>,
    ) -> Result<SnapshotInfo, RepoError> {
        let mut items = self.list(Some(target))?;
        if let Some(t) = at {
            items.retain(|(_, i)| i.time.timestamp() <= t);
        }
        if wanted != "latest" {
            items.retain(|(_, i)| i.id.starts_with(wanted));
            if items.len() > 1 {
                return Err(RepoError::Rustic {
                    context: format!("snapshot id `{wanted}`"),
                    message: "matches several snapshots; give more characters".into(),
                });
            }
        }
        let not_found = || RepoError::SnapshotNotFound(format!("{wanted}` of target `{target}"));
        if items.is_empty() {
            return Err(not_found());
        }
        self.with_indexed(|indexed| {
            for (snap, mut info) in items.into_iter().rev() {
                if wanted == "latest" && info.emergency {
                    continue;
                }
                info.manifest = Self::read_manifest(indexed, &snap, target);
                if wanted != "latest" || info.is_good() {
                    return Ok(info);
                }
            }
            Err(not_found())
        })
    }

    /// Stream one file of a snapshot into `w`.
    pub fn dump(
        &self,
        snapshot_id: &str,
        path: &str,
        w: &mut (impl Write + Send),
    ) -> Result<(), RepoError> {
        self.reading(|r| r.dump(snapshot_id, path, w))
    }

    /// Run `f` with a [`Reader`]: many files out of snapshots for one index load.
    pub fn reading<T: Send>(
        &self,
        f: impl FnOnce(&Reader<'_>) -> Result<T, RepoError> + Send,
    ) -> Result<T, RepoError> {
        self.with_indexed(|indexed| f(&Reader { indexed }))
    }

    /// Restore the directory `path` of a snapshot into `dest` (created if missing).
    pub fn restore_dir(
        &self,
        snapshot_id: &str,
        path: &str,
        dest: &Path,
        dry_run: bool,
    ) -> Result<RestoreSummary, RepoError> {
        self.restore_dir_until(snapshot_id, path, dest, dry_run, None)
    }

    /// [`Repo::restore_dir`], stopped between packs when `stop` is set: then
    /// [`RepoError::Stopped`], and what was written is partial (the caller removes it).
    pub fn restore_dir_until(
        &self,
        snapshot_id: &str,
        path: &str,
        dest: &Path,
        dry_run: bool,
        stop: Option<StopFlag>,
    ) -> Result<RestoreSummary, RepoError> {
        self.with_indexed(|indexed| {
            let node = node_at(indexed, snapshot_id, path)?;
            let ls = indexed
                .ls(&node, &LsOptions::default())
                .map_err(rustic("cannot list snapshot"))?;
            let dest_str = format!("{}/", dest.display());
            let local = LocalDestination::new(&dest_str, !dry_run, !node.is_dir())
                .map_err(rustic(format!("cannot restore into `{}`", dest.display())))?;
            let opts = RestoreOptions::default();
            let plan = indexed
                .prepare_restore(&opts, ls.clone(), &local, dry_run)
                .map_err(rustic("cannot plan restore"))?;
            let summary = RestoreSummary {
                files: plan.stats.files.restore + plan.stats.files.modify,
                bytes: plan.restore_size,
                unchanged: plan.stats.files.unchanged + plan.stats.files.verified,
            };
            if !dry_run {
                restore_checked(indexed, plan, ls, &local, dest, stop)?;
            }
            Ok(summary)
        })
    }

    /// Restore the files below `path` that `wanted` (given their path below it) in batches
    /// of about `batch_bytes`, in snapshot order, each into a folder of its own below `dest`
    /// (`0`, `1`, …, with the folders its files are in). Each finished batch goes to `done` — its folder and its files (paths below
    /// it) — on a thread of its own while the next batch restores; at most one more waits,
    /// so what is on disk at once stays near three batches if `done` removes its folder.
    pub fn restore_dir_in_batches(
        &self,
        snapshot_id: &str,
        path: &str,
        dest: &Path,
        batch_bytes: u64,
        wanted: impl Fn(&Path) -> bool + Sync,
        done: impl FnMut(PathBuf, Vec<PathBuf>) -> bool + Send,
    ) -> Result<(), RepoError> {
        use rustic_core::repofile::Node;
        self.with_indexed(|indexed| {
            let node = node_at(indexed, snapshot_id, path)?;
            let nodes: Vec<(PathBuf, Node)> = indexed
                .ls(&node, &LsOptions::default())
                .map_err(rustic("cannot list snapshot"))?
                .collect::<Result<_, _>>()
                .map_err(rustic("cannot list snapshot"))?;
            // Files only: rustic makes a file's folders when it creates it (`set_length`).
            let mut batches: Vec<Vec<(PathBuf, Node)>> = vec![Vec::new()];
            let mut bytes = 0;
            for (p, n) in nodes.into_iter().filter(|(p, n)| n.is_file() && wanted(p)) {
                bytes += n.meta.size;
                batches.last_mut().expect("one batch").push((p, n));
                if bytes >= batch_bytes {
                    batches.push(Vec::new());
                    bytes = 0;
                }
            }
            let opts = RestoreOptions::default();
            let (tx, rx) = std::sync::mpsc::sync_channel::<(PathBuf, Vec<PathBuf>)>(1);
            std::thread::scope(|s| {
                // Owned here: dropped when this closure returns (done or failed), which ends
                // the thread's loop before the scope waits for it.
                let tx = tx;
                let mut done = done;
                // `done` returning false stops the restore: its receiver goes, and the
                // next batch is not restored.
                s.spawn(move || {
                    for (dir, files) in rx {
                        if !done(dir, files) {
                            break;
                        }
                    }
                });
                for (k, batch) in batches.into_iter().filter(|b| !b.is_empty()).enumerate() {
                    let folder = dest.join(k.to_string());
                    let local =
                        LocalDestination::new(&format!("{}/", folder.display()), true, false)
                            .map_err(rustic(format!(
                                "cannot restore into `{}`",
                                folder.display()
                            )))?;
                    let plan = indexed
                        .prepare_restore(&opts, batch.iter().cloned().map(Ok), &local, false)
                        .map_err(rustic("cannot plan restore"))?;
                    restore_checked(
                        indexed,
                        plan,
                        batch.iter().cloned().map(Ok),
                        &local,
                        &folder,
                        None,
                    )?;
                    log::debug!("restored batch {k} into `{}`", folder.display());
                    let files = batch.into_iter().map(|(p, _)| p).collect();
                    if tx.send((folder, files)).is_err() {
                        break; // `done` is gone
                    }
                }
                Ok(())
            })
        })
    }

    fn all_snapshots(&self) -> Result<Vec<SnapshotFile>, RepoError> {
        self.with_open(|r| {
            r.get_all_snapshots()
                .map_err(rustic("cannot list snapshots"))
        })
    }

    pub fn delete_snapshots(&self, ids: &[SnapshotId]) -> Result<(), RepoError> {
        let ids: Vec<_> = ids
            .iter()
            .map(|i| i.parse())
            .collect::<Result<_, _>>()
            .map_err(|_| RepoError::SnapshotNotFound(ids.join(",")))?;
        self.with_open(|r| {
            r.delete_snapshots(&ids)
                .map_err(rustic("cannot delete snapshots"))
        })
    }

    /// Decide, per group (target + tag set), which snapshots retention keeps and why.
    pub fn forget_plan(
        &self,
        snapshots: Vec<SnapshotInfo>,
        retention_of: impl Fn(&str) -> Retention,
    ) -> Result<Vec<ForgetDecision>, RepoError> {
        let all = self.all_snapshots()?;
        let by_id: BTreeMap<String, SnapshotFile> =
            all.into_iter().map(|s| (full_id(&s.id), s)).collect();
        let mut groups: BTreeMap<(TargetName, bool), Vec<SnapshotFile>> = BTreeMap::new();
        for info in &snapshots {
            if let Some(s) = by_id.get(info.id.as_str()) {
                groups
                    .entry((info.target.clone(), info.emergency))
                    .or_default()
                    .push(s.clone());
            }
        }
        retention_decisions(groups, retention_of, &jiff::Zoned::now())
    }

    /// Remove unreferenced data. Returns (packs removed, bytes freed) of the plan.
    pub fn prune(&self, dry_run: bool) -> Result<PruneSummary, RepoError> {
        let mut opts = PruneOptions::default();
        // A prune already runs under lifeboat's exclusive lock: nothing writes meanwhile.
        opts.instant_delete = true;
        self.with_open(|r| {
            let plan = r.prune_plan(&opts).map_err(rustic("cannot plan prune"))?;
            let summary = PruneSummary {
                packs_removed: plan.stats.packs_to_delete.remove,
                packs_repacked: plan.stats.packs.repack,
                bytes_freed: plan.stats.size_sum().remove + plan.stats.size_unref,
            };
            if !dry_run {
                r.prune(&opts, plan).map_err(rustic("prune failed"))?;
            }
            Ok(summary)
        })
    }

    /// Verify the repository; `Ok(errors)` lists what `check` found.
    pub fn check(&self, read: ReadData) -> Result<Vec<String>, RepoError> {
        let options = match read {
            ReadData::None => CheckOptions::default(),
            ReadData::All => CheckOptions::default().read_data(true),
            ReadData::Part { n, of } => CheckOptions::default()
                .read_data(true)
                .read_data_subset(rustic_core::ReadSubsetOption::IdSubSet((n, of.max(1)))),
        };
        let results = self.with_open(|r| r.check(options).map_err(rustic("check failed")))?;
        let mut errors: Vec<String> = results
            .0
            .iter()
            .filter(|(level, _)| format!("{level:?}") == "Error")
            .map(|(_, e)| e.to_string())
            .collect();
        if let Some(lock) = self.store.locked() {
            let (objects, overwritten) = self.locked_objects()?;
            errors.extend(object_lock::verify(lock, objects)?);
            errors.extend(overwritten);
            errors.extend(lock.take_tampered());
        }
        Ok(errors)
    }

    /// With Object Lock: the objects whose retention `check` verifies (the repository's
    /// config, keys, index, snapshots and packs), as (key in the bucket, path in the
    /// repository, listing).
    /// Every version of those named by their content is verified (an overwritten file's
    /// original included), and a file with versions of other content is a problem (the
    /// second list): overwritten, not by lifeboat.
    #[allow(clippy::type_complexity)]
    fn locked_objects(
        &self,
    ) -> Result<(Vec<(String, String, store::ObjectStat)>, Vec<String>), RepoError> {
        let mut objects = Vec::new();
        let mut overwritten = Vec::new();
        if let Some(stat) = self.store.stat("config")? {
            objects.push((self.store.key_of("config").0, "config".into(), stat));
        }
        for dir in object_lock::NAMED_BY_CONTENT {
            for (rel, stat, others) in self.store.walk_versions(dir)? {
                let in_repo = format!("{dir}/{rel}");
                let (key, _) = self.store.key_of(&in_repo);
                let differ = others.iter().filter(|o| o.etag != stat.etag).count();
                if differ > 0 {
                    overwritten.push(format!(
                        "`{in_repo}` has {differ} other version(s) with other content: overwritten, not by lifeboat (reads use the version its name promises)"
                    ));
                }
                for o in others {
                    objects.push((key.clone(), in_repo.clone(), o));
                }
                objects.push((key, in_repo, stat));
            }
        }
        Ok((objects, overwritten))
    }

    /// Remove snapshots as retention does: with Object Lock, one still under retention
    /// stays (see [`Self::retained`]).
    pub fn forget_snapshots(&self, ids: &[SnapshotId]) -> Result<(), RepoError> {
        let _forgetting = self.store.locked().map(|l| l.forgetting());
        self.delete_snapshots(ids)
    }

    /// With Object Lock: extend the retention of everything the repository holds (but lock
    /// files and what `skip` names, paths relative to the repository) where less than half
    /// of `days` is left, so that what is still in use stays protected.
    pub fn extend_retention(
        &self,
        skip: &std::collections::BTreeSet<String>,
    ) -> Result<Option<object_lock::Extended>, RepoError> {
        let Some(lock) = self.store.locked() else {
            return Ok(None);
        };
        let mut objects = Vec::new();
        for (rel, stat, others) in self.store.walk_versions("")? {
            if !object_lock::kept_up(&rel) || skip.contains(&rel) {
                continue;
            }
            let key = self.store.key_of(&rel).0;
            // A file named by its content keeps every version: the original of one
            // overwritten by someone else is the one reads use.
            if object_lock::NAMED_BY_CONTENT
                .iter()
                .any(|d| rel.starts_with(&format!("{d}/")))
            {
                for o in others {
                    objects.push((key.clone(), rel.clone(), o));
                }
            }
            objects.push((key, rel, stat));
        }
        Ok(Some(object_lock::extend(lock, objects)?))
    }

    /// With Object Lock: the files `forget --prune` left in place because they are still
    /// under retention, since the last call.
    pub fn retained(&self) -> object_lock::Deferred {
        self.store
            .locked()
            .map(|l| l.take_deferred())
            .unwrap_or_default()
    }

    /// With Object Lock, the retention every object gets.
    pub fn object_lock(&self) -> Option<lifeboat_core::ObjectLock> {
        self.store.locked().map(|l| l.rule)
    }
}

/// How many opened handles a [`Repo`] keeps for the next operations.
const IDLE_HANDLES: usize = 2;

/// How much pack content `check` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReadData {
    /// None: structure, index and snapshots only.
    None,
    /// Every pack.
    All,
    /// Part `n` (0-based) of `of`: the packs whose id falls in it. Parts `0..of` in
    /// separate runs cover every pack once.
    Part { n: u32, of: u32 },
}

/// The node at `path` inside snapshot `snapshot_id`.
fn node_at(
    indexed: &Repository<rustic_core::IndexedFullStatus>,
    snapshot_id: &str,
    path: &str,
) -> Result<rustic_core::repofile::Node, RepoError> {
    indexed
        .node_from_snapshot_path(&format!("{snapshot_id}:{path}"), |_| true)
        .map_err(rustic(format!(
            "cannot find `{path}` in snapshot `{snapshot_id}`"
        )))
}

/// Entries whose stored size differs from what was read (or that are missing).
fn size_mismatches(
    stats: &[(PathBuf, Arc<StreamStat>)],
    stored: &HashMap<PathBuf, u64>,
) -> Vec<String> {
    stats
        .iter()
        .filter_map(|(path, stat)| {
            let read = stat.outcome_now().ok()?.bytes;
            match stored.get(path) {
                Some(&n) if n == read => None,
                Some(&n) => Some(format!(
                    "`{}`: {read} bytes read but {n} stored",
                    path.display()
                )),
                None if read == 0 => None,
                None => Some(format!("`{}`: missing from the snapshot", path.display())),
            }
        })
        .collect()
}

/// Retention over snapshot groups (a target, emergency or not), at `now`: which snapshot
/// each group keeps and why. A group whose retention is empty keeps everything.
fn retention_decisions(
    groups: BTreeMap<(TargetName, bool), Vec<SnapshotFile>>,
    retention_of: impl Fn(&str) -> Retention,
    now: &jiff::Zoned,
) -> Result<Vec<ForgetDecision>, RepoError> {
    let mut decisions = Vec::new();
    for ((target, _emergency), snaps) in groups {
        let retention = retention_of(&target);
        if retention.is_empty() {
            for s in snaps {
                decisions.push(ForgetDecision {
                    id: full_id(&s.id).into(),
                    target: target.clone(),
                    time: s.time.clone(),
                    keep: true,
                    reasons: vec!["no retention rules".into()],
                });
            }
            continue;
        }
        let keep = keep_options(&retention)?;
        let mut criterion = rustic_core::SnapshotGroupCriterion::new();
        criterion.hostname = false;
        criterion.label = false;
        criterion.paths = false;
        criterion.tags = true;
        let grouped = rustic_core::Grouped::from_items(snaps, criterion);
        let result =
            rustic_core::ForgetGroups::from_grouped_snapshots_with_retention(grouped, &keep, now)
                .map_err(rustic("cannot apply retention"))?;
        for group in result.0 {
            for item in group.items {
                decisions.push(ForgetDecision {
                    id: full_id(&item.snapshot.id).into(),
                    target: target.clone(),
                    time: item.snapshot.time.clone(),
                    keep: item.keep,
                    reasons: item.reasons,
                });
            }
        }
    }
    decisions.sort_by(|a, b| (&a.target, &a.time).cmp(&(&b.target, &b.time)));
    Ok(decisions)
}

fn keep_options(r: &Retention) -> Result<KeepOptions, RepoError> {
    let n = |v: Option<u32>| v.map(|v| v.min(i32::MAX as u32) as i32);
    let mut k = KeepOptions::default();
    k.keep_last = n(r.keep_last);
    k.keep_hourly = n(r.keep_hourly);
    k.keep_daily = n(r.keep_daily);
    k.keep_weekly = n(r.keep_weekly);
    k.keep_monthly = n(r.keep_monthly);
    k.keep_yearly = n(r.keep_yearly);
    k.keep_within = r
        .keep_within
        .map(|d| jiff::Span::new().seconds(d.as_secs() as i64));
    Ok(k)
}

#[derive(Debug, Clone)]
pub struct ForgetDecision {
    pub id: SnapshotId,
    pub target: TargetName,
    pub time: jiff::Zoned,
    pub keep: bool,
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct PruneSummary {
    pub packs_removed: u64,
    pub packs_repacked: u64,
    pub bytes_freed: u64,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct RestoreSummary {
    pub files: u64,
    pub bytes: u64,
    pub unchanged: u64,
}

/// The full hex id (rustic's `Display` shows only the first 8 characters).
fn full_id(id: &rustic_core::repofile::SnapshotId) -> String {
    String::from(&*id.to_hex())
}

/// How many threads read a new snapshot's trees at once to check it.
const TREE_READERS: usize = 2;

/// The bytes of a file's content blobs, as the index knows them.
fn content_bytes(
    indexed: &Repository<rustic_core::IndexedFullStatus>,
    content: &[rustic_core::DataId],
) -> Result<u64, RepoError> {
    let mut size = 0u64;
    for blob in content {
        size += u64::from(
            indexed
                .get_index_entry(blob)
                .map_err(rustic("a stored blob is missing from the index"))?
                .data_length(),
        );
    }
    Ok(size)
}

/// A folder of a snapshot: its path and its tree.
type Folder = (PathBuf, rustic_core::TreeId);

/// What [`read_trees`] finds: files with their content bytes, and folders.
type Found = (Vec<(PathBuf, u64)>, Vec<Folder>);

/// The trees of `folders`: the content bytes of the files they hold, and the folders they
/// hold.
fn read_trees(
    indexed: &Repository<rustic_core::IndexedFullStatus>,
    folders: &[Folder],
) -> Result<Found, RepoError> {
    let (mut files, mut below) = (Vec::new(), Vec::new());
    for (path, id) in folders {
        let tree = indexed
            .get_tree(id)
            .map_err(rustic("cannot list the new snapshot"))?;
        for node in tree.nodes {
            let path = path.join(node.name());
            if let Some(content) = &node.content {
                files.push((path.clone(), content_bytes(indexed, content)?));
            }
            if let Some(subtree) = node.subtree {
                below.push((path, subtree));
            }
        }
    }
    Ok((files, below))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(time: &str) -> SnapshotFile {
        SnapshotFile {
            time: format!("{time}+00:00[UTC]").parse().unwrap(),
            id: rustic_core::Id::random().into(),
            tags: "lifeboat,target=db".parse().unwrap(),
            ..Default::default()
        }
    }

    fn kept(decisions: &[ForgetDecision], target: &str) -> Vec<String> {
        decisions
            .iter()
            .filter(|d| d.target == target && d.keep)
            .map(|d| d.time.strftime("%m-%d %H:%M").to_string())
            .collect()
    }

    /// The check of a new snapshot reads its trees several at a time: it finds every file
    /// `ls` finds (any depth, folders wider than the readers, empty files), with its
    /// content bytes.
    #[test]
    fn a_snapshot_is_checked_with_the_sizes_ls_finds() {
        let dir = tempfile::tempdir().unwrap();
        let location = Location::Local(dir.path().join("repo"));
        let repo = Repo::init(&location, &Redacted::new("pw"), Bars(None)).unwrap();
        let mut data = Vec::new();
        for i in 0..40usize {
            let path = match i % 5 {
                0 => format!("t/f{i}"),
                1 => format!("t/a/f{i}"),
                2 => format!("t/a/b{}/f{i}", i % 3),
                3 => format!("t/a/b{}/c/d/f{i}", i % 2),
                _ => format!("t/e{i}/f{i}"),
            };
            data.push((path, vec![b'x'; i * 997]));
        }
        let entries = data
            .iter()
            .map(|(p, d)| SourceEntry::new(p.clone(), Content::Bytes(d.clone())).0)
            .collect();
        let info = repo.backup("t", "files", &[], entries).unwrap();
        let sizes = repo.stored_sizes(&info.id, "t").unwrap();
        for (path, d) in &data {
            assert_eq!(
                sizes.get(Path::new(path)),
                Some(&(d.len() as u64)),
                "{path}"
            );
        }
        // What rustic's own listing finds, the same.
        let listed: HashMap<PathBuf, u64> = repo
            .with_indexed(|indexed| {
                let node = indexed
                    .node_from_snapshot_path(&format!("{}:t", info.id), |_| true)
                    .unwrap();
                let mut out = HashMap::new();
                for item in indexed.ls(&node, &LsOptions::default()).unwrap() {
                    let (path, node) = item.unwrap();
                    if let Some(content) = &node.content {
                        let size = content
                            .iter()
                            .map(|b| u64::from(indexed.get_index_entry(b).unwrap().data_length()))
                            .sum();
                        out.insert(PathBuf::from("t").join(path), size);
                    }
                }
                Ok(out)
            })
            .unwrap();
        assert_eq!(sizes, listed);
        assert_eq!(sizes.len(), data.len());
    }

    /// Issue 18, point 9: retention as `forget` applies it, without a repository.
    #[test]
    fn retention_keeps_per_group_what_the_rules_say_and_everything_without_rules() {
        let now: jiff::Zoned = "2026-12-06T12:00:00+00:00[UTC]".parse().unwrap();
        let db = vec![
            snap("2026-12-04T01:00:00"),
            snap("2026-12-04T02:00:00"),
            snap("2026-12-05T01:00:00"),
            snap("2026-12-05T02:00:00"),
            snap("2026-12-06T01:00:00"),
        ];
        let emergency = vec![snap("2026-12-05T03:00:00")];
        let media = vec![snap("2026-12-01T00:00:00"), snap("2026-12-02T00:00:00")];
        let groups = BTreeMap::from([
            ((TargetName::new("db"), false), db),
            ((TargetName::new("db"), true), emergency),
            ((TargetName::new("media"), false), media),
        ]);
        let rules = |target: &str| match target {
            "db" => Retention {
                keep_daily: Some(2),
                ..Default::default()
            },
            _ => Retention::default(),
        };
        let decisions = retention_decisions(groups, rules, &now).unwrap();
        assert_eq!(decisions.len(), 8);
        // Two days' newest in the ordinary group; the emergency group keeps its own newest.
        assert_eq!(
            kept(&decisions, "db"),
            ["12-05 02:00", "12-05 03:00", "12-06 01:00"]
        );
        assert!(
            decisions.iter().any(|d| d.target == "db"
                && d.keep
                && d.reasons.iter().any(|r| r.contains("daily")))
        );
        // No rules: every snapshot stays, and says why.
        assert_eq!(kept(&decisions, "media"), ["12-01 00:00", "12-02 00:00"]);
        assert!(
            decisions
                .iter()
                .filter(|d| d.target == "media")
                .all(|d| d.reasons == ["no retention rules"])
        );
    }
}
