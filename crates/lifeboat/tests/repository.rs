//! End to end: config errors, the repository (init, password, check, locks, retention),
//! files targets, and the restic interop promise — on a local repository and, for every
//! scenario that does not look inside the folder, on an S3 server (moto) as well.

use lifeboat_testkit::{Tmpfs, Workspace, postgres, postgres_target, s3::S3Server};

const BIN: &str = env!("CARGO_BIN_EXE_lifeboat");

#[test]
fn config_errors_name_the_key_line_and_column() {
    let ws = Workspace::new(BIN);
    ws.write_config("[retention]\nkeep-dailly = 7\n");
    let run = ws.run(&["config", "check"]);
    run.expect_code(2);
    run.expect_stderr(&["lifeboat.toml:6:1"], &[]);
    run.expect_stderr(&["keep-dailly"], &[]);

    ws.write_config("[retention]\nkeep-daily = \"seven\"\n");
    let run = ws.run(&["backup"]);
    run.expect_code(2);
    run.expect_stderr(&["lifeboat.toml:6:14"], &[]);

    let missing = ws.path().join("nope.toml");
    let run = ws.run_env(&["snapshots"], &[("LIFEBOAT_CONFIG", "/dev/null/x")]);
    // -c wins over $LIFEBOAT_CONFIG; the workspace passes -c, so this reads the broken file.
    run.expect_code(2);
    let out = std::process::Command::new(BIN)
        .args(["-c", missing.to_str().unwrap(), "snapshots"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read config"));
}

#[test]
fn config_check_redacts_every_secret() {
    let ws = Workspace::new(BIN);
    ws.write_config(&postgres_target(
        "app",
        "postgres://app:s3cret-pw@db.example.com:5432/app",
    ));
    let run = ws.run(&["config", "check"]);
    run.expect_code(0);
    assert!(!run.stdout.contains("s3cret-pw"), "{}", run.stdout);
    run.expect_stdout(&["[redacted]"], &[]);
    let json = ws.run(&["config", "check", "--json"]).json();
    assert!(!json.to_string().contains("s3cret-pw"));
    assert_eq!(json["valid"], true);
}

/// Regression (issue 17, point 2): `config check` resolved only the repository password
/// and PostgreSQL URLs, and said "valid" for a Redis `url-env`, S3 credential variables or
/// a drill scratch URL that were not set. Each is now exit 2 naming the key, its line and
/// the variable. And a command target's `env` values are printed redacted.
#[test]
fn config_check_resolves_every_secret_and_names_the_key_that_does_not() {
    let ws = Workspace::new(BIN);
    // Line 5 is the first line after the repository section the workspace writes.
    let cases: [(&str, &str, &str); 4] = [
        (
            "[targets.cache]\nkind = \"redis\"\nurl-env = \"LB_TEST_UNSET_REDIS\"\n",
            "lifeboat.toml:7:1: `targets.cache.url-env`",
            "LB_TEST_UNSET_REDIS",
        ),
        (
            "[targets.media]\nkind = \"bucket\"\nurl = \"s3://media\"\naccess-key-id-env = \"LB_TEST_UNSET_KEY\"\n",
            "lifeboat.toml:8:1: `targets.media.access-key-id-env`",
            "LB_TEST_UNSET_KEY",
        ),
        (
            "[targets.media]\nkind = \"bucket\"\nurl = \"s3://media\"\nsecret-access-key-env = \"LB_TEST_UNSET_SECRET\"\n",
            "lifeboat.toml:8:1: `targets.media.secret-access-key-env`",
            "LB_TEST_UNSET_SECRET",
        ),
        (
            "[drill]\nscratch-url-env = \"LB_TEST_UNSET_SCRATCH\"\n",
            "lifeboat.toml:6:1: `drill.scratch-url-env`",
            "LB_TEST_UNSET_SCRATCH",
        ),
    ];
    for (section, at, var) in cases {
        ws.write_config(section);
        let run = ws.run(&["config", "check"]);
        run.expect_code(2).expect_stderr(&[at, var], &[]);
    }

    // An S3 repository whose credential variable is not set.
    let s3 = Workspace::s3(BIN, "http://127.0.0.1:9", "lifeboat-test");
    s3.write_config("");
    let config = std::fs::read_to_string(s3.config_path()).unwrap();
    std::fs::write(
        s3.config_path(),
        config.replace(
            "path-style = true\n",
            "path-style = true\naccess-key-id-env = \"LB_TEST_UNSET_REPO_KEY\"\n",
        ),
    )
    .unwrap();
    let run = s3.run(&["config", "check"]);
    run.expect_code(2).expect_stderr(
        &[
            "`repository.access-key-id-env`",
            "LB_TEST_UNSET_REPO_KEY",
            "lifeboat.toml:6:1",
        ],
        &[],
    );

    // A command target's env values are secrets unless plainly not.
    ws.write_config(
        "[targets.search]\nkind = \"command\"\nbackup = \"true\"\nenv = { MEILI_MASTER_KEY = \"sk-live-123\", TZ = \"UTC\" }\n",
    );
    let run = ws.run(&["config", "check"]);
    run.expect_code(0);
    assert!(!run.stdout.contains("sk-live-123"), "{}", run.stdout);
    run.expect_stdout(&["UTC"], &[]);
    let json = ws.run(&["config", "check", "--json"]).json();
    assert!(!json.to_string().contains("sk-live-123"), "{json}");
}

/// Regression (issue 17, point 3): `schedule` was accepted unchecked.
#[test]
fn a_schedule_that_is_not_one_is_a_config_error_at_its_line() {
    let ws = Workspace::new(BIN);
    let target = "[targets.etc]\nkind = \"files\"\npaths = [\"/etc/hostname\"]\n";
    ws.write_config(&format!("{target}schedule = \"this is not cron\"\n"));
    let run = ws.run(&["config", "check"]);
    run.expect_code(2)
        .expect_stderr(&["lifeboat.toml:8:12", "invalid schedule", "5 fields"], &[]);
    ws.write_config(&format!("{target}schedule = \"every 15x\"\n"));
    ws.run(&["backup"])
        .expect_code(2)
        .expect_stderr(&["lifeboat.toml:8:12", "invalid duration"], &[]);
    for good in ["0 2 * * *", "*/15 * * * mon-fri", "every 15m", "daily"] {
        ws.write_config(&format!("{target}schedule = \"{good}\"\n"));
        let run = ws.run(&["config", "check", "--json"]);
        run.expect_code(0);
        assert_eq!(run.json()["config"]["targets"]["etc"]["schedule"], good);
    }
}

/// Regression (issue 17, point 8): the help said more (or less) than the code.
#[test]
fn the_help_says_what_the_code_does() {
    let help = |args: &[&str]| {
        let out = std::process::Command::new(BIN).args(args).output().unwrap();
        assert!(out.status.success());
        // One line, whatever the terminal width wraps.
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.split_whitespace().collect::<Vec<_>>().join(" ")
    };
    let top = help(&["--help"]);
    for kind in [
        "PostgreSQL",
        "files",
        "command",
        "Redis",
        "S3 buckets",
        "physical",
    ] {
        assert!(top.contains(kind), "{kind}: {top}");
    }
    let restore = help(&["restore", "--help"]);
    assert!(
        restore.contains("the newest backup taken at or before it"),
        "{restore}"
    );
    assert!(restore.contains("one transaction"), "{restore}");
}

/// `lifeboat … | head -1`: a reader that goes away is not a crash (Rust ignores SIGPIPE, so
/// a plain `println!` panicked on the broken pipe).
#[test]
fn a_closed_stdout_is_not_a_crash() {
    let ws = Workspace::new(BIN);
    ws.write_config("");
    ws.run(&["init"]).expect_code(0);
    for args in [&["config", "check"][..], &["snapshots", "--json"]] {
        let mut child = ws
            .command(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take()); // before lifeboat writes anything
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
    }
}

/// A restore into a folder without room: refused before anything is written when the bytes
/// do not fit; and when the disk fills anyway (here: it runs out of inodes, which no free
/// space check sees), an error with a hint, not a crash. rustic_core 0.13's restore
/// unwraps its writes in worker threads: a full disk panicked it.
#[test]
fn a_full_destination_is_an_error() {
    let ws = Workspace::new(BIN);
    let data = ws.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    for i in 0..20u32 {
        let body: Vec<u8> = (0..400u32 << 10)
            .map(|j| (j.wrapping_mul(2_654_435_761) ^ i) as u8)
            .collect();
        std::fs::write(data.join(format!("f{i}")), body).unwrap();
    }
    ws.files_target_backed_up(&data);

    let small = Tmpfs::mount(&ws.path().join("small"), "size=4m");
    let out = small.path().join("out");
    ws.run(&["restore", "d", "--to-dir", out.to_str().unwrap()])
        .expect_code(1)
        .expect_stderr(
            &["not enough room in", "hint: free space there"],
            &["panicked"],
        );

    // Over files it rewrites in place, their room counts: 8 MiB restored into 10 MiB,
    // every file changed (same size), restored again with 2 MiB free.
    let snug = Tmpfs::mount(&ws.path().join("snug"), "size=10m");
    let out = snug.path().join("out");
    let to = ["restore", "d", "--to-dir", out.to_str().unwrap()];
    ws.run(&to).expect_code(0);
    let restored = out.join(data.strip_prefix("/").unwrap());
    for i in 0..20u32 {
        let f = restored.join(format!("f{i}"));
        let mut body = std::fs::read(&f).unwrap();
        body.iter_mut().for_each(|b| *b = !*b);
        std::fs::write(&f, body).unwrap();
    }
    let run = ws.run(&[&to[..], &["--force"]].concat());
    run.expect_code(0);
    assert_eq!(
        std::fs::read(restored.join("f7")).unwrap(),
        std::fs::read(data.join("f7")).unwrap()
    );

    let few_inodes = Tmpfs::mount(&ws.path().join("few"), "size=64m,nr_inodes=8");
    let out = few_inodes.path().join("out");
    ws.run(&["restore", "d", "--to-dir", out.to_str().unwrap()])
        .expect_code(1)
        .expect_stderr(
            &[
                "stopped",
                "No space left on device",
                "hint: if the destination filled up",
            ],
            &["panicked"],
        );
}

#[test]
fn init_refuses_an_existing_repository_and_a_wrong_password_is_explained() {
    init_and_password(&Workspace::new(BIN), &Workspace::new(BIN));
}

#[test]
fn init_refuses_an_existing_repository_and_a_wrong_password_is_explained_on_s3() {
    let s3 = S3Server::start();
    init_and_password(
        &Workspace::s3(BIN, &s3.endpoint(), &s3.bucket()),
        &Workspace::s3(BIN, &s3.endpoint(), &s3.bucket()),
    );
    // A bucket that does not exist is named, with a hint.
    let ws = Workspace::s3(BIN, &s3.endpoint(), "no-such-bucket");
    ws.write_config("");
    let run = ws.run(&["init"]);
    run.expect_code(1);
    run.expect_stderr(&["NoSuchBucket"], &[]);
    run.expect_stderr(&["create the bucket"], &[]);
}

fn init_and_password(ws: &Workspace, other: &Workspace) {
    ws.write_config("");
    ws.run(&["init"]).expect_code(0);
    let run = ws.run(&["init"]);
    run.expect_code(1);
    run.expect_stderr(&["already exists"], &[]);

    let run = ws.run_env(&["snapshots"], &[("LIFEBOAT_PASSWORD", "wrong")]);
    run.expect_code(1);
    run.expect_stderr(&["wrong password"], &[]);
    assert!(
        run.stderr
            .contains("hint: the password comes from `$LIFEBOAT_PASSWORD`"),
        "{}",
        run.stderr
    );

    other.write_config("");
    let run = other.run(&["snapshots"]);
    run.expect_code(1);
    run.expect_stderr(&["lifeboat init"], &[]);
}

#[test]
fn files_are_backed_up_restored_and_verified() {
    files_round_trip(&Workspace::new(BIN));
}

#[test]
fn files_are_backed_up_restored_and_verified_on_s3() {
    let s3 = S3Server::start();
    files_round_trip(&Workspace::s3(BIN, &s3.endpoint(), &s3.bucket()));
}

fn files_round_trip(ws: &Workspace) {
    let src = ws.path().join("srv");
    std::fs::create_dir_all(src.join("app/cache")).unwrap();
    std::fs::write(src.join("app/.env.production"), "SECRET_KEY=abc\n").unwrap();
    std::fs::write(src.join("app/config.yml"), "a: 1\n".repeat(1000)).unwrap();
    std::fs::write(src.join("app/cache/blob.tmp"), "skip me").unwrap();
    ws.write_config(&format!(
        "[targets.env]\nkind = \"files\"\npaths = [\"{}\"]\nexclude = [\"cache\"]\n",
        src.display()
    ));
    ws.run(&["init"]).expect_code(0);
    let run = ws.run(&["backup", "env", "--json"]);
    run.expect_code(0);
    assert_eq!(run.json()["backups"][0]["files"], 2);

    let out = ws.path().join("restored");
    let run = ws.run(&["restore", "env", "--to-dir", out.to_str().unwrap()]);
    run.expect_code(0);
    run.expect_stdout(&["2 of 2 verified"], &[]);
    let restored = out.join(src.strip_prefix("/").unwrap());
    assert_eq!(
        std::fs::read_to_string(restored.join("app/.env.production")).unwrap(),
        "SECRET_KEY=abc\n"
    );
    assert!(!restored.join("app/cache").exists());

    // Restoring again over the same files needs --force and saves them first.
    std::fs::write(restored.join("app/config.yml"), "changed").unwrap();
    ws.run(&["restore", "env", "--to-dir", out.to_str().unwrap()])
        .expect_code(1);
    let run = ws.run(&[
        "restore",
        "env",
        "--to-dir",
        out.to_str().unwrap(),
        "--force",
    ]);
    run.expect_code(0);
    run.expect_stdout(&["emergency backup"], &[]);
    // The emergency backup is tagged as one, so `latest` never picks it.
    let snaps = ws.run(&["snapshots", "--json"]).json();
    let snaps = snaps["snapshots"].as_array().unwrap();
    assert_eq!(snaps.len(), 2);
    assert_eq!(
        snaps.iter().filter(|s| s["emergency"] == true).count(),
        1,
        "{snaps:?}"
    );
    assert_eq!(
        std::fs::read_to_string(restored.join("app/config.yml")).unwrap(),
        "a: 1\n".repeat(1000)
    );
    // A missing path fails the backup.
    ws.write_config("[targets.env]\nkind = \"files\"\npaths = [\"/nonexistent/lifeboat\"]\n");
    let run = ws.run(&["backup"]);
    run.expect_code(1);
    run.expect_stderr(&["/nonexistent/lifeboat"], &[]);
}

#[test]
fn forget_applies_retention_and_prune_frees_space() {
    forget_and_prune(&Workspace::new(BIN));
}

#[test]
fn forget_applies_retention_and_prune_frees_space_on_s3() {
    let s3 = S3Server::start();
    forget_and_prune(&Workspace::s3(BIN, &s3.endpoint(), &s3.bucket()));
}

fn forget_and_prune(ws: &Workspace) {
    let src = ws.path().join("data");
    std::fs::create_dir_all(&src).unwrap();
    ws.write_config(&format!(
        "[retention]\nkeep-last = 1\n\n[targets.d]\nkind = \"files\"\npaths = [\"{}\"]\n",
        src.display()
    ));
    ws.run(&["init"]).expect_code(0);
    for i in 0..3 {
        // Different random-ish content each time, so forgetting frees real data.
        let content: String = (0..200_000)
            .map(|j| char::from(b'a' + ((j * (i + 7)) % 26) as u8))
            .collect();
        std::fs::write(src.join("f"), content).unwrap();
        ws.run(&["backup"]).expect_code(0);
    }
    let run = ws.run(&["forget", "--dry-run", "--json"]);
    run.expect_code(0);
    let plan = run.json();
    let decisions = plan["decisions"].as_array().unwrap();
    assert_eq!(decisions.iter().filter(|d| d["keep"] == true).count(), 1);
    assert_eq!(decisions.iter().filter(|d| d["keep"] == false).count(), 2);
    assert_eq!(
        ws.run(&["snapshots", "--json"]).json()["snapshots"]
            .as_array()
            .unwrap()
            .len(),
        3
    );

    let run = ws.run(&["forget", "--prune"]);
    run.expect_code(0);
    assert!(
        run.stdout.contains("last"),
        "why is printed: {}",
        run.stdout
    );
    assert_eq!(
        ws.run(&["snapshots", "--json"]).json()["snapshots"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    ws.run(&["check", "--read-data"]).expect_code(0);
    // The kept snapshot still restores.
    let out = ws.path().join("out");
    ws.run(&["restore", "d", "--to-dir", out.to_str().unwrap()])
        .expect_code(0);
}

/// forget/prune hold the exclusive lock: a backup meanwhile waits, then fails clearly.
#[test]
fn a_backup_never_runs_during_a_prune() {
    let ws = Workspace::new(BIN);
    let src = ws.path().join("data");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), "x").unwrap();
    ws.write_config(&format!(
        "[targets.d]\nkind = \"files\"\npaths = [\"{}\"]\n",
        src.display()
    ));
    ws.run(&["init"]).expect_code(0);
    // A live exclusive lock, as `forget --prune` holds it (this test process is its owner).
    let lock = serde_json::json!({
        "kind": "exclusive", "host": std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim(),
        "pid": std::process::id(), "command": "lifeboat forget --prune",
        "created": "2026-11-22T03:00:00Z", "expires": 4_000_000_000i64,
    });
    let path = ws.repo().join("lifeboat/locks/exclusive.json");
    std::fs::write(&path, lock.to_string()).unwrap();
    let run = ws.run_env(&["backup"], &[("LIFEBOAT_LOCK_WAIT", "1")]);
    run.expect_code(1);
    run.expect_stderr(&["locked by `lifeboat forget --prune`"], &[]);
    run.expect_stderr(&["hint:"], &[]);
    assert!(
        ws.run(&["snapshots", "--json"]).json()["snapshots"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    // A second prune is refused too.
    ws.run_env(&["forget", "--prune"], &[("LIFEBOAT_LOCK_WAIT", "1")])
        .expect_code(1);
    // The owner finishes: the backup goes through.
    std::fs::remove_file(&path).unwrap();
    ws.run(&["backup"]).expect_code(0);
    // `unlock` clears locks left by dead processes.
    std::fs::write(&path, lock.to_string()).unwrap();
    let run = ws.run(&["unlock"]);
    run.expect_code(0);
    run.expect_stdout(&["removed lock"], &[]);
    assert!(!path.exists());
}

/// The restic-format promise: restic itself lists lifeboat's snapshots, checks the
/// repository and dumps a byte-identical database dump.
#[test]
fn restic_reads_lifeboat_repositories() {
    restic_reads(&Workspace::new(BIN));
}

#[test]
fn restic_reads_lifeboat_repositories_on_s3() {
    let s3 = S3Server::start();
    restic_reads(&Workspace::s3(BIN, &s3.endpoint(), &s3.bucket()));
}

fn restic_reads(ws: &Workspace) {
    let pg = postgres();
    pg.psql("postgres", "CREATE DATABASE app").unwrap();
    pg.psql(
        "app",
        "CREATE TABLE t AS SELECT i, md5(i::text) FROM generate_series(1, 20000) i",
    )
    .unwrap();
    ws.write_config(&postgres_target("app", &pg.url("app")));
    ws.run(&["init"]).expect_code(0);
    ws.run(&["backup"]).expect_code(0);
    let snaps = ws.run(&["snapshots", "--json"]).json();
    let s = &snaps["snapshots"][0];
    let id = s["id"].as_str().unwrap();
    let sha = s["manifest"]["postgres"]["dump"]["sha256"]
        .as_str()
        .unwrap();

    let listed: serde_json::Value =
        serde_json::from_slice(&ws.restic(&["snapshots", "--json"])).unwrap();
    let listed = &listed[0];
    assert_eq!(listed["id"], id);
    let tags: Vec<&str> = listed["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert!(
        tags.contains(&"lifeboat")
            && tags.contains(&"target=app")
            && tags.contains(&"kind=logical")
    );
    ws.restic(&["check", "--read-data"]);
    let dump = ws.restic(&["dump", id, "/app/db.dump"]);
    use sha2::Digest;
    assert_eq!(
        hex::encode(sha2::Sha256::digest(&dump)),
        sha,
        "restic dump differs from the manifest's hash"
    );
    assert!(dump.len() > 100_000);
}

/// Issue 18, point 8: a repository whose file system fills up during a backup fails it
/// with the hint chosen from the I/O error's kind (no longer from its text), and leaves no
/// snapshot.
#[test]
fn a_full_repository_fails_the_backup_with_a_hint() {
    let ws = Workspace::new(BIN);
    let _small = Tmpfs::mount(&ws.repo(), "size=6m");
    let data = ws.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("big"), lifeboat_testkit::noise(7, 12 << 20)).unwrap();
    ws.write_config(&format!(
        "[targets.d]\nkind = \"files\"\npaths = [\"{}\"]\n",
        data.display()
    ));
    ws.run(&["init"]).expect_code(0);
    ws.run(&["backup", "d"]).expect_code(1).expect_stderr(
        &["hint: the repository's filesystem is full"],
        &["panicked"],
    );
    let snaps = ws.run(&["snapshots", "--json"]).json()["snapshots"].clone();
    assert_eq!(snaps, serde_json::json!([]));
}

/// From a review: what stands in the way of a files restore is saved first, or refused.
/// A file where the snapshot has a folder counts as overwritten (refused without `--force`,
/// in the emergency backup with it); a folder where it has a file is refused even then.
#[test]
fn a_files_restore_saves_what_stands_where_its_folders_go() {
    let ws = Workspace::new(BIN);
    let data = ws.path().join("data");
    std::fs::create_dir_all(data.join("app")).unwrap();
    std::fs::write(data.join("app/config.yml"), "port: 80\n").unwrap();
    std::fs::write(data.join("top.txt"), "top\n").unwrap();
    ws.files_target_backed_up(&data);

    let out = ws.path().join("out");
    let inside = out.join(data.strip_prefix("/").unwrap());
    std::fs::create_dir_all(&inside).unwrap();
    // A file where the snapshot has the folder `app`.
    std::fs::write(inside.join("app"), "a file in the way\n").unwrap();
    let to = ["restore", "d", "--to-dir", out.to_str().unwrap()];
    ws.run(&to)
        .expect_code(1)
        .expect_stderr(&["refusing to overwrite 1 existing file(s)"], &[]);
    assert_eq!(
        std::fs::read_to_string(inside.join("app")).unwrap(),
        "a file in the way\n"
    );
    let run = ws.run(&[&to[..], &["--force"]].concat());
    run.expect_code(0);
    assert_eq!(
        std::fs::read_to_string(inside.join("app/config.yml")).unwrap(),
        "port: 80\n"
    );
    // The emergency backup holds the file that was in the way.
    let saved = ws.path().join("saved");
    let emergency = run
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("emergency backup: snapshot "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_string();
    ws.run(&[
        "restore",
        "d",
        "--snapshot",
        &emergency,
        "--to-dir",
        saved.to_str().unwrap(),
    ])
    .expect_code(0);
    let kept = saved.join(inside.strip_prefix("/").unwrap()).join("app");
    assert_eq!(
        std::fs::read_to_string(kept).unwrap(),
        "a file in the way\n"
    );

    // A folder where the snapshot has the file `top.txt`: refused, even with --force.
    std::fs::remove_file(inside.join("top.txt")).unwrap();
    std::fs::create_dir_all(inside.join("top.txt/mine")).unwrap();
    ws.run(&[&to[..], &["--force"]].concat())
        .expect_code(1)
        .expect_stderr(&["stand where the snapshot has files"], &[]);
    assert!(inside.join("top.txt/mine").is_dir());
}
