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

mod drill;

use super::Summary;
use std::{collections::BTreeMap, path::Path};

use lifeboat_core::{
    Manifest, Redacted, TargetConfig, TargetKind,
    manifest::{RedisManifest, StreamRecord},
    redact_url,
};
use lifeboat_redis::{Conn, RdbStream, RedisError, RedisUrl, Scratch, copy_keys_until};
use lifeboat_repo::{Content, SnapshotInfo, SourceEntry};
use serde_json::json;

use super::{BackupJob, Stored};
use crate::{
    Engine, EngineError, EngineResult, FsContext,
    backup::store::{manifest_base, store_with_manifest},
    format,
    restore::{
        act::{ActCx, RestoreOutcome, RestorePlan, act},
        choose::chosen_section,
        plan::{Emergency, Plan, Refusal, RestoreRequest},
    },
    snapshot_io::write_file,
};

kind!(
    RedisKind,
    "redis",
    backup,
    plan,
    summary,
    drill::rehearse,
    crate::restore::live::server
);

/// What a snapshot holds: an RDB.
fn summary(m: &Manifest) -> Summary {
    m.redis.as_ref().map_or_else(Summary::default, |r| Summary {
        words: format!("RDB, {} keys", r.keys_after.values().sum::<u64>()),
        ..Summary::default()
    })
}

/// Key counts per database, keyed by the database's number as text (the manifest's form).
fn per_database(counts: BTreeMap<u32, u64>) -> BTreeMap<String, u64> {
    counts
        .into_iter()
        .map(|(db, n)| (db.to_string(), n))
        .collect()
}

async fn backup(job: BackupJob<'_>) -> EngineResult<Stored> {
    let url = job.url()?;
    let (repo, name) = (job.repo, job.name);
    let server = RedisUrl::parse(&url)?;
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
    let mut manifest = manifest_base(
        name,
        TargetKind::Redis,
        "rdb",
        job.started_at,
        job.emergency,
    );
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
            keys_before: per_database(before),
            keys_after: per_database(after),
        });
        Ok(manifest)
    };
    store_with_manifest(repo, name, "redis", job.emergency, vec![entry], produce).await
}

/// Keys per database of the server at `url`.
async fn key_counts(url: &RedisUrl) -> EngineResult<BTreeMap<String, u64>> {
    let u = url.clone();
    let counts =
        tokio::task::spawn_blocking(move || Conn::connect(&u).and_then(|mut c| c.key_counts()))
            .await??;
    Ok(per_database(counts))
}

