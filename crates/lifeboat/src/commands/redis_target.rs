//! `kind = "redis"` targets.
//!
//! backup: the server's RDB snapshot, taken over the replication protocol (no server
//! setting changed, no file on lifeboat's side), streamed into the repository as
//! `<target>/dump.rdb`, measured and hashed; key counts per database just before and just
//! after, and the Redis version, go into the manifest. A connection that ends early fails
//! the backup and leaves no snapshot.
//!
//! restore: `--to-dir DIR` writes `DIR/dump.rdb` for a server to start from. Otherwise the
//! RDB is loaded into a scratch `redis-server` and every key is copied with `DUMP`/`RESTORE`
//! (TTLs kept) into the running destination (`--to redis://...`, default the target's own
//! server). A destination holding keys is refused without `--force`; with it, an emergency
//! backup of the destination comes first. Afterwards the keys per database are compared
//! with the manifest: a mismatch exits 3.

use std::{path::Path, sync::Arc};

use lifeboat_core::{
    Manifest, Redacted, TargetConfig, TargetKind,
    manifest::{RedisManifest, StreamRecord},
    redact_url,
};
use lifeboat_redis::{Conn, RdbStream, RedisError, RedisUrl, Scratch, copy_keys};
use lifeboat_repo::{Content, Repo, SnapshotInfo, SourceEntry};
use serde_json::json;

use super::{
    Context,
    backup::{manifest_base, store_with_manifest},
    backup_target,
    restore::Plan,
    snapshot_io::{section, write_file},
};
use crate::{
    cli::RestoreArgs,
    error::{CliError, CliResult, FsContext},
    output,
};

fn by_name(
    counts: std::collections::BTreeMap<u32, u64>,
) -> std::collections::BTreeMap<String, u64> {
    counts
        .into_iter()
        .map(|(db, n)| (db.to_string(), n))
        .collect()
}

pub async fn backup(
    repo: &Arc<Repo>,
    name: &str,
    url: &Redacted,
    emergency: bool,
    started_at: jiff::Timestamp,
) -> CliResult<(SnapshotInfo, Vec<u8>)> {
    let server = RedisUrl::parse(url)?;
    let s = server.clone();
    let (version, before, stream) = tokio::task::spawn_blocking(move || {
        let mut conn = Conn::connect(&s)?;
        let version = conn.version()?;
        let before = conn.key_counts()?;
        let stream = RdbStream::open(&s)?;
        Ok::<_, RedisError>((version, before, stream))
    })
    .await??;
    let path = format!("{name}/dump.rdb");
    let (entry, stat) = SourceEntry::new(&path, Content::Stream(Box::new(stream)));
    let mut manifest = manifest_base(name, TargetKind::Redis, "rdb", started_at);
    manifest.emergency = emergency;
    let produce = move || {
        let rdb = stat.wait()?;
        let after = Conn::connect(&server)
            .and_then(|mut c| c.key_counts())
            .map_err(|e| format!("key counts after the snapshot: {e}"))?;
        manifest.redis = Some(RedisManifest {
            server: server.addr(),
            version,
            rdb: StreamRecord {
                path,
                bytes: rdb.bytes,
                sha256: rdb.sha256,
            },
            keys_before: by_name(before),
            keys_after: by_name(after),
        });
        Ok(manifest)
    };
    store_with_manifest(repo, name, "redis", emergency, vec![entry], produce).await
}

