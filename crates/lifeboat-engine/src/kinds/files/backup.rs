//! A files backup: the paths walked, every file stored and hashed, the manifest last.

use std::path::PathBuf;

use lifeboat_core::{TargetKind, manifest::FilesManifest};

use crate::{
    EngineError, EngineResult,
    backup::store::{file_records, file_stats, manifest_base, store_with_manifest},
    kinds::{BackupJob, Stored},
};

pub(super) async fn backup(job: BackupJob<'_>) -> EngineResult<Stored> {
    let (repo, name, target) = (job.repo, job.name, job.target);
    let roots: Vec<PathBuf> = target.paths.clone().unwrap_or_default();
    let excludes = target.exclude.clone().unwrap_or_default();
    let prefix = PathBuf::from(name).join("files");
    let walk = lifeboat_repo::files::walk(&roots, &excludes, &prefix).map_err(|e| {
        EngineError::failure(e.to_string(), Some("check `paths` of the target".into()))
    })?;
    for s in &walk.skipped {
        log::warn!("skipped `{s}`: not a regular file, directory or link");
    }
    let files = file_stats(&walk.files);
    let (total_bytes, symlinks) = (walk.total_bytes, walk.symlinks);
    let mut manifest = manifest_base(
        name,
        TargetKind::Files,
        "files",
        job.started_at,
        job.emergency,
    );
    let root_names: Vec<String> = roots.iter().map(|r| r.display().to_string()).collect();
    let produce = move || {
        let records = file_records(files)?;
        let read_bytes: u64 = records.iter().map(|r| r.bytes).sum();
        if read_bytes != total_bytes {
            log::warn!(
                "files changed size while being backed up ({total_bytes} → {read_bytes} bytes)"
            );
        }
        manifest.files = Some(FilesManifest {
            roots: root_names,
            files: records,
            total_bytes: read_bytes,
            symlinks,
        });
        Ok(manifest)
    };
    store_with_manifest(repo, name, "files", job.emergency, walk.entries, produce).await
}
