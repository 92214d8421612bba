//! A repository on a real S3-protocol server (moto; s3s-fs where credentials must be
//! checked): locks between processes, transient and lasting faults injected by a proxy,
//! wrong credentials, and a lifeboat killed mid-backup.

use std::{
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use lifeboat_testkit::{
    Workspace,
    s3::{Fault, FaultProxy, Faults, S3Server},
    wait_for,
};

const BIN: &str = env!("CARGO_BIN_EXE_lifeboat");

/// In the first line of a request listing `snapshots/`, and of no other request.
const SNAPSHOT_LISTING: &str = "prefix=repo/snapshots/";

fn snapshot_count(ws: &Workspace) -> usize {
    ws.run(&["snapshots", "--json"]).json()["snapshots"]
        .as_array()
        .unwrap()
        .len()
}

/// The keys under `prefix` in `bucket`, straight from the server.
fn keys(s3: &S3Server, bucket: &str, prefix: &str) -> Vec<String> {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, urllib.request, re; body = urllib.request.urlopen(sys.argv[1]).read().decode(); print('\\n'.join(re.findall('<Key>([^<]*)</Key>', body)))",
            &format!(
                "{}/{bucket}?list-type=2&prefix={prefix}",
                s3.endpoint()
            ),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// `lifeboat restore media --to TO EXTRA...`.
fn restore_media(ws: &Workspace, to: &str, extra: &[&str]) -> lifeboat_testkit::Run {
    let mut args = vec!["restore", "media", "--to", to];
    args.extend_from_slice(extra);
    ws.run(&args)
}

/// A repository in a fresh bucket of `s3`, initialised, with one target `media`: the
/// bucket `media`, reached through `endpoint` (the server's, or a fault proxy's).
fn media_workspace(s3: &S3Server, media: &str, endpoint: &str) -> Workspace {
    let ws = Workspace::s3(BIN, &s3.endpoint(), &s3.bucket());
    ws.write_config(&format!(
        "[targets.media]\nkind = \"bucket\"\nurl = \"s3://{media}\"\nendpoint = \"{endpoint}\"\n"
    ));
    ws.run(&["init"]).expect_code(0);
    ws
}

/// The bucket manifest of the snapshot made with a parent (the second backup).
fn child_bucket_manifest(ws: &Workspace) -> serde_json::Value {
    let snaps = ws.run(&["snapshots", "--json"]).json()["snapshots"].clone();
    snaps
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["manifest"]["bucket"].clone())
        .find(|b| b["parent"].is_string())
        .expect("a snapshot with a parent")
}

/// Object `i` of a small text bucket in three folders, in version `v`.
fn text_object(i: usize, v: &str) -> lifeboat_testkit::s3::TestObject<'static> {
    (
        format!("f{}/{i}.txt", i % 3),
        format!("object {i} {v}\n").into_bytes(),
        "text/plain",
        Default::default(),
    )
}

fn spawn(ws: &Workspace, args: &[&str], env: &[(&str, &str)]) -> Child {
    ws.command(args)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn finish(child: Child) -> (i32, String) {
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// [`finish`], failing the test if the process has not exited within `limit`.
fn finish_within(mut child: Child, limit: Duration) -> (i32, String) {
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("still running after {limit:?}: {:?}", finish(child));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    finish(child)
}

/// Backups and prunes in separate processes against one S3 repository: while a backup
/// runs, its own command watches the repository and fails the backup if any snapshot or
/// index object disappears (what forget and prune do); prunes started meanwhile wait.
#[test]
fn backup_and_prune_processes_never_overlap_on_s3() {
    let s3 = S3Server::start();
    let bucket = s3.bucket();
    let ws = Workspace::s3(BIN, &s3.endpoint(), &bucket);
    // The probe fails the backup if any snapshot or index object disappears while it
    // runs: that is what forget and prune do, under their exclusive lock.
    let probe = format!(
        r#"import re, sys, time, urllib.request
def keys():
    out = set()
    for p in ("snapshots/", "index/"):
        body = urllib.request.urlopen("{}/{bucket}?list-type=2&prefix=repo/" + p).read().decode()
        out |= set(re.findall("<Key>([^<]*)</Key>", body))
    return out
seen = keys()
for _ in range(25):
    gone = seen - keys()
    if gone: sys.exit("removed during the backup: %s" % gone)
    time.sleep(0.1)
print("x" * 100000)
"#,
        s3.endpoint()
    );
    std::fs::write(ws.path().join("probe.py"), probe).unwrap();
    ws.write_config(&format!(
        "[retention]\nkeep-last = 1\n\n[targets.q]\nkind = \"command\"\nbackup = \"python3 {}\"\n",
        ws.path().join("probe.py").display()
    ));
    ws.run(&["init"]).expect_code(0);
    for round in 0..3 {
        // Two snapshots at the start, so that a prune has something to forget while the
        // backup runs.
        ws.run(&["backup"]).expect_code(0);
        let backup = spawn(&ws, &["backup"], &[]);
        // The backup holds its shared lock once its lock object exists.
        wait_for("the backup's lock", Duration::from_secs(20), || {
            keys(&s3, &bucket, "repo/lifeboat/locks/")
                .iter()
                .any(|k| k.contains("shared-"))
        });
        // Without waiting, a prune is refused and names the holder.
        let refused = ws.run_env(&["forget", "--prune"], &[("LIFEBOAT_LOCK_WAIT", "0")]);
        refused.expect_code(1);
        refused.expect_stderr(&["locked by `lifeboat backup`"], &[]);
        // With waiting, it goes through after the backup.
        let prune = spawn(&ws, &["forget", "--prune"], &[("LIFEBOAT_LOCK_WAIT", "60")]);
        let (code, stderr) = finish(backup);
        assert_eq!(code, 0, "round {round}: the backup saw a prune: {stderr}");
        let (code, stderr) = finish(prune);
        assert_eq!(code, 0, "round {round}: {stderr}");
        assert!(
            stderr.contains("waiting for the repository lock held by `lifeboat backup`"),
            "round {round}: {stderr}"
        );
    }
    assert_eq!(snapshot_count(&ws), 1);
    ws.run(&["check", "--read-data"]).expect_code(0);
    let left = keys(&s3, &bucket, "repo/lifeboat/locks/");
    assert!(left.is_empty(), "{left:?}");
}

/// Transient faults (500s, dropped connections, requests that hang past the timeout) are
/// retried: the backup succeeds and the repository reads back clean. A lasting outage fails
/// the backup (exit 1) and leaves no snapshot; once the server is back, the next backup
/// works.
#[test]
fn transient_faults_are_retried_and_an_outage_leaves_no_snapshot() {
    let s3 = S3Server::start();
    let proxy = FaultProxy::start(s3.port());
    let ws = Workspace::s3(BIN, &proxy.endpoint(), &s3.bucket());
    let data = ws.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    for i in 0..40 {
        let body: String = (0..20_000).map(|j| format!("{i}-{j}\n")).collect();
        std::fs::write(data.join(format!("f{i}")), body).unwrap();
    }
    ws.write_config(&format!(
        "[targets.d]\nkind = \"files\"\npaths = [\"{}\"]\n\n[targets.slow]\nkind = \"command\"\nbackup = \"seq 1 300000; sleep 3; seq 300001 600000\"\n",
        data.display()
    ));
    ws.run(&["init"]).expect_code(0);

    for faults in [
        Faults::every(4, Fault::Status(503)),
        Faults::every(5, Fault::Drop),
        Faults::every(6, Fault::Status(500)),
    ] {
        proxy.set(faults);
        let before = proxy.counts().1;
        ws.run(&["backup", "d"]).expect_code(0);
        assert!(
            proxy.counts().1 > before,
            "no fault was injected: {faults:?}"
        );
    }
    // A server that stops answering: every 3rd request gets no reply for 10 minutes. With a
    // 1 s timeout each is retried; without one the backup would hang.
    proxy.set(Faults::every(3, Fault::Delay(Duration::from_secs(600))));
    let before = proxy.counts().1;
    let timeout = [("LIFEBOAT_S3_TIMEOUT", "1")];
    let backup = spawn(&ws, &["backup", "d"], &timeout);
    let (code, stderr) = finish_within(backup, Duration::from_secs(120));
    assert_eq!(code, 0, "{stderr}");
    assert!(proxy.counts().1 > before, "no request was delayed");
    proxy.set(Faults::NONE);
    assert_eq!(snapshot_count(&ws), 4);
    ws.run(&["check", "--read-data"]).expect_code(0);
    let out = ws.path().join("out");
    let run = ws.run(&["restore", "d", "--to-dir", out.to_str().unwrap()]);
    run.expect_code(0);
    run.expect_stdout(&["40 of 40 verified"], &[]);

    // The server goes away in the middle of a backup (while its command sleeps). Fewer
    // retries than the default minute of them keep the test short.
    let backup = spawn(&ws, &["backup", "slow"], &[("LIFEBOAT_S3_RETRIES", "2")]);
    std::thread::sleep(Duration::from_millis(1500));
    proxy.set(Faults::always(Fault::Status(503)));
    let (code, stderr) = finish(backup);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("injected 503"), "{stderr}");
    assert!(stderr.contains("backup of `slow` failed"), "{stderr}");
    proxy.set(Faults::NONE);
    assert_eq!(snapshot_count(&ws), 4, "the failed backup left a snapshot");
    // A permanent error (403) fails at once, without retries, and says what to check.
    proxy.set(Faults::always(Fault::Status(403)));
    let before = proxy.counts().0;
    let run = ws.run(&["snapshots"]);
    run.expect_code(1);
    run.expect_stderr(&["PermissionDenied"], &[]);
    run.expect_stderr(&["credentials"], &[]);
    assert_eq!(proxy.counts().0 - before, 1, "a 403 must not be retried");
    proxy.set(Faults::NONE);
    ws.run(&["check"]).expect_code(0);
    ws.run(&["backup", "slow"]).expect_code(0);
    assert_eq!(snapshot_count(&ws), 5);

    // Nothing listens any more: connections are refused, retried, then reported.
    drop(proxy);
    let (code, stderr) = finish_within(
        spawn(&ws, &["snapshots"], &[("LIFEBOAT_S3_RETRIES", "1")]),
        Duration::from_secs(60),
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("Connection refused"), "{stderr}");
    assert!(stderr.contains("kept failing after retries"), "{stderr}");
}

/// Regression test for rustic_backend 0.7: its listings skip what they could not read
/// (logged, then dropped), so with the listing of `snapshots/` failing, `snapshots` showed
/// none and `forget --prune` deleted every pack as unused. Now the listing's error fails
/// the command and nothing is touched.
#[test]
fn a_failing_listing_stops_prune_instead_of_deleting_data() {
    let s3 = S3Server::start();
    let bucket = s3.bucket();
    let proxy = FaultProxy::start(s3.port());
    let ws = Workspace::s3(BIN, &proxy.endpoint(), &bucket);
    let data = ws.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    ws.write_config(&format!(
        "[retention]\nkeep-last = 5\n\n[targets.d]\nkind = \"files\"\npaths = [\"{}\"]\n",
        data.display()
    ));
    ws.run(&["init"]).expect_code(0);
    for round in 0..2 {
        let body: String = (0..50_000).map(|j| format!("{round}-{j}\n")).collect();
        std::fs::write(data.join(format!("f{round}")), body).unwrap();
        ws.run(&["backup"]).expect_code(0);
    }
    let packs = keys(&s3, &bucket, "repo/data/");
    assert!(!packs.is_empty());

    proxy.set(Faults::always(Fault::Status(500)).only(SNAPSHOT_LISTING));
    let retries = [("LIFEBOAT_S3_RETRIES", "1")];
    let (code, stderr) = finish(spawn(&ws, &["snapshots"], &retries));
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("at list `snapshots/`"), "{stderr}");
    assert!(stderr.contains("injected 500"), "{stderr}");
    assert!(stderr.contains("kept failing after retries"), "{stderr}");
    let (code, stderr) = finish(spawn(&ws, &["forget", "--prune"], &retries));
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("injected 500"), "{stderr}");
    assert!(proxy.counts().1 >= 2, "no listing met a fault");

    proxy.set(Faults::NONE);
    assert_eq!(
        keys(&s3, &bucket, "repo/data/"),
        packs,
        "packs were deleted"
    );
    assert_eq!(snapshot_count(&ws), 2);
    ws.run(&["check", "--read-data"]).expect_code(0);
    let out = ws.path().join("out");
    let run = ws.run(&["restore", "d", "--to-dir", out.to_str().unwrap()]);
    run.expect_code(0);
    run.expect_stdout(&["2 of 2 verified"], &[]);
}

