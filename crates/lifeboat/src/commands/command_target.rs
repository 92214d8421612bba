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
use lifeboat_repo::{Content, Repo, SnapshotInfo, SourceEntry};
use serde_json::json;
use sha2::Digest;

use super::{
    Context,
    backup::{manifest_base, store_with_manifest},
    backup_target,
    snapshot_io::{Measured, section, write_file},
};
use crate::{
    cli::RestoreArgs,
    error::{CliError, CliResult, IoContext},
    output,
};

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

pub async fn backup(
    repo: &Arc<Repo>,
    name: &str,
    target: &TargetConfig,
    emergency: bool,
    started_at: jiff::Timestamp,
) -> CliResult<(SnapshotInfo, Vec<u8>)> {
    let command = target.backup.clone().unwrap_or_default();
    let child = ChildStream::spawn(
        &format!("backup command of `{name}`"),
        shell(&command, name, target),
    )
    .map_err(|e| {
        CliError::failure(
            e.to_string(),
            Some("check `backup` and `workdir` of the target".into()),
        )
    })?;
    let path = output_path(name);
    let (entry, stat) = SourceEntry::new(&path, Content::Stream(Box::new(child)));
    let mut manifest = manifest_base(name, TargetKind::Command, "command", started_at);
    manifest.emergency = emergency;
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
    store_with_manifest(repo, name, "command", emergency, vec![entry], produce).await
}

pub async fn restore(
    ctx: &Context,
    args: &RestoreArgs,
    repo: &Arc<Repo>,
    target: &TargetConfig,
    snapshot: &SnapshotInfo,
    manifest: &Manifest,
) -> CliResult<i32> {
    let name = &args.target;
    let cm = section(&manifest.command, snapshot, "command output")?;
    let to_file = args.to_dir.as_ref().map(|d| d.join(format!("{name}.out")));
    let destination = match (&to_file, &target.restore) {
        (Some(f), _) => f.display().to_string(),
        (None, Some(cmd)) => format!("`{}` (on stdin)", redact_url(cmd)),
        (None, None) => {
            return Err(CliError::usage(
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
        output::bytes(cm.output.bytes)
    ));
    steps.push("check that exactly the recorded bytes (size and SHA-256) went in".into());
    let overwrites = to_file.as_ref().is_some_and(|f| f.exists());
    let plan = super::restore::Plan::new(name, snapshot, destination.clone(), steps, overwrites);
    if args.dry_run {
        plan.print_dry_run(ctx, false, "the file exists");
        return Ok(0);
    }
    if let Some(f) = &to_file
        && f.exists()
    {
        return Err(CliError::failure(
            format!("`{}` exists", f.display()),
            Some("restore into another folder, or move the file away first".into()),
        ));
    }
    if !ctx.json {
        plan.print(false);
    }
    let mut emergency = None;
    if to_file.is_none() {
        match backup_target(repo, name, target, None, true).await {
            Ok(report) => {
                if !ctx.json {
                    outln!("emergency backup: snapshot {}", &report.snapshot[..8]);
                }
                emergency = Some(report.snapshot);
            }
            Err(e) if args.force => {
                log::warn!(
                    "the emergency backup failed ({}); restoring anyway (--force)",
                    e.message
                );
            }
            Err(e) => {
                return Err(e
                    .context("emergency backup failed; nothing was changed")
                    .with_hint(
                        "the current state could not be saved; `--force` restores without it"
                            .into(),
                    ));
            }
        }
    }
    let (bytes, sha256) = match &to_file {
        Some(f) => write_file(repo, &snapshot.id, &cm.output.path, f).await?,
        None => {
            let cmd = target.restore.clone().unwrap_or_default();
            pipe_into(repo, &snapshot.id, &cm.output.path, name, target, &cmd).await?
        }
    };
    let verified = bytes == cm.output.bytes && sha256 == cm.output.sha256;
    if ctx.json {
        output::json(&json!({
            "plan": plan, "emergency_snapshot": emergency, "bytes": bytes,
            "verified": verified,
        }));
    } else if verified {
        outln!(
            "restored {} into {destination}; size and SHA-256 match the manifest",
            output::bytes(bytes)
        );
    } else {
        outln!(
            "MISMATCH: {bytes} bytes went in, the manifest says {} (or the SHA-256 differs)",
            cm.output.bytes
        );
    }
    Ok(if verified { 0 } else { 3 })
}

async fn pipe_into(
    repo: &Arc<Repo>,
    snapshot: &str,
    path: &str,
    name: &str,
    target: &TargetConfig,
    command: &str,
) -> CliResult<(u64, String)> {
    let mut cmd = shell(command, name, target);
    // Its stdout goes to our stderr: ours is for results (and `--json`).
    cmd.stdin(Stdio::piped()).stdout(std::io::stderr());
    let mut child = cmd.spawn().map_err(|e| {
        CliError::failure(
            format!("cannot start the restore command of `{name}`: {e}"),
            Some("check `restore` and `workdir` of the target".into()),
        )
    })?;
    let stdin = child.stdin.take();
    let (r, id, p) = (repo.clone(), snapshot.to_string(), path.to_string());
    let fed = tokio::task::spawn_blocking(move || {
        let mut w = Measured::new(stdin.expect("piped stdin"));
        let result = r.dump(&id, &p, &mut w);
        let measured = (w.bytes, hex::encode(w.hash.finalize()));
        // Dropping `w` closes the command's stdin: its end of input.
        (result, measured)
    })
    .await?;
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await?
        .doing("wait for the command")?;
    if !status.success() {
        return Err(CliError::failure(
            format!("the restore command of `{name}` failed ({status})"),
            Some("its output is above; the emergency backup holds what was there before".into()),
        ));
    }
    let (result, measured) = fed;
    result
        .map_err(|e| CliError::from(e).context("streaming the backup into the restore command"))?;
    Ok(measured)
}
