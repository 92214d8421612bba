//! Loading a stored dump into PostgreSQL with `pg_restore`, used by `restore` and `drill`.
//!
//! One job: the dump streams from the repository into `pg_restore`'s stdin (one
//! transaction). Several jobs: `pg_restore -j` cannot read a pipe, so where the manifest
//! records the dump's layout (which byte range holds each table's data), the restore runs
//! in parallel streams instead — the pre-data section from the table of contents alone,
//! then `jobs` `pg_restore` processes at once, each fed the table of contents and a part of
//! the data read straight from the repository, then the post-data section (indexes,
//! constraints) with `jobs` jobs. Nothing is staged on local disk. The data is cut into
//! several parts per job (a large table at row boundaries), handed out to whichever job is
//! free, the largest table's first. As `pg_restore -j` does, the indexes and constraints
//! of a large table are built as soon as all its rows are in, while other tables load
//! ([`archive::early_post_data`]). Over existing objects (`--clean` must drop everything before
//! anything is created), for one table, and for a dump without a layout (older snapshots,
//! other archive versions), several jobs stage the dump in a file for `pg_restore -j`.
//!
//! Wherever the layout is known, table rows reach `pg_restore` in large chunks rather than
//! one row per chunk as `pg_dump` wrote them ([`reframe`]).

use std::{
    collections::{HashMap, HashSet},
    io::Write,
    path::Path,
    sync::{
        Arc, Condvar, Mutex,
        atomic::{AtomicBool, Ordering},
    },
};

use lifeboat_core::manifest::{DumpLayout, PostgresManifest};
use lifeboat_postgres::{PgTools, Target, archive, cdc::fold::Fold, reframe, restore as pg};
use lifeboat_repo::{Reader, Repo};

use crate::{EngineError, EngineResult, FsContext, IoContext};

/// Parts of the data per job of a parallel-streams load.
const PARTS_PER_JOB: usize = 8;
/// Tables whose indexes and constraints are built as soon as their rows are in, while
/// other tables load: the largest ones, from this size. Each such table costs one more
/// `pg_restore`, which reads the whole TOC, so small tables wait for the post-data section.
const EARLY_MIN_BYTES: u64 = 16 << 20;
const EARLY_MAX_TABLES: usize = 32;

/// How a dump was loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Load {
    /// One stream into one `pg_restore`.
    Stream,
    /// Staged in a temporary file for `pg_restore -j`.
    Staged,
    /// Several streams into several `pg_restore` processes, nothing staged.
    ParallelStreams,
}

impl Load {
    /// How a restore with `opts` of a dump described by `pgm` will run; `one_table`: only
    /// some entries are restored (a `-L` list).
    pub fn planned(pgm: &PostgresManifest, opts: &pg::RestoreOptions, one_table: bool) -> Self {
        if opts.jobs <= 1 {
            Self::Stream
        } else if pgm.layout.is_some() && !opts.clean && !one_table {
            Self::ParallelStreams
        } else {
            Self::Staged
        }
    }

    pub fn describe(self, jobs: u32) -> String {
        match self {
            Self::Stream => String::new(),
            Self::Staged => format!(" with {jobs} jobs (dump staged in a temporary file)"),
            Self::ParallelStreams => {
                format!(" with {jobs} jobs (parallel streams, nothing staged)")
            }
        }
    }
}