/// Against a server that checks signatures (s3s-fs; moto accepts any key): wrong
/// credentials are refused at once — one request, no retries — with the server's reason
/// and a hint, for the repository and for a bucket target's own credentials; missing ones
/// before any request; the failed backup leaves no snapshot. With the right credentials the same repository works end to
/// end on this second S3 implementation.
#[test]
fn wrong_credentials_are_refused_at_once_by_a_server_that_checks_them() {
    let s3 = S3Server::start_s3s_fs();
    let (bucket, media) = (s3.bucket(), s3.bucket());
    let proxy = FaultProxy::start(s3.port());
    let ws = Workspace::s3(BIN, &proxy.endpoint(), &bucket);
    let data = ws.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let body: String = (0..50_000).map(|j| format!("{j}\n")).collect();
    std::fs::write(data.join("f"), body).unwrap();
    ws.write_config(&format!(
        "[targets.d]\nkind = \"files\"\npaths = [\"{}\"]\n\n[targets.media]\nkind = \"bucket\"\nurl = \"s3://{media}\"\nendpoint = \"{}\"\naccess-key-id-env = \"MEDIA_KEY\"\nsecret-access-key-env = \"MEDIA_SECRET\"\n",
        data.display(),
        proxy.endpoint()
    ));
    ws.run(&["init"]).expect_code(0);
    ws.run(&["backup", "d"]).expect_code(0);
    ws.run(&["check", "--read-data"]).expect_code(0);
    let out = ws.path().join("out");
    let run = ws.run(&["restore", "d", "--to-dir", out.to_str().unwrap()]);
    run.expect_code(0);
    run.expect_stdout(&["1 of 1 verified"], &[]);

    let wrong_secret = [
        ("AWS_ACCESS_KEY_ID", lifeboat_testkit::s3::ACCESS_KEY),
        ("AWS_SECRET_ACCESS_KEY", "not-the-secret"),
    ];
    let unknown_key = [
        ("AWS_ACCESS_KEY_ID", "nobody"),
        ("AWS_SECRET_ACCESS_KEY", lifeboat_testkit::s3::SECRET_KEY),
    ];
    for env in [wrong_secret, unknown_key] {
        let before = proxy.counts().0;
        let run = ws.run_env(&["snapshots"], &env);
        run.expect_code(1);
        assert!(
            run.stderr.contains("PermissionDenied"),
            "{env:?}: {}",
            run.stderr
        );
        assert!(
            run.stderr.contains("credentials"),
            "{env:?}: {}",
            run.stderr
        );
        assert!(!run.stderr.contains("not-the-secret"), "{}", run.stderr);
        assert_eq!(proxy.counts().0 - before, 1, "{env:?}: retried");
    }

    // No credentials anywhere: refused before any request, with a hint saying where to set
    // them. (HOME points at the workspace so no ~/.aws file is found; no instance metadata.)
    let before = proxy.counts().0;
    let mut none = ws.command(&["snapshots"]);
    none.env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env("HOME", ws.path())
        .env("AWS_EC2_METADATA_DISABLED", "true");
    let run = lifeboat_testkit::Run::from(none.output().unwrap());
    run.expect_code(1);
    run.expect_stderr(&["hint: no S3 credentials were found"], &[]);
    assert!(!run.stderr.contains("warning"), "{}", run.stderr);
    assert_eq!(proxy.counts().0, before, "a request without credentials");

    // The repository's credentials are right, the bucket's are not. Only the requests to
    // the bucket are counted (the repository's lock, listing and job record pass uncounted).
    let to_media: &'static str = Box::leak(format!(" /{media}").into_boxed_str());
    proxy.set(Faults::NONE.only(to_media));
    let before = proxy.counts().0;
    let run = ws.run_env(
        &["backup", "media"],
        &[("MEDIA_KEY", "nobody"), ("MEDIA_SECRET", "not-the-secret")],
    );
    run.expect_code(1);
    assert!(
        run.stderr
            .contains(&format!("bucket `s3://{media}/`: PermissionDenied")),
        "{}",
        run.stderr
    );
    run.expect_stderr(&["credentials"], &[]);
    assert!(!run.stderr.contains("not-the-secret"), "{}", run.stderr);
    assert_eq!(
        proxy.counts().0 - before,
        1,
        "the refused request to the bucket was retried"
    );
    assert_eq!(snapshot_count(&ws), 1, "the failed backup left a snapshot");
}

