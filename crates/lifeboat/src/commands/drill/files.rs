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

use super::{Findings, Rehearsal, run_command};
use lifeboat_engine::kinds::files::verify_files;

use crate::output;

pub(super) struct FilesRehearsal {
    pub repo: Arc<Repo>,
    pub snapshot: String,
    pub target: String,
    pub manifest: FilesManifest,
    /// A command target: the snapshot path of its output, restored as `<target>.out`.
    pub stream: Option<String>,
    /// The folder of the snapshot restored (`<target>/files`, `<target>/bucket`).
    pub source: String,
    pub rules: Vec<CheckConfig>,
    pub dir: Option<tempfile::TempDir>,
}

impl FilesRehearsal {
    pub fn of_command(
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
            snapshot: snapshot.to_string(),
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
    async fn provision(&mut self) -> Result<String, String> {
        let dir = tempfile::Builder::new()
            .prefix("lifeboat-drill-files-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let text = format!("temporary folder {}", dir.path().display());
        self.dir = Some(dir);
        Ok(text)
    }

    async fn restore(&mut self) -> Result<String, String> {
        if let Some(stream) = &self.stream {
            let (repo, id, src) = (self.repo.clone(), self.snapshot.clone(), stream.clone());
            let file = self.root()?.join(format!("{}.out", self.target));
            let bytes = tokio::task::spawn_blocking(move || -> Result<u64, String> {
                let mut out = std::io::BufWriter::new(
                    std::fs::File::create(&file).map_err(|e| e.to_string())?,
                );
                repo.dump(&id, &src, &mut out).map_err(|e| e.to_string())?;
                std::io::Write::flush(&mut out).map_err(|e| e.to_string())?;
                std::fs::metadata(&file)
                    .map(|m| m.len())
                    .map_err(|e| e.to_string())
            })
            .await
            .map_err(|e| e.to_string())??;
            return Ok(format!("command output, {}", output::bytes(bytes)));
        }
        let (repo, id, src, dir) = (
            self.repo.clone(),
            self.snapshot.clone(),
            self.source.clone(),
            self.root()?,
        );
        let s = tokio::task::spawn_blocking(move || repo.restore_dir(&id, &src, &dir, false))
            .await
            .map_err(|e| e.to_string())?
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
        let verified = match tokio::task::spawn_blocking(move || verify_files(&files, &dir)).await {
            Ok(v) => v,
            Err(e) => {
                findings.add(
                    "files",
                    "every file's size and SHA-256",
                    false,
                    e.to_string(),
                );
                return;
            }
        };
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
        for rule in &self.rules {
            let result = match &rule.command {
                Some(command) => run_command(command, &[("LIFEBOAT_DRILL_DIR", &root)], &[]).await,
                None => Err("an SQL check cannot run against a files target".into()),
            };
            findings.rule("command", rule, result);
        }
    }

    async fn teardown(&mut self) -> Result<(), String> {
        match self.dir.take() {
            Some(d) => d.close().map_err(|e| e.to_string()),
            None => Ok(()),
        }
    }
}