/// Load the dump of snapshot `snapshot_id` (described by `pgm`) into `dest`. Returns how it
/// was loaded: a planned parallel-streams load whose layout turns out not to fit the dump
/// falls back to staging, with a warning. With a fold of captured changes, the tables'
/// rows go through it where the layout is known (see [`Fold::complete`]).
#[allow(clippy::too_many_arguments)]
pub async fn load_dump(
    repo: &Arc<Repo>,
    snapshot_id: &str,
    pgm: &PostgresManifest,
    tools: &PgTools,
    dest: &Target,
    mut opts: pg::RestoreOptions,
    stage: &Path,
    fold: Option<Arc<Fold>>,
) -> EngineResult<Load> {
    let dump_path = pgm.dump.path.clone();
    let planned = Load::planned(pgm, &opts, opts.list_file.is_some());
    if planned == Load::ParallelStreams
        && let Some(layout) = pgm.layout.clone()
    {
        let (r, id, path, tools, dest, opts, stage, fold) = (
            repo.clone(),
            snapshot_id.to_string(),
            dump_path.clone(),
            tools.clone(),
            dest.clone(),
            opts.clone(),
            stage.to_path_buf(),
            fold.clone(),
        );
        let dump_bytes = pgm.dump.bytes;
        let done = r
            .call(move |r| {
                r.reading(|reader| {
                    let job = StreamsJob {
                        reader,
                        snapshot_id: &id,
                        path: &path,
                        dump_bytes,
                        layout: &layout,
                        tools: &tools,
                        dest: &dest,
                        opts: &opts,
                        stage: &stage,
                        fold: fold.as_deref(),
                    };
                    Ok(job.run())
                })
            })
            .await??;
        if done {
            return Ok(Load::ParallelStreams);
        }
    }
    if opts.jobs > 1 {
        let file = stage.join("db.dump");
        let (r, id, p, f, fold) = (
            repo.clone(),
            snapshot_id.to_string(),
            dump_path.clone(),
            file.clone(),
            fold.clone(),
        );
        let (layout, bytes) = (pgm.layout.clone(), pgm.dump.bytes);
        r.call(move |r| -> EngineResult<()> {
            let mut out = std::io::BufWriter::new(std::fs::File::create(&f).fs("create", &f)?);
            write_dump(
                r,
                &id,
                &p,
                layout.as_ref(),
                bytes,
                fold.as_deref(),
                &mut out,
            )?;
            out.flush().fs("write", &f)?;
            Ok(())
        })
        .await?;
        opts.input = Some(file);
    }
    let child = pg::spawn_restore(tools, dest, &opts)?;
    run_restore(
        repo,
        snapshot_id,
        pgm,
        child,
        opts.list_file.is_some(),
        fold,
    )
    .await?;
    Ok(if opts.jobs > 1 {
        Load::Staged
    } else {
        Load::Stream
    })
}

/// A parallel-streams load (see the module's documentation), run on a blocking thread.
struct StreamsJob<'a> {
    reader: &'a Reader<'a>,
    snapshot_id: &'a str,
    path: &'a str,
    dump_bytes: u64,
    layout: &'a DumpLayout,
    tools: &'a PgTools,
    dest: &'a Target,
    opts: &'a pg::RestoreOptions,
    stage: &'a Path,
    fold: Option<&'a Fold>,
}

