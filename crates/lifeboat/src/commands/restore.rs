//! `lifeboat restore`: plan, then act.
//!
//! Plan: pick the snapshot (`latest` = newest complete, non-emergency), read its manifest,
//! look at the destination (does it exist, is it empty), and list the steps. `--dry-run`
//! prints the plan and stops. Act: refuse to overwrite without `--force`; with it, take an
//! emergency backup of what is there first; stream the dump into `pg_restore` (one
//! transaction, so a failed restore leaves the destination as it was); then count rows and
//! compare with the manifest (a mismatch exits 3). Files are restored below `--to-dir` and
//! every file's size and hash is checked against the manifest.

use std::{
    io::Read,
    path::{Path, PathBuf},
    sync::Arc,
};

use lifeboat_core::{
    Manifest, Redacted, TargetConfig, TargetKind,
    config::PostgresMode,
    manifest::{FileRecord, FilesManifest, TableRecord},
};
use lifeboat_postgres::{
    PgTools, Target,
    restore::{self as pg, RowCheck},
};
use lifeboat_repo::{LockKind, Repo, RestoreSummary, SnapshotInfo};
use serde::Serialize;
use serde_json::json;
use sha2::Digest;

use super::{
    Context, backup_target,
    dump_load::{Load, load_dump, read_toc},
};
use crate::{
    cli::RestoreArgs,
    error::{CliError, CliResult, FsContext},
    output,
};

#[derive(Debug, Serialize)]
pub(super) struct Plan {
    pub(super) target: String,
    pub(super) snapshot: String,
    pub(super) snapshot_time: String,
    pub(super) destination: String,
    pub(super) steps: Vec<String>,
    /// Existing data would be overwritten (needs --force, takes an emergency backup).
    pub(super) overwrites: bool,
}

impl Plan {
    pub(super) fn new(
        target: &str,
        snapshot: &SnapshotInfo,
        destination: String,
        steps: Vec<String>,
        overwrites: bool,
    ) -> Self {
        Self {
            target: target.to_string(),
            snapshot: snapshot.id.clone(),
            snapshot_time: output::time(&snapshot.time),
            destination,
            steps,
            overwrites,
        }
    }

    /// `--dry-run`: the plan, and whether the real run would refuse (`why`).
    pub(super) fn print_dry_run(&self, ctx: &Context, force: bool, why: &str) {
        let needs_force = self.overwrites && !force;
        if ctx.json {
            output::json(&json!({ "dry_run": true, "plan": self, "needs_force": needs_force }));
            return;
        }
        self.print(true);
        if needs_force {
            outln!("  (would refuse without --force: {why})");
        }
        outln!("nothing was changed");
    }

    pub(super) fn print(&self, dry_run: bool) {
        outln!(
            "{}restore `{}` from snapshot {} ({})",
            if dry_run { "plan (dry run): " } else { "" },
            self.target,
            &self.snapshot[..8.min(self.snapshot.len())],
            self.snapshot_time
        );
        outln!("  into {}", self.destination);
        for (i, s) in self.steps.iter().enumerate() {
            outln!("  {}. {s}", i + 1);
        }
    }
}

