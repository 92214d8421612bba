//! A files restore: in place (the files' own paths), or below `--to-dir` where they keep
//! their absolute paths; existing ones are saved by an emergency backup first (with
//! `--force`); every file's size and SHA-256 is checked against the manifest.
//!
//! The snapshot is restored into a staging folder first — inside `--to-dir`, or in place
//! inside the deepest folder that holds all the snapshot's files — and moved into place
//! once complete (renames), so that a restore stopped by a signal leaves the folder
//! as it was: the stage is removed, and nothing in the folder was touched. Where the disk
//! has no room for a second copy of the files it replaces, they are rewritten in place
//! (as the emergency backup saved them first); stopped then, the error says which
//! snapshot holds what was there.

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
    Engine, EngineError, EngineResult, FsContext,
    cancel::Cancel,
    format,
    restore::{
        act::{ActCx, RestoreOutcome, RestorePlan, act},
        choose::chosen_section,
        plan::{Emergency, Plan, Refusal, RestoreRequest},
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
    // In place: below `/`, the files' own paths.
    let in_place = request.to_dir.is_none();
    let dir = request.to_dir.clone().unwrap_or_else(|| PathBuf::from("/"));
    if request.to.is_some() || request.table.is_some() {
        return Err(EngineError::usage(
            "`--to` and `--table` are for PostgreSQL targets",
            None,
        ));
    }
    let (snapshot, fm) = chosen_section(engine, request, |m| &m.files, "files").await?;
    // What the restore would replace: files at the snapshot's paths, and anything that is
    // not a folder where the snapshot needs one (a file, a link) — saved first like them.
    let mut existing: Vec<String> = Vec::new();
    let mut folders_in_the_way = Vec::new();
    for f in &fm.files {
        let mut path = std::path::Path::new(&f.path);
        while let Some(parent) = path.parent() {
            if parent.as_os_str().is_empty() || parent == std::path::Path::new("/") {
                break;
            }
            let there = std::fs::symlink_metadata(below(&dir, &parent.to_string_lossy()));
            if there.is_ok_and(|m| !m.is_dir()) {
                existing.push(parent.to_string_lossy().into_owned());
            }
            path = parent;
        }
        match std::fs::symlink_metadata(below(&dir, &f.path)) {
            Ok(m) if m.is_dir() => folders_in_the_way.push(f.path.clone()),
            Ok(_) => existing.push(f.path.clone()),
            Err(_) => {}
        }
    }
    existing.sort();
    existing.dedup();
    if let Some(first) = folders_in_the_way.first() {
        return Err(EngineError::failure(
            format!(
                "{} folder(s) below `{}` stand where the snapshot has files (first: `{first}`)",
                folders_in_the_way.len(),
                dir.display()
            ),
            Some(
                "restore into another folder; lifeboat does not replace a folder with a file"
                    .into(),
            ),
        ));
    }
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
    // Where the stage goes: `--to-dir`, or in place the deepest folder holding every file
    // (not `/`: the restore needs to write only where the files go).
    let base = if in_place {
        common_folder(&fm)
    } else {
        String::new()
    };
    let mut restore = RestorePlan::new(
        plan,
        act(move |cx: ActCx| async move {
            let (summary, checks) = restore_files_to(
                &cx.engine.repo,
                &id,
                &name,
                &fm,
                &to,
                &base,
                &cx.cancel,
                cx.emergency_snapshot.as_deref(),
            )
            .await?;
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

/// Restore a files snapshot below `top` and check every file's size and SHA-256 against
/// the manifest. Only the snapshot's folder `base` (`""`: all of it) is restored, through a
/// stage inside `top/base`, moved into place once complete: `cancel` stops it with the
/// folder as it was (one the restore created is removed again). Without room for the
/// stage, in place; `emergency` names the snapshot that saved what it overwrites.
#[allow(clippy::too_many_arguments)]
pub async fn restore_files_to(
    repo: &Arc<Repo>,
    snapshot_id: &str,
    target: &str,
    fm: &FilesManifest,
    top: &Path,
    base: &str,
    cancel: &Cancel,
    emergency: Option<&str>,
) -> EngineResult<(RestoreSummary, Vec<FileCheck>)> {
    let dir: &Path = &if base.is_empty() {
        top.to_path_buf()
    } else {
        below(top, base)
    };
    let created = !dir.exists();
    std::fs::create_dir_all(dir).fs("create", dir)?;
    let room = rustix::fs::statvfs(dir)
        .map(|s| s.f_bavail.saturating_mul(s.f_frsize))
        .unwrap_or(u64::MAX);
    let stage = if room >= fm.total_bytes {
        Some(
            tempfile::Builder::new()
                .prefix(".lifeboat-restore-")
                .tempdir_in(dir)
                .fs("create a staging folder in", dir)?,
        )
    } else {
        None
    };
    let (r, id, src, d) = (
        repo.clone(),
        snapshot_id.to_string(),
        format!("{target}/files{}", base.trim_end_matches('/')),
        stage.as_ref().map_or(dir, |s| s.path()).to_path_buf(),
    );
    let restored = cancel
        .blocking_until(move |stop| r.restore_dir_until(&id, &src, &d, false, Some(stop)))
        .await;
    let summary = match restored {
        Ok(s) => s,
        Err(e) => {
            let stopped = matches!(e, lifeboat_repo::RepoError::Stopped { .. });
            let staged = stage.is_some();
            drop(stage);
            if created {
                let _ = std::fs::remove_dir_all(dir);
            }
            return Err(match (stopped, staged || created, emergency) {
                (false, ..) => EngineError::from(e),
                (true, true, _) => EngineError::interrupted(format!(
                    "the restore was stopped; `{}` is as it was",
                    dir.display()
                )),
                (true, false, Some(saved)) => EngineError::interrupted(format!(
                    "the restore was stopped; files below `{}` are partly restored (no room to stage them); snapshot {} holds what was there",
                    dir.display(),
                    format::short(saved)
                )),
                (true, false, None) => EngineError::interrupted(format!(
                    "the restore was stopped; files below `{}` are partly restored (no room to stage them)",
                    dir.display()
                )),
            });
        }
    };
    if let Some(stage) = stage {
        move_into(stage.path(), dir).fs("move the restored files into", dir)?;
    }
    let (files, top) = (fm.files.clone(), top.to_path_buf());
    let checks = lifeboat_repo::blocking(move || verify_files(&files, &top)).await;
    Ok((summary, checks))
}

/// The deepest folder that holds everything the snapshot has: each file's folder, and
/// each configured root — itself when files lie below it (a folder: the stage goes inside
/// it, on its filesystem), else its parent (a file, a link, an empty folder). `/srv/app/conf`
/// for the root `/srv/app/conf` with `/srv/app/conf/a.toml`; `""` when that is `/`.
fn common_folder(fm: &FilesManifest) -> String {
    fn parts(path: &str) -> Vec<&str> {
        path.split('/')
            .filter(|p| !p.is_empty() && *p != ".")
            .collect()
    }
    let files: Vec<Vec<&str>> = fm.files.iter().map(|f| parts(&f.path)).collect();
    let mut folders: Vec<Vec<&str>> = files
        .iter()
        .map(|f| f[..f.len().saturating_sub(1)].to_vec())
        .collect();
    for root in &fm.roots {
        let r = parts(root);
        let holds_files = files.iter().any(|f| f.len() > r.len() && f.starts_with(&r));
        folders.push(if holds_files {
            r
        } else {
            r[..r.len().saturating_sub(1)].to_vec()
        });
    }
    let mut common: Option<Vec<&str>> = None;
    for folder in folders {
        common = Some(match common {
            None => folder,
            Some(c) => c
                .iter()
                .zip(&folder)
                .take_while(|(a, b)| a == b)
                .map(|(a, _)| *a)
                .collect(),
        });
    }
    match common {
        Some(c) if !c.is_empty() => format!("/{}", c.join("/")),
        _ => String::new(),
    }
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

/// Move everything below `from` into `to`: a folder missing in `to` moves whole, one that is
/// there is merged into, a file or link replaces what is there. Renames where both are on
/// one filesystem; a copy where `to` holds a mount point of another.
fn move_into(from: &Path, to: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let (src, dest) = (entry.path(), to.join(entry.file_name()));
        let there = std::fs::symlink_metadata(&dest).ok();
        if entry.file_type()?.is_dir() {
            match there {
                Some(m) if m.is_dir() => move_into(&src, &dest)?,
                _ => {
                    if there.is_some() {
                        std::fs::remove_file(&dest)?;
                    }
                    if let Err(e) = std::fs::rename(&src, &dest) {
                        if e.kind() != std::io::ErrorKind::CrossesDevices {
                            return Err(e);
                        }
                        std::fs::create_dir(&dest)?;
                        std::fs::set_permissions(&dest, entry.metadata()?.permissions())?;
                        move_into(&src, &dest)?;
                    }
                }
            }
            continue;
        }
        if there.as_ref().is_some_and(|m| m.is_dir()) {
            return Err(std::io::Error::other(format!(
                "`{}` is a folder; the snapshot has a file there",
                dest.display()
            )));
        }
        if let Err(e) = std::fs::rename(&src, &dest) {
            if e.kind() != std::io::ErrorKind::CrossesDevices {
                return Err(e);
            }
            if entry.file_type()?.is_symlink() {
                let _ = std::fs::remove_file(&dest);
                std::os::unix::fs::symlink(std::fs::read_link(&src)?, &dest)?;
            } else {
                std::fs::copy(&src, &dest)?;
            }
            std::fs::remove_file(&src)?;
        }
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(paths: &[&str]) -> FilesManifest {
        FilesManifest {
            roots: vec![],
            total_bytes: 0,
            files: paths
                .iter()
                .map(|p| FileRecord {
                    path: p.to_string(),
                    bytes: 0,
                    sha256: String::new(),
                })
                .collect(),
            symlinks: 0,
        }
    }

    #[test]
    fn an_in_place_restore_stages_in_the_deepest_folder_holding_every_file() {
        assert_eq!(
            common_folder(&manifest(&["/srv/app/.env", "/srv/app/conf/a.toml"])),
            "/srv/app"
        );
        assert_eq!(common_folder(&manifest(&["/srv/app/.env"])), "/srv/app");
        assert_eq!(
            common_folder(&manifest(&["/srv/app/.env", "/etc/app.conf"])),
            ""
        );
        assert_eq!(
            common_folder(&manifest(&["/srv/application/x", "/srv/app/y"])),
            "/srv"
        );
        assert_eq!(common_folder(&manifest(&[])), "");
        let with_roots = |files: &[&str], roots: &[&str]| {
            let mut m = manifest(files);
            m.roots = roots.iter().map(|r| r.to_string()).collect();
            common_folder(&m)
        };
        // A root with files below it: the stage goes inside it (a mount point stays on its
        // own filesystem), not in its parent.
        assert_eq!(with_roots(&["/data/x/y"], &["/data"]), "/data");
        assert_eq!(
            with_roots(&["/srv/app/conf/a.toml"], &["/srv/app/conf/"]),
            "/srv/app/conf"
        );
        // A root without files (links, empty folders) or that is a file: its parent.
        assert_eq!(
            with_roots(
                &["/srv/app/conf/a.toml"],
                &["/srv/app/conf", "/srv/app/links"]
            ),
            "/srv/app"
        );
        assert_eq!(
            with_roots(&["/srv/app/.env"], &["/srv/app/.env"]),
            "/srv/app"
        );
        assert_eq!(with_roots(&["/srv//app/x"], &["/srv/./app"]), "/srv/app");
    }
}