impl StreamsJob<'_> {
    /// `Ok(false)`: the layout does not fit the dump, nothing was done.
    fn run(&self) -> EngineResult<bool> {
        let file = self.reader.open(self.snapshot_id, self.path)?;
        let mut head = Vec::new();
        self.reader
            .copy_range(&file, 0, self.layout.toc_bytes, &mut head)?;
        let toc = match archive::fitting_toc(&head, self.layout, self.dump_bytes) {
            Ok(toc) => toc,
            Err(why) => {
                log::warn!(
                    "the dump's recorded layout does not fit it ({why}); staging the dump in a file instead"
                );
                return Ok(false);
            }
        };
        let toc_file = self.stage.join("toc.dump");
        std::fs::write(&toc_file, &head).fs("write", &toc_file)?;
        let from_toc = |section: &'static str, jobs: u32| pg::RestoreOptions {
            input: Some(toc_file.clone()),
            section: Some(section),
            jobs,
            ..self.opts.clone()
        };

        log::info!("restoring the pre-data section (tables, types, functions)");
        pg::wait_restore(pg::spawn_restore(
            self.tools,
            self.dest,
            &from_toc("pre-data", 1),
        )?)?;
        // Parts of about equal bytes, several per job, handed out to whichever job is free:
        // rows of one table cost more than another's, so equal shares decided up front
        // would leave a job idle at the end.
        let jobs = self.opts.jobs.max(1) as usize;
        let parts = archive::share_data(&toc, self.layout, jobs * PARTS_PER_JOB);
        let mut split: Vec<i64> = parts
            .iter()
            .flat_map(|s| &s.pieces)
            .filter(|p| p.opens)
            .map(|p| p.id)
            .collect();
        split.dedup();
        log::info!(
            "restoring the data in {} parts, {jobs} at a time ({} table(s) loaded in several parts)",
            parts.len(),
            split.len()
        );
        let early = archive::early_post_data(&toc, self.layout, EARLY_MIN_BYTES, EARLY_MAX_TABLES);
        if !early.is_empty() {
            let tables: HashSet<i64> = early.iter().map(|e| e.data).collect();
            log::info!(
                "building the indexes and constraints of {} large table(s) as soon as their rows are in",
                tables.len()
            );
        }
        let done_early = self.load_data(&head, &toc, &file, &parts, early, jobs, &toc_file)?;
        log::info!(
            "restoring the rest of the post-data section (indexes, constraints) with {} jobs",
            self.opts.jobs
        );
        // The section reckoned over the whole TOC (a comment on an index restored early
        // stays in it), not `--section` over the list.
        let rest = self.write_list(
            "post-data",
            toc.in_section(archive::SECTION_POST_DATA)
                .map(|e| e.id)
                .filter(|id| !done_early.contains(id)),
        )?;
        pg::wait_restore(pg::spawn_restore(
            self.tools,
            self.dest,
            &pg::RestoreOptions {
                list_file: Some(rest),
                section: None,
                ..from_toc("post-data", self.opts.jobs)
            },
        )?)?;
        Ok(true)
    }

    /// `jobs` workers. Each takes the next piece of work: the early post-data entries of a
    /// table whose rows are all in (one `pg_restore` from the TOC, one transaction), else the
    /// next part of the data (a `pg_restore` of its own, one transaction, fed the TOC and
    /// then the part's blocks, a part of a block framed as a block of its own). The first
    /// failure stops the workers from taking more. Returns the early entries restored.
    #[allow(clippy::too_many_arguments)]
    fn load_data(
        &self,
        head: &[u8],
        toc: &archive::Toc,
        file: &lifeboat_repo::OpenedFile,
        parts: &[archive::DataShare],
        early: Vec<archive::EarlyEntry>,
        jobs: usize,
        toc_file: &Path,
    ) -> EngineResult<HashSet<i64>> {
        let board = Mutex::new(Board::new(parts, early));
        let changed = Condvar::new();
        let lock = || board.lock().unwrap_or_else(|p| p.into_inner());
        std::thread::scope(|scope| {
            for _ in 0..jobs.min(parts.len()) {
                scope.spawn(|| {
                    loop {
                        let work = {
                            let mut b = lock();
                            loop {
                                if b.failed.is_some() {
                                    return;
                                }
                                if let Some(w) = b.take() {
                                    break w;
                                }
                                if b.running == 0 {
                                    return;
                                }
                                b = changed.wait(b).unwrap_or_else(|p| p.into_inner());
                            }
                        };
                        let result = self.do_work(&work, head, toc, file, parts, toc_file);
                        lock().finish(work, result);
                        changed.notify_all();
                    }
                });
            }
        });
        let b = board.into_inner().unwrap_or_else(|p| p.into_inner());
        match b.failed {
            Some(e) => Err(e),
            None => Ok(b.done_early()),
        }
    }

    /// Do one piece of work of [`Self::load_data`]. A panic is a failure like any other:
    /// the work must still finish, or the other workers wait for it forever.
    fn do_work(
        &self,
        work: &Work,
        head: &[u8],
        toc: &archive::Toc,
        file: &lifeboat_repo::OpenedFile,
        parts: &[archive::DataShare],
        toc_file: &Path,
    ) -> EngineResult<()> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match work {
            Work::Part(k) => self.load_part(*k, &parts[*k], head, toc, file),
            Work::Early(ids) => self.restore_early(ids, toc_file),
        }))
        .unwrap_or_else(|panic| {
            let why = lifeboat_repo::panic_message(&*panic).unwrap_or_default();
            Err(EngineError::failure(
                format!("a restore worker panicked: {why}"),
                None,
            ))
        })
    }

    /// A `pg_restore -L` list of the entries `ids`, in the stage folder as `name.list`.
    fn write_list(
        &self,
        name: &str,
        ids: impl Iterator<Item = i64>,
    ) -> EngineResult<std::path::PathBuf> {
        let path = self.stage.join(format!("{name}.list"));
        let lines: String = ids.map(|id| format!("{id}\n")).collect();
        std::fs::write(&path, lines).fs("write", &path)?;
        Ok(path)
    }

    /// Restore early post-data entries `ids` of one table from the TOC alone.
    fn restore_early(&self, ids: &[i64], toc_file: &Path) -> EngineResult<()> {
        let list = self.write_list(&format!("early-{}", ids[0]), ids.iter().copied())?;
        let opts = pg::RestoreOptions {
            list_file: Some(list),
            input: Some(toc_file.to_path_buf()),
            jobs: 1,
            section: None,
            ..self.opts.clone()
        };
        pg::wait_restore(pg::spawn_restore(self.tools, self.dest, &opts)?)?;
        Ok(())
    }

    fn load_part(
        &self,
        k: usize,
        part: &archive::DataShare,
        head: &[u8],
        toc: &archive::Toc,
        file: &lifeboat_repo::OpenedFile,
    ) -> EngineResult<()> {
        let list = self.write_list(&format!("data-{k}"), part.entries.iter().copied())?;
        let opts = pg::RestoreOptions {
            list_file: Some(list),
            jobs: 1,
            input: None,
            section: None,
            ..self.opts.clone()
        };
        let mut child = pg::spawn_restore(self.tools, self.dest, &opts)?;
        let mut stdin = child
            .stdin
            .take()
            .ok_or_else(|| EngineError::failure("pg_restore started without its stdin", None))?;
        std::thread::scope(|scope| {
            let feed = scope.spawn(move || -> Result<(), lifeboat_repo::RepoError> {
                stdin.write_all(head).map_err(broken)?;
                for p in &part.pieces {
                    if toc.is_table_data(p.id) {
                        self.feed_rows(toc, file, p, &mut stdin)?;
                        continue;
                    }
                    if p.opens {
                        stdin.write_all(&toc.block_header(p.id)).map_err(broken)?;
                    }
                    self.reader
                        .copy_range(file, p.from, p.to - p.from, &mut stdin)?;
                    if p.closes {
                        stdin.write_all(&toc.block_end()).map_err(broken)?;
                    }
                }
                Ok(())
            });
            let waited = pg::wait_restore(child);
            let fed = feed.join().unwrap_or_else(|_| {
                Err(lifeboat_repo::RepoError::Rustic {
                    context: "feeding pg_restore".into(),
                    message: "the thread panicked".into(),
                })
            });
            // pg_restore's own error explains a broken pipe better than the pipe does.
            waited?;
            fed?;
            Ok(())
        })
    }
}