/// SIGKILL in the middle of a backup: the repository stays consistent (`check` accepts it),
/// the dead process's lock is taken over with a message, and the next backup works.
#[test]
fn a_killed_backup_leaves_a_repository_that_works_on_s3() {
    let s3 = S3Server::start();
    let bucket = s3.bucket();
    let ws = Workspace::s3(BIN, &s3.endpoint(), &bucket);
    ws.write_config(
        "[targets.slow]\nkind = \"command\"\nbackup = \"head -c 80000000 /dev/urandom; sleep 30\"\n",
    );
    ws.run(&["init"]).expect_code(0);
    let mut backup = spawn(&ws, &["backup"], &[]);
    wait_for("the backup's lock", Duration::from_secs(20), || {
        !keys(&s3, &bucket, "repo/lifeboat/locks/").is_empty()
    });
    wait_for("packs being written", Duration::from_secs(30), || {
        !keys(&s3, &bucket, "repo/data/").is_empty()
    });
    backup.kill().unwrap();
    let _ = backup.wait();
    assert_eq!(snapshot_count(&ws), 0);
    // The next command that locks (check) takes the dead process's lock over.
    let run = ws.run(&["check"]);
    run.expect_code(0);
    assert!(
        run.stderr
            .contains("removing the stale lock held by `lifeboat backup`"),
        "{}",
        run.stderr
    );
    ws.write_config("[targets.slow]\nkind = \"command\"\nbackup = \"seq 1 1000\"\n");
    ws.run(&["backup"]).expect_code(0);
    assert_eq!(snapshot_count(&ws), 1);
    ws.run(&["check", "--read-data"]).expect_code(0);
}

/// A pack that two parts would carry goes up in one request (the last pack of a backup
/// often is one: here 12 MiB); a larger one in parts (a full pack of 32 MiB). Both read
/// back whole.
#[test]
fn a_pack_two_parts_would_carry_goes_up_in_one_request() {
    let s3 = S3Server::start();
    let proxy = FaultProxy::start(s3.port());
    // Counts the requests of multipart uploads (creation, parts, completion) only.
    proxy.set(Faults::NONE.only("upload"));
    let ws = Workspace::s3(BIN, &proxy.endpoint(), &s3.bucket());
    let (small, large) = (ws.path().join("small"), ws.path().join("large"));
    for (dir, mib, seed) in [(&small, 12, 1), (&large, 40, 2)] {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("noise"), lifeboat_testkit::noise(seed, mib << 20)).unwrap();
    }
    ws.write_config(&format!(
        "[targets.small]\nkind = \"files\"\npaths = [\"{}\"]\n\n[targets.large]\nkind = \"files\"\npaths = [\"{}\"]\n",
        small.display(),
        large.display()
    ));
    ws.run(&["init"]).expect_code(0);
    ws.run(&["backup", "small"]).expect_code(0);
    assert_eq!(proxy.counts().0, 0, "a 12 MiB pack went up in parts");
    ws.run(&["backup", "large"]).expect_code(0);
    // Creation, at least four parts of 8 MiB, completion.
    assert!(
        proxy.counts().0 >= 6,
        "a 32 MiB pack went up in {} multipart requests",
        proxy.counts().0
    );
    ws.run(&["check", "--read-data"]).expect_code(0);
    for (name, dir) in [("small", &small), ("large", &large)] {
        let out = ws.path().join(format!("out-{name}"));
        ws.run(&["restore", name, "--to-dir", out.to_str().unwrap()])
            .expect_code(0);
        let want = std::fs::read(dir.join("noise")).unwrap();
        let got: Vec<_> = tree(&out)
            .into_iter()
            .filter(|(rel, _)| rel.ends_with("/noise"))
            .collect();
        assert_eq!(got.len(), 1, "{name}: {} restored files", got.len());
        assert!(got[0].1 == want, "{name} differs");
    }
}

/// A bucket backup reads the previous manifest from this machine's cache (sealed, named by
/// its snapshot, replaced by the next), and from the repository when the cached file does
/// not open; both ways only the changed object is read again.
#[test]
fn a_bucket_backup_reads_the_previous_manifest_from_the_cache_or_else_the_repository() {
    use lifeboat_testkit::s3::{TestObject, put_objects};

    let s3 = S3Server::start();
    // The repository is reached through a proxy that counts requests.
    let proxy = FaultProxy::start(s3.port());
    let media = s3.bucket();
    let object = text_object;
    let all: Vec<TestObject> = (0..300).map(|i| object(i, "a")).collect();
    put_objects(&s3.endpoint(), &media, &all);
    let ws = Workspace::s3(BIN, &proxy.endpoint(), &s3.bucket());
    ws.write_config(&format!(
        "[targets.media]\nkind = \"bucket\"\nurl = \"s3://{media}\"\nendpoint = \"{}\"\n",
        s3.endpoint()
    ));
    let cache = ws.path().join("cache");
    let env = [("XDG_CACHE_HOME", cache.to_str().unwrap())];
    ws.run_env(&["init"], &env).expect_code(0);
    ws.run_env(&["backup"], &env).expect_code(0);
    // The cached manifests of the target: (snapshot id, path).
    let cached = || -> Vec<(String, std::path::PathBuf)> {
        let mut out = Vec::new();
        for repo in std::fs::read_dir(cache.join("lifeboat")).unwrap() {
            // Each repository's folder (its id), beside the hints' (`listed`).
            let dir = repo.unwrap().path().join("manifests").join("media");
            if !dir.exists() {
                continue;
            }
            for f in std::fs::read_dir(dir).unwrap() {
                let f = f.unwrap();
                out.push((f.file_name().to_string_lossy().into_owned(), f.path()));
            }
        }
        out
    };
    let newest_id = || {
        let snaps = ws.run_env(&["snapshots", "--json"], &env).json()["snapshots"].clone();
        let snaps = snaps.as_array().unwrap().clone();
        snaps.last().unwrap()["id"].as_str().unwrap().to_string()
    };
    let files = cached();
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(files[0].0, newest_id());
    let raw = std::fs::read(&files[0].1).unwrap();
    assert!(
        lifeboat_repo::seal::is_sealed(&raw),
        "the cached manifest is sealed"
    );
    assert!(!raw.windows(5).any(|w| w == b"f1/1."));

    // One object changed: read again; the manifest came from the cache.
    put_objects(&s3.endpoint(), &media, &[object(1, "b")]);
    let before = proxy.counts().0;
    let run = ws.run_env(&["-v", "backup"], &env);
    run.expect_code(0);
    let with_cache = proxy.counts().0 - before;
    let from_cache = format!("read from {}", files[0].1.display());
    assert!(run.stderr.contains(&from_cache), "{}", run.stderr);
    assert_eq!(child_bucket_manifest(&ws)["downloaded"], 1);
    let files = cached();
    assert_eq!(files.len(), 1, "the newer one replaces it: {files:?}");
    assert_eq!(files[0].0, newest_id());

    // The cached file damaged: the manifest is read from the repository, and again only
    // the changed object is read.
    let mut raw = std::fs::read(&files[0].1).unwrap();
    let last = raw.len() - 1;
    raw[last] ^= 1;
    std::fs::write(&files[0].1, &raw).unwrap();
    put_objects(&s3.endpoint(), &media, &[object(2, "b")]);
    let before = proxy.counts().0;
    let run = ws.run_env(&["-v", "backup"], &env);
    run.expect_code(0);
    let without = proxy.counts().0 - before;
    assert!(run.stderr.contains("ignored"), "{}", run.stderr);
    assert!(!run.stderr.contains("read from"), "{}", run.stderr);
    let snaps = ws.run_env(&["snapshots", "--json"], &env).json()["snapshots"].clone();
    let newest = snaps.as_array().unwrap().last().unwrap()["manifest"]["bucket"].clone();
    assert_eq!(newest["downloaded"], 1, "{newest}");
    assert_eq!(newest["objects"].as_array().unwrap().len(), 300);
    // Reading the manifest from the repository took requests the cache saved (one GET
    // of its blob: a margin of one, so not below).
    assert!(
        without >= with_cache,
        "{without} requests without the cache, {with_cache} with it"
    );
}