pub async fn run(ctx: &Context, args: RestoreArgs) -> CliResult<i32> {
    let config = ctx.load_config()?;
    let Some(target_cfg) = config.target(&args.target).cloned() else {
        let known: Vec<&str> = config.targets.keys().map(String::as_str).collect();
        return Err(CliError::usage(
            format!("no target `{}` in the config", args.target),
            Some(format!("configured targets: {}", known.join(", "))),
        ));
    };
    let repo = ctx.open_repo(&config).await?;
    if target_cfg.mode == Some(PostgresMode::Physical) {
        let lock_repo = repo.clone();
        let _lock = tokio::task::spawn_blocking(move || {
            lock_repo.lock(LockKind::Shared, "lifeboat restore")
        })
        .await??;
        return super::pitr::restore_physical(ctx, &args, &repo, &target_cfg).await;
    }
    // `--time T`: the newest backup taken at or before T.
    let at = match &args.pitr.time {
        Some(_) if args.snapshot != "latest" => {
            return Err(CliError::usage(
                "give `--snapshot` or `--time`, not both",
                None,
            ));
        }
        Some(t) => Some(lifeboat_engine::time::parse_time(t).map_err(|e| {
            CliError::usage(e, Some("RFC 3339, or `2026-11-22 10:01:00+00`".into()))
        })?),
        None => None,
    };
    let (r, name, wanted) = (repo.clone(), args.target.clone(), args.snapshot.clone());
    let snapshot = tokio::task::spawn_blocking(move || r.find_snapshot_at(&name, &wanted, at))
        .await?
        .map_err(|e| {
            CliError::from(e)
                .context("cannot choose a snapshot")
                .with_hint(format!(
                    "list them with `lifeboat snapshots {}`",
                    args.target
                ))
        })?;
    let manifest = match &snapshot.manifest {
        Ok(m) if m.complete => m.clone(),
        Ok(_) => {
            return Err(CliError::failure(
                format!("snapshot `{}` is an incomplete backup", snapshot.short_id()),
                Some("choose another with `--snapshot`".into()),
            ));
        }
        Err(e) => {
            return Err(CliError::failure(
                format!(
                    "snapshot `{}` has no readable manifest: {e}",
                    snapshot.short_id()
                ),
                None,
            ));
        }
    };
    let lock_repo = repo.clone();
    let _lock =
        tokio::task::spawn_blocking(move || lock_repo.lock(LockKind::Shared, "lifeboat restore"))
            .await??;
    match target_cfg.kind {
        TargetKind::Postgres => {
            restore_postgres(ctx, &args, &repo, &target_cfg, &snapshot, &manifest).await
        }
        TargetKind::Files => restore_files(ctx, &args, &repo, &snapshot, &manifest).await,
        TargetKind::Command => {
            super::command_target::restore(ctx, &args, &repo, &target_cfg, &snapshot, &manifest)
                .await
        }
        TargetKind::Bucket => {
            super::bucket_target::restore(ctx, &args, &repo, &target_cfg, &snapshot, &manifest)
                .await
        }
        TargetKind::Redis => {
            super::redis_target::restore(ctx, &args, &repo, &target_cfg, &snapshot, &manifest).await
        }
    }
}