/// A piece of work of a parallel-streams load.
enum Work {
    /// The part of the data at this index.
    Part(usize),
    /// Early post-data entries of one table.
    Early(Vec<i64>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Waiting,
    Running,
    Done,
}

/// What is left of a parallel-streams load, shared by its workers.
struct Board<'p> {
    parts: &'p [archive::DataShare],
    /// Parts not yet taken, the next one last.
    queue: Vec<usize>,
    /// Per `TABLE DATA` entry, the parts holding its rows not yet loaded.
    parts_left: HashMap<i64, usize>,
    early: Vec<(archive::EarlyEntry, Step)>,
    running: usize,
    failed: Option<EngineError>,
}

impl<'p> Board<'p> {
    fn new(parts: &'p [archive::DataShare], early: Vec<archive::EarlyEntry>) -> Self {
        // The largest table first, its parts one after another, so that its indexes can be
        // built while the next tables load, and the last parts to load are small ones.
        let mut table_bytes: HashMap<i64, u64> = HashMap::new();
        for p in parts.iter().flat_map(|p| &p.pieces) {
            *table_bytes.entry(p.id).or_insert(0) += p.to - p.from;
        }
        let weight = |k: usize| {
            parts[k]
                .pieces
                .iter()
                .map(|p| table_bytes[&p.id])
                .max()
                .unwrap_or(0)
        };
        let mut queue: Vec<usize> = (0..parts.len()).collect();
        queue.sort_by_key(|&k| (weight(k), std::cmp::Reverse(k)));
        for &k in queue.iter().rev() {
            let ids: Vec<i64> = parts[k].pieces.iter().map(|p| p.id).collect();
            log::debug!("data part {k}: {} bytes of {ids:?}", parts[k].bytes());
        }
        let mut parts_left = HashMap::new();
        for id in parts.iter().flat_map(|p| &p.entries) {
            *parts_left.entry(*id).or_insert(0) += 1;
        }
        Self {
            parts,
            queue,
            parts_left,
            early: early.into_iter().map(|e| (e, Step::Waiting)).collect(),
            running: 0,
            failed: None,
        }
    }