/// While the repository opens (the key takes a few tenths of a second), a bucket backup
/// fetches the objects last modified after the newest the previous backup listed: each is
/// fetched once (the read-ahead takes the early fetch over), and the snapshot holds what
/// the bucket holds. A hint that is wrong costs fetches, never content.
#[test]
fn a_bucket_backup_fetches_what_changed_since_the_last_one_while_the_repository_opens() {
    use lifeboat_testkit::s3::{TestObject, put_objects};
    use sha2::Digest;

    let s3 = S3Server::start();
    // The bucket is reached through a proxy that counts its requests.
    let proxy = FaultProxy::start(s3.port());
    let media = s3.bucket();
    let object = text_object;
    let mut now: Vec<TestObject> = (0..60).map(|i| object(i, "a")).collect();
    put_objects(&s3.endpoint(), &media, &now);
    let ws = Workspace::s3(BIN, &s3.endpoint(), &s3.bucket());
    ws.write_config(&format!(
        "[targets.media]\nkind = \"bucket\"\nurl = \"s3://{media}\"\nendpoint = \"{}\"\n",
        proxy.endpoint()
    ));
    let cache = ws.path().join("cache");
    let env = [("XDG_CACHE_HOME", cache.to_str().unwrap())];
    ws.run_env(&["init"], &env).expect_code(0);
    ws.run_env(&["backup"], &env).expect_code(0);
    let hints = cache.join("lifeboat").join("listed");
    let hint_files = || -> Vec<std::path::PathBuf> {
        std::fs::read_dir(&hints)
            .map(|d| d.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default()
    };
    assert_eq!(hint_files().len(), 1, "the backup leaves its hint");
    // Change `which` (a second later: listed times are whole seconds on some servers),
    // back up, and return the log and the bucket's requests.
    let mut change = |which: &[usize], v: &str| {
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let changed: Vec<TestObject> = which.iter().map(|&i| object(i, v)).collect();
        put_objects(&s3.endpoint(), &media, &changed);
        for &i in which {
            now[i] = object(i, v);
        }
        let before = proxy.counts().0;
        let run = ws.run_env(&["-v", "backup"], &env);
        run.expect_code(0);
        (run.stderr, proxy.counts().0 - before, now.clone())
    };
    // The newest snapshot holds every object as the bucket holds it, and read `read`.
    let holds = |now: &[TestObject], read: usize| {
        let snaps = ws.run_env(&["snapshots", "--json"], &env).json()["snapshots"].clone();
        let newest = snaps.as_array().unwrap().last().unwrap()["manifest"]["bucket"].clone();
        assert_eq!(newest["downloaded"], read, "{newest}");
        let records = newest["objects"].as_array().unwrap();
        assert_eq!(records.len(), now.len());
        for (key, body, _, _) in now {
            let r = records.iter().find(|r| r["key"] == key.as_str()).unwrap();
            assert_eq!(
                r["sha256"],
                hex::encode(sha2::Sha256::digest(body)),
                "{key}"
            );
        }
    };

    // Listed once: not again because opening the repository took long (then the early
    // listing and its fetches are dropped, and the requests cannot be compared).
    let listed_once = |log: &str| log.matches("info: listed ").count() == 1;
    // Four changed: fetched early, each once.
    let (log, early, state) = change(&[1, 17, 32, 58], "b");
    assert!(log.contains("fetching 4 objects modified after"), "{log}");
    assert!(
        log.contains("4 of the 4 objects fetched early are read"),
        "{log}"
    );
    holds(&state, 4);
    // Without a hint, four others changed: nothing early, as many requests.
    for f in hint_files() {
        std::fs::remove_file(f).unwrap();
    }
    let (log_plain, plain, state) = change(&[2, 18, 33, 59], "b");
    assert!(!log_plain.contains("objects modified after"), "{log_plain}");
    holds(&state, 4);
    if listed_once(&log) && listed_once(&log_plain) {
        assert_eq!(
            early, plain,
            "requests with the early fetches, and without: each object was fetched once"
        );
    } else {
        eprintln!("a listing was repeated (the repository opened slowly): requests not compared");
    }
    // A hint far older than the last backup: every object is fetched early (there are
    // fewer than the limit), only the changed one is read into the snapshot.
    let files = hint_files();
    assert_eq!(files.len(), 1, "the backup without a hint left one");
    std::fs::write(&files[0], "2000-01-01T00:00:00Z\n").unwrap();
    let (log, stale, state) = change(&[3], "c");
    assert!(log.contains("fetching 60 objects modified after"), "{log}");
    assert!(
        log.contains("1 of the 60 objects fetched early are read"),
        "{log}"
    );
    holds(&state, 1);
    assert!(
        stale > plain,
        "{stale} requests with a stale hint, {plain} without"
    );
    // A damaged hint is no hint.
    std::fs::write(&hint_files()[0], "not a time").unwrap();
    let (log, _, state) = change(&[4], "c");
    assert!(!log.contains("objects modified after"), "{log}");
    holds(&state, 1);
}

/// A bucket target: thousands of small objects and two multipart ones backed up with
/// their content types and metadata; a second backup downloads only what changed;
/// restores of all of it, a prefix and one key into other buckets; existing objects
/// are not overwritten without --force (and then only after an emergency backup).
#[test]
fn bucket_targets_back_up_incrementally_and_restore_objects() {
    use std::collections::BTreeMap;

    use lifeboat_testkit::s3::{TestObject, put_objects, test_bucket};
    use sha2::Digest;

    let s3 = S3Server::start();
    // The source bucket is reached through a proxy that counts requests.
    let proxy = FaultProxy::start(s3.port());
    let media = s3.bucket();
    let meta = |i: usize| BTreeMap::from([("owner".to_string(), format!("user-{i}"))]);
    let mut objects: Vec<TestObject> = (0..2000)
        .map(|i| {
            (
                format!("img/{:02}/{i}.txt", i % 40),
                format!("small object {i}\n").into_bytes(),
                "text/plain",
                meta(i),
            )
        })
        .collect();
    let big = |n: usize, seed: u8| -> Vec<u8> {
        (0..n)
            .map(|j| (j as u32).wrapping_mul(2_654_435_761).to_le_bytes()[(j + seed as usize) % 4])
            .collect()
    };
    objects.push((
        "video/a.bin".into(),
        big(20 << 20, 1),
        "video/mp4",
        meta(9001),
    ));
    objects.push((
        "video/b.bin".into(),
        big(9 << 20, 2),
        "application/octet-stream",
        BTreeMap::new(),
    ));
    put_objects(&s3.endpoint(), &media, &objects);

    let ws = media_workspace(&s3, &media, &proxy.endpoint());
    ws.run(&["backup"]).expect_code(0);
    // A GET per object (a few for the multipart one), the listing, and no HEADs: each
    // reply shows the object's content type and metadata. The listing walks 43 folders:
    // the root, img/ and its 40, video/.
    const LISTINGS: u64 = 43;
    let requests = proxy.counts().0;
    assert!(
        (2002 + LISTINGS..2002 + LISTINGS + 20).contains(&requests),
        "{requests} requests to the source bucket"
    );
    let m = ws.run(&["snapshots", "--json"]).json()["snapshots"][0]["manifest"]["bucket"].clone();
    assert_eq!(m["objects"].as_array().unwrap().len(), 2002);
    assert_eq!(m["downloaded"], 2002);
    let record = |key: &str| {
        m["objects"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["key"] == key)
            .unwrap()
            .clone()
    };
    let rec = record("video/a.bin");
    assert_eq!(rec["bytes"], 20 << 20);
    assert_eq!(rec["content-type"], "video/mp4");
    assert_eq!(rec["metadata"]["owner"], "user-9001");
    let small = record("img/07/7.txt");
    assert_eq!(small["content-type"], "text/plain");
    assert_eq!(small["metadata"]["owner"], "user-7");
    assert_eq!(
        rec["sha256"],
        hex::encode(sha2::Sha256::digest(&objects[2000].1))
    );

    // One object changed, one new, one deleted: only two are downloaded again.
    put_objects(
        &s3.endpoint(),
        &media,
        &[
            (
                "img/00/0.txt".into(),
                b"changed\n".to_vec(),
                "text/plain",
                meta(0),
            ),
            (
                "img/new.txt".into(),
                b"new\n".to_vec(),
                "text/plain",
                BTreeMap::new(),
            ),
        ],
    );
    test_bucket(&s3.endpoint(), &media)
        .delete("img/01/1.txt")
        .unwrap();
    let (before, _) = proxy.counts();
    ws.run(&["backup"]).expect_code(0);
    let requests = proxy.counts().0 - before;
    let m2 = child_bucket_manifest(&ws);
    assert_eq!(m2["objects"].as_array().unwrap().len(), 2002);
    assert_eq!(m2["downloaded"], 2, "{}", m2["downloaded"]);
    assert!(
        requests < LISTINGS + 20,
        "{requests} requests to the source bucket"
    );
    ws.run(&["check", "--read-data"]).expect_code(0);

    // Everything into another bucket, from the second (mostly linked) snapshot.
    let dest = s3.bucket();
    let run = restore_media(&ws, &format!("s3://{dest}"), &[]);
    run.expect_code(0);
    run.expect_stdout(&["2002 of 2002 match"], &[]);
    let d = test_bucket(&s3.endpoint(), &dest);
    assert_eq!(d.list().unwrap().len(), 2002);
    let head = d.head_if_present("video/a.bin").unwrap().expect("restored");
    assert_eq!(head.content_type.as_deref(), Some("video/mp4"));
    assert_eq!(
        head.metadata.get("owner").map(String::as_str),
        Some("user-9001")
    );
    let mut got = Vec::new();
    std::io::Read::read_to_end(&mut d.reader("video/a.bin", 20 << 20), &mut got).unwrap();
    assert!(got == objects[2000].1, "the multipart object differs");
    let mut got = Vec::new();
    std::io::Read::read_to_end(&mut d.reader("img/00/0.txt", 8), &mut got).unwrap();
    assert_eq!(got, b"changed\n");

    // Again over it: refused; a dry run lists; --force saves the destination first.
    let run = restore_media(&ws, &format!("s3://{dest}"), &["--prefix", "img/02/"]);
    run.expect_code(1);
    assert!(
        run.stderr
            .contains("refusing to overwrite 50 existing object(s)"),
        "{}",
        run.stderr
    );
    let run = restore_media(
        &ws,
        &format!("s3://{dest}"),
        &["--key", "video/b.bin", "--dry-run"],
    );
    run.expect_code(0);
    assert!(
        run.stdout
            .contains("would write video/b.bin (9.0 MiB)  (exists)"),
        "{}",
        run.stdout
    );
    let run = restore_media(&ws, &format!("s3://{dest}/only"), &["--key", "video/b.bin"]);
    run.expect_code(0);
    assert_eq!(
        test_bucket(&s3.endpoint(), &dest).list().unwrap().len(),
        2003
    );
    let run = restore_media(
        &ws,
        &format!("s3://{dest}"),
        &["--prefix", "img/02/", "--force"],
    );
    run.expect_code(0);
    run.expect_stdout(&["emergency backup"], &[]);
    let snaps = ws.run(&["snapshots", "--json"]).json()["snapshots"].clone();
    let emergency: Vec<_> = snaps
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["emergency"] == true)
        .collect();
    assert_eq!(emergency.len(), 1);
    assert_eq!(
        emergency[0]["manifest"]["bucket"]["url"],
        format!("s3://{dest}")
    );

    // `--time`: the newest backup at that moment (the first one, before the change).
    let first = snaps
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["manifest"]["bucket"]["downloaded"] == 2002)
        .unwrap()["time"]
        .as_str()
        .unwrap()
        .to_string();
    let run = restore_media(
        &ws,
        &format!("s3://{dest}/then"),
        &["--key", "img/00/0.txt", "--time", &first],
    );
    run.expect_code(0);
    let mut got = Vec::new();
    std::io::Read::read_to_end(&mut d.reader("then/img/00/0.txt", 15), &mut got).unwrap();
    assert_eq!(got, b"small object 0\n");

    // A drill restores the objects into a folder and checks every size and hash...
    let run = ws.run(&["drill", "media"]);
    run.expect_code(0);
    run.expect_stdout(&["PASS"], &[]);
    // ...or into a scratch bucket, read back, emptied afterwards.
    let scratch = s3.bucket();
    ws.write_config(&format!(
        "[targets.media]\nkind = \"bucket\"\nurl = \"s3://{media}\"\nendpoint = \"{}\"\n\n[drill]\nscratch-bucket = \"s3://{scratch}/drills\"\n",
        proxy.endpoint()
    ));
    let run = ws.run(&["drill", "media", "--json"]);
    run.expect_code(0);
    let checks = run.json()["drills"][0]["report"]["checks"].clone();
    for name in ["object count", "every object's size and SHA-256"] {
        assert!(
            checks.as_array().unwrap().iter().any(|c| c["name"] == name
                && c["passed"] == true
                && c["detail"].as_str().unwrap().contains("2002")),
            "{name}: {checks}"
        );
    }
    assert!(
        test_bucket(&s3.endpoint(), &scratch)
            .list()
            .unwrap()
            .is_empty()
    );
    // Both reports are in the repository's side area, on S3.
    let drills = ws.run(&["drills", "media", "--json"]).json();
    assert_eq!(
        drills["drills"].as_array().map(Vec::len),
        Some(2),
        "{drills}"
    );
}