async fn restore_postgres(
    ctx: &Context,
    args: &RestoreArgs,
    repo: &Arc<Repo>,
    target_cfg: &TargetConfig,
    snapshot: &SnapshotInfo,
    manifest: &Manifest,
) -> CliResult<i32> {
    if args.to_dir.is_some() {
        return Err(CliError::usage(
            "`--to-dir` is for files targets; a PostgreSQL target restores into a database",
            Some("use `--to postgres://...`".into()),
        ));
    }
    let pgm = manifest
        .postgres
        .as_ref()
        .ok_or_else(|| CliError::failure("the manifest has no PostgreSQL section", None))?;
    let url = match &args.to {
        Some(u) => Redacted::new(u.clone()),
        None => target_cfg.connection_url(&args.target)?,
    };
    let dest = Target::parse(&url)?;
    let table: Option<TableRecord> = match &args.table {
        Some(t) => Some(pgm.table(t).cloned().ok_or_else(|| {
            let names: Vec<String> = pgm.tables.iter().map(TableRecord::qualified).collect();
            CliError::failure(
                format!("table `{t}` is not in snapshot `{}`", snapshot.short_id()),
                Some(format!("tables in it: {}", names.join(", "))),
            )
        })?),
        None => None,
    };
    let state = pg::inspect(&dest).await?;
    let existing_table_rows = match (&table, state.exists) {
        (Some(t), true) => pg::table_rows(&dest, t).await?,
        _ => None,
    };

    // Plan.
    let mut steps = Vec::new();
    let overwrites = match &table {
        Some(_) => existing_table_rows.is_some(),
        None => state.exists && state.tables > 0,
    };
    if !state.exists {
        steps.push(format!("create database `{}`", dest.database()));
    }
    if overwrites {
        steps.push(format!(
            "emergency backup of database `{}` (tagged `emergency`)",
            dest.database()
        ));
    }
    let dump_path = pgm.dump.path.clone();
    let restore_step = match (&table, overwrites) {
        (Some(t), true) => format!(
            "replace table `{}` ({} rows now) with its {} rows, indexes and constraints",
            t.qualified(),
            existing_table_rows.unwrap_or(0),
            output::thousands(t.rows)
        ),
        (Some(t), false) => format!(
            "restore table `{}` ({} rows) with its indexes and constraints",
            t.qualified(),
            output::thousands(t.rows)
        ),
        (None, true) => format!(
            "restore {} over the existing {} tables (pg_restore --clean, one transaction)",
            output::bytes(pgm.dump.bytes),
            state.tables
        ),
        (None, false) => format!(
            "restore {} dump ({} tables, {} rows)",
            output::bytes(pgm.dump.bytes),
            pgm.tables.len(),
            output::thousands(pgm.total_rows())
        ),
    };
    // Several jobs cannot share one transaction. Only a database this restore creates can
    // be loaded in parallel, because only that one can be put back as it was (dropped) if
    // the load fails part-way; anywhere else the restore is one transaction.
    let parallel = args.jobs > 1 && !state.exists && table.is_none();
    let jobs = if parallel { args.jobs } else { 1 };
    let opts = pg::RestoreOptions {
        clean: overwrites,
        keep_owners: args.keep_owners,
        jobs,
        list_file: None,
        input: None,
        section: None,
    };
    let load = Load::planned(pgm, &opts, table.is_some());
    let one_transaction = if args.jobs > 1 && !parallel {
        " in one transaction (`--jobs` applies to a database the restore creates)"
    } else {
        ""
    };
    steps.push(format!(
        "{restore_step}{}{one_transaction}",
        load.describe(jobs)
    ));
    let verify_tables: Vec<TableRecord> = match &table {
        Some(t) => vec![t.clone()],
        None => pgm.tables.clone(),
    };
    steps.push(format!(
        "verify row counts of {} table(s) against the manifest",
        verify_tables.len()
    ));
    let plan = Plan::new(
        &args.target.clone(),
        snapshot,
        dest.redacted(),
        steps,
        overwrites,
    );
    if args.dry_run {
        plan.print_dry_run(ctx, args.force, "the destination holds data");
        return Ok(0);
    }
    if overwrites && !args.force {
        let what = match &table {
            Some(t) => format!(
                "table `{}` exists in database `{}`",
                t.qualified(),
                dest.database()
            ),
            None => format!(
                "database `{}` on `{}` is not empty ({} tables)",
                dest.database(),
                dest.server(),
                state.tables
            ),
        };
        return Err(CliError::failure(
            format!("refusing to overwrite: {what}"),
            Some("restore into a new database with `--to`, or pass `--force` to overwrite it after an emergency backup".into()),
        ));
    }
    if !ctx.json {
        plan.print(false);
    }

    // Act.
    let mut emergency = None;
    if overwrites {
        ctx.say(format!(
            "taking an emergency backup of `{}`",
            dest.database()
        ));
        let report = backup_target(repo, &args.target, target_cfg, Some(url.clone()), true)
            .await
            .map_err(|e| e.context("emergency backup failed; nothing was changed"))?;
        if !ctx.json {
            outln!(
                "emergency backup: snapshot {} ({}); restore it with `lifeboat restore {} --snapshot {}`",
                &report.snapshot[..8],
                output::bytes(report.bytes),
                args.target,
                &report.snapshot[..8]
            );
        }
        emergency = Some(report.snapshot);
    }
    let tools = PgTools::find(
        pgm.server_version_num / 10_000,
        target_cfg.pg_bin_dir.as_deref(),
    )
    .or_else(|_| PgTools::newest_installed())?;
    let started = std::time::Instant::now();
    let stage = tempfile::Builder::new()
        .prefix("lifeboat-restore-")
        .tempdir()
        .fs("create a staging folder in", &std::env::temp_dir())?;
    let mut opts = opts;
    if let Some(t) = &table {
        let toc = read_toc(repo, &snapshot.id, &dump_path, &tools).await?;
        let list = pg::table_list(&toc, t);
        let list_file = stage.path().join("table.list");
        std::fs::write(&list_file, list).fs("write", &list_file)?;
        opts.list_file = Some(list_file);
    }
    // Created only now, after everything that can fail before the load: a failed or stopped
    // load drops it again.
    if !state.exists {
        pg::create_database(&dest).await?;
    }
    // A signal stops the load: the server ends the restore's sessions (rolling back its
    // transaction), a database the restore created is dropped again, and it exits 130.
    let cancel = crate::interrupt::on_signal("stopping the restore; putting the database back");
    let loading = load_dump(repo, &snapshot.id, pgm, &tools, &dest, opts, stage.path());
    let Ok(loaded) = cancel.guard(loading).await else {
        let undone = if state.exists {
            pg::end_restore_sessions(&dest).await.map(|ended| {
                if ended > 0 {
                    format!(
                        "its transaction was rolled back, database `{}` is as it was",
                        dest.database()
                    )
                } else {
                    format!(
                        "no restore session was open on database `{}`: nothing was committed unless the restore had just finished",
                        dest.database()
                    )
                }
            })
        } else {
            pg::drop_database(&dest)
                .await
                .map(|()| format!("database `{}` was dropped again", dest.database()))
        };
        let undone = undone.unwrap_or_else(|e| {
            format!(
                "putting database `{}` back failed ({e}); check it by hand",
                dest.database()
            )
        });
        eprintln!("error: interrupted: the restore was stopped; {undone}");
        return Ok(crate::interrupt::EXIT_INTERRUPTED);
    };
    let load = match loaded {
        Ok(load) => load,
        Err(e) if !state.exists => {
            // A parallel load is no transaction: what it created goes with the database.
            let dropped = match pg::drop_database(&dest).await {
                Ok(()) => format!("database `{}` was dropped again", dest.database()),
                Err(d) => format!(
                    "database `{}` could not be dropped again ({d}); drop it by hand",
                    dest.database()
                ),
            };
            return Err(e.context(format!("restore failed, {dropped}")));
        }
        Err(e) => {
            return Err(e.context(format!(
                "restore failed and was rolled back, database `{}` is as it was",
                dest.database()
            )));
        }
    };
    let restore_secs = started.elapsed().as_secs_f64();

    let checks = pg::verify_rows(&dest, &verify_tables).await?;
    let ok = checks.iter().all(RowCheck::ok);
    if ctx.json {
        output::json(&json!({
            "plan": plan,
            "emergency_snapshot": emergency,
            "restore_seconds": restore_secs,
            "load": load,
            "row_checks": checks,
            "verified": ok,
        }));
    } else {
        outln!("restored in {restore_secs:.1} s; row counts against the manifest:");
        let rows: Vec<Vec<String>> = checks
            .iter()
            .map(|c| {
                vec![
                    c.table.clone(),
                    output::thousands(c.expected),
                    c.restored.map_or("missing".into(), output::thousands),
                    if c.ok() {
                        "ok".into()
                    } else {
                        "MISMATCH".into()
                    },
                ]
            })
            .collect();
        output::table(&["TABLE", "EXPECTED", "RESTORED", ""], &rows);
        if ok {
            outln!("verified: {} table(s) match", checks.len());
        }
    }
    if !ok {
        eprintln!("error: restored row counts differ from the manifest");
        return Ok(3);
    }
    Ok(0)
}

