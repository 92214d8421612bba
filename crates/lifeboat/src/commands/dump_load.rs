//! Loading a stored dump into PostgreSQL with `pg_restore`, used by `restore` and `drill`.
//!
//! One job: the dump streams from the repository into `pg_restore`'s stdin (one
//! transaction). Several jobs: `pg_restore -j` cannot read a pipe, so where the manifest
//! records the dump's layout (which byte range holds each table's data), the restore runs
//! in parallel streams instead — the pre-data section from the table of contents alone,
//! then `jobs` `pg_restore` processes at once, each fed the table of contents and its share
//! of the data blocks read straight from the repository, then the post-data section (indexes,
//! constraints) with `jobs` jobs. Nothing is staged on local disk. A dump without a layout
//! (older snapshots, other archive versions), a restore over existing objects (`--clean`
//! must drop everything before anything is created) and a one-table restore stage the dump
//! in a file and run `pg_restore -j` on it.

use std::{io::Write, path::Path, sync::Arc};

use lifeboat_core::manifest::{DumpLayout, PostgresManifest};
use lifeboat_postgres::{PgTools, Target, archive, restore as pg};
use lifeboat_repo::{Reader, Repo};

use crate::error::{CliError, CliResult};

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
        tokio::task::spawn_blocking(move || -> CliResult<()> {
            let mut out = std::io::BufWriter::new(std::fs::File::create(&f)?);
            r.dump(&id, &p, &mut out)?;
            out.flush()?;
            Ok(())
        })
        .await??;
        opts.input = Some(file);
    }
    let child = pg::spawn_restore(tools, dest, &opts)?;
    run_restore(repo, snapshot_id, &dump_path, child).await?;
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
        let toc = match archive::parse_toc(&head)
            .map_err(|e| e.to_string())
            .and_then(|toc| {
                archive::check_layout(self.layout, &toc, self.dump_bytes)?;
                Ok(toc)
            }) {
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
        let shares = archive::share_data(&toc, self.layout, self.opts.jobs as usize);
        let split = shares
            .iter()
            .flat_map(|s| &s.pieces)
            .filter(|p| p.opens)
            .count();
        log::info!(
            "restoring the data in {} parallel streams ({split} table(s) split between two of them)",
            shares.len()
        );
        self.load_data(&head, &toc, &file, &shares)?;
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

    /// One `pg_restore` per share, each in one transaction, fed the TOC and then its blocks
    /// (a part of a block framed as a block of its own).
    fn load_data(
        &self,
        head: &[u8],
        toc: &archive::Toc,
        file: &lifeboat_repo::OpenedFile,
        shares: &[archive::DataShare],
    ) -> CliResult<()> {
        std::thread::scope(|scope| {
            let mut running = Vec::new();
            for (k, share) in shares.iter().enumerate() {
                let list = self.stage.join(format!("data-{k}.list"));
                let lines: String = share.entries.iter().map(|id| format!("{id}\n")).collect();
                std::fs::write(&list, lines)?;
                let opts = pg::RestoreOptions {
                    list_file: Some(list),
                    jobs: 1,
                    input: None,
                    section: None,
                    ..self.opts.clone()
                };
                let mut child = pg::spawn_restore(self.tools, self.dest, &opts)?;
                let mut stdin = child.stdin.take().ok_or_else(|| {
                    CliError::failure("pg_restore started without its stdin", None)
                })?;
                let feed = scope.spawn(move || -> Result<(), lifeboat_repo::RepoError> {
                    let mut out = std::io::BufWriter::with_capacity(1 << 20, &mut stdin);
                    let broken = |e: std::io::Error| lifeboat_repo::RepoError::Rustic {
                        context: "cannot pass the dump on to pg_restore".into(),
                        message: e.to_string(),
                    };
                    out.write_all(head).map_err(broken)?;
                    for p in &share.pieces {
                        if p.opens {
                            out.write_all(&toc.block_header(p.id)).map_err(broken)?;
                        }
                        self.reader
                            .copy_range(file, p.from, p.to - p.from, &mut out)?;
                        if p.closes {
                            out.write_all(&toc.block_end()).map_err(broken)?;
                        }
                    }
                    out.flush().map_err(broken)
                });
                running.push((child, feed));
            }
            // pg_restore's own error explains a broken pipe better than the pipe does.
            let mut first: Option<CliError> = None;
            for (child, feed) in running {
                let waited = pg::wait_restore(child);
                let fed = feed.join().unwrap_or_else(|_| {
                    Err(lifeboat_repo::RepoError::Rustic {
                        context: "feeding pg_restore".into(),
                        message: "the thread panicked".into(),
                    })
                });
                let err = match (waited, fed) {
                    (Err(e), _) => Some(CliError::from(e)),
                    (Ok(()), Err(e)) => Some(CliError::from(e)),
                    (Ok(()), Ok(())) => None,
                };
                if first.is_none() {
                    first = err;
                }
            }
            first.map_or(Ok(()), Err)
        })
    }
}

/// Feed the dump into `pg_restore`'s stdin (unless it reads a file) and wait for it.
async fn run_restore(
    repo: &Arc<Repo>,
    id: &str,
    path: &str,
    mut child: std::process::Child,
) -> CliResult<()> {
    let stdin = child.stdin.take();
    let (r, id, path) = (repo.clone(), id.to_string(), path.to_string());
    let feed = tokio::task::spawn_blocking(move || -> Result<(), lifeboat_repo::RepoError> {
        match stdin {
            Some(mut stdin) => r.dump(&id, &path, &mut stdin),
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
