//! Repositories written by an earlier lifeboat stay readable: `tests/fixtures/release-0.1/`
//! holds a small repository written by lifeboat 0.1 at commit c26e2c3, with rustic_core 0.13.0
//! as published, before the chunker of issue 24 (its manifests have the JSON format of
//! 62dd4c0: `Lsn` and `SystemId` serialize as the strings they replaced) with a
//! logical, a files and a physical snapshot and the physical target's archived WAL. This
//! lists, checks and restores it with today's code, and backs the same files up again to
//! show that today's chunker cuts where 0.1's did (nothing new is stored).
//!
//! To write the fixture again (only when its format is meant to change):
//! `cargo test -p lifeboat --test compat -- --ignored write_the_fixture`.

use std::path::{Path, PathBuf};

use lifeboat_testkit::{Run, Workspace, postgres, postgres_archiving, stop_server};

const BIN: &str = env!("CARGO_BIN_EXE_lifeboat");

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/release-0.1")
}

/// What the fixture's files target held: the same function wrote it.
fn etc_files() -> Vec<(&'static str, String)> {
    vec![
        ("app.conf", "listen = 0.0.0.0:8080\nworkers = 4\n".into()),
        (
            "keys/public.pem",
            (0..40).map(|i| format!("line {i} of a key\n")).collect(),
        ),
        ("dump.sql", dump_like_text(12 << 20)),
    ]
}

/// `len` bytes of `COPY` lines, the same every time: large enough to be cut into several
/// chunks, so a backup of it again shows whether today's chunker cuts where 0.1's did.
fn dump_like_text(len: usize) -> String {
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut out = String::with_capacity(len + 200);
    let mut id = 0;
    while out.len() < len {
        id += 1;
        let (a, b) = (next(), next());
        out.push_str(&format!(
            "{id}\tuser{}@example.com\t{}\t{:x}\t2026-{:02}-{:02} 10:{:02}:00+00\n",
            a % 100_000,
            b % 1_000_000,
            a ^ b,
            1 + a % 12,
            1 + b % 28,
            a % 60
        ));
    }
    out
}