#[derive(Debug, Serialize)]
pub(super) struct FileCheck {
    pub path: String,
    pub ok: bool,
    pub problem: Option<String>,
}

async fn restore_files(
    ctx: &Context,
    args: &RestoreArgs,
    repo: &Arc<Repo>,
    snapshot: &SnapshotInfo,
    manifest: &Manifest,
) -> CliResult<i32> {
    let Some(dir) = args.to_dir.clone() else {
        return Err(CliError::usage(
            "a files target is restored with `--to-dir DIR`",
            Some(
                "files keep their absolute paths below DIR; restoring in place comes later".into(),
            ),
        ));
    };
    if args.to.is_some() || args.table.is_some() {
        return Err(CliError::usage(
            "`--to` and `--table` are for PostgreSQL targets",
            None,
        ));
    }
    let fm = manifest
        .files
        .clone()
        .ok_or_else(|| CliError::failure("the manifest has no files section", None))?;
    let existing: Vec<&str> = fm
        .files
        .iter()
        .filter(|f| below(&dir, &f.path).exists())
        .map(|f| f.path.as_str())
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
        output::bytes(fm.total_bytes)
    ));
    steps.push("verify every file's size and SHA-256 against the manifest".into());
    let plan = Plan::new(
        &args.target.clone(),
        snapshot,
        dir.display().to_string(),
        steps,
        overwrites,
    );
    if args.dry_run {
        plan.print_dry_run(
            ctx,
            args.force,
            &format!("{} file(s) exist", existing.len()),
        );
        return Ok(0);
    }
    if overwrites && !args.force {
        return Err(CliError::failure(
            format!(
                "refusing to overwrite {} existing file(s) below `{}` (first: `{}`)",
                existing.len(),
                dir.display(),
                existing[0]
            ),
            Some("restore into an empty folder, or pass `--force` to overwrite after an emergency backup".into()),
        ));
    }
    if !ctx.json {
        plan.print(false);
    }
    let mut emergency = None;
    if overwrites {
        let paths: Vec<PathBuf> = existing.iter().map(|p| below(&dir, p)).collect();
        let cfg = TargetConfig {
            kind: TargetKind::Files,
            paths: Some(paths),
            ..Default::default()
        };
        let report = backup_target(repo, &args.target, &cfg, None, true)
            .await
            .map_err(|e| e.context("emergency backup failed; nothing was changed"))?;
        if !ctx.json {
            outln!("emergency backup: snapshot {}", &report.snapshot[..8]);
        }
        emergency = Some(report.snapshot);
    }
    let (summary, checks) = restore_files_to(repo, &snapshot.id, &args.target, &fm, &dir).await?;
    let bad: Vec<&FileCheck> = checks.iter().filter(|c| !c.ok).collect();
    if ctx.json {
        output::json(&json!({
            "plan": plan, "emergency_snapshot": emergency,
            "files_restored": summary.files, "bytes": summary.bytes,
            "file_checks_failed": bad, "verified": bad.is_empty(),
        }));
    } else {
        outln!(
            "restored {} file(s) into `{}`; {} of {} verified by size and SHA-256",
            summary.files + summary.unchanged,
            dir.display(),
            checks.len() - bad.len(),
            checks.len()
        );
        for b in &bad {
            outln!(
                "  MISMATCH {}: {}",
                b.path,
                b.problem.as_deref().unwrap_or("")
            );
        }
    }
    Ok(if bad.is_empty() { 0 } else { 3 })
}

/// Restore a files snapshot below `dir` and check every file's size and SHA-256 against
/// the manifest.
pub(super) async fn restore_files_to(
    repo: &Arc<Repo>,
    snapshot_id: &str,
    target: &str,
    fm: &FilesManifest,
    dir: &Path,
) -> CliResult<(RestoreSummary, Vec<FileCheck>)> {
    let (r, id, src, d) = (
        repo.clone(),
        snapshot_id.to_string(),
        format!("{target}/files"),
        dir.to_path_buf(),
    );
    let summary =
        tokio::task::spawn_blocking(move || r.restore_dir(&id, &src, &d, false)).await??;
    let (files, dir) = (fm.files.clone(), dir.to_path_buf());
    let checks = tokio::task::spawn_blocking(move || verify_files(&files, &dir)).await?;
    Ok((summary, checks))
}

/// Check every restored file's size and SHA-256 against its manifest record.
pub(super) fn verify_files(files: &[FileRecord], dir: &Path) -> Vec<FileCheck> {
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