/// A bucket is listed folder by folder, many folders at once (`bucket::Walk`): the same
/// objects as one flat listing, on moto and on s3s-fs; a folder with more subfolders than
/// the walk takes, and the folders past its budget of requests, are listed flat; a folder
/// of more than one page is read to its end.
#[test]
fn a_bucket_listed_folder_by_folder_holds_what_a_flat_listing_holds() {
    listed_by_folders(&S3Server::start(), true);
    listed_by_folders(&S3Server::start_s3s_fs(), false);
}

fn listed_by_folders(s3: &S3Server, odd_keys: bool) {
    use std::collections::BTreeMap;

    use lifeboat_repo::bucket::Walk;
    use lifeboat_testkit::s3::{TestObject, put_objects, test_bucket, test_bucket_location};

    let proxy = FaultProxy::start(s3.port());
    let media = s3.bucket();
    let mut keys: Vec<String> = [
        "top.txt",
        "a/1",
        "a/b/2",
        "a/b/c/3",
        "a/b/c/4",
        "d/5",
        "space dir/x y.bin",
        "ünï/ç.txt",
        "z",
    ]
    .iter()
    .map(|k| k.to_string())
    .collect();
    // Ten subfolders: more than the small walk below takes (9), so `many/` is listed flat.
    keys.extend((0..10).map(|i| format!("many/{i}/k{i}")));
    // Nine folders two levels down: past the small walk's budget of requests.
    keys.extend((0..9).map(|i| format!("deep/{}/{}/x", i / 3, i % 3)));
    // More than one page (1,000 keys) in one folder.
    keys.extend((0..1200).map(|i| format!("big/{i:04}")));
    let objects: Vec<TestObject> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            (
                k.clone(),
                vec![b'x'; i % 7 + 1],
                "text/plain",
                BTreeMap::new(),
            )
        })
        .collect();
    put_objects(&s3.endpoint(), &media, &objects);
    if odd_keys {
        // Put as they are (opendal would write `g/h`; s3s-fs keeps no key ending in `/`).
        // An empty segment: opendal would list `g/` for `g//`, so `g/` is listed flat.
        // Folder markers: left out of both listings.
        for k in ["g//h", "d/", "e/f/"] {
            let status = lifeboat_testkit::s3::http(s3.port(), "PUT", &format!("/{media}/{k}"));
            assert_eq!(status, 200, "PUT {k}");
        }
        keys.push("g//h".into());
    }
    let b = test_bucket(&proxy.endpoint(), &media);
    let show = |l: Vec<lifeboat_repo::bucket::Listed>| -> Vec<(String, u64, String, String)> {
        l.into_iter()
            .map(|o| (o.key, o.size, o.etag, o.last_modified))
            .collect()
    };
    let flat = show(b.list_flat().unwrap());
    keys.sort();
    assert_eq!(
        flat.iter().map(|o| o.0.clone()).collect::<Vec<_>>(),
        keys,
        "the flat listing holds every object put, markers left out"
    );
    // Requests whose first line contains `part`, made by `f`.
    let count = |part: &'static str, f: &dyn Fn()| -> u64 {
        proxy.set(Faults::NONE.only(part));
        let before = proxy.counts().0;
        f();
        proxy.counts().0 - before
    };
    let small = Walk {
        at_once: 3,
        fanout: 9,
        requests: 12,
    };
    let walked = || assert_eq!(show(b.list_walking(small).unwrap()), flat);
    let listings = count("list-type=2", &walked);
    let by_folder = count("delimiter=/", &walked);
    // The root and its seven to nine folders, then more up to twelve planned; big/ is two
    // pages long.
    assert!((8..=13).contains(&by_folder), "{by_folder} folder listings");
    assert!(
        listings > by_folder,
        "some folders were listed flat ({listings} listings, {by_folder} by folder)"
    );
    // many/ is listed by itself (which shows ten subfolders), then once more, flat.
    assert_eq!(count("prefix=many/&delimiter=/", &walked), 1);
    assert_eq!(count("prefix=many/ HTTP", &walked), 1);
    // The walk as lifeboat runs it: every folder by itself.
    let by_folder = count("delimiter=/", &|| {
        assert_eq!(show(b.list().unwrap()), flat);
    });
    assert!(by_folder >= 30, "{by_folder} folder listings");

    // A location with a prefix, its marker object (`pre/`, moto) at the root: 5 folders of
    // 5 folders of one object each.
    let other = s3.bucket();
    let mut keys: Vec<String> = (0..25)
        .map(|i| format!("pre/f{}/g{}/o", i / 5, i % 5))
        .collect();
    keys.push("pre/top".into());
    let objects: Vec<TestObject> = keys
        .iter()
        .map(|k| (k.clone(), b"o".to_vec(), "text/plain", BTreeMap::new()))
        .collect();
    put_objects(&s3.endpoint(), &other, &objects);
    if odd_keys {
        let status = lifeboat_testkit::s3::http(s3.port(), "PUT", &format!("/{other}/pre/"));
        assert_eq!(status, 200, "PUT pre/");
    }
    let mut loc = test_bucket_location(&proxy.endpoint(), &other);
    loc.prefix = "pre".into();
    let b = lifeboat_repo::bucket::Bucket::open(&loc).unwrap();
    let flat = show(b.list_flat().unwrap());
    assert_eq!(flat.len(), 26);
    // Every folder by itself: the root, its 5, their 25 (the marker does not make the root
    // look like a folder opendal cannot list).
    let by_folder = count("delimiter=/", &|| {
        assert_eq!(show(b.list().unwrap()), flat);
    });
    assert_eq!(by_folder, 31);
    // A budget of 3 folder listings: the root's 5 folders would pass it, so the root is
    // listed again, flat — two listings in all, not one per folder.
    let tight = Walk {
        at_once: 4,
        fanout: 9,
        requests: 3,
    };
    let listings = count("list-type=2", &|| {
        assert_eq!(show(b.list_walking(tight).unwrap()), flat);
    });
    assert_eq!(listings, 2);
}

