//! Backups, whatever the kind: which targets, one snapshot each through the target's
//! [`Kind`](crate::kinds::Kind), and the manifest written after every stream ended well.
//! Any failure deletes the snapshot: a failed backup never looks good.

use std::{
    sync::{Arc, Mutex},
    time::Instant,
};

use lifeboat_core::{
    Config, Manifest, Redacted, TargetConfig, TargetKind,
    manifest::{FORMAT_VERSION, FileRecord},
};
use lifeboat_repo::{Content, Repo, SnapshotInfo, SourceEntry, StreamStat, TAG_EMERGENCY};
use serde::Serialize;

use crate::{
    Engine, EngineError, EngineResult,
    cancel::Cancel,
    events::{Event, Op},
    kinds::{BackupJob, kind_of},
};

#[derive(Debug, Clone, Serialize)]
pub struct BackupReport {
    pub target: String,
    pub snapshot: String,
    pub kind: String,
    /// What it holds, in words ("3 tables, 1,200 rows").
    pub content: String,
    pub bytes: u64,
    pub stored_bytes: u64,
    /// PostgreSQL (logical): tables and rows in the dump.
    pub tables: usize,
    pub rows: u64,
    /// Files, objects, or a base backup's files.
    pub files: usize,
    pub seconds: f64,
}

/// The targets `wanted` names (all configured ones if none), or a usage error naming the
/// one that is not configured.
pub fn select_targets(config: &Config, wanted: &[String]) -> EngineResult<Vec<String>> {
    if wanted.is_empty() {
        if config.targets.is_empty() {
            return Err(EngineError::usage(
                "no targets configured",
                Some("add a `[targets.<name>]` table to the config".into()),
            ));
        }
        return Ok(config.targets.keys().cloned().collect());
    }
    for w in wanted {
        if !config.targets.contains_key(w) {
            return Err(unknown_target(config, w));
        }
    }
    Ok(wanted.to_vec())
}

/// "no target `x` in the config", with the ones there are.
pub fn unknown_target(config: &Config, name: &str) -> EngineError {
    let known: Vec<&str> = config.targets.keys().map(String::as_str).collect();
    EngineError::usage(
        format!("no target `{name}` in the config"),
        Some(format!("configured targets: {}", known.join(", "))),
    )
}

/// Back up the configured target `name`, reporting its start and end. A cancellation
/// abandons it: its snapshot is never written (the repository writes it last).
pub async fn backup(engine: &Engine, name: &str, cancel: &Cancel) -> EngineResult<BackupReport> {
    let target = engine
        .config
        .target(name)
        .ok_or_else(|| unknown_target(&engine.config, name))?;
    engine.events.event(Event::Started {
        op: Op::Backup,
        target: name.to_string(),
        kind: target.kind.to_string(),
    });
    let outcome = match cancel
        .guard(take_backup(&engine.repo, name, target, None, false))
        .await
    {
        Ok(outcome) => outcome,
        Err(_) => Err(EngineError::interrupted(format!(
            "interrupted: the backup of `{name}` was stopped; no snapshot of it was written"
        ))),
    };
    let outcome = outcome.map_err(|e| {
        if e.message.contains(&format!("`{name}`")) {
            e
        } else {
            e.context(format!("backup of `{name}` failed"))
        }
    });
    engine.events.event(match &outcome {
        Ok(r) => Event::Finished {
            op: Op::Backup,
            target: name.to_string(),
            snapshot: Some(r.snapshot.clone()),
            seconds: r.seconds,
            bytes: r.bytes,
        },
        Err(e) => Event::Failed {
            op: Op::Backup,
            target: name.to_string(),
            error: e.message.clone(),
        },
    });
    outcome
}

