//! A base backup. With `data-dir`: `pg_backup_start` → the data directory walked into the
//! snapshot under `<target>/data/<data-dir>` (without what PostgreSQL's docs exclude,
//! keeping the directories it needs) → once every file is read, `pg_backup_stop` on the same
//! session; its `backup_label` and `tablespace_map` go to `<target>/meta/` and the manifest
//! records system id, timeline, start/stop LSN and time and every file's size and hash.
//! Without `data-dir` (the server's files are elsewhere), `pg_basebackup` streams the
//! cluster as one tar into `<target>/base.tar` instead; restore extracts it.

use std::path::PathBuf;

use lifeboat_core::{
    TargetConfig, TargetKind,
    manifest::{FilesManifest, PhysicalManifest, StreamRecord},
};
use lifeboat_postgres::{
    PgTools, Target, basebackup,
    physical::{self, BaseBackup, ServerFacts},
    wal,
};
use lifeboat_repo::{Content, Repo, SourceEntry};
use std::sync::Arc;

use crate::{
    EngineError, EngineResult,
    backup::store::{
        ManifestCopy, emergency_tags, file_records, file_stats, manifest_base, manifest_entry,
        store_with_manifest,
    },
    kinds::{BackupJob, Stored},
};

/// What the archiver thread and the session exchange when the files are read.
struct StopInfo {
    stop_lsn: lifeboat_core::Lsn,
    stop_time: jiff::Timestamp,
    backup_label: String,
    tablespace_map: String,
}

