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
    os::unix::process::CommandExt,
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
    drill::rehearse,
    crate::restore::live::output
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
                    match pipe_into(repo, &id, &cm.output.path, &n, &t, &cmd, Some(&cx.cancel))
                        .await
                    {
                        Err(_) if cx.cancel.is_cancelled() => {
                            return Err(put_back(&cx, &n, &t, &cmd).await);
                        }
                        fed => fed?,
                    }
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

/// After a signal stopped the restore command part-way: the command runs again with the
/// emergency snapshot (what the backup command said before the restore), to completion,
/// so that the service is as it was. The error says what was done, or what could not be.
async fn put_back(cx: &ActCx, name: &str, target: &TargetConfig, command: &str) -> EngineError {
    let Some(snap) = &cx.emergency_snapshot else {
        return EngineError::interrupted(format!(
            "interrupted: the restore command of `{name}` was stopped part-way, and there is no emergency snapshot to put it back from (the emergency backup failed and `--force` went on)"
        ));
    };
    let (r, id, target_name) = (cx.engine.repo.clone(), snap.to_string(), name.to_string());
    let saved = r
        .call(move |r| r.find_snapshot(&target_name, &id))
        .await
        .map_err(|e| e.to_string())
        .and_then(|i| {
            i.manifest
                .ok()
                .and_then(|m| m.command)
                .ok_or_else(|| "it holds no command output".to_string())
        });
    let again = match saved {
        Ok(cm) => pipe_into(
            &cx.engine.repo,
            snap.as_str(),
            &cm.output.path,
            name,
            target,
            command,
            None,
        )
        .await
        .map_err(|e| e.message),
        Err(e) => Err(e),
    };
    match again {
        Ok(_) => EngineError::interrupted(format!(
            "interrupted: the restore command of `{name}` was stopped part-way; it ran again with the emergency snapshot {}, so `{name}` is as it was",
            snap.short()
        )),
        Err(e) => EngineError::interrupted(format!(
            "interrupted: the restore command of `{name}` was stopped part-way, and running it again with the emergency snapshot {} failed: {e}",
            snap.short()
        ))
        .with_hint(format!(
            "restore the emergency snapshot by hand: `lifeboat restore {name} --snapshot {}`",
            snap.short()
        )),
    }
}

/// A writer that fails once `stop` is set: the feed of a command that is being stopped.
struct Stopping<W> {
    inner: W,
    stop: Option<crate::cancel::Cancel>,
}

impl<W: std::io::Write> std::io::Write for Stopping<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self
            .stop
            .as_ref()
            .is_some_and(crate::cancel::Cancel::is_cancelled)
        {
            return Err(std::io::Error::other("the restore was stopped"));
        }
        self.inner.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Stream `path` of `snapshot` into `command`'s stdin and wait for it. Once `cancel` is set
/// the feed stops and the command is killed (an interrupted error).
async fn pipe_into(
    repo: &Arc<Repo>,
    snapshot: &str,
    path: &str,
    name: &str,
    target: &TargetConfig,
    command: &str,
    cancel: Option<&crate::cancel::Cancel>,
) -> EngineResult<(u64, String)> {
    let mut cmd = shell(command, name, target);
    // Its stdout goes to our stderr: ours is for results (and `--json`). In a process group
    // of its own, so that a stop kills what it started too.
    cmd.stdin(Stdio::piped())
        .stdout(std::io::stderr())
        .process_group(0);
    let mut child = cmd.spawn().map_err(|e| {
        EngineError::failure(
            format!("cannot start the restore command of `{name}`: {e}"),
            Some("check `restore` and `workdir` of the target".into()),
        )
    })?;
    let stdin = child.stdin.take();
    let (r, id, p) = (repo.clone(), snapshot.to_string(), path.to_string());
    let stop = cancel.cloned();
    let feed = r.start(move |r| {
        let mut w = Measured::new(Stopping {
            inner: stdin.expect("piped stdin"),
            stop,
        });
        let result = r.dump(&id, &p, &mut w);
        let measured = (w.bytes, hex::encode(w.hash.finalize()));
        // Dropping `w` closes the command's stdin: its end of input.
        (result, measured)
    });
    // The command's end, or the signal: then it is killed.
    let status = loop {
        match child.try_wait() {
            Ok(None) => {}
            done => break done.map(|s| s.expect("exited")),
        }
        if cancel.is_some_and(crate::cancel::Cancel::is_cancelled) {
            // The command and whatever it started.
            drop(crate::cancel::GroupKill(child.id()));
            let _ = lifeboat_repo::blocking(move || child.wait()).await;
            let _ = feed.await;
            return Err(EngineError::interrupted(format!(
                "the restore command of `{name}` was stopped"
            )));
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    .doing("wait for the command")?;
    let fed = feed.await;
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