    /// The next piece of work: a table's early entries that are ready, else the next part.
    /// The entries of one table go together in TOC order, which one `pg_restore` follows,
    /// so an entry waiting for another of them joins the batch.
    fn take(&mut self) -> Option<Work> {
        let loaded = |id: &i64| self.parts_left.get(id).is_none_or(|&n| n == 0);
        let mut done: HashSet<i64> = self.done_early();
        let table = self
            .early
            .iter()
            .find(|(e, step)| {
                *step == Step::Waiting
                    && loaded(&e.data)
                    && e.after.iter().all(|d| done.contains(d))
            })
            .map(|(e, _)| e.data);
        let work = if let Some(table) = table {
            let mut ids = Vec::new();
            for (e, step) in &mut self.early {
                if *step == Step::Waiting
                    && e.data == table
                    && e.after.iter().all(|d| done.contains(d))
                {
                    *step = Step::Running;
                    ids.push(e.id);
                    done.insert(e.id);
                }
            }
            Work::Early(ids)
        } else {
            Work::Part(self.queue.pop()?)
        };
        self.running += 1;
        Some(work)
    }

    fn finish(&mut self, work: Work, result: EngineResult<()>) {
        self.running -= 1;
        if let Err(e) = result {
            self.failed.get_or_insert(e);
            return;
        }
        match work {
            Work::Part(k) => {
                for id in &self.parts[k].entries {
                    if let Some(n) = self.parts_left.get_mut(id) {
                        *n -= 1;
                    }
                }
            }
            Work::Early(ids) => {
                for (e, step) in &mut self.early {
                    if ids.contains(&e.id) {
                        *step = Step::Done;
                    }
                }
            }
        }
    }

    fn done_early(&self) -> HashSet<i64> {
        self.early
            .iter()
            .filter(|(_, step)| *step == Step::Done)
            .map(|(e, _)| e.id)
            .collect()
    }
}

impl StreamsJob<'_> {
    /// A piece of table data, its rows re-framed in large chunks ([`reframe::Reframe`]); a
    /// piece from the block's start is checked to start with the block's header.
    fn feed_rows(
        &self,
        toc: &archive::Toc,
        file: &lifeboat_repo::OpenedFile,
        p: &archive::Piece,
        out: &mut impl Write,
    ) -> Result<(), lifeboat_repo::RepoError> {
        let mismatch = |why: String| lifeboat_repo::RepoError::Rustic {
            context: "the dump's recorded layout does not match its data".into(),
            message: why,
        };
        let header = toc.block_header(p.id);
        let mut from = p.from;
        if !p.opens {
            let mut found = Vec::new();
            self.reader
                .copy_range(file, from, header.len() as u64, &mut found)?;
            if found != header {
                return Err(mismatch(format!("no block of entry {} at {from}", p.id)));
            }
            from += header.len() as u64;
        }
        let io = |e: std::io::Error| match e.kind() {
            std::io::ErrorKind::InvalidData => mismatch(e.to_string()),
            _ => broken(e),
        };
        out.write_all(&header).map_err(io)?;
        let fold = self.fold.and_then(|f| f.table(p.id));
        let mut rows = reframe::Reframe::new(&mut *out, toc, fold);
        self.reader.copy_range(file, from, p.to - from, &mut rows)?;
        let ended = rows.finish().map_err(io)?;
        if ended == p.closes {
            return Err(mismatch(format!(
                "the data of entry {} ends where it should not",
                p.id
            )));
        }
        if p.closes {
            out.write_all(&toc.block_end()).map_err(io)?;
        }
        Ok(())
    }
}