/// A bucket restore stages its objects in the temporary folder: without room there it
/// stops before the emergency backup and before writing anything, and says where to make
/// room. (The folder is a 4 MiB tmpfs.)
#[test]
fn a_bucket_restore_without_room_to_stage_writes_nothing() {
    let s3 = S3Server::start();
    let media = s3.bucket();
    let objects: Vec<lifeboat_testkit::s3::TestObject> = (0..80u32)
        .map(|i| {
            let body = (0..100 << 10)
                .map(|j: u32| (j.wrapping_mul(2_654_435_761) ^ i) as u8)
                .collect();
            (
                format!("o/{i}"),
                body,
                "application/octet-stream",
                Default::default(),
            )
        })
        .collect();
    lifeboat_testkit::s3::put_objects(&s3.endpoint(), &media, &objects);
    let ws = media_workspace(&s3, &media, &s3.endpoint());
    ws.run(&["backup"]).expect_code(0);

    let tmpfs = lifeboat_testkit::Tmpfs::mount(&ws.path().join("small-tmp"), "size=4m");
    let small = tmpfs.path();

    // Into another bucket, and over the source itself (which would first be backed up).
    let dest = s3.bucket();
    for (to, extra) in [
        (format!("s3://{dest}"), &[][..]),
        (format!("s3://{media}"), &["--force"]),
    ] {
        let mut args = vec!["restore", "media", "--to", &to];
        args.extend_from_slice(extra);
        ws.run_env(&args, &[("TMPDIR", small.to_str().unwrap())])
            .expect_code(1)
            .expect_stderr(&["not enough room to stage the objects", "TMPDIR"], &[]);
    }
    let dest_bucket = lifeboat_testkit::s3::test_bucket(&s3.endpoint(), &dest);
    assert!(dest_bucket.list().unwrap().is_empty());
    assert_eq!(snapshot_count(&ws), 1, "an emergency backup was taken");
    assert_eq!(
        std::fs::read_dir(small).unwrap().count(),
        0,
        "staging left files"
    );

    // With room, the same restore works.
    let run = restore_media(&ws, &format!("s3://{dest}"), &[]);
    run.expect_code(0);
    run.expect_stdout(&["80 of 80 match"], &[]);
}

/// An object replaced or deleted between the listing and its read is left out, whichever
/// way it is read: fetched ahead (same size), fetched ahead but now larger (the read-ahead
/// stops reading past the listed size), in ranged parts (larger than one part), or gone.
/// Its stream ends at once and the reason is kept; a reader outside a backup fails
/// instead. On both servers: their listings and GET replies must agree on the versions.
#[test]
fn an_object_replaced_or_deleted_while_it_is_read_is_left_out() {
    for early in [false, true] {
        replaced_while_read(&S3Server::start(), early);
        replaced_while_read(&S3Server::start_s3s_fs(), early);
    }
}