pub(super) async fn backup(job: BackupJob<'_>) -> EngineResult<Stored> {
    let url = job.url()?;
    let (repo, name, cfg) = (job.repo, job.name, job.target);
    let target = Target::parse(&url)?;
    let Some(data_dir) = cfg.data_dir.clone() else {
        return backup_streamed(repo, name, cfg, &target, job.started_at, job.emergency).await;
    };
    let session = BaseBackup::start(&target, &format!("lifeboat {name}")).await?;
    let walk = lifeboat_repo::files::walk(
        std::slice::from_ref(&data_dir),
        &physical::excludes(&data_dir),
        &PathBuf::from(name).join("data"),
    )
    .map_err(|e| EngineError::failure(e.to_string(), None))?;
    let mut entries = walk.entries;
    let files = file_stats(&walk.files);

    // The manifest entry waits for every file, asks for pg_backup_stop, and passes its
    // result on to the backup_label and tablespace_map entries after it.
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<Result<StopInfo, String>>();
    let (label_tx, label_rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let (map_tx, map_rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let mut manifest = manifest_base(
        name,
        TargetKind::Postgres,
        "physical",
        job.started_at,
        job.emergency,
    );
    let base = PhysicalManifest {
        system_id: session.system_id,
        timeline: session.timeline,
        start_lsn: session.start_lsn,
        // Known once `pg_backup_stop` answers, below.
        stop_lsn: session.start_lsn,
        start_wal: session.start_wal(),
        stop_wal: String::new(),
        start_time: Some(server_moment(&session.start_time).map_err(EngineError::failed)?),
        stop_time: None,
        server_version: session.server_version.clone(),
        server_version_num: session.server_version_num,
        data_dir: data_dir.display().to_string(),
        wal_segment_size: session.segment_size,
        files: FilesManifest {
            roots: vec![data_dir.display().to_string()],
            files: Vec::new(),
            total_bytes: 0,
            symlinks: walk.symlinks,
        },
        base_tar: None,
    };
    let kept = ManifestCopy::default();
    let kept_in = kept.clone();
    let (timeline, segment_size) = (session.timeline, session.segment_size);
    let produce = move || -> Result<Vec<u8>, String> {
        let records = file_records(files)?;
        done_tx
            .send(())
            .map_err(|_| "the backup session is gone".to_string())?;
        let stop = stop_rx
            .recv()
            .map_err(|_| "pg_backup_stop never answered".to_string())??;
        let _ = label_tx.send(stop.backup_label.into_bytes());
        let _ = map_tx.send(stop.tablespace_map.into_bytes());
        let mut p = base;
        p.files.total_bytes = records.iter().map(|r| r.bytes).sum();
        p.files.files = records;
        p.stop_wal = wal::segment_of(stop.stop_lsn, timeline, segment_size);
        p.stop_lsn = stop.stop_lsn;
        p.stop_time = Some(stop.stop_time);
        manifest.physical = Some(p);
        Ok(kept_in.finish(manifest))
    };
    // Snapshot order is path order: `<name>/data/...`, `<name>/lifeboat.json`, `<name>/meta/...`.
    entries.push(manifest_entry(name, produce));
    let from = |rx: std::sync::mpsc::Receiver<Vec<u8>>| {
        move || {
            rx.recv()
                .map_err(|_| "the base backup did not stop".to_string())
        }
    };
    entries.push(
        SourceEntry::new(
            format!("{name}/meta/backup_label"),
            Content::Deferred(Box::new(from(label_rx))),
        )
        .0,
    );
    entries.push(
        SourceEntry::new(
            format!("{name}/meta/tablespace_map"),
            Content::Deferred(Box::new(from(map_rx))),
        )
        .0,
    );

    let name2 = name.to_string();
    let mut archive =
        repo.start(move |r| r.backup(&name2, "physical", emergency_tags(job.emergency), entries));
    let files_done = tokio::task::spawn_blocking(move || done_rx.recv().is_ok());
    tokio::select! {
        done = files_done => {
            // Every file is read: stop the backup on its own session.
            let stopped = if done.unwrap_or(false) {
                session.stop().await.map_err(|e| e.to_string()).and_then(|s| {
                    Ok(StopInfo {
                        stop_lsn: s.stop_lsn,
                        stop_time: server_moment(&s.stop_time)?,
                        backup_label: s.backup_label,
                        tablespace_map: s.tablespace_map,
                    })
                })
            } else {
                Err("the backup ended before every file was read".to_string())
            };
            let _ = stop_tx.send(stopped);
        }
        result = &mut archive => {
            // The archiver ended first: it failed; the session's end aborts the backup.
            drop(session);
            result?;
            return Err(EngineError::failure("the base backup ended early", None));
        }
    }
    let info = archive.await?;
    Ok((info, kept.bytes()))
}

/// The server's clock, as text.
async fn server_now(client: &tokio_postgres::Client) -> Result<jiff::Timestamp, String> {
    let row = client
        .query_one(
            r#"SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"#,
            &[],
        )
        .await
        .map_err(|e| format!("cannot read the server's time: {e}"))?;
    server_moment(row.get(0))
}

/// The server's clock as it answered (in UTC, RFC 3339).
fn server_moment(text: &str) -> Result<jiff::Timestamp, String> {
    crate::time::parse_time(text).map_err(|e| format!("the server's clock: {e}"))
}

/// A base backup without `data-dir`: `pg_basebackup`'s tar stream into `<name>/base.tar`,
/// its WAL start and end read off the stream (see `lifeboat_postgres::basebackup`).
async fn backup_streamed(
    repo: &Arc<Repo>,
    name: &str,
    cfg: &TargetConfig,
    target: &Target,
    started_at: jiff::Timestamp,
    emergency: bool,
) -> EngineResult<Stored> {
    let client = target.connect().await?;
    let facts = ServerFacts::read(&client).await?;
    let start_time = server_now(&client).await.map_err(EngineError::failed)?;
    let tools = PgTools::find(facts.major(), cfg.pg_bin_dir.as_deref())?;
    let child = basebackup::stream(target, &tools, &format!("lifeboat {name}"))?;
    let (watch, kept_entries) = basebackup::TarWatch::new(child);
    let path = format!("{name}/base.tar");
    let (entry, stat) = SourceEntry::new(&path, Content::Stream(Box::new(watch)));
    let mut manifest = manifest_base(
        name,
        TargetKind::Postgres,
        "physical",
        started_at,
        emergency,
    );
    let runtime = tokio::runtime::Handle::current();
    let produce = move || {
        let out = stat.wait()?;
        let points = kept_entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .wal_points()?;
        let stop_time = runtime.block_on(server_now(&client))?;
        let segment = |lsn| wal::segment_of(lsn, points.timeline, facts.segment_size);
        manifest.physical = Some(PhysicalManifest {
            system_id: facts.system_id,
            timeline: points.timeline,
            start_wal: segment(points.start_lsn),
            stop_wal: segment(points.stop_lsn),
            start_lsn: points.start_lsn,
            stop_lsn: points.stop_lsn,
            start_time: Some(start_time),
            stop_time: Some(stop_time),
            server_version: facts.server_version,
            server_version_num: facts.server_version_num,
            data_dir: String::new(),
            wal_segment_size: facts.segment_size,
            files: FilesManifest {
                roots: Vec::new(),
                files: Vec::new(),
                total_bytes: out.bytes,
                symlinks: 0,
            },
            base_tar: Some(StreamRecord {
                path,
                bytes: out.bytes,
                sha256: out.sha256,
            }),
        });
        Ok(manifest)
    };
    store_with_manifest(repo, name, "physical", emergency, vec![entry], produce).await
}
