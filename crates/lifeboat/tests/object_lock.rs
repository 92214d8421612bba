//! Immutable backups (issue 23, point 4): a repository in a bucket with S3 Object Lock on
//! moto with IAM enforced. The backup host's policy is the one documented in
//! `packaging/iam-backup-host.json`: it writes, and deletes nothing but its locks.

use std::{collections::BTreeSet, path::Path, time::Duration};

use lifeboat_testkit::{
    Cluster, Run, Workspace,
    iam::{IamS3, Keys, host_policy},
    postgres_archiving, wait_for,
};

const BIN: &str = env!("CARGO_BIN_EXE_lifeboat");

fn policy() -> String {
    host_policy(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."),
        "locked",
        "repo",
    )
}

fn sql(pg: &Cluster, db: &str, q: &str) -> String {
    lifeboat_testkit::sql_at(pg, pg.port, db, q)
}

fn as_user(ws: &Workspace, who: &Keys, args: &[&str]) -> Run {
    ws.run_env(args, &who.env())
}

/// What a run said, on either stream.
fn said(run: &Run) -> String {
    format!("{}\n{}", run.stdout, run.stderr)
}

/// The current objects under `prefix` in `bucket`, with their retention.
fn objects(s3: &IamS3, bucket: &str, prefix: &str) -> Vec<serde_json::Value> {
    s3.op(&s3.admin, "objects", &[bucket, prefix])
        .as_array()
        .unwrap()
        .clone()
}

fn snapshots(ws: &Workspace, who: &Keys) -> Vec<serde_json::Value> {
    as_user(ws, who, &["snapshots", "--json"]).json()["snapshots"]
        .as_array()
        .unwrap()
        .clone()
}

fn keys(s3: &IamS3, bucket: &str, prefix: &str) -> BTreeSet<String> {
    objects(s3, bucket, prefix)
        .iter()
        .map(|o| o["key"].as_str().unwrap().to_string())
        .collect()
}

fn timestamp(v: &serde_json::Value) -> jiff::Timestamp {
    let text = v.as_str().unwrap_or_else(|| panic!("a time: {v}"));
    // boto3 prints `+00:00`; jiff wants an offset it can parse: it takes that.
    text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
}

