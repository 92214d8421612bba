//! A repository on a real S3-protocol server (moto): locks between processes, transient and
//! lasting faults injected by a proxy, and a lifeboat killed mid-backup.

use std::{
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use lifeboat_testkit::{
    Workspace,
    s3::{Fault, FaultProxy, Faults, S3Server},
};

const BIN: &str = env!("CARGO_BIN_EXE_lifeboat");

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

fn wait_for(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
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
        assert!(
            refused.stderr.contains("locked by `lifeboat backup`"),
            "{}",
            refused.stderr
        );
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

/// Transient faults (500s, dropped connections) are retried: the backup succeeds and the
/// repository reads back clean. A lasting outage fails the backup (exit 1) and leaves no
/// snapshot; once the server is back, the next backup works.
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
    proxy.set(Faults::NONE);
    assert_eq!(snapshot_count(&ws), 3);
    ws.run(&["check", "--read-data"]).expect_code(0);
    let out = ws.path().join("out");
    let run = ws.run(&["restore", "d", "--to-dir", out.to_str().unwrap()]);
    run.expect_code(0);
    assert!(run.stdout.contains("40 of 40 verified"), "{}", run.stdout);

    // The server goes away in the middle of a backup (while its command sleeps). Fewer
    // retries than the default minute of them keep the test short.
    let backup = spawn(&ws, &["backup", "slow"], &[("LIFEBOAT_S3_RETRIES", "2")]);
    std::thread::sleep(Duration::from_millis(1500));
    proxy.set(Faults::always(Fault::Status(503)));
    let (code, stderr) = finish(backup);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("InternalError: injected 503"), "{stderr}");
    assert!(stderr.contains("backup of `slow` failed"), "{stderr}");
    proxy.set(Faults::NONE);
    assert_eq!(snapshot_count(&ws), 3, "the failed backup left a snapshot");
    ws.run(&["check"]).expect_code(0);
    ws.run(&["backup", "slow"]).expect_code(0);
    assert_eq!(snapshot_count(&ws), 4);
}

/// SIGKILL in the middle of a backup: the repository stays consistent (`check` accepts it),
/// the dead process's lock is taken over with a message, and the next backup works.
#[test]
fn a_killed_backup_leaves_a_repository_that_works_on_s3() {
    let s3 = S3Server::start();
    let bucket = s3.bucket();
    let ws = Workspace::s3(BIN, &s3.endpoint(), &bucket);
    ws.write_config(
        "[targets.slow]\nkind = \"command\"\nbackup = \"head -c 30000000 /dev/urandom; sleep 30\"\n",
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
