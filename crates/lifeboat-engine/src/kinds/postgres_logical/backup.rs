//! A logical backup: the exported-snapshot session counts rows while `pg_dump` streams the
//! same snapshot into the repository; the manifest is produced last, from the dump's
//! measured size and hash and the counts.

use std::sync::{Arc, Mutex};

use lifeboat_core::{
    TargetKind,
    manifest::{DumpLayout, PostgresManifest, StreamRecord, TableRecord},
};
use lifeboat_postgres::{PgTools, Target, archive, logical};
use lifeboat_repo::{Content, SourceEntry};

use crate::{
    EngineResult,
    backup::store::{ManifestCopy, emergency_tags, manifest_base, manifest_entry},
    kinds::{BackupJob, Stored},
};

pub(super) async fn backup(job: BackupJob<'_>) -> EngineResult<Stored> {
    let url = job.url()?;
    let target = Target::parse(&url)?;
    let session = logical::SnapshotSession::open(&target).await?;
    backup_in(job, target, session, "logical", &[]).await
}

/// The backup of what `session`'s snapshot sees, as a snapshot of kind `tag` (`logical`;
/// `cdc` for a baseline in a replication slot's snapshot), `pg_dump` with `extra` options.
pub(crate) async fn backup_in(
    job: BackupJob<'_>,
    target: Target,
    mut session: logical::SnapshotSession,
    tag: &'static str,
    extra: &[&str],
) -> EngineResult<Stored> {
    let (repo, name, target_cfg) = (job.repo, job.name, job.target);
    let tools = PgTools::find(session.major(), target_cfg.pg_bin_dir.as_deref())?;
    let globals = if target_cfg.globals == Some(false) {
        None
    } else {
        let (t, tg) = (tools.clone(), target.clone());
        Some(tokio::task::spawn_blocking(move || logical::dump_globals(&t, &tg)).await??)
    };
    let dump = logical::spawn_dump(&tools, &target, &session.snapshot, extra)?;
    let layout: Arc<Mutex<Option<DumpLayout>>> = Default::default();
    let dump = archive::Watched::new(dump, layout.clone());

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

    let (tx, rx) = std::sync::mpsc::channel::<Result<Vec<TableRecord>, String>>();
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
        let tables = rx
            .recv()
            .map_err(|_| "row counts never arrived".to_string())??;
        let mut pg = base;
        pg.dump.bytes = dump.bytes;
        pg.dump.sha256 = dump.sha256;
        pg.layout = layout.lock().unwrap_or_else(|p| p.into_inner()).take();
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
    let counts = session.count_rows().await.map_err(|e| e.to_string());
    let _ = tx.send(counts);
    let result = archive.await;
    session.close().await;
    let info = result?;
    Ok((info, kept.bytes()))
}