async fn plan(
    engine: &Engine,
    request: &RestoreRequest,
    target: &TargetConfig,
) -> EngineResult<RestorePlan> {
    let name = &request.target;
    let (snapshot, rm) = chosen_section(engine, request, |m| &m.redis, "Redis snapshot").await?;
    if let Some(dir) = &request.to_dir {
        return Ok(plan_to_dir(name, &snapshot, rm, dir));
    }
    let dest_url = match &request.to {
        Some(u) => u.clone(),
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
        format::bytes(rm.rdb.bytes),
        rm.version
    ));
    steps.push("copy every key with DUMP/RESTORE, TTLs kept".into());
    steps.push("compare the keys per database with the manifest".into());
    let shown = redact_url(dest_url.expose());
    let plan = Plan::new(name, &snapshot, shown.clone(), steps, overwrites);
    let (id, target_name) = (snapshot.id.clone(), name.to_string());
    let mut restore = RestorePlan::new(
        plan,
        act(move |cx: ActCx| async move {
            let stage = tempfile::Builder::new()
                .prefix("lifeboat-redis-restore-")
                .tempdir()
                .fs("create a staging folder in", &std::env::temp_dir())?;
            let rdb = stage.path().join("dump.rdb");
            let (bytes, sha) = write_file(&cx.engine.repo, &id, &rm.rdb.path, &rdb).await?;
            if bytes != rm.rdb.bytes || sha != rm.rdb.sha256 {
                return Err(EngineError::verification(format!(
                    "the RDB read back differs from the manifest ({bytes} bytes, expected {}); nothing was changed",
                    rm.rdb.bytes
                )));
            }
            let (dir, d, stop) = (stage.path().to_path_buf(), dest.clone(), cx.cancel.clone());
            let (copied, written) = tokio::task::spawn_blocking(move || {
                let scratch = Scratch::start(&dir)?;
                let mut written = Vec::new();
                let copied = copy_keys_until(
                    &scratch.url(),
                    &d,
                    overwrites,
                    &|| stop.is_cancelled(),
                    &mut written,
                );
                Ok::<_, RedisError>((copied, written))
            })
            .await??;
            if cx.cancel.is_cancelled() {
                return Err(put_back_keys(&cx, &target_name, &dest, &shown, written).await);
            }
            let copied = match copied {
                Ok(c) => c,
                // Failed part-way (the destination went away): what was written is taken
                // back as after a signal, and both are said.
                Err(e) => {
                    let back = put_back_keys(&cx, &target_name, &dest, &shown, written).await;
                    return Err(EngineError::failure(
                        format!("copying the keys failed: {e}; {}", back.message),
                        back.hint,
                    ));
                }
            };
            let after = key_counts(&dest).await?;
            let mut databases = Vec::new();
            let mut lines = Vec::new();
            let mut ok = true;
            for db in rm.databases() {
                let restored = db
                    .parse::<u32>()
                    .ok()
                    .and_then(|n| copied.get(&n).copied())
                    .unwrap_or(0);
                let good = rm.plausible(&db, restored);
                ok &= good;
                let (before, after_m) = (rm.keys_before.get(&db), rm.keys_after.get(&db));
                lines.push(format!(
                    "  db{db}: {restored} keys restored (manifest: {}–{}){}",
                    json!(before),
                    json!(after_m),
                    if good { "" } else { "  MISMATCH" }
                ));
                databases.push(json!({
                    "db": db, "restored": restored, "now": after.get(&db).copied().unwrap_or(0),
                    "manifest_before": before, "manifest_after": after_m, "ok": good,
                }));
            }
            let total: u64 = copied.values().sum();
            lines.push(format!(
                "restored {total} keys into `{shown}`{}",
                if ok {
                    "; key counts match the manifest"
                } else {
                    ""
                }
            ));
            Ok(RestoreOutcome::new(
                ok,
                "restored key counts differ from the manifest",
                json!({ "databases": databases, "verified": ok }),
                lines,
            ))
        }),
    );
    if overwrites {
        restore.refusal = Some(Refusal {
            message: format!(
                "refusing to restore into `{}`: it holds {existing_keys} keys",
                redact_url(dest_url.expose())
            ),
            hint: "restore into an empty instance, or pass `--force` to replace keys after an emergency backup".into(),
            forceable: true,
            why: format!("the destination holds {existing_keys} keys"),
        });
        restore.emergency = Some(Emergency {
            target: target.clone(),
            source: Some(Redacted::new(dest_url.expose().to_string())),
            optional_with_force: false,
            what: format!("`{}`", redact_url(dest_url.expose())),
        });
    }
    Ok(restore)
}

