//! What every kind's backup builds on: the manifest's common part, storing a snapshot's
//! entries with the manifest produced last (so that it can count what the streams held),
//! the emergency tag, and file records from what was read.

use std::sync::{Arc, Mutex};

use lifeboat_core::{
    Manifest, TargetKind,
    manifest::{FORMAT_VERSION, FileRecord},
};
use lifeboat_repo::{Content, Repo, SnapshotInfo, SourceEntry, StreamStat, TAG_EMERGENCY};

use crate::EngineResult;

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
        target: name.to_string().into(),
        kind,
        method: method.to_string(),
        lifeboat_version: env!("CARGO_PKG_VERSION").to_string(),
        started_at: Some(started_at),
        finished_at: None,
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
    let none = Linked::default();
    store_with_parent(repo, name, kind_tag, emergency, entries, produce, none).await
}

/// What a backup may link unchanged entries from: the parent snapshot, and the index read
/// to find it ([`lifeboat_repo::Repo::newest_snapshot`]).
#[derive(Debug, Default)]
pub struct Linked {
    pub parent: Option<lifeboat_repo::Parent>,
    pub index: Option<lifeboat_repo::KeptIndex>,
}

/// [`store_with_manifest`] with a parent snapshot unchanged entries may be linked from.
pub async fn store_with_parent(
    repo: &Arc<Repo>,
    name: &str,
    kind_tag: &'static str,
    emergency: bool,
    mut entries: Vec<SourceEntry>,
    produce: impl FnOnce() -> Result<Manifest, String> + Send + 'static,
    linked: Linked,
) -> EngineResult<(SnapshotInfo, Vec<u8>)> {
    let Linked { parent, index } = linked;
    let kept = ManifestCopy::default();
    let kept_in = kept.clone();
    entries.push(manifest_entry(name, move || Ok(kept_in.finish(produce()?))));
    let tags = emergency_tags(emergency);
    let n = name.to_string();
    let info = repo
        .call(move |r| r.backup_with_parent(&n, kind_tag, tags, entries, parent, index))
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
        manifest.finished_at = Some(jiff::Timestamp::now());
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