/// Stream the dump into `w`, its table data re-framed where its layout is known
/// ([`reframe::FramedDump`]).
fn write_dump(
    r: &Repo,
    id: &str,
    path: &str,
    layout: Option<&DumpLayout>,
    dump_bytes: u64,
    fold: Option<&Fold>,
    w: &mut (impl Write + Send),
) -> Result<(), lifeboat_repo::RepoError> {
    let Some(layout) = layout else {
        return r.dump(id, path, w);
    };
    let mut framed = reframe::FramedDump::new(w, layout, dump_bytes, fold);
    r.dump(id, path, &mut framed)?;
    framed.finish().map_err(broken)?;
    Ok(())
}

/// Writing the dump on to `pg_restore` (or its staging file) failed.
fn broken(e: std::io::Error) -> lifeboat_repo::RepoError {
    lifeboat_repo::RepoError::Rustic {
        context: "cannot pass the dump on to pg_restore".into(),
        message: e.to_string(),
    }
}

/// Feed the dump into `pg_restore`'s stdin (unless it reads a file) and wait for it.
/// `selective`: `pg_restore` restores only the entries of a `-L` list, and stops reading once
/// it has them; the rest of the dump then meets a closed pipe, which is no failure when
/// `pg_restore` itself succeeded.
async fn run_restore(
    repo: &Arc<Repo>,
    id: &str,
    pgm: &PostgresManifest,
    mut child: std::process::Child,
    selective: bool,
    fold: Option<Arc<Fold>>,
) -> EngineResult<()> {
    let stdin = child.stdin.take();
    let (r, id, path) = (repo.clone(), id.to_string(), pgm.dump.path.clone());
    let (layout, bytes) = (pgm.layout.clone(), pgm.dump.bytes);
    let closed = Arc::new(AtomicBool::new(false));
    let closed_by_reader = closed.clone();
    let feed = r.start(move |r| -> Result<(), lifeboat_repo::RepoError> {
        match stdin {
            Some(stdin) => {
                let mut pipe = Pipe {
                    inner: stdin,
                    closed: closed_by_reader,
                };
                write_dump(
                    r,
                    &id,
                    &path,
                    layout.as_ref(),
                    bytes,
                    fold.as_deref(),
                    &mut pipe,
                )
            }
            None => Ok(()),
        }
    });
    let fed = feed.await;
    let waited = lifeboat_repo::blocking(move || pg::wait_restore(child)).await;
    // pg_restore's own error explains a broken pipe better than the pipe does.
    waited?;
    match fed {
        Err(_) if selective && closed.load(Ordering::SeqCst) => {
            log::debug!("pg_restore stopped reading once it had the entries it was asked for");
            Ok(())
        }
        fed => Ok(fed?),
    }
}

/// `pg_restore`'s stdin, noting whether `pg_restore` closed it (a write met a broken pipe).
struct Pipe {
    inner: std::process::ChildStdin,
    closed: Arc<AtomicBool>,
}

impl Pipe {
    fn note<T>(&self, result: std::io::Result<T>) -> std::io::Result<T> {
        if let Err(e) = &result
            && e.kind() == std::io::ErrorKind::BrokenPipe
        {
            self.closed.store(true, Ordering::SeqCst);
        }
        result
    }
}

impl Write for Pipe {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let result = self.inner.write(buf);
        self.note(result)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let result = self.inner.flush();
        self.note(result)
    }
}