/// After a signal: the keys the restore wrote are taken back — each as the emergency
/// snapshot holds it (loaded into a scratch server), or deleted where it was not there (or
/// where the destination was empty and so had no emergency backup). The error says what
/// was done, or what could not be.
async fn put_back_keys(
    cx: &ActCx,
    name: &str,
    dest: &RedisUrl,
    shown: &str,
    written: Vec<(u32, Vec<u8>)>,
) -> EngineError {
    let n = written.len();
    let saved_rdb = match &cx.emergency_snapshot {
        None => None,
        Some(snap) => {
            let stage = match tempfile::Builder::new()
                .prefix("lifeboat-redis-putback-")
                .tempdir()
            {
                Ok(s) => s,
                Err(e) => return cannot_put_back(cx, n, shown, &e.to_string()),
            };
            let rdb = stage.path().join("dump.rdb");
            let (r, id, target) = (cx.engine.repo.clone(), snap.to_string(), name.to_string());
            let found = r.call(move |r| r.find_snapshot(&target, &id)).await;
            let path = match found.map(|i| i.manifest.ok().and_then(|m| m.redis)) {
                Ok(Some(m)) => m.rdb.path,
                Ok(None) => {
                    return cannot_put_back(cx, n, shown, "the emergency snapshot holds no RDB");
                }
                Err(e) => return cannot_put_back(cx, n, shown, &e.to_string()),
            };
            if let Err(e) = write_file(&cx.engine.repo, snap.as_str(), &path, &rdb).await {
                return cannot_put_back(cx, n, shown, &e.message);
            }
            Some(stage)
        }
    };
    let d = dest.clone();
    let done = tokio::task::spawn_blocking(move || {
        let scratch = saved_rdb
            .as_ref()
            .map(|s| Scratch::start(s.path()))
            .transpose()?;
        lifeboat_redis::put_back(scratch.as_ref().map(Scratch::url).as_ref(), &d, &written)
    })
    .await;
    match done {
        Ok(Ok((copied, deleted))) => EngineError::interrupted(format!(
            "interrupted: {n} key(s) had been written into `{shown}`; it is as it was: {deleted} new key(s) deleted, {copied} overwritten key(s) written again from the emergency snapshot"
        )),
        Ok(Err(e)) => cannot_put_back(cx, n, shown, &e.to_string()),
        Err(e) => cannot_put_back(cx, n, shown, &e.to_string()),
    }
}

fn cannot_put_back(cx: &ActCx, n: usize, shown: &str, why: &str) -> EngineError {
    let e = EngineError::interrupted(format!(
        "interrupted after {n} key(s) were written into `{shown}`, and they could not be taken back: {why}"
    ));
    match &cx.emergency_snapshot {
        Some(s) => e.with_hint(format!(
            "the emergency snapshot {} holds the keys as they were: restore it with `--snapshot {} --force`",
            s.short(),
            s.short()
        )),
        None => e,
    }
}

/// `--to-dir DIR`: the RDB written to `DIR/dump.rdb`, checked, for a server to start from.
fn plan_to_dir(name: &str, snapshot: &SnapshotInfo, rm: RedisManifest, dir: &Path) -> RestorePlan {
    let file = dir.join("dump.rdb");
    let steps = vec![
        format!(
            "write the RDB ({}) to {}",
            format::bytes(rm.rdb.bytes),
            file.display()
        ),
        "check its size and SHA-256 against the manifest".into(),
    ];
    let exists = file.exists();
    let plan = Plan::new(name, snapshot, file.display().to_string(), steps, exists);
    let (id, f, d) = (snapshot.id.clone(), file.clone(), dir.to_path_buf());
    let mut restore = RestorePlan::new(
        plan,
        act(move |cx: ActCx| async move {
            let (bytes, sha) = write_file(&cx.engine.repo, &id, &rm.rdb.path, &f).await?;
            let ok = bytes == rm.rdb.bytes && sha == rm.rdb.sha256;
            let line = format!(
                "wrote {} ({}){}; start a server on it with `redis-server --dir {} --dbfilename dump.rdb`",
                f.display(),
                format::bytes(bytes),
                if ok {
                    ", size and SHA-256 match"
                } else {
                    ", MISMATCH with the manifest"
                },
                d.display()
            );
            Ok(RestoreOutcome::new(
                ok,
                "the RDB written differs from the manifest",
                json!({ "file": f, "bytes": bytes, "verified": ok }),
                vec![line],
            ))
        }),
    );
    if exists {
        restore.refusal = Some(Refusal {
            message: format!("`{}` exists", file.display()),
            hint: "restore into another folder, or move the file away first".into(),
            forceable: false,
            why: "the file exists".into(),
        });
    }
    restore
}