#[test]
fn a_compliance_repository_written_by_a_host_that_cannot_delete_survives_deletion_and_overwriting()
{
    let s3 = IamS3::start(&policy());
    let ws = Workspace::s3(BIN, &s3.endpoint(), "locked");
    let (admin, host) = (s3.admin.clone(), s3.host.clone());
    // The server archives with the host's keys, as a service unit would give them.
    let pg = postgres_archiving(&format!(
        "AWS_ACCESS_KEY_ID={} AWS_SECRET_ACCESS_KEY={} LIFEBOAT_S3_RETRIES=1 {BIN} -q -c {} wal push %p",
        host.id,
        host.secret,
        ws.config_path().display()
    ));
    let files = ws.path().join("files");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::write(files.join("a.txt"), "alpha\n").unwrap();
    std::fs::write(files.join("b.bin"), lifeboat_testkit::noise(7, 400_000)).unwrap();
    // A pack above what goes up in one request elsewhere: S3 takes no multipart upload with
    // the MD5 checksum Object Lock needs (this backup failed).
    std::fs::write(files.join("c.bin"), lifeboat_testkit::noise(8, 20 << 20)).unwrap();
    pg.psql("postgres", "CREATE DATABASE shop").unwrap();
    sql(
        &pg,
        "shop",
        "CREATE TABLE orders (id int PRIMARY KEY, note text)",
    );
    sql(
        &pg,
        "shop",
        "INSERT INTO orders SELECT g, md5(g::text) FROM generate_series(1, 3000) g",
    );
    let targets = format!(
        "object-lock = {{ mode = \"compliance\", days = 1 }}\n\n\
         [targets.db]\nkind = \"postgres\"\nmode = \"physical\"\nurl = \"{}\"\ndata-dir = \"{}\"\n\n\
         [targets.shop]\nkind = \"postgres\"\nurl = \"{}\"\n\n\
         [targets.d]\nkind = \"files\"\npaths = [\"{}\"]\n",
        pg.url("postgres"),
        pg.data().display(),
        pg.url("shop"),
        files.display(),
    );
    ws.write_config(&targets);

    // A bucket without Object Lock is refused, naming it; nothing is created there.
    let plain = Workspace::s3(BIN, &s3.endpoint(), "plain");
    plain.write_config(&targets);
    let run = as_user(&plain, &admin, &["init"]);
    run.expect_code(1);
    let text = said(&run);
    assert!(
        text.contains("bucket `plain` does not have Object Lock enabled")
            && text.contains("--object-lock-enabled-for-bucket"),
        "{text}"
    );
    assert!(
        keys(&s3, "plain", "").is_empty(),
        "nothing written in `plain`"
    );

    // The host may not set the bucket's default retention; the administrator creates the
    // repository, and its `init` makes the configured retention the bucket's default.
    let run = as_user(&ws, &host, &["init"]);
    run.expect_code(1);
    assert!(said(&run).contains("AccessDenied"), "{}", said(&run));
    assert!(
        keys(&s3, "locked", "repo/").is_empty(),
        "a refused init leaves nothing"
    );
    as_user(&ws, &admin, &["init"]).expect_code(0);
    let rule = s3.op(&admin, "lock-config", &["locked"]);
    assert_eq!(rule["ObjectLockEnabled"], "Enabled", "{rule}");
    assert_eq!(
        rule["Rule"]["DefaultRetention"]["Mode"], "COMPLIANCE",
        "{rule}"
    );
    assert_eq!(rule["Rule"]["DefaultRetention"]["Days"], 1, "{rule}");
    ws.share_with_server();

    // From here the backup host: backups of every kind, WAL archiving, and its locks.
    as_user(&ws, &host, &["backup"]).expect_code(0);
    sql(
        &pg,
        "postgres",
        "CREATE TABLE t AS SELECT generate_series(1, 500) AS id",
    );
    let done = sql(&pg, "postgres", "SELECT pg_walfile_name(pg_switch_wal())");
    wait_for("the segment archived", Duration::from_secs(60), || {
        let last = sql(
            &pg,
            "postgres",
            "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver",
        );
        last.len() >= 24 && last[..24] >= *done.as_str()
    });
    assert_eq!(
        sql(&pg, "postgres", "SELECT failed_count FROM pg_stat_archiver"),
        "0",
        "wal push never failed under the host's policy"
    );
    std::fs::write(files.join("a.txt"), "alpha, changed\n").unwrap();
    // A second backup right after: the first's locks were released, not left behind.
    as_user(&ws, &host, &["backup", "d"]).expect_code(0);
    let all = objects(&s3, "locked", "repo/");
    let held: Vec<_> = all
        .iter()
        .filter(|o| o["key"].as_str().unwrap().contains("locks/"))
        .collect();
    assert!(held.is_empty(), "locks left: {held:?}");

    // Every object lifeboat wrote carries compliance retention of a day from its writing:
    // packs, snapshots, index, and the side area's WAL and manifests.
    assert!(
        all.iter()
            .any(|o| o["key"].as_str().unwrap().starts_with("repo/lifeboat/wal/")),
        "{all:#?}"
    );
    for o in &all {
        assert_eq!(o["mode"], "COMPLIANCE", "{o}");
        let kept = timestamp(&o["until"]) - timestamp(&o["written"]);
        assert!(
            kept.total(jiff::Unit::Hour).unwrap() >= 23.9,
            "{o}: retained {kept:#}"
        );
    }
    let check = as_user(&ws, &host, &["check"]);
    check.expect_code(0).expect_stdout(
        &["object lock: the config, every key, index file, snapshot and pack checked for compliance retention of 1 days"],
        &["problem"],
    );

    // The host's keys, stolen, delete nothing: not a pack, not a version of one.
    let packs: Vec<String> = keys(&s3, "locked", "repo/data/").into_iter().collect();
    assert!(packs.len() >= 2, "{packs:?}");
    let pack = &packs[0];
    assert_eq!(s3.op(&host, "delete", &["locked", pack]), "AccessDenied");
    let version = s3.op(&admin, "versions", &["locked", pack])[0]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        s3.op(&host, "delete", &["locked", pack, &version]),
        "AccessDenied"
    );
    // Nor do the account's own keys remove a version under compliance retention. They
    // can hide objects (delete markers) and put other content over them: every pack
    // hidden, the logical snapshot overwritten.
    assert_eq!(
        s3.op(&admin, "delete", &["locked", pack, &version]),
        "AccessDenied"
    );
    for p in &packs {
        assert_eq!(s3.op(&admin, "delete", &["locked", p]), "ok");
    }
    let shop = snapshots(&ws, &admin)
        .into_iter()
        .find(|s| s["target"] == "shop")
        .unwrap();
    let shop_id = shop["id"].as_str().unwrap().to_string();
    let snapshot_key = keys(&s3, "locked", "repo/snapshots/")
        .into_iter()
        .find(|k| k.contains(&shop_id[..8]))
        .unwrap();
    assert_eq!(s3.op(&admin, "overwrite", &["locked", &snapshot_key]), "ok");
    assert!(
        keys(&s3, "locked", "repo/data/").is_empty(),
        "every pack is hidden"
    );

    // lifeboat still restores: the versions under retention have what the names promise.
    // With an empty cache, as on the day of a disaster (nothing read from what the backup
    // host cached while writing).
    let cold = ws.path().join("cold-cache");
    let host_cold = |args: &[&str]| {
        let mut env = host.env().to_vec();
        env.push(("XDG_CACHE_HOME", cold.to_str().unwrap()));
        ws.run_env(args, &env)
    };
    let run = host_cold(&[
        "restore",
        "shop",
        "--snapshot",
        &shop_id[..8],
        "--to",
        &pg.url("shop_back"),
    ]);
    run.expect_code(0);
    assert_eq!(
        sql(
            &pg,
            "shop_back",
            "SELECT count(*), sum(length(note)) FROM orders"
        ),
        "3000|96000"
    );
    let back = ws.path().join("back");
    host_cold(&["restore", "d", "--to-dir", &back.display().to_string()]).expect_code(0);
    assert!(
        cold.join("rustic").is_dir(),
        "the restores used the cold cache"
    );
    let restored = back.join(files.strip_prefix("/").unwrap());
    assert_eq!(
        std::fs::read(restored.join("a.txt")).unwrap(),
        b"alpha, changed\n"
    );
    assert_eq!(
        std::fs::read(restored.join("b.bin")).unwrap(),
        lifeboat_testkit::noise(7, 400_000)
    );
    assert!(
        std::fs::read(restored.join("c.bin")).unwrap() == lifeboat_testkit::noise(8, 20 << 20),
        "c.bin differs"
    );
    // And `check` says what was done to it.
    let check = as_user(&ws, &host, &["check"]);
    check.expect_code(3);
    let text = said(&check);
    assert!(
        text.contains(&format!("{snapshot_key}` was overwritten"))
            || text.contains(&format!(
                "{}` was overwritten",
                snapshot_key.trim_start_matches("repo/")
            )),
        "{text}"
    );
    assert!(
        text.contains("was deleted while under Object Lock retention, not by lifeboat"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "`{}` has 1 other version(s) with other content: overwritten",
            snapshot_key.trim_start_matches("repo/")
        )),
        "{text}"
    );

    // When the bucket's default retention is less than the config asks (here the config
    // asks more; the same when someone lowers or removes the bucket's rule), new objects
    // would be less protected than promised: the host's backup is refused before it
    // writes anything, and says why.
    let before = snapshots(&ws, &admin).len();
    ws.write_config(&targets.replace("days = 1", "days = 2"));
    let run = as_user(&ws, &host, &["backup", "d"]);
    assert_ne!(run.code, 0, "{run:?}");
    let text = said(&run);
    assert!(
        text.contains("wants compliance retention for 2 days, but in bucket `locked` the default retention is compliance, 1 days"),
        "{text}"
    );
    assert_eq!(snapshots(&ws, &admin).len(), before);
}

