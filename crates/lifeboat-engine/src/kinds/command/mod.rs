//! `kind = "command"` targets: any program's output is the backup (a search index export,
//! `git bundle`, a service's dump), and another program gets it back on stdin.
//!
//! backup: `sh -c <backup>` runs with the target's `env` and `workdir`; its stdout streams
//! into the repository as `<target>/data.out`, measured and hashed on the way. A non-zero
//! exit (or a signal) fails the backup and deletes the snapshot: a failed export never
//! looks like a backup.
//!
//! restore: lifeboat cannot see what the restore command overwrites, so it first runs the
//! backup command as an emergency backup (refusing to go on if that fails, unless
//! `--force`), then streams the output into `sh -c <restore>` and checks that exactly the
//! recorded bytes went in. `--to-dir DIR` writes the output to `DIR/<target>.out` instead.

mod drill;

use super::Summary;
use std::{
    process::{Command, Stdio},
    sync::Arc,
};

use lifeboat_core::{
    Manifest, TargetConfig, TargetKind,
    manifest::{CommandManifest, StreamRecord},
    redact_url,
};
use lifeboat_postgres::child::ChildStream;
use lifeboat_repo::{Content, Repo, SourceEntry};
use serde_json::json;
use sha2::Digest;

use super::{BackupJob, Stored};
use crate::{
    Engine, EngineError, EngineResult, IoContext,
    backup::store::{manifest_base, store_with_manifest},
    format,
    restore::{
        act::{ActCx, RestoreOutcome, RestorePlan, act},
        choose::chosen_section,
        plan::{Emergency, Plan, Refusal, RestoreRequest},
    },
    snapshot_io::{Measured, write_file},
};

kind!(
    CommandKind,
    "command",
    backup,
    plan,
    summary,
    drill::rehearse
);

/// What a snapshot holds: the command's output.
fn summary(m: &Manifest) -> Summary {
    m.command
        .as_ref()
        .map_or_else(Summary::default, |c| Summary {
            words: format!("command output ({})", format::bytes(c.output.bytes)),
            ..Summary::default()
        })
}

/// The snapshot path of a command target's output.
fn output_path(name: &str) -> String {
    // Before `lifeboat.json` in the archiver's order, so the manifest never waits for an
    // entry that has not been dispatched yet.
    format!("{name}/data.out")
}

/// `sh -c command` with the target's environment and working directory.
fn shell(command: &str, name: &str, target: &TargetConfig) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(command).env("LIFEBOAT_TARGET", name);
    if let Some(env) = &target.env {
        cmd.envs(env);
    }
    if let Some(dir) = &target.workdir {
        cmd.current_dir(dir);
    }
    cmd
}

async fn backup(job: BackupJob<'_>) -> EngineResult<Stored> {
    let (repo, name, target) = (job.repo, job.name, job.target);
    let command = target.backup.clone().unwrap_or_default();
    let child = ChildStream::spawn(
        &format!("backup command of `{name}`"),
        shell(&command, name, target),
    )
    .map_err(|e| {
        EngineError::failure(
            e.to_string(),
            Some("check `backup` and `workdir` of the target".into()),
        )
    })?;
    let path = output_path(name);
    let (entry, stat) = SourceEntry::new(&path, Content::Stream(Box::new(child)));
    let mut manifest = manifest_base(
        name,
        TargetKind::Command,
        "command",
        job.started_at,
        job.emergency,
    );
    let produce = move || {
        let out = stat.wait()?;
        manifest.command = Some(CommandManifest {
            backup: redact_url(&command),
            output: StreamRecord {
                path,
                bytes: out.bytes,
                sha256: out.sha256,
            },
        });
        Ok(manifest)
    };
    store_with_manifest(repo, name, "command", job.emergency, vec![entry], produce).await
}