/// The targets, as the fixture's config named them; `url` and `data-dir` are only used
/// by backups.
fn targets(url: &str, data_dir: &Path, etc: &Path) -> String {
    format!(
        "[targets.db]\nkind = \"postgres\"\nmode = \"physical\"\nurl = \"{url}\"\ndata-dir = \"{}\"\n\n\
         [targets.app]\nkind = \"postgres\"\nurl = \"{url}\"\n\n\
         [targets.etc]\nkind = \"files\"\npaths = [\"{}\"]\n",
        data_dir.display(),
        etc.display()
    )
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

#[test]
#[ignore = "writes tests/fixtures/release-0.1; run by hand"]
fn write_the_fixture() {
    let ws = Workspace::new(BIN);
    let pg = postgres_archiving(&format!(
        "{BIN} -q -c {} wal push %p",
        ws.config_path().display()
    ));
    let etc = ws.path().join("etc");
    for (name, text) in etc_files() {
        let path = etc.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    // The logical target backs up database `app`; the physical one the whole cluster.
    ws.write_config(&targets(&pg.url("app"), &pg.data(), &etc).replacen(
        &format!("url = \"{}\"\ndata-dir", pg.url("app")),
        &format!("url = \"{}\"\ndata-dir", pg.url("postgres")),
        1,
    ));
    ws.run(&["init"]).expect_code(0);
    ws.share_with_server();
    pg.psql("postgres", "CREATE DATABASE app").unwrap();
    pg.psql(
        "app",
        "CREATE TABLE users (id int PRIMARY KEY, email text NOT NULL);
         INSERT INTO users SELECT i, 'u' || i || '@example.com' FROM generate_series(1, 300) i;",
    )
    .unwrap();
    pg.psql(
        "postgres",
        "CREATE TABLE events (id int PRIMARY KEY);
         INSERT INTO events SELECT generate_series(1, 500);",
    )
    .unwrap();
    for target in ["app", "etc", "db"] {
        ws.run(&["backup", target]).expect_code(0);
    }
    // WAL after the base backup: recovery replays it.
    // (Two calls: one `-c` is one transaction, whose commit would come after the switch.)
    pg.psql(
        "postgres",
        "INSERT INTO events SELECT generate_series(501, 600)",
    )
    .unwrap();
    let last = pg
        .psql("postgres", "SELECT pg_walfile_name(pg_switch_wal())")
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let archived = pg
            .psql(
                "postgres",
                "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver",
            )
            .unwrap();
        if archived.len() >= 24 && archived[..24] >= *last.trim() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{last} never archived"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let out = fixture();
    let _ = std::fs::remove_dir_all(&out);
    copy_dir(&ws.repo(), &out.join("repo"));
    std::fs::copy(ws.path().join("password"), out.join("password")).unwrap();
    // The restored cluster's superuser keeps the password it had.
    std::fs::write(out.join("cluster-password"), &pg.password).unwrap();
}

#[test]
fn a_repository_written_by_release_0_1_is_listed_checked_and_restored() {
    let ws = Workspace::new(BIN);
    copy_dir(&fixture().join("repo"), &ws.repo());
    std::fs::copy(fixture().join("password"), ws.path().join("password")).unwrap();
    let pg = postgres();
    let etc = ws.path().join("etc-was-here");
    ws.write_config(&targets(
        &pg.url("app"),
        &ws.path().join("no-data-dir"),
        &etc,
    ));
    ws.share_with_server();

    // Listed: one snapshot of each target, with its manifest.
    let snaps = ws.run(&["snapshots", "--json"]).json();
    let mut listed: Vec<(String, String)> = snaps["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["target"].as_str().unwrap().to_string(),
                s["manifest"]["method"].as_str().unwrap_or("?").to_string(),
            )
        })
        .collect();
    listed.sort();
    assert_eq!(
        listed,
        [
            ("app".to_string(), "logical".to_string()),
            ("db".to_string(), "physical".to_string()),
            ("etc".to_string(), "files".to_string())
        ],
        "{snaps:#}"
    );
    // Checked, data included.
    ws.run(&["check", "--read-data"]).expect_code(0);

    // The same files again: every chunk is already there, so only the snapshot's trees and
    // manifest are new (a chunker that cut elsewhere would store megabytes).
    let again = ws.path().join("etc-again");
    for (name, text) in etc_files() {
        let path = again.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    ws.write_config(&targets(
        &pg.url("app"),
        &ws.path().join("no-data-dir"),
        &again,
    ));
    let run = ws.run(&["backup", "etc", "--json"]);
    run.expect_code(0);
    let stored = run.json()["backups"][0]["stored_bytes"].as_u64().unwrap();
    assert!(stored < 32 << 10, "{stored} bytes stored: {}", run.stdout);
    ws.write_config(&targets(
        &pg.url("app"),
        &ws.path().join("no-data-dir"),
        &etc,
    ));

    // Logical: into a new database, row counts verified.
    let run = ws.run(&["restore", "app", "--to", &pg.url("app_restored")]);
    run.expect_code(0);
    assert_eq!(
        pg.psql("app_restored", "SELECT count(*), max(email) FROM users")
            .unwrap(),
        "300|u9@example.com"
    );

    // Files: into a new folder, byte for byte.
    let to = ws.path().join("etc-restored");
    ws.run(&["restore", "etc", "--to-dir", to.to_str().unwrap()])
        .expect_code(0);
    for (name, text) in etc_files() {
        let found = walk(&to)
            .into_iter()
            .find(|p| p.ends_with(name))
            .unwrap_or_else(|| panic!("{name} not restored under {}", to.display()));
        assert_eq!(std::fs::read_to_string(found).unwrap(), text, "{name}");
    }

    // Physical: the base backup and its archived WAL, recovered to the end. The restored
    // cluster keeps its own superuser password: with the configured URL's password lifeboat
    // cannot watch the recovery, and says so at once (it used to wait an hour).
    let started = std::time::Instant::now();
    let (run, port, data) = restore_physical(&ws, "db-wrong-password");
    run.expect_code(1).expect_stderr(
        &[
            "cannot log in to watch its recovery",
            "keeps the users and passwords",
        ],
        &[&pg.password],
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(120));
    stop_server(&pg, &data);
    let password = std::fs::read_to_string(fixture().join("cluster-password")).unwrap();
    let url = format!(
        "postgres://postgres:{}@127.0.0.1:1/postgres",
        password.trim()
    );
    ws.write_config(
        &targets(&pg.url("app"), &ws.path().join("no-data-dir"), &etc).replacen(
            &format!("url = \"{}\"\ndata-dir", pg.url("app")),
            &format!("url = \"{url}\"\ndata-dir"),
            1,
        ),
    );
    let (run, port2, data) = restore_physical(&ws, "db-restored");
    run.expect_code(0);
    assert_ne!(port, port2);
    let url = url.replace(":1/", &format!(":{port2}/"));
    let count = std::process::Command::new(pg.tools().path("psql"))
        .args([
            "-X",
            "-A",
            "-t",
            "-d",
            &url,
            "-c",
            "SELECT count(*) FROM events",
        ])
        .output()
        .unwrap();
    stop_server(&pg, &data);
    assert_eq!(
        String::from_utf8_lossy(&count.stdout).trim(),
        "600",
        "{count:?}"
    );
}

/// `restore db --latest --start` into `dir` of the workspace: the run, port and folder.
fn restore_physical(ws: &Workspace, dir: &str) -> (Run, u16, PathBuf) {
    let port = lifeboat_postgres::cluster::free_port().unwrap();
    let data = ws.path().join(dir);
    let run = ws.run(&[
        "restore",
        "db",
        "--to-dir",
        data.to_str().unwrap(),
        "--latest",
        "--no-archive",
        "--start",
        "--port",
        &port.to_string(),
    ]);
    (run, port, data)
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