/// With `early`, the small objects are fetched early (as a backup does while the
/// repository opens) after they changed: those fetches must not pass the new versions off
/// as the listed ones either.
fn replaced_while_read(s3: &S3Server, early: bool) {
    use lifeboat_repo::{Content, bucket};
    use lifeboat_testkit::s3::{TestObject, put_objects, test_bucket};

    let media = s3.bucket();
    let object = |key: &str, n: usize, byte: u8| -> TestObject<'static> {
        (key.into(), vec![byte; n], "text/plain", Default::default())
    };
    let first = [
        object("same-size", 1000, b'a'),
        object("grown", 1000, b'a'),
        object("large", 9 << 20, b'a'),
        object("deleted", 1000, b'a'),
        object("kept", 1000, b'a'),
        object("kept-large", 9 << 20, b'a'),
    ];
    put_objects(&s3.endpoint(), &media, &first);
    let source = test_bucket(&s3.endpoint(), &media);
    let listed = source.list().unwrap();
    // s3s-fs lists no ETags: a change shows in the last-modified, in whole seconds.
    std::thread::sleep(Duration::from_millis(1100));
    put_objects(
        &s3.endpoint(),
        &media,
        &[
            object("same-size", 1000, b'b'),
            object("grown", 3 << 20, b'b'),
            object("large", 9 << 20, b'b'),
        ],
    );
    source.delete("deleted").unwrap();
    let fetched = match early {
        true => {
            let small: Vec<&bucket::Listed> = listed.iter().filter(|o| o.size < 8 << 20).collect();
            assert_eq!(small.len(), 4);
            source.prefetch(&small)
        }
        false => Default::default(),
    };
    let (entries, seen) = bucket::entries(&source, "m/bucket", &listed, |_| true, fetched);
    let mut read = std::collections::BTreeMap::new();
    for (i, entry) in entries {
        let Content::Stream(mut stream) = entry.content else {
            panic!("`{}` is not a stream", listed[i].key);
        };
        let mut got = Vec::new();
        let failed = std::io::Read::read_to_end(&mut stream, &mut got).err();
        read.insert(listed[i].key.clone(), (got, failed.map(|e| e.to_string())));
    }
    let left_out: std::collections::BTreeMap<&str, String> = seen
        .left_out()
        .into_iter()
        .map(|(i, why)| (listed[i].key.as_str(), why.to_string()))
        .collect();
    assert_eq!(
        left_out.keys().copied().collect::<Vec<_>>(),
        ["deleted", "grown", "large", "same-size"]
    );
    for key in ["same-size", "grown", "large"] {
        assert!(
            left_out[key].contains("changed while it was read"),
            "{key}: {}",
            left_out[key]
        );
    }
    assert!(left_out["deleted"].contains("deleted"), "{left_out:?}");
    // Their reads fail (so the archiver keeps no node for them), having passed on nothing.
    for key in left_out.keys() {
        let (got, failed) = &read[*key];
        assert!(got.is_empty(), "{key}: {} bytes", got.len());
        assert!(
            failed
                .as_deref()
                .is_some_and(|e| e.contains(lifeboat_repo::LEFT_OUT)),
            "{key}: {failed:?}"
        );
    }
    assert_eq!(read["kept"], (vec![b'a'; 1000], None));
    let (large, failed) = &read["kept-large"];
    assert!(large.len() == 9 << 20 && large.iter().all(|&b| b == b'a') && failed.is_none());

    // Shrunk between two parts of a large object: the next part is past its end now.
    put_objects(&s3.endpoint(), &media, &[object("shrinks", 9 << 20, b'a')]);
    let size = source
        .list()
        .unwrap()
        .iter()
        .find(|o| o.key == "shrinks")
        .unwrap()
        .size;
    let mut reader = source.reader("shrinks", size);
    let mut first_part = vec![0; 8 << 20];
    std::io::Read::read_exact(&mut reader, &mut first_part).unwrap();
    put_objects(&s3.endpoint(), &media, &[object("shrinks", 1000, b'b')]);
    let err = std::io::Read::read_to_end(&mut reader, &mut Vec::new()).expect_err("shrunk");
    assert!(
        err.to_string().contains("changed while it was read"),
        "{err}"
    );

    // Read outside a backup (nobody to tell), a changed object is an error.
    let mut got = Vec::new();
    let err = std::io::Read::read_to_end(&mut source.reader("gone-now", 10), &mut got)
        .expect_err("a missing object");
    assert!(err.to_string().contains("deleted"), "{err}");

    // A 404 because the bucket itself is gone is no object left out: the backup must fail.
    // (s3s-fs answers such a GET with NoSuchKey, as for a deleted object; a HEAD reply has
    // no body to tell them apart, on either server.)
    let gone = test_bucket(&s3.endpoint(), "never-made");
    let listed = [bucket::Listed {
        key: "k".into(),
        size: 10,
        etag: String::new(),
        last_modified: String::new(),
    }];
    let (entries, seen) = bucket::entries(&gone, "m/bucket", &listed, |_| true, Default::default());
    assert_eq!(entries.len(), 1);
    for (_, entry) in entries {
        let Content::Stream(mut stream) = entry.content else {
            panic!("not a stream");
        };
        let err = std::io::Read::read_to_end(&mut stream, &mut Vec::new()).expect_err("no bucket");
        let err = err.to_string();
        assert!(
            !err.contains(lifeboat_repo::LEFT_OUT) && !err.contains("deleted"),
            "{err}"
        );
        assert!(err.contains("s3://never-made/k"), "{err}");
    }
    assert!(seen.left_out().is_empty(), "{:?}", seen.left_out());
    let head = gone.head_if_present("k");
    assert!(
        head.as_ref()
            .is_err_and(|e| e.to_string().contains("never-made")),
        "a missing bucket is no missing object: {:?}",
        head.map(|h| h.is_some())
    );
}

/// A bucket backup during which an object is deleted (the proxy answers its GET with 404)
/// succeeds without it, says so, and records it in the manifest; the next backup reads it.
#[test]
fn an_object_deleted_during_a_bucket_backup_is_left_out_and_named() {
    use lifeboat_testkit::s3::{TestObject, put_objects};

    let s3 = S3Server::start();
    let proxy = FaultProxy::start(s3.port());
    let media = s3.bucket();
    let objects: Vec<TestObject> = (0..30)
        .map(|i| {
            (
                format!("o/{i}"),
                format!("object {i}\n").into_bytes(),
                "text/plain",
                Default::default(),
            )
        })
        .collect();
    put_objects(&s3.endpoint(), &media, &objects);
    let ws = media_workspace(&s3, &media, &proxy.endpoint());
    let get_7: &'static str = Box::leak(format!("GET /{media}/o/7 ").into_boxed_str());
    proxy.set(Faults::always(Fault::Status(404)).only(get_7));
    ws.run(&["backup"])
        .expect_code(0)
        .expect_stderr(&["1 object(s)", "left out of this snapshot", "o/7"], &[]);
    let m = ws.run(&["snapshots", "--json"]).json()["snapshots"][0]["manifest"]["bucket"].clone();
    let stored: Vec<&str> = m["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["key"].as_str().unwrap())
        .collect();
    assert_eq!(stored.len(), 29);
    assert!(!stored.contains(&"o/7"));
    assert_eq!(m["left-out"][0]["key"], "o/7");
    assert!(
        m["left-out"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("deleted after it was listed"),
        "{}",
        m["left-out"]
    );
    let listing = ws.run(&["snapshots"]);
    assert!(
        listing
            .stdout
            .contains("29 objects (29 downloaded, 1 left out)"),
        "{}",
        listing.stdout
    );
    ws.run(&["check", "--read-data"]).expect_code(0);
    // The snapshot itself has no node for it, so a plain restic restore writes no short file.
    let files = String::from_utf8(ws.restic(&["ls", "latest"])).unwrap();
    assert!(files.lines().any(|l| l.ends_with("/o/8")), "{files}");
    assert!(!files.lines().any(|l| l.ends_with("/o/7")), "{files}");
    let dest = s3.bucket();
    let run = restore_media(&ws, &format!("s3://{dest}"), &[]);
    run.expect_code(0);
    run.expect_stdout(&["29 of 29 match"], &[]);
    assert!(!keys(&s3, &dest, "").contains(&"o/7".to_string()));

    proxy.set(Faults::NONE);
    ws.run(&["backup"]).expect_code(0);
    let m2 = child_bucket_manifest(&ws);
    assert_eq!(m2["objects"].as_array().unwrap().len(), 30);
    assert_eq!(m2["downloaded"], 1);
    assert!(m2["left-out"].is_null(), "{}", m2["left-out"]);

    // o/7's node in that snapshot has a ctime of its own, so the next backup reads it
    // although it did not change, and keeps its record from the manifest: deleted under
    // that read, it fails the backup (there is no record to drop it from in time).
    // A backup meeting `status` on the requests `only` fails, saying `says`, and saves
    // no snapshot.
    let fails_with = |status: u16, only: &'static str, says: &[&str]| {
        let before = snapshot_count(&ws);
        proxy.set(Faults::always(Fault::Status(status)).only(only));
        ws.run(&["backup"]).expect_code(1).expect_stderr(says, &[]);
        assert_eq!(snapshot_count(&ws), before);
    };
    fails_with(404, get_7, &["o/7", "deleted after it was listed"]);

    // Every object read gone is not churn: no snapshot that looks good and holds nothing.
    let changed: Vec<TestObject> = objects[1..3]
        .iter()
        .map(|(k, _, t, m)| (k.clone(), b"changed\n".to_vec(), *t, m.clone()))
        .collect();
    put_objects(&s3.endpoint(), &media, &changed);
    let all_gets: &'static str = Box::leak(format!("GET /{media}/o/").into_boxed_str());
    fails_with(404, all_gets, &["every object read (", "nothing new"]);

    // A GET that says the listed version is gone (412 to If-Match) while a HEAD still shows
    // it: the server contradicts itself, which would leave every object out. It fails.
    let get_1: &'static str = Box::leak(format!("GET /{media}/o/1 ").into_boxed_str());
    fails_with(412, get_1, &["`o/1`", "listing and its replies disagree"]);
}

/// A forced bucket restore whose emergency backup cannot read one of the objects it would
/// overwrite (deleted or replaced meanwhile, here a 404 from the proxy) restores nothing:
/// that object would otherwise be overwritten with no copy anywhere.
#[test]
fn a_forced_bucket_restore_whose_emergency_backup_misses_an_object_writes_nothing() {
    use lifeboat_testkit::s3::{TestObject, put_objects, test_bucket};

    let s3 = S3Server::start();
    let proxy = FaultProxy::start(s3.port());
    let (media, dest) = (s3.bucket(), s3.bucket());
    let objects = |what: &str| -> Vec<TestObject<'static>> {
        (0..5)
            .map(|i| {
                let body = format!("{what} {i}\n").into_bytes();
                (format!("k/{i}"), body, "text/plain", Default::default())
            })
            .collect()
    };
    put_objects(&s3.endpoint(), &media, &objects("backed up"));
    put_objects(&s3.endpoint(), &dest, &objects("only copy"));
    let ws = media_workspace(&s3, &media, &proxy.endpoint());
    ws.run(&["backup"]).expect_code(0);

    let get_3: &'static str = Box::leak(format!("GET /{dest}/k/3 ").into_boxed_str());
    proxy.set(Faults::always(Fault::Status(404)).only(get_3));
    restore_media(&ws, &format!("s3://{dest}"), &["--force"])
        .expect_code(1)
        .expect_stderr(&["emergency backup", "`k/3`", "nothing is restored"], &[]);
    proxy.set(Faults::NONE);
    let bucket = test_bucket(&s3.endpoint(), &dest);
    for o in bucket.list().unwrap() {
        let mut got = String::new();
        std::io::Read::read_to_string(&mut bucket.reader(&o.key, o.size), &mut got).unwrap();
        assert!(got.starts_with("only copy"), "{}: {got}", o.key);
    }
    assert_eq!(
        snapshot_count(&ws),
        1,
        "no emergency snapshot that lacks k/3"
    );
}

