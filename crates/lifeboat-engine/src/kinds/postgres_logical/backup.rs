//! A logical backup: `pg_dump` streams the exported snapshot into the repository while
//! its data's rows are counted as they pass; the manifest is produced last, from the dump's
//! measured size and hash, its layout and the counts.

use lifeboat_core::{
    TargetConfig, TargetKind,
    manifest::{DumpLayout, PostgresManifest, StreamRecord, TableRecord},
};
use lifeboat_postgres::{PgTools, Target, archive, child::ReadAhead, logical};
use lifeboat_repo::{Content, SourceEntry};

use crate::{
    EngineResult,
    backup::store::{ManifestCopy, emergency_tags, manifest_base, manifest_entry},
    kinds::{BackupJob, Prestarted, Stored},
};

pub(super) async fn backup(mut job: BackupJob<'_>) -> EngineResult<Stored> {
    let source = match job.prestarted.take().and_then(Prestarted::into::<Early>) {
        Some(early) => early.join().await?,
        None => {
            let target = Target::parse(&job.url()?)?;
            let session = logical::SnapshotSession::open(&target).await?;
            Source::start(target, session, job.target, &[], false).await?
        }
    };
    backup_in(job, source, "logical").await
}

/// How far `pg_dump`'s output is read ahead while the repository is still opening (about
/// a quarter of a second of a dump).
const READ_AHEAD: usize = 64 << 20;

/// The session, the dump and the globals of a backup started before the repository was
/// open ([`crate::kinds::Kind::prestart`]): a task that a drop aborts (the dump is killed
/// with it).
struct Early(tokio::task::JoinHandle<EngineResult<Source>>);

impl Early {
    async fn join(mut self) -> EngineResult<Source> {
        (&mut self.0).await?
    }
}

impl Drop for Early {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub(super) fn prestart(
    name: &str,
    target_cfg: &TargetConfig,
    _repository: &str,
) -> Option<Prestarted> {
    let url = target_cfg.connection_url(name).ok()?;
    let runtime = tokio::runtime::Handle::try_current().ok()?;
    let target_cfg = target_cfg.clone();
    Some(Prestarted::new(Early(runtime.spawn(async move {
        let target = Target::parse(&url)?;
        let session = logical::SnapshotSession::open(&target).await?;
        Source::start(target, session, &target_cfg, &[], true).await
    }))))
}

/// What a backup reads: the snapshot's session, `pg_dump` of it started, the globals.
pub(crate) struct Source {
    target: Target,
    session: logical::SnapshotSession,
    tools: PgTools,
    globals: Option<(Vec<u8>, bool)>,
    dump: Box<dyn std::io::Read + Send>,
}

impl Source {
    /// `pg_dump` (with `extra` options) of what `session`'s snapshot sees, started; its
    /// output read ahead on a thread if `read_ahead`.
    pub(crate) async fn start(
        target: Target,
        session: logical::SnapshotSession,
        target_cfg: &TargetConfig,
        extra: &[&str],
        read_ahead: bool,
    ) -> EngineResult<Self> {
        let tools = PgTools::find(session.major(), target_cfg.pg_bin_dir.as_deref())?;
        let globals = if target_cfg.globals == Some(false) {
            None
        } else {
            let (t, tg) = (tools.clone(), target.clone());
            Some(tokio::task::spawn_blocking(move || logical::dump_globals(&t, &tg)).await??)
        };
        let dump = logical::spawn_dump(&tools, &target, &session.snapshot, extra)?;
        let dump: Box<dyn std::io::Read + Send> = if read_ahead {
            Box::new(ReadAhead::new(dump, READ_AHEAD))
        } else {
            Box::new(dump)
        };
        Ok(Self {
            target,
            session,
            tools,
            globals,
            dump,
        })
    }
}

/// The backup of what `source` reads, as a snapshot of kind `tag` (`logical`; `cdc` for a
/// baseline in a replication slot's snapshot).
pub(crate) async fn backup_in(
    job: BackupJob<'_>,
    source: Source,
    tag: &'static str,
) -> EngineResult<Stored> {
    let (repo, name) = (job.repo, job.name);
    let Source {
        target,
        mut session,
        tools,
        globals,
        dump,
    } = source;
    let (facts_tx, facts_rx) = tokio::sync::oneshot::channel::<archive::DumpFacts>();
    let dump = archive::Watched::new(dump, facts_tx);

    let dump_path = format!("{name}/db.dump");
    let globals_path = format!("{name}/globals.sql");
    let (dump_entry, dump_stat) = SourceEntry::new(&dump_path, Content::Stream(Box::new(dump)));
    let mut entries = vec![dump_entry];
    let mut globals_stat = None;
    if let Some((sql, _)) = globals {
        let (e, s) = SourceEntry::new(&globals_path, Content::Bytes(sql));
        entries.push(e);
        globals_stat = Some(s);
    }

    type Counted = (Vec<TableRecord>, Option<DumpLayout>);
    let (tx, rx) = std::sync::mpsc::channel::<Result<Counted, String>>();
    let mut manifest = manifest_base(
        name,
        TargetKind::Postgres,
        tag,
        job.started_at,
        job.emergency,
    );
    let base = PostgresManifest {
        database: target.database().to_string(),
        server: target.server(),
        server_version: session.server_version.clone(),
        server_version_num: session.server_version_num,
        pg_dump_version: tools.version("pg_dump"),
        database_size: session.database_size,
        snapshot_lsn: session.lsn.clone(),
        snapshot_time: Some(
            crate::time::parse_time(&session.snapshot_time)
                .map_err(|e| crate::EngineError::failed(format!("the server's clock: {e}")))?,
        ),
        tables: Vec::new(),
        dump: StreamRecord {
            path: dump_path.clone(),
            bytes: 0,
            sha256: String::new(),
        },
        layout: None,
        globals: None,
    };
    let kept = ManifestCopy::default();
    let kept_in = kept.clone();
    entries.push(manifest_entry(name, move || {
        // Runs in an archiver thread after the entries before it were started: wait for
        // the dump to end and the counts to arrive.
        let dump = dump_stat.wait()?;
        let (tables, layout) = rx
            .recv()
            .map_err(|_| "row counts never arrived".to_string())??;
        let mut pg = base;
        pg.dump.bytes = dump.bytes;
        pg.dump.sha256 = dump.sha256;
        pg.layout = layout;
        if let Some(g) = globals_stat {
            let g = g.wait()?;
            pg.globals = Some(StreamRecord {
                path: globals_path,
                bytes: g.bytes,
                sha256: g.sha256,
            });
        }
        pg.tables = tables;
        manifest.postgres = Some(pg);
        Ok(kept_in.finish(manifest))
    }));

    let tags = emergency_tags(job.emergency);
    let name2 = name.to_string();
    let archive = repo.start(move |r| r.backup(&name2, tag, tags, entries));
    // The rows: a parent in inheritance counted in the snapshot beside the dump, the rest
    // in the dump as it passed, once it has ended (a table it holds no data of is counted
    // in the snapshot, still open).
    let counts = match session.count_beside().await {
        Err(e) => Err(e.to_string()),
        Ok(()) => match facts_rx.await {
            Ok(facts) => session
                .rows(&facts.rows)
                .await
                .map(|tables| (tables, facts.layout.ok()))
                .map_err(|e| e.to_string()),
            Err(_) => Err("the dump was not read to its end".to_string()),
        },
    };
    let _ = tx.send(counts);
    let result = archive.await;
    session.close().await;
    let info = result?;
    Ok((info, kept.bytes()))
}
