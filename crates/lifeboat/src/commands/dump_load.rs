//! Loading a stored dump into PostgreSQL with `pg_restore`, used by `restore` and `drill`.
//!
//! One job: the dump streams from the repository into `pg_restore`'s stdin (one
//! transaction). Several jobs: `pg_restore -j` cannot read a pipe, so where the manifest
//! records the dump's layout (which byte range holds each table's data), the restore runs
//! in parallel streams instead — the pre-data section from the table of contents alone,
//! then `jobs` `pg_restore` processes at once, each fed the table of contents and a part of
//! the data read straight from the repository, then the post-data section (indexes,
//! constraints) with `jobs` jobs. Nothing is staged on local disk. The data is cut into
//! several parts per job (a large table at row boundaries), handed out largest first to
//! whichever job is free. Over existing objects (`--clean` must drop everything before
//! anything is created), for one table, and for a dump without a layout (older snapshots,
//! other archive versions), several jobs stage the dump in a file for `pg_restore -j`.
//!
//! Wherever the layout is known, table rows reach `pg_restore` in large chunks rather than
//! one row per chunk as `pg_dump` wrote them ([`reframe`]).

use std::{
    io::Write,
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

use lifeboat_core::manifest::{DumpLayout, PostgresManifest};
use lifeboat_postgres::{PgTools, Target, archive, reframe, restore as pg};
use lifeboat_repo::{Reader, Repo};

use crate::error::{CliError, CliResult};

/// Parts of the data per job of a parallel-streams load.
const PARTS_PER_JOB: usize = 8;

/// How a dump was loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub(super) enum Load {
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
    pub(super) fn planned(
        pgm: &PostgresManifest,
        opts: &pg::RestoreOptions,
        one_table: bool,
    ) -> Self {
        if opts.jobs <= 1 {
            Self::Stream
        } else if pgm.layout.is_some() && !opts.clean && !one_table {
            Self::ParallelStreams
        } else {
            Self::Staged
        }
    }

    pub(super) fn describe(self, jobs: u32) -> String {
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
/// falls back to staging, with a warning.
pub(super) async fn load_dump(
    repo: &Arc<Repo>,
    snapshot_id: &str,
    pgm: &PostgresManifest,
    tools: &PgTools,
    dest: &Target,
    mut opts: pg::RestoreOptions,
    stage: &Path,
) -> CliResult<Load> {
    let dump_path = pgm.dump.path.clone();
    let planned = Load::planned(pgm, &opts, opts.list_file.is_some());
    if planned == Load::ParallelStreams
        && let Some(layout) = pgm.layout.clone()
    {
        let (r, id, path, tools, dest, opts, stage) = (
            repo.clone(),
            snapshot_id.to_string(),
            dump_path.clone(),
            tools.clone(),
            dest.clone(),
            opts.clone(),
            stage.to_path_buf(),
        );
        let dump_bytes = pgm.dump.bytes;
        let done = tokio::task::spawn_blocking(move || {
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
                };
                Ok(job.run())
            })
        })
        .await???;
        if done {
            return Ok(Load::ParallelStreams);
        }
    }
    if opts.jobs > 1 {
        let file = stage.join("db.dump");
        let (r, id, p, f) = (
            repo.clone(),
            snapshot_id.to_string(),
            dump_path.clone(),
            file.clone(),
        );
        let (layout, bytes) = (pgm.layout.clone(), pgm.dump.bytes);
        tokio::task::spawn_blocking(move || -> CliResult<()> {
            let mut out = std::io::BufWriter::new(std::fs::File::create(&f)?);
            write_dump(&r, &id, &p, layout.as_ref(), bytes, &mut out)?;
            out.flush()?;
            Ok(())
        })
        .await??;
        opts.input = Some(file);
    }
    let child = pg::spawn_restore(tools, dest, &opts)?;
    run_restore(repo, snapshot_id, pgm, child).await?;
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
}