/// Keys per database of the server at `url`.
async fn key_counts(url: &RedisUrl) -> CliResult<std::collections::BTreeMap<String, u64>> {
    let u = url.clone();
    let counts =
        tokio::task::spawn_blocking(move || Conn::connect(&u).and_then(|mut c| c.key_counts()))
            .await??;
    Ok(by_name(counts))
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
    let rm = section(&manifest.redis, snapshot, "Redis snapshot")?;
    if let Some(dir) = &args.to_dir {
        return restore_to_dir(ctx, args, repo, snapshot, &rm, dir).await;
    }
    let dest_url = match &args.to {
        Some(u) => Redacted::new(u.clone()),
        None => target.connection_url(name)?,
    };
    let dest = RedisUrl::parse(&dest_url)?;
    let existing = key_counts(&dest).await?;
    let existing_keys: u64 = existing.values().sum();
    let overwrites = existing_keys > 0;
    let mut steps = Vec::new();
    if overwrites {
        steps.push(format!(
            "emergency backup of the destination ({existing_keys} keys)"
        ));
    }
    steps.push(format!(
        "load the RDB ({}, Redis {}) into a scratch redis-server",
        output::bytes(rm.rdb.bytes),
        rm.version
    ));
    steps.push("copy every key with DUMP/RESTORE, TTLs kept".into());
    steps.push("compare the keys per database with the manifest".into());
    let plan = Plan::new(
        name,
        snapshot,
        redact_url(dest_url.expose()),
        steps,
        overwrites,
    );
    if args.dry_run {
        plan.print_dry_run(
            ctx,
            args.force,
            &format!("the destination holds {existing_keys} keys"),
        );
        return Ok(0);
    }
    if overwrites && !args.force {
        return Err(CliError::failure(
            format!(
                "refusing to restore into `{}`: it holds {existing_keys} keys",
                redact_url(dest_url.expose())
            ),
            Some("restore into an empty instance, or pass `--force` to replace keys after an emergency backup".into()),
        ));
    }
    if !ctx.json {
        plan.print(false);
    }
    let mut emergency = None;
    if overwrites {
        let report = backup_target(repo, name, target, Some(dest_url.clone()), true)
            .await
            .map_err(|e| e.context("emergency backup failed; nothing was changed"))?;
        if !ctx.json {
            outln!("emergency backup: snapshot {}", &report.snapshot[..8]);
        }
        emergency = Some(report.snapshot);
    }
    let stage = tempfile::Builder::new()
        .prefix("lifeboat-redis-restore-")
        .tempdir()
        .fs("create a staging folder in", &std::env::temp_dir())?;
    let rdb = stage.path().join("dump.rdb");
    let (bytes, sha) = write_file(repo, &snapshot.id, &rm.rdb.path, &rdb).await?;
    if bytes != rm.rdb.bytes || sha != rm.rdb.sha256 {
        return Err(CliError::verification(format!(
            "the RDB read back differs from the manifest ({bytes} bytes, expected {}); nothing was changed",
            rm.rdb.bytes
        )));
    }
    let (dir, d, force) = (stage.path().to_path_buf(), dest.clone(), args.force);
    let copied = tokio::task::spawn_blocking(move || {
        let scratch = Scratch::start(&dir)?;
        copy_keys(&scratch.url(), &d, force)
    })
    .await??;
    let after = key_counts(&dest).await?;
    let mut lines = Vec::new();
    let mut ok = true;
    for db in rm.databases() {
        let restored = copied.get(&db.parse().unwrap_or(0)).copied().unwrap_or(0);
        let good = rm.plausible(&db, restored);
        ok &= good;
        lines.push(json!({
            "db": db, "restored": restored, "now": after.get(&db).copied().unwrap_or(0),
            "manifest_before": rm.keys_before.get(&db), "manifest_after": rm.keys_after.get(&db),
            "ok": good,
        }));
    }
    if ctx.json {
        output::json(&json!({
            "plan": plan, "emergency_snapshot": emergency, "databases": lines, "verified": ok,
        }));
    } else {
        for l in &lines {
            outln!(
                "  db{}: {} keys restored (manifest: {}–{}){}",
                l["db"].as_str().unwrap_or(""),
                l["restored"],
                l["manifest_before"],
                l["manifest_after"],
                if l["ok"] == true { "" } else { "  MISMATCH" }
            );
        }
        let total: u64 = copied.values().sum();
        outln!(
            "restored {total} keys into `{}`{}",
            redact_url(dest_url.expose()),
            if ok {
                "; key counts match the manifest"
            } else {
                ""
            }
        );
    }
    Ok(if ok { 0 } else { 3 })
}

async fn restore_to_dir(
    ctx: &Context,
    args: &RestoreArgs,
    repo: &Arc<Repo>,
    snapshot: &SnapshotInfo,
    rm: &RedisManifest,
    dir: &Path,
) -> CliResult<i32> {
    let file = dir.join("dump.rdb");
    let steps = vec![
        format!(
            "write the RDB ({}) to {}",
            output::bytes(rm.rdb.bytes),
            file.display()
        ),
        "check its size and SHA-256 against the manifest".into(),
    ];
    let plan = Plan::new(
        &args.target,
        snapshot,
        file.display().to_string(),
        steps,
        file.exists(),
    );
    if args.dry_run {
        plan.print_dry_run(ctx, false, "the file exists");
        return Ok(0);
    }
    if file.exists() {
        return Err(CliError::failure(
            format!("`{}` exists", file.display()),
            Some("restore into another folder, or move the file away first".into()),
        ));
    }
    let (bytes, sha) = write_file(repo, &snapshot.id, &rm.rdb.path, &file).await?;
    let ok = bytes == rm.rdb.bytes && sha == rm.rdb.sha256;
    if ctx.json {
        output::json(&json!({ "plan": plan, "file": file, "bytes": bytes, "verified": ok }));
    } else {
        outln!(
            "wrote {} ({}){}; start a server on it with `redis-server --dir {} --dbfilename dump.rdb`",
            file.display(),
            output::bytes(bytes),
            if ok {
                ", size and SHA-256 match"
            } else {
                ", MISMATCH with the manifest"
            },
            dir.display()
        );
    }
    Ok(if ok { 0 } else { 3 })
}