/// Every file below `dir` (relative path) with its content, sorted.
fn tree(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p.clone());
            }
            let rel = p.strip_prefix(dir).unwrap().display().to_string();
            out.push((rel, std::fs::read(&p).unwrap_or_default()));
        }
    }
    out.sort();
    out
}

/// Issue 18, point 5: a signal during a files restore over existing files (`--force`, so
/// after an emergency backup) stops it with the folder as it was: the restore wrote only
/// into a staging folder inside it, which is removed; the file it would have replaced is
/// untouched. Pack reads are slowed by the proxy so that the signal lands mid-restore. The
/// same restore without a signal then completes.
#[test]
fn a_signal_during_a_files_restore_leaves_the_folder_as_it_was() {
    let s3 = S3Server::start();
    let proxy = FaultProxy::start(s3.port());
    let bucket = s3.bucket();
    let ws = Workspace::s3(BIN, &proxy.endpoint(), &bucket);
    let data = ws.path().join("data");
    std::fs::create_dir_all(data.join("sub")).unwrap();
    // 12 files of 1 MiB that do not compress.
    for i in 0..12 {
        let dir = if i % 2 == 0 {
            data.clone()
        } else {
            data.join("sub")
        };
        std::fs::write(
            dir.join(format!("f{i}")),
            lifeboat_testkit::noise(i, 1 << 20),
        )
        .unwrap();
    }
    ws.files_target_backed_up(&data);

    let out = ws.path().join("out");
    let inside = out.join(data.strip_prefix("/").unwrap());
    std::fs::create_dir_all(&inside).unwrap();
    std::fs::write(inside.join("f0"), "changed here since the backup").unwrap();
    let before = tree(&out);

    let pack_reads: &'static str = Box::leak(format!("GET /{bucket}/repo/data/").into_boxed_str());
    proxy.set(Faults::always(Fault::Delay(Duration::from_secs(3))).only(pack_reads));
    let child = spawn(
        &ws,
        &["restore", "d", "--to-dir", out.to_str().unwrap(), "--force"],
        &[],
    );
    let staging = || {
        std::fs::read_dir(&out).unwrap().any(|e| {
            e.unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(".lifeboat-restore-")
        })
    };
    // Staging, and a pack read under way.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !staging() || proxy.counts().1 == 0 {
        if Instant::now() > deadline {
            let mut child = child;
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "the restore never started: {}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    lifeboat_testkit::terminate(child)
        .expect_code(130)
        .expect_stderr(&[&format!("`{}` is as it was", out.display())], &[]);
    proxy.set(Faults::NONE);
    assert_eq!(tree(&out), before, "the folder changed");

    let run = ws.run(&["restore", "d", "--to-dir", out.to_str().unwrap(), "--force"]);
    run.expect_code(0);
    run.expect_stdout(&["12 of 12 verified"], &[]);
    assert!(!staging(), "a staging folder is left");
}

/// Every object of `bucket` with its content, sorted by key.
fn bucket_contents(endpoint: &str, bucket: &str) -> Vec<(String, Vec<u8>)> {
    let b = lifeboat_testkit::s3::test_bucket(endpoint, bucket);
    let mut out: Vec<(String, Vec<u8>)> = b
        .list()
        .unwrap()
        .into_iter()
        .map(|o| {
            let mut body = Vec::new();
            std::io::Read::read_to_end(&mut b.reader(&o.key, o.size), &mut body).unwrap();
            (o.key, body)
        })
        .collect();
    out.sort();
    out
}

/// Issue 18, point 5: a signal during a forced bucket restore puts the bucket back as it
/// was: the objects it had written that were not there are deleted again, those it
/// overwrote are written again from the emergency snapshot; an object the backup never had
/// is untouched. Uploads are slowed by the proxy so that the signal lands mid-restore. The
/// same restore without a signal then completes.
#[test]
fn a_signal_during_a_bucket_restore_puts_the_bucket_back() {
    use lifeboat_testkit::s3::{TestObject, put_objects};

    let s3 = S3Server::start();
    let proxy = FaultProxy::start(s3.port());
    let media = s3.bucket();
    // 80 objects: enough to be staged in batches.
    let objects: Vec<TestObject<'static>> = (0..80)
        .map(|i| {
            let body = lifeboat_testkit::noise(i, 16 << 10);
            (
                format!("k/{i:02}"),
                body,
                "application/octet-stream",
                Default::default(),
            )
        })
        .collect();
    put_objects(&s3.endpoint(), &media, &objects);
    let ws = media_workspace(&s3, &media, &proxy.endpoint());
    ws.run(&["backup"]).expect_code(0);

    // Since the backup: ten objects deleted, ten changed, one added.
    let b = lifeboat_testkit::s3::test_bucket(&s3.endpoint(), &media);
    for i in 0..10 {
        b.delete(&format!("k/{i:02}")).unwrap();
    }
    let changed: Vec<TestObject<'static>> = (10..20)
        .map(|i| {
            (
                format!("k/{i:02}"),
                format!("changed {i}").into_bytes(),
                "text/plain",
                Default::default(),
            )
        })
        .chain([(
            "extra/1".to_string(),
            b"not in the backup".to_vec(),
            "text/plain",
            Default::default(),
        )])
        .collect();
    put_objects(&s3.endpoint(), &media, &changed);
    let before = bucket_contents(&s3.endpoint(), &media);
    assert_eq!(before.len(), 71);

    let puts: &'static str = Box::leak(format!("PUT /{media}/").into_boxed_str());
    proxy.set(Faults::always(Fault::Delay(Duration::from_millis(1500))).only(puts));
    let child = spawn(&ws, &["restore", "media", "--force"], &[]);
    let deadline = Instant::now() + Duration::from_secs(60);
    // The second wave of uploads has begun: some objects are written.
    while proxy.counts().1 < 20 {
        assert!(
            Instant::now() < deadline,
            "the restore never wrote: {:?}",
            finish(child)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    lifeboat_testkit::terminate(child)
        .expect_code(130)
        .expect_stderr(
            &[
                "the bucket is as it was",
                "written again from the emergency snapshot",
            ],
            &[", 0 overwritten"],
        );
    proxy.set(Faults::NONE);
    let after = bucket_contents(&s3.endpoint(), &media);
    assert_eq!(after.len(), before.len(), "keys differ");
    assert!(after == before, "the bucket changed");

    let run = restore_media(&ws, &format!("s3://{media}"), &["--force"]);
    run.expect_code(0);
    let restored = bucket_contents(&s3.endpoint(), &media);
    assert_eq!(restored.len(), 81);
    assert!(
        restored
            .iter()
            .any(|(k, v)| k == "k/00" && *v == objects[0].1)
    );
}