impl StreamsJob<'_> {
    /// `Ok(false)`: the layout does not fit the dump, nothing was done.
    fn run(&self) -> CliResult<bool> {
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
        std::fs::write(&toc_file, &head)?;
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
        // Parts of about equal bytes, several per job, handed out largest first to whichever
        // job is free: rows of one table cost more than another's, so equal shares decided
        // up front would leave a job idle at the end.
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
        self.load_data(&head, &toc, &file, &parts, jobs)?;
        log::info!(
            "restoring the post-data section (indexes, constraints) with {} jobs",
            self.opts.jobs
        );
        pg::wait_restore(pg::spawn_restore(
            self.tools,
            self.dest,
            &from_toc("post-data", self.opts.jobs),
        )?)?;
        Ok(true)
    }

    /// `jobs` workers, each restoring one part after another with a `pg_restore` of its own
    /// (one transaction), fed the TOC and then the part's blocks (a part of a block framed as
    /// a block of its own). The first failure stops the workers from taking more parts.
    fn load_data(
        &self,
        head: &[u8],
        toc: &archive::Toc,
        file: &lifeboat_repo::OpenedFile,
        parts: &[archive::DataShare],
        jobs: usize,
    ) -> CliResult<()> {
        let mut order: Vec<usize> = (0..parts.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(parts[i].bytes()));
        let next = AtomicUsize::new(0);
        let failed: Mutex<Option<CliError>> = Mutex::new(None);
        std::thread::scope(|scope| {
            for _ in 0..jobs.min(parts.len()) {
                scope.spawn(|| {
                    loop {
                        if failed.lock().unwrap_or_else(|p| p.into_inner()).is_some() {
                            return;
                        }
                        let Some(&k) = order.get(next.fetch_add(1, Ordering::SeqCst)) else {
                            return;
                        };
                        if let Err(e) = self.load_part(k, &parts[k], head, toc, file) {
                            failed
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .get_or_insert(e);
                            return;
                        }
                    }
                });
            }
        });
        failed
            .into_inner()
            .unwrap_or_else(|p| p.into_inner())
            .map_or(Ok(()), Err)
    }

    fn load_part(
        &self,
        k: usize,
        part: &archive::DataShare,
        head: &[u8],
        toc: &archive::Toc,
        file: &lifeboat_repo::OpenedFile,
    ) -> CliResult<()> {
        let list = self.stage.join(format!("data-{k}.list"));
        let lines: String = part.entries.iter().map(|id| format!("{id}\n")).collect();
        std::fs::write(&list, lines)?;
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
            .ok_or_else(|| CliError::failure("pg_restore started without its stdin", None))?;
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
        let mut rows = reframe::Reframe::new(&mut *out, toc);
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
    w: &mut (impl Write + Send),
) -> Result<(), lifeboat_repo::RepoError> {
    let Some(layout) = layout else {
        return r.dump(id, path, w);
    };
    let mut framed = reframe::FramedDump::new(w, layout, dump_bytes);
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
async fn run_restore(
    repo: &Arc<Repo>,
    id: &str,
    pgm: &PostgresManifest,
    mut child: std::process::Child,
) -> CliResult<()> {
    let stdin = child.stdin.take();
    let (r, id, path) = (repo.clone(), id.to_string(), pgm.dump.path.clone());
    let (layout, bytes) = (pgm.layout.clone(), pgm.dump.bytes);
    let feed = tokio::task::spawn_blocking(move || -> Result<(), lifeboat_repo::RepoError> {
        match stdin {
            Some(mut stdin) => write_dump(&r, &id, &path, layout.as_ref(), bytes, &mut stdin),
            None => Ok(()),
        }
    });
    let fed = feed.await?;
    let waited = tokio::task::spawn_blocking(move || pg::wait_restore(child)).await?;
    // pg_restore's own error explains a broken pipe better than the pipe does.
    waited?;
    fed?;
    Ok(())
}

/// The archive's table of contents (`pg_restore -l`), read from the start of the dump.
pub(super) async fn read_toc(
    repo: &Arc<Repo>,
    id: &str,
    path: &str,
    tools: &PgTools,
) -> CliResult<String> {
    let mut child = std::process::Command::new(tools.path("pg_restore"))
        .arg("--list")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let stdin = child.stdin.take();
    let (r, id, path) = (repo.clone(), id.to_string(), path.to_string());
    // pg_restore --list stops reading after the TOC: a broken pipe here is expected.
    let feed = tokio::task::spawn_blocking(move || {
        if let Some(mut s) = stdin {
            let _ = r.dump(&id, &path, &mut s);
        }
    });
    let out = tokio::task::spawn_blocking(move || child.wait_with_output()).await??;
    feed.await?;
    if !out.status.success() {
        return Err(CliError::failure(
            format!(
                "cannot read the dump's table of contents: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            None,
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
