//! The drill of a files backup: restored into a temporary folder, every file's size and
//! SHA-256 checked against the manifest, then the target's `command` checks (which get the
//! folder in `$LIFEBOAT_DRILL_DIR`). A command target's output is drilled the same way, as
//! one file `<target>.out` in the folder.

use std::sync::Arc;

use lifeboat_core::{
    config::CheckConfig,
    manifest::{CommandManifest, FileRecord, FilesManifest},
};
use lifeboat_repo::Repo;

use super::verify_files;
use crate::{
    cancel::Cancel,
    drill::{
        checks::Findings,
        checks::{command_rules, remove_scratch_dir, scratch_dir},
        rehearsal::{Chosen, Drill, Rehearsal, Stop},
    },
    format as output,
};

/// The drill of a files snapshot: a [`FilesRehearsal`] into a temporary folder.
pub async fn rehearse(drill: &mut Drill, (info, manifest): &Chosen) -> Result<(), Stop> {
    let Some(fm) = manifest.files.clone() else {
        return Err(drill.missing_section());
    };
    let mut r = FilesRehearsal {
        repo: drill.engine.repo.clone(),
        snapshot: info.id.clone(),
        target: drill.name.clone(),
        manifest: fm,
        stream: None,
        source: format!("{}/files", drill.name),
        rules: drill.rules.clone(),
        dir: None,
    };
    drill.rehearse(&mut r).await
}

/// A snapshot's files restored into a temporary folder and checked there; also the drill of
/// a command's output and of a bucket without a scratch bucket.
pub(crate) struct FilesRehearsal {
    pub(crate) repo: Arc<Repo>,
    pub(crate) snapshot: lifeboat_core::SnapshotId,
    pub(crate) target: String,
    pub(crate) manifest: FilesManifest,
    /// A command target: the snapshot path of its output, restored as `<target>.out`.
    pub(crate) stream: Option<String>,
    /// The folder of the snapshot restored (`<target>/files`, `<target>/bucket`).
    pub(crate) source: String,
    pub(crate) rules: Vec<CheckConfig>,
    pub(crate) dir: Option<tempfile::TempDir>,
}

impl FilesRehearsal {
    pub(crate) fn of_command(
        repo: Arc<Repo>,
        snapshot: &str,
        target: &str,
        cm: &CommandManifest,
        rules: Vec<CheckConfig>,
    ) -> Self {
        let file = FileRecord {
            path: format!("{target}.out"),
            bytes: cm.output.bytes,
            sha256: cm.output.sha256.clone(),
        };
        Self {
            repo,
            snapshot: snapshot.to_string().into(),
            target: target.to_string(),
            manifest: FilesManifest {
                roots: Vec::new(),
                files: vec![file],
                total_bytes: cm.output.bytes,
                symlinks: 0,
            },
            stream: Some(cm.output.path.clone()),
            source: String::new(),
            rules,
            dir: None,
        }
    }

    fn root(&self) -> Result<std::path::PathBuf, String> {
        self.dir
            .as_ref()
            .map(|d| d.path().to_path_buf())
            .ok_or_else(|| "no scratch folder".to_string())
    }
}

impl Rehearsal for FilesRehearsal {
    fn env(&self) -> Vec<(&'static str, String)> {
        self.root()
            .map(|r| vec![("DIR", r.display().to_string())])
            .unwrap_or_default()
    }

    fn describe(&self) -> Vec<String> {
        let what = match &self.stream {
            Some(_) => format!(
                "restore the command's output ({}) as `{}.out`",
                output::bytes(self.manifest.total_bytes),
                self.target
            ),
            None => format!(
                "restore {} file(s), {}",
                self.manifest.files.len(),
                output::bytes(self.manifest.total_bytes)
            ),
        };
        vec![
            "create a temporary folder".into(),
            what,
            "check every file's size and SHA-256 against the manifest".into(),
            "remove the folder".into(),
        ]
    }

    async fn provision(&mut self) -> Result<String, String> {
        let dir = scratch_dir("files")?;
        let text = format!("temporary folder {}", dir.path().display());
        self.dir = Some(dir);
        Ok(text)
    }

    async fn restore(&mut self) -> Result<String, String> {
        if let Some(stream) = &self.stream {
            let (repo, id, src) = (self.repo.clone(), self.snapshot.clone(), stream.clone());
            let file = self.root()?.join(format!("{}.out", self.target));
            let bytes = lifeboat_repo::blocking(move || -> Result<u64, String> {
                let mut out = std::io::BufWriter::new(
                    std::fs::File::create(&file).map_err(|e| e.to_string())?,
                );
                repo.dump(&id, &src, &mut out).map_err(|e| e.to_string())?;
                std::io::Write::flush(&mut out).map_err(|e| e.to_string())?;
                std::fs::metadata(&file)
                    .map(|m| m.len())
                    .map_err(|e| e.to_string())
            })
            .await?;
            return Ok(format!("command output, {}", output::bytes(bytes)));
        }
        let (repo, id, src, dir) = (
            self.repo.clone(),
            self.snapshot.clone(),
            self.source.clone(),
            self.root()?,
        );
        // Stopped between packs when the drill abandons this phase (the future is dropped,
        // and the drop waits for the restore to stop), so teardown never races its writes.
        let s = Cancel::new()
            .blocking_until(move |stop| repo.restore_dir_until(&id, &src, &dir, false, Some(stop)))
            .await
            .map_err(|e| e.to_string())?;
        Ok(format!(
            "{} file(s), {}",
            s.files + s.unchanged,
            output::bytes(s.bytes)
        ))
    }

    async fn check(&mut self, findings: &mut Findings) {
        let Ok(root) = self.root() else {
            return;
        };
        let (files, dir) = (self.manifest.files.clone(), root.clone());
        let verified = lifeboat_repo::blocking(move || verify_files(&files, &dir)).await;
        let bad: Vec<_> = verified.iter().filter(|c| !c.ok).collect();
        findings.add(
            "files",
            "every file's size and SHA-256",
            bad.is_empty(),
            format!(
                "{} of {} files match the manifest",
                verified.len() - bad.len(),
                verified.len()
            ),
        );
        for b in bad {
            findings.add(
                "files",
                b.path.clone(),
                false,
                b.problem.clone().unwrap_or_default(),
            );
        }
        let root = root.display().to_string();
        let env = [("LIFEBOAT_DRILL_DIR", root.as_str())];
        command_rules(&self.rules, &env, "a files target", findings).await;
    }

    async fn teardown(&mut self) -> Result<(), String> {
        remove_scratch_dir(self.dir.take())
    }
}