/// Back up one target. `source` overrides where its data is (emergency backups of a restore
/// destination); `emergency` tags the snapshot so `latest` never picks it.
pub async fn take_backup(
    repo: &Arc<Repo>,
    name: &str,
    target: &TargetConfig,
    source: Option<Redacted>,
    emergency: bool,
) -> EngineResult<BackupReport> {
    let started = Instant::now();
    let kind = kind_of(target);
    let (info, manifest_bytes) = kind
        .backup(BackupJob {
            repo,
            name,
            target,
            source,
            emergency,
            started_at: jiff::Timestamp::now(),
        })
        .await?;
    let manifest = Manifest::from_json(&manifest_bytes).ok();
    let pg = manifest.as_ref().and_then(|m| m.postgres.as_ref());
    Ok(BackupReport {
        tables: pg.map_or(0, |p| p.tables.len()),
        rows: pg.map_or(0, lifeboat_core::manifest::PostgresManifest::total_rows),
        files: manifest.as_ref().map_or(0, |m| {
            let files = m.files.as_ref().or(m.physical.as_ref().map(|p| &p.files));
            m.bucket
                .as_ref()
                .map(|b| b.objects.len())
                .or(files.map(|f| f.files.len()))
                .unwrap_or(0)
        }),
        target: name.to_string(),
        snapshot: info.id.clone(),
        kind: info.kind.clone(),
        content: manifest
            .as_ref()
            .map_or_else(String::new, |m| kind.content(m)),
        bytes: manifest.as_ref().map_or(0, Manifest::logical_bytes),
        stored_bytes: info.stored_bytes(),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// A manifest with nothing of the kind's own yet.
pub fn manifest_base(
    name: &str,
    kind: TargetKind,
    method: &str,
    started_at: jiff::Timestamp,
    emergency: bool,
) -> Manifest {
    Manifest {
        format: FORMAT_VERSION,
        target: name.to_string(),
        kind,
        method: method.to_string(),
        lifeboat_version: env!("CARGO_PKG_VERSION").to_string(),
        started_at: started_at.to_string(),
        finished_at: String::new(),
        complete: false,
        emergency,
        postgres: None,
        files: None,
        physical: None,
        command: None,
        redis: None,
        bucket: None,
    }
}

/// Store `entries` and, after them, the manifest `produce` makes once they were all read,
/// as one snapshot of `name` (tagged `emergency` if so). Returns the snapshot and the
/// manifest's bytes.
pub async fn store_with_manifest(
    repo: &Arc<Repo>,
    name: &str,
    kind_tag: &'static str,
    emergency: bool,
    entries: Vec<SourceEntry>,
    produce: impl FnOnce() -> Result<Manifest, String> + Send + 'static,
) -> EngineResult<(SnapshotInfo, Vec<u8>)> {
    store_with_parent(repo, name, kind_tag, emergency, entries, produce, None).await
}

/// [`store_with_manifest`] with a parent snapshot unchanged entries may be linked from.
pub async fn store_with_parent(
    repo: &Arc<Repo>,
    name: &str,
    kind_tag: &'static str,
    emergency: bool,
    mut entries: Vec<SourceEntry>,
    produce: impl FnOnce() -> Result<Manifest, String> + Send + 'static,
    parent: Option<lifeboat_repo::Parent>,
) -> EngineResult<(SnapshotInfo, Vec<u8>)> {
    let kept = ManifestCopy::default();
    let kept_in = kept.clone();
    entries.push(manifest_entry(name, move || Ok(kept_in.finish(produce()?))));
    let tags = emergency_tags(emergency);
    let n = name.to_string();
    let info = repo
        .call(move |r| r.backup_with_parent(&n, kind_tag, tags, entries, parent))
        .await?;
    Ok((info, kept.bytes()))
}

/// The snapshot's `<name>/lifeboat.json`: produced by `produce` once the entries before it
/// were read (the archiver takes entries in order).
pub fn manifest_entry(
    name: &str,
    produce: impl FnOnce() -> Result<Vec<u8>, String> + Send + 'static,
) -> SourceEntry {
    SourceEntry::new(
        format!("{name}/lifeboat.json"),
        Content::Deferred(Box::new(produce)),
    )
    .0
}

/// The tags of a snapshot: `emergency` or none.
pub fn emergency_tags(emergency: bool) -> &'static [&'static str] {
    if emergency { &[TAG_EMERGENCY] } else { &[] }
}

/// A copy of the manifest as it was stored, for the caller to report from.
#[derive(Clone, Default)]
pub struct ManifestCopy(Arc<Mutex<Vec<u8>>>);

impl ManifestCopy {
    /// Finish a manifest once every stream ended well: mark it complete, keep a copy; its
    /// bytes.
    pub fn finish(&self, mut manifest: Manifest) -> Vec<u8> {
        manifest.finished_at = jiff::Timestamp::now().to_string();
        manifest.complete = true;
        let bytes = manifest.to_json();
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = bytes.clone();
        bytes
    }

    pub fn bytes(&self) -> Vec<u8> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The walked files' paths with where their reads are recorded.
pub fn file_stats(files: &[lifeboat_repo::files::WalkedFile]) -> Vec<(String, Arc<StreamStat>)> {
    files
        .iter()
        .map(|f| (f.source.display().to_string(), f.stat.clone()))
        .collect()
}

/// Wait until every file was read and stored; their manifest records, or the first error.
pub fn file_records(files: Vec<(String, Arc<StreamStat>)>) -> Result<Vec<FileRecord>, String> {
    files
        .into_iter()
        .map(|(path, stat)| {
            let o = stat.wait().map_err(|e| format!("`{path}`: {e}"))?;
            Ok(FileRecord {
                path,
                bytes: o.bytes,
                sha256: o.sha256,
            })
        })
        .collect()
}