/// The archive's table of contents (`pg_restore -l`), read from the start of the dump.
pub async fn read_toc(
    repo: &Arc<Repo>,
    id: &str,
    path: &str,
    tools: &PgTools,
) -> EngineResult<String> {
    let mut child = std::process::Command::new(tools.path("pg_restore"))
        .arg("--list")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .doing("start `pg_restore --list`")?;
    let stdin = child.stdin.take();
    let (r, id, path) = (repo.clone(), id.to_string(), path.to_string());
    // pg_restore --list stops reading after the TOC: a broken pipe here is expected.
    let feed = r.start(move |r| {
        if let Some(mut s) = stdin {
            let _ = r.dump(&id, &path, &mut s);
        }
    });
    let out = lifeboat_repo::blocking(move || child.wait_with_output())
        .await
        .doing("run `pg_restore --list`")?;
    feed.await;
    if !out.status.success() {
        return Err(EngineError::failure(
            format!(
                "cannot read the dump's table of contents: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            None,
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece(id: i64, from: u64, to: u64) -> archive::Piece {
        archive::Piece {
            id,
            from,
            to,
            opens: true,
            closes: true,
        }
    }

    fn share(pieces: Vec<archive::Piece>) -> archive::DataShare {
        archive::DataShare {
            entries: pieces.iter().map(|p| p.id).collect(),
            pieces,
        }
    }

    /// Table 1: 300 bytes in parts 0 and 2; table 2: 100 bytes in part 1; table 3: 50 in 3.
    fn parts() -> Vec<archive::DataShare> {
        vec![
            share(vec![piece(1, 0, 150)]),
            share(vec![piece(2, 150, 250)]),
            share(vec![piece(1, 250, 400)]),
            share(vec![piece(3, 400, 450)]),
        ]
    }

    fn part(w: Option<Work>) -> usize {
        match w {
            Some(Work::Part(k)) => k,
            Some(Work::Early(ids)) => panic!("early {ids:?} instead of a part"),
            None => panic!("no work"),
        }
    }

    #[test]
    fn the_largest_table_loads_first_its_parts_in_order_and_the_smallest_last() {
        let parts = parts();
        let mut b = Board::new(&parts, Vec::new());
        let order: Vec<usize> = (0..4).map(|_| part(b.take())).collect();
        assert_eq!(order, [0, 2, 1, 3]);
        assert!(b.take().is_none());
        assert_eq!(b.running, 4);
    }

    #[test]
    fn a_tables_early_entries_wait_for_all_its_parts_and_their_own_order() {
        let parts = parts();
        let early = vec![
            // The primary key of table 1, then an index that must follow it.
            archive::EarlyEntry {
                id: 10,
                data: 1,
                after: vec![],
            },
            archive::EarlyEntry {
                id: 11,
                data: 1,
                after: vec![10],
            },
            archive::EarlyEntry {
                id: 20,
                data: 2,
                after: vec![],
            },
        ];
        let mut b = Board::new(&parts, early);
        let first = part(b.take());
        assert_eq!(first, 0);
        b.finish(Work::Part(first), Ok(()));
        // One of table 1's two parts is in: its entries still wait.
        let second = part(b.take());
        assert_eq!(second, 2);
        b.finish(Work::Part(second), Ok(()));
        // Now both of table 1's entries go together, in TOC order.
        match b.take() {
            Some(Work::Early(ids)) => {
                assert_eq!(ids, [10, 11]);
                b.finish(Work::Early(ids), Ok(()));
            }
            _ => panic!("table 1's entries are ready"),
        }
        assert_eq!(b.done_early(), HashSet::from([10, 11]));
        // Table 2's entry waits for its part.
        let third = part(b.take());
        assert_eq!(third, 1);
        b.finish(Work::Part(third), Ok(()));
        assert!(matches!(b.take(), Some(Work::Early(ids)) if ids == [20]));
    }

    #[test]
    fn the_first_failure_is_kept() {
        let parts = parts();
        let mut b = Board::new(&parts, Vec::new());
        let (x, y) = (part(b.take()), part(b.take()));
        b.finish(Work::Part(x), Err(EngineError::failed("first")));
        b.finish(Work::Part(y), Err(EngineError::failed("second")));
        assert_eq!(b.failed.map(|e| e.message).as_deref(), Some("first"));
        assert_eq!(b.running, 0);
    }
}