async fn plan(
    engine: &Engine,
    request: &RestoreRequest,
    target: &TargetConfig,
) -> EngineResult<RestorePlan> {
    let name = &request.target;
    let (snapshot, cm) = chosen_section(engine, request, |m| &m.command, "command output").await?;
    let to_file = request
        .to_dir
        .as_ref()
        .map(|d| d.join(format!("{name}.out")));
    let destination = match (&to_file, &target.restore) {
        (Some(f), _) => f.display().to_string(),
        (None, Some(cmd)) => format!("`{}` (on stdin)", redact_url(cmd)),
        (None, None) => {
            return Err(EngineError::usage(
                format!("target `{name}` has no `restore` command"),
                Some(
                    "add `restore = \"...\"` to the target, or write the output to a folder with `--to-dir`"
                        .into(),
                ),
            ));
        }
    };
    let mut steps = Vec::new();
    if to_file.is_none() {
        steps.push(format!(
            "emergency backup: run the backup command first (`{}`)",
            cm.backup
        ));
    }
    steps.push(format!(
        "stream {} into {destination}",
        format::bytes(cm.output.bytes)
    ));
    steps.push("check that exactly the recorded bytes (size and SHA-256) went in".into());
    let exists = to_file.as_ref().is_some_and(|f| f.exists());
    let plan = Plan::new(name, &snapshot, destination.clone(), steps, exists);
    let (n, t, id, file) = (
        name.clone(),
        target.clone(),
        snapshot.id.clone(),
        to_file.clone(),
    );
    let mut restore = RestorePlan::new(
        plan,
        act(move |cx: ActCx| async move {
            let repo = &cx.engine.repo;
            let (bytes, sha256) = match &file {
                Some(f) => write_file(repo, &id, &cm.output.path, f).await?,
                None => {
                    let cmd = t.restore.clone().unwrap_or_default();
                    pipe_into(repo, &id, &cm.output.path, &n, &t, &cmd).await?
                }
            };
            let verified = bytes == cm.output.bytes && sha256 == cm.output.sha256;
            let line = if verified {
                format!(
                    "restored {} into {destination}; size and SHA-256 match the manifest",
                    format::bytes(bytes)
                )
            } else {
                format!(
                    "MISMATCH: {bytes} bytes went in, the manifest says {} (or the SHA-256 differs)",
                    cm.output.bytes
                )
            };
            Ok(RestoreOutcome::new(
                verified,
                "what went in differs from the manifest",
                json!({ "bytes": bytes, "verified": verified }),
                vec![line],
            ))
        }),
    );
    match &to_file {
        Some(f) if exists => {
            restore.refusal = Some(Refusal {
                message: format!("`{}` exists", f.display()),
                hint: "restore into another folder, or move the file away first".into(),
                forceable: false,
                why: "the file exists".into(),
            });
        }
        Some(_) => {}
        None => {
            restore.emergency = Some(Emergency {
                target: target.clone(),
                source: None,
                optional_with_force: true,
                what: format!("`{name}` (its backup command)"),
            });
        }
    }
    Ok(restore)
}

async fn pipe_into(
    repo: &Arc<Repo>,
    snapshot: &str,
    path: &str,
    name: &str,
    target: &TargetConfig,
    command: &str,
) -> EngineResult<(u64, String)> {
    let mut cmd = shell(command, name, target);
    // Its stdout goes to our stderr: ours is for results (and `--json`).
    cmd.stdin(Stdio::piped()).stdout(std::io::stderr());
    let mut child = cmd.spawn().map_err(|e| {
        EngineError::failure(
            format!("cannot start the restore command of `{name}`: {e}"),
            Some("check `restore` and `workdir` of the target".into()),
        )
    })?;
    let stdin = child.stdin.take();
    let (r, id, p) = (repo.clone(), snapshot.to_string(), path.to_string());
    let fed = r
        .start(move |r| {
            let mut w = Measured::new(stdin.expect("piped stdin"));
            let result = r.dump(&id, &p, &mut w);
            let measured = (w.bytes, hex::encode(w.hash.finalize()));
            // Dropping `w` closes the command's stdin: its end of input.
            (result, measured)
        })
        .await;
    let status = lifeboat_repo::blocking(move || child.wait())
        .await
        .doing("wait for the command")?;
    if !status.success() {
        return Err(EngineError::failure(
            format!("the restore command of `{name}` failed ({status})"),
            Some("its output is above; the emergency backup holds what was there before".into()),
        ));
    }
    let (result, measured) = fed;
    result.map_err(|e| {
        EngineError::from(e).context("streaming the backup into the restore command")
    })?;
    Ok(measured)
}
