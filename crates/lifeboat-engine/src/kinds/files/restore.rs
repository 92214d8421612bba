//! A files restore: below `--to-dir`, files keep their absolute paths; existing ones are
//! saved by an emergency backup first (with `--force`); every file's size and SHA-256 is
//! checked against the manifest.

use std::{
    io::Read,
    path::{Path, PathBuf},
    sync::Arc,
};

use lifeboat_core::{
    TargetConfig, TargetKind,
    manifest::{FileRecord, FilesManifest},
};
use lifeboat_repo::{Repo, RestoreSummary};
use serde::Serialize;
use serde_json::json;
use sha2::Digest;

use crate::{
    Engine, EngineError, EngineResult, format,
    restore::{
        ActCx, Emergency, Plan, Refusal, RestoreOutcome, RestorePlan, RestoreRequest, act,
        chosen_section,
    },
};

#[derive(Debug, Serialize)]
pub struct FileCheck {
    pub path: String,
    pub ok: bool,
    pub problem: Option<String>,
}

pub(super) async fn plan(
    engine: &Engine,
    request: &RestoreRequest,
    _: &TargetConfig,
) -> EngineResult<RestorePlan> {
    let Some(dir) = request.to_dir.clone() else {
        return Err(EngineError::usage(
            "a files target is restored with `--to-dir DIR`",
            Some(
                "files keep their absolute paths below DIR; restoring in place comes later".into(),
            ),
        ));
    };
    if request.to.is_some() || request.table.is_some() {
        return Err(EngineError::usage(
            "`--to` and `--table` are for PostgreSQL targets",
            None,
        ));
    }
    let (snapshot, fm) = chosen_section(engine, request, |m| &m.files, "files").await?;
    let existing: Vec<String> = fm
        .files
        .iter()
        .filter(|f| below(&dir, &f.path).exists())
        .map(|f| f.path.clone())
        .collect();
    let overwrites = !existing.is_empty();
    let mut steps = Vec::new();
    if overwrites {
        steps.push(format!(
            "emergency backup of {} existing file(s) below `{}`",
            existing.len(),
            dir.display()
        ));
    }
    steps.push(format!(
        "restore {} file(s), {}",
        fm.files.len(),
        format::bytes(fm.total_bytes)
    ));
    steps.push("verify every file's size and SHA-256 against the manifest".into());
    let plan = Plan::new(
        &request.target,
        &snapshot,
        dir.display().to_string(),
        steps,
        overwrites,
    );
    let (name, id) = (request.target.clone(), snapshot.id.clone());
    let to = dir.clone();
    let mut restore = RestorePlan::new(
        plan,
        act(move |cx: ActCx| async move {
            let (summary, checks) = restore_files_to(&cx.engine.repo, &id, &name, &fm, &to).await?;
            let bad: Vec<&FileCheck> = checks.iter().filter(|c| !c.ok).collect();
            let mut lines = vec![format!(
                "restored {} file(s) into `{}`; {} of {} verified by size and SHA-256",
                summary.files + summary.unchanged,
                to.display(),
                checks.len() - bad.len(),
                checks.len()
            )];
            for b in &bad {
                lines.push(format!(
                    "  MISMATCH {}: {}",
                    b.path,
                    b.problem.as_deref().unwrap_or("")
                ));
            }
            let facts = json!({
                "files_restored": summary.files, "bytes": summary.bytes,
                "file_checks_failed": bad, "verified": bad.is_empty(),
            });
            Ok(RestoreOutcome::new(
                bad.is_empty(),
                &format!("{} restored file(s) differ from the manifest", bad.len()),
                facts,
                lines,
            ))
        }),
    );
    if overwrites {
        restore.refusal = Some(Refusal {
            message: format!(
                "refusing to overwrite {} existing file(s) below `{}` (first: `{}`)",
                existing.len(),
                dir.display(),
                existing[0]
            ),
            hint: "restore into an empty folder, or pass `--force` to overwrite after an emergency backup".into(),
            forceable: true,
            why: format!("{} file(s) exist", existing.len()),
        });
        restore.emergency = Some(Emergency {
            target: TargetConfig {
                kind: TargetKind::Files,
                paths: Some(existing.iter().map(|p| below(&dir, p)).collect()),
                ..Default::default()
            },
            source: None,
            optional_with_force: false,
            what: format!("{} file(s) below `{}`", existing.len(), dir.display()),
        });
    }
    Ok(restore)
}

/// Restore a files snapshot below `dir` and check every file's size and SHA-256 against
/// the manifest.
pub async fn restore_files_to(
    repo: &Arc<Repo>,
    snapshot_id: &str,
    target: &str,
    fm: &FilesManifest,
    dir: &Path,
) -> EngineResult<(RestoreSummary, Vec<FileCheck>)> {
    let (r, id, src, d) = (
        repo.clone(),
        snapshot_id.to_string(),
        format!("{target}/files"),
        dir.to_path_buf(),
    );
    let summary = r.call(move |r| r.restore_dir(&id, &src, &d, false)).await?;
    let (files, dir) = (fm.files.clone(), dir.to_path_buf());
    let checks = lifeboat_repo::blocking(move || verify_files(&files, &dir)).await;
    Ok((summary, checks))
}

/// Check every restored file's size and SHA-256 against its manifest record.
pub fn verify_files(files: &[FileRecord], dir: &Path) -> Vec<FileCheck> {
    files
        .iter()
        .map(|f| {
            let problem = match hash_file(&below(dir, &f.path)) {
                Err(e) => Some(format!("cannot read: {e}")),
                Ok((bytes, _)) if bytes != f.bytes => {
                    Some(format!("{bytes} bytes, expected {}", f.bytes))
                }
                Ok((_, hash)) if hash != f.sha256 => Some("SHA-256 differs".into()),
                Ok(_) => None,
            };
            FileCheck {
                path: f.path.clone(),
                ok: problem.is_none(),
                problem,
            }
        })
        .collect()
}

/// Where an absolute source path lands below the restore folder.
fn below(dir: &Path, path: &str) -> PathBuf {
    dir.join(path.trim_start_matches('/'))
}

fn hash_file(path: &Path) -> std::io::Result<(u64, String)> {
    let mut f = std::fs::File::open(path)?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf)?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((n, hex::encode(h.finalize())))
}