#[test]
fn prune_leaves_what_is_under_retention_and_removes_it_once_the_retention_ends() {
    let s3 = IamS3::start(&policy());
    let ws = Workspace::s3(BIN, &s3.endpoint(), "locked");
    let admin = s3.admin.clone();
    let files = ws.path().join("files");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::write(files.join("keep.txt"), "kept\n").unwrap();
    std::fs::write(files.join("old.bin"), lifeboat_testkit::noise(1, 600_000)).unwrap();
    ws.write_config(&format!(
        "object-lock = {{ mode = \"governance\", days = 1 }}\n\n\
         [retention]\nkeep-last = 1\n\n[targets.d]\nkind = \"files\"\npaths = [\"{}\"]\n",
        files.display()
    ));
    as_user(&ws, &admin, &["init"]).expect_code(0);
    as_user(&ws, &admin, &["backup", "d"]).expect_code(0);
    std::fs::remove_file(files.join("old.bin")).unwrap();
    std::fs::write(files.join("new.bin"), lifeboat_testkit::noise(2, 600_000)).unwrap();
    as_user(&ws, &admin, &["backup", "d"]).expect_code(0);
    let snaps = snapshots(&ws, &admin);
    let first = snaps[0]["id"].as_str().unwrap()[..8].to_string();
    let short = |v: &serde_json::Value| v.as_str().map(|s| s[..8].to_string());
    let forget = |expect: i32| {
        let run = as_user(&ws, &admin, &["forget", "--prune", "--json"]);
        run.expect_code(expect);
        run.json()
    };

    // The first snapshot is forgotten by retention but still under Object Lock: kept,
    // and reported.
    let done = forget(0);
    assert_eq!(done["retained"]["snapshots"], 1, "{done:#}");
    assert_eq!(
        short(&done["retained"]["kept_snapshots"][0]).as_ref(),
        Some(&first),
        "{done:#}"
    );
    assert_eq!(done["forgotten"].as_array().unwrap().len(), 0, "{done:#}");
    assert_eq!(snapshots(&ws, &admin).len(), 2);

    // Its retention over (what a day does; governance lets the administrator shorten
    // it): forgotten. Its packs are still under retention: left in place.
    let packs_before = keys(&s3, "locked", "repo/data/");
    let snapshot_key = keys(&s3, "locked", "repo/snapshots/")
        .into_iter()
        .find(|k| k.starts_with(&format!("repo/snapshots/{first}")))
        .unwrap();
    assert_eq!(s3.op(&admin, "shorten", &["locked", &snapshot_key, "2"]), 1);
    std::thread::sleep(Duration::from_secs(3));
    let done = forget(0);
    assert_eq!(
        short(&done["forgotten"][0]).as_ref(),
        Some(&first),
        "{done:#}"
    );
    assert!(done["retained"]["packs"].as_u64().unwrap() >= 1, "{done:#}");
    assert_eq!(snapshots(&ws, &admin).len(), 1);
    let packs_after = keys(&s3, "locked", "repo/data/");
    assert!(
        packs_before.is_subset(&packs_after),
        "no pack under retention was removed"
    );

    // A key removed is gone for good: its object is only hidden (its version stays under
    // retention), and the record of the removal keeps it from being brought back.
    let spare = ws.path().join("spare-password");
    std::fs::write(&spare, "a spare key\n").unwrap();
    let added = as_user(
        &ws,
        &admin,
        &[
            "key",
            "add",
            "--new-password-file",
            spare.to_str().unwrap(),
            "--json",
        ],
    );
    let spare_id = added.json()["added"].as_str().unwrap().to_string();
    let listed = |ws: &Workspace| {
        as_user(ws, &admin, &["key", "list", "--json"]).json()["keys"]
            .as_array()
            .unwrap()
            .len()
    };
    assert_eq!(listed(&ws), 2);
    as_user(&ws, &admin, &["key", "remove", &spare_id[..10]]).expect_code(0);
    assert_eq!(listed(&ws), 1);
    assert_eq!(keys(&s3, "locked", "repo/lifeboat/removed/keys/").len(), 1);

    // `check` verifies every pack's retention: shortened ones are found.
    let shortened = s3.op(&admin, "shorten", &["locked", "repo/data/", "2"]);
    assert_eq!(shortened.as_u64().unwrap() as usize, packs_after.len());
    std::thread::sleep(Duration::from_secs(3));
    let check = as_user(&ws, &admin, &["check", "--json"]);
    check.expect_code(3);
    let errors = check.json()["errors"].as_array().unwrap().clone();
    let short: Vec<_> = errors
        .iter()
        .filter(|e| e.as_str().unwrap().contains("less than the 1 days asked"))
        .collect();
    assert!(short.len() >= packs_after.len() - 1, "{errors:#?}");

    // Their retention over, the next prune removes what it left, and extends the
    // retention of what the repository still holds: `check` is clean again.
    let done = forget(0);
    assert!(done["retained"].is_null(), "{done:#}");
    let extended = &done["retention_extended"];
    assert!(
        extended["extended"].as_u64().unwrap() >= 1
            && extended["checked"].as_u64() >= extended["extended"].as_u64(),
        "{done:#}"
    );
    as_user(&ws, &admin, &["check"]).expect_code(0);
    let packs_now = keys(&s3, "locked", "repo/data/");
    assert!(
        packs_now.len() < packs_after.len() && packs_now.is_subset(&packs_after),
        "{packs_after:?} -> {packs_now:?}"
    );
    let back = ws.path().join("back");
    as_user(
        &ws,
        &admin,
        &["restore", "d", "--to-dir", &back.display().to_string()],
    )
    .expect_code(0);
    let restored = back.join(files.strip_prefix("/").unwrap());
    assert_eq!(
        std::fs::read(restored.join("new.bin")).unwrap(),
        lifeboat_testkit::noise(2, 600_000)
    );
    assert!(!restored.join("old.bin").exists());
}
