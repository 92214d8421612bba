//! End to end: physical base backups, WAL archiving through `lifeboat wal push`, and
//! point-in-time recovery with `lifeboat wal fetch`, against real archiving clusters.

use std::{path::Path, time::Duration};

use lifeboat_testkit::{Cluster, Run, Workspace, free_port, postgres_archiving, stop_server};

const BIN: &str = env!("CARGO_BIN_EXE_lifeboat");

/// An archiving cluster whose archive_command is `lifeboat wal push` into the workspace's
/// repository, with a base backup taken.
fn setup() -> (Cluster, Workspace) {
    let ws = Workspace::new(BIN);
    let pg = postgres_archiving(&format!(
        "{BIN} -q -c {} wal push %p",
        ws.config_path().display()
    ));
    ws.write_config(&format!(
        "[targets.db]\nkind = \"postgres\"\nmode = \"physical\"\nurl = \"{}\"\ndata-dir = \"{}\"\n",
        pg.url("postgres"),
        pg.data().display()
    ));
    ws.run(&["init"]).expect_code(0);
    ws.share_with_server();
    (pg, ws)
}

fn sql(pg: &Cluster, port: u16, q: &str) -> String {
    let out = std::process::Command::new(pg.tools().path("psql"))
        .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
        .args([
            "-p",
            &port.to_string(),
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-c",
            q,
        ])
        .env("PGPASSWORD", &pg.password)
        .output()
        .unwrap();
    assert!(out.status.success(), "{q}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Switch to a new segment and wait until the one holding everything so far is archived.
fn archive_all(pg: &Cluster, port: u16) {
    let done = sql(pg, port, "SELECT pg_walfile_name(pg_switch_wal())");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let last = sql(
            pg,
            port,
            "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver",
        );
        // `…02.00000028.backup` comes after segment `…02` itself.
        if last.len() >= 24 && last[..24] >= *done.as_str() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "segment {done} never archived (last: {last}; failures: {})",
            sql(
                pg,
                port,
                "SELECT failed_count || ' ' || coalesce(last_failed_wal, '') FROM pg_stat_archiver"
            )
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The newest snapshot's physical manifest, after checking what every base backup
/// records: this cluster's system identifier, timeline 1, and WAL start ≤ end.
fn newest_base_backup(ws: &Workspace, pg: &Cluster, port: u16) -> serde_json::Value {
    let snaps = ws.run(&["snapshots", "--json"]).json();
    let m = snaps["snapshots"][0]["manifest"]["physical"].clone();
    assert_eq!(m["timeline"], 1, "{m}");
    let system_id = sql(
        pg,
        port,
        "SELECT system_identifier FROM pg_control_system()",
    );
    assert_eq!(m["system-id"].as_str().unwrap(), system_id, "{m}");
    let (start, stop) = (
        m["start-lsn"].as_str().unwrap(),
        m["stop-lsn"].as_str().unwrap(),
    );
    let ordered = format!("SELECT '{stop}'::pg_lsn >= '{start}'::pg_lsn");
    assert_eq!(sql(pg, port, &ordered), "t", "{m}");
    m
}

fn insert_events(pg: &Cluster, port: u16, from: u32, to: u32) {
    sql(
        pg,
        port,
        &format!("INSERT INTO events (id) SELECT g FROM generate_series({from}, {to}) g"),
    );
}

/// The server's time, a second clear of what was written before and what comes after.
fn a_moment_apart(pg: &Cluster, port: u16) -> String {
    std::thread::sleep(Duration::from_millis(1100));
    let now = sql(pg, port, "SELECT now()");
    std::thread::sleep(Duration::from_millis(1100));
    now
}

/// Restore into a new folder of the workspace, start it, return its port and the output.
fn restore(ws: &Workspace, dir: &str, extra: &[&str]) -> (u16, Run) {
    let port = free_port();
    let to = ws.path().join(dir);
    let mut args = vec![
        "restore",
        "db",
        "--to-dir",
        to.to_str().unwrap(),
        "--start",
        "--port",
    ];
    let p = port.to_string();
    args.push(&p);
    args.extend_from_slice(extra);
    let run = ws.run(&args);
    (port, run)
}

/// Switch the config to a `password-command` that appends the folder it runs in to a log
/// (shared with the server's user), and return the log's path.
fn count_repository_opens(ws: &Workspace) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let opens = ws.path().join("opens");
    std::fs::write(&opens, "").unwrap();
    std::fs::set_permissions(&opens, std::fs::Permissions::from_mode(0o666)).unwrap();
    let config = std::fs::read_to_string(ws.config_path()).unwrap();
    let line = config
        .lines()
        .find(|l| l.starts_with("password-file"))
        .unwrap();
    let command = format!(
        "password-command = \"pwd >> {} && cat {}\"",
        opens.display(),
        ws.path().join("password").display()
    );
    std::fs::write(ws.config_path(), config.replace(line, &command)).unwrap();
    opens
}

#[test]
fn recovery_to_a_time_a_name_an_lsn_and_the_end_then_across_timelines() {
    let (pg, ws) = setup();
    let opens = count_repository_opens(&ws);
    let main = pg.port;
    sql(
        &pg,
        main,
        "CREATE TABLE events (id int PRIMARY KEY, at timestamptz DEFAULT clock_timestamp())",
    );
    insert_events(&pg, main, 1, 100);
    let run = ws.run(&["backup", "--json"]);
    run.expect_code(0);
    let m = newest_base_backup(&ws, &pg, main);
    assert!(m["files"]["files"].as_array().unwrap().len() > 500, "{m}");

    insert_events(&pg, main, 101, 150);
    let between = a_moment_apart(&pg, main);
    insert_events(&pg, main, 151, 175);
    sql(&pg, main, "SELECT pg_create_restore_point('before-drop')");
    let lsn = sql(&pg, main, "SELECT pg_current_wal_insert_lsn()");
    sql(&pg, main, "DROP TABLE events");
    archive_all(&pg, main);

    // A moment between two inserts: exactly the rows before it.
    let (port, run) = restore(&ws, "at-time", &["--time", &between, "--no-archive"]);
    run.expect_code(0);
    run.expect_stdout(&["recovered: last replayed commit"], &[]);
    assert_eq!(
        sql(&pg, port, "SELECT count(*), max(id) FROM events"),
        "150|150"
    );
    // The restoring process served the recovery's WAL: no `wal fetch` opened the
    // repository (each open would have logged the restored folder).
    let at_time = ws.path().join("at-time");
    let log = std::fs::read_to_string(&opens).unwrap();
    assert!(
        log.lines()
            .any(|l| !l.starts_with(ws.path().to_str().unwrap())),
        "the restore itself opens the repository: {log}"
    );
    assert!(
        !log.lines().any(|l| Path::new(l) == at_time),
        "a restore_command opened the repository: {log}"
    );
    stop_server(&pg, &at_time);

    // A restore point and an LSN: everything before the DROP.
    for (dir, extra) in [
        ("at-name", ["--name", "before-drop"]),
        ("at-lsn", ["--lsn", lsn.as_str()]),
    ] {
        let (port, run) = restore(&ws, dir, &[extra[0], extra[1], "--no-archive"]);
        run.expect_code(0);
        assert_eq!(
            sql(&pg, port, "SELECT count(*) FROM events"),
            "175",
            "{dir} ({extra:?}): {}\n{}",
            run.stdout,
            std::fs::read_to_string(ws.path().join(dir).join("lifeboat-recovery.log"))
                .unwrap_or_default()
        );
        stop_server(&pg, &ws.path().join(dir));
    }

    // The end of the archive: the table is gone, as on the server.
    let (port, run) = restore(&ws, "at-end", &["--latest", "--no-archive"]);
    run.expect_code(0);
    assert_eq!(sql(&pg, port, "SELECT to_regclass('events') IS NULL"), "t");
    stop_server(&pg, &ws.path().join("at-end"));

    // A recovered server that archives makes timeline 2; recovering again follows it
    // and makes timeline 3.
    let (port, run) = restore(&ws, "tl2", &["--time", &between, "--json"]);
    run.expect_code(0);
    assert_eq!(run.json()["timeline"], 2);
    insert_events(&pg, port, 1001, 1010);
    archive_all(&pg, port);
    stop_server(&pg, &ws.path().join("tl2"));
    let (port, run) = restore(&ws, "tl3", &["--latest", "--no-archive", "--json"]);
    run.expect_code(0);
    assert_eq!(run.json()["timeline"], 3, "{}", run.stdout);
    assert_eq!(sql(&pg, port, "SELECT count(*) FROM events"), "160");
    stop_server(&pg, &ws.path().join("tl3"));

    // Regression (issue 17, point 5): a drill with `--time` recovers the base backup it
    // chose to that moment. It used to recover the newest base backup through the whole
    // archive (160 rows on timeline 3) while the report named the moment asked for.
    let config = std::fs::read_to_string(ws.config_path()).unwrap();
    std::fs::write(
        ws.config_path(),
        format!(
            "{config}\n[[checks]]\ntarget = \"db\"\nname = \"events at the moment\"\nsql = \"SELECT count(*) FROM events\"\nexpect = \"150\"\n"
        ),
    )
    .unwrap();
    let run = ws.run(&["drill", "db", "--time", &between, "--json"]);
    run.expect_code(0);
    let r = &run.json()["drills"][0]["report"];
    let checks = r["checks"].as_array().unwrap();
    let passed = |name: &str| {
        checks
            .iter()
            .find(|c| c["name"].as_str().is_some_and(|n| n.starts_with(name)))
            .unwrap_or_else(|| panic!("no check {name}: {r:#}"))["passed"]
            == true
    };
    assert!(passed("recover to 20"), "{r:#}");
    assert!(passed("events at the moment"), "{r:#}");
    assert_eq!(r["snapshot"], only_base_backup_id(&ws), "{r:#}");
    let restorable = r["restorable-at"].as_str().unwrap();
    assert_eq!(
        sql(
            &pg,
            main,
            &format!("SELECT '{restorable}'::timestamptz = '{between}'::timestamptz")
        ),
        "t",
        "restorable at {restorable}, asked for {between}"
    );
}

/// One table of a physical target as it was at a moment, into the live database: a
/// throwaway copy recovered to that moment, the table copied over the current one after
/// `--force` (an emergency dump first), the other tables untouched; the throwaway server and
/// its folder are gone afterwards.
#[test]
fn one_table_of_a_physical_target_comes_back_as_it_was() {
    let (pg, ws) = setup();
    let main = pg.port;
    sql(
        &pg,
        main,
        "CREATE TABLE credits (user_id int PRIMARY KEY, balance int NOT NULL); \
         CREATE TABLE orders (id serial PRIMARY KEY, total int); \
         INSERT INTO credits SELECT g, 100 FROM generate_series(1, 300) g",
    );
    ws.run(&["backup"]).expect_code(0);
    sql(
        &pg,
        main,
        "UPDATE credits SET balance = balance + user_id WHERE user_id % 3 = 0",
    );
    let at = a_moment_apart(&pg, main);
    let credits = "SELECT count(*) || ':' || sum(balance) || ':' || md5(string_agg(user_id || '=' || balance, ',' ORDER BY user_id)) FROM credits";
    let before = sql(&pg, main, credits);
    sql(
        &pg,
        main,
        "UPDATE credits SET balance = -balance WHERE user_id % 7 = 0; \
         INSERT INTO orders (total) VALUES (1), (2), (3)",
    );
    archive_all(&pg, main);
    assert_ne!(sql(&pg, main, credits), before, "the corruption happened");

    ws.run(&["restore", "db", "--time", &at, "--table", "credits"])
        .expect_code(1)
        .expect_stderr(
            &["refusing to overwrite: table `public.credits` exists"],
            &[],
        );
    let run = ws.run(&[
        "restore", "db", "--time", &at, "--table", "credits", "--force",
    ]);
    run.expect_code(0).expect_stdout(
        &[
            "recovered a throwaway copy",
            "300 rows at that moment, 300 in database `postgres`",
        ],
        &[],
    );
    assert_eq!(sql(&pg, main, credits), before, "credits as at {at}");
    assert_eq!(
        sql(&pg, main, "SELECT count(*) FROM orders"),
        "3",
        "orders untouched"
    );
    let emergency = ws
        .snapshots()
        .into_iter()
        .filter(|s| s["emergency"] == true)
        .collect::<Vec<_>>();
    assert_eq!(emergency.len(), 1, "{emergency:?}");
    assert_eq!(emergency[0]["kind"], "logical");
    // No throwaway server is left running.
    let left = std::process::Command::new("pgrep")
        .args(["-f", "lifeboat-drill-table-"])
        .output()
        .unwrap();
    assert!(
        left.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&left.stdout)
    );
}

/// The full id of the only base backup.
fn only_base_backup_id(ws: &Workspace) -> serde_json::Value {
    let snaps = ws.run(&["snapshots", "--json"]).json();
    let ids: Vec<&serde_json::Value> = snaps["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["manifest"]["physical"].is_object())
        .map(|s| &s["id"])
        .collect();
    assert_eq!(ids.len(), 1, "{snaps:#}");
    ids[0].clone()
}

/// Without `data-dir`, the base backup is `pg_basebackup`'s tar stream: its WAL start and
/// end come from inside the stream, and a restore extracts it and recovers to a time and
/// to a transaction id; a drill recovers it through the whole archive.
#[test]
fn a_streamed_base_backup_recovers_to_a_time_and_an_xid() {
    let ws = Workspace::new(BIN);
    let pg = postgres_archiving(&format!(
        "{BIN} -q -c {} wal push --target db %p",
        ws.config_path().display()
    ));
    let main = pg.port;
    // `plain` may log in but not replicate: its streamed backup must fail cleanly.
    ws.write_config(&format!(
        "[targets.db]\nkind = \"postgres\"\nmode = \"physical\"\nurl = \"{}\"\n\n\
         [targets.plain]\nkind = \"postgres\"\nmode = \"physical\"\n\
         url = \"postgres://plain:plain@127.0.0.1:{main}/postgres\"\n",
        pg.url("postgres"),
    ));
    ws.run(&["init"]).expect_code(0);
    ws.share_with_server();
    sql(&pg, main, "CREATE ROLE plain LOGIN PASSWORD 'plain'");
    let run = ws.run(&["backup", "plain"]);
    run.expect_code(1);
    run.expect_stderr(&["pg_basebackup"], &[]);
    assert!(!run.stderr.contains("plain:plain"), "{}", run.stderr);
    assert!(
        ws.run(&["snapshots", "plain", "--json"]).json()["snapshots"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    sql(
        &pg,
        main,
        "CREATE TABLE events (id int PRIMARY KEY, at timestamptz DEFAULT clock_timestamp())",
    );
    insert_events(&pg, main, 1, 100);
    ws.run(&["backup", "db"]).expect_code(0);
    let m = newest_base_backup(&ws, &pg, main);
    assert_eq!(m["base-tar"]["path"], "db/base.tar", "{m}");
    assert!(m["base-tar"]["bytes"].as_u64().unwrap() > 10 << 20, "{m}");
    assert!(m["files"]["files"].as_array().unwrap().is_empty());

    insert_events(&pg, main, 101, 150);
    let between = a_moment_apart(&pg, main);
    let xid = sql(
        &pg,
        main,
        "WITH i AS (INSERT INTO events (id) SELECT g FROM generate_series(151, 160) g) SELECT txid_current()",
    );
    insert_events(&pg, main, 161, 175);
    archive_all(&pg, main);

    let dry = ws.run(&[
        "restore",
        "db",
        "--to-dir",
        "/nonexistent/x",
        "--latest",
        "--dry-run",
    ]);
    dry.expect_code(0);
    dry.expect_stdout(&["streamed, a tar of"], &[]);

    // Run as the server's user, a folder it may not create is named, with a hint.
    let no_entry = ws.path().join("root-only");
    std::fs::create_dir(&no_entry).unwrap();
    std::os::unix::fs::chown(&no_entry, Some(0), Some(0)).unwrap();
    let to = no_entry.join("data");
    let run = as_server_user(ws.command(&[
        "restore",
        "db",
        "--to-dir",
        to.to_str().unwrap(),
        "--latest",
    ]));
    run.expect_code(1);
    assert!(
        run.stderr.contains(&format!("`{}`", to.display()))
            && run.stderr.contains("Permission denied")
            && run.stderr.contains("hint:"),
        "{}",
        run.stderr
    );

    let (port, run) = restore(&ws, "at-time", &["--time", &between, "--no-archive"]);
    run.expect_code(0);
    assert_eq!(
        sql(&pg, port, "SELECT count(*), max(id) FROM events"),
        "150|150"
    );
    stop_server(&pg, &ws.path().join("at-time"));

    // A transaction id that is not a number is refused before anything is written.
    let bad = ws.run(&[
        "restore",
        "db",
        "--to-dir",
        "/nonexistent/x",
        "--xid",
        "INSERT 0 10\n728",
    ]);
    bad.expect_code(2);
    bad.expect_stderr(&["is not a transaction id"], &[]);
    // Recovery stops right after the transaction commits (inclusive).
    let (port, run) = restore(&ws, "at-xid", &["--xid", &xid, "--no-archive"]);
    run.expect_code(0);
    assert_eq!(
        sql(&pg, port, "SELECT count(*), max(id) FROM events"),
        "160|160",
        "{}",
        run.stdout
    );
    stop_server(&pg, &ws.path().join("at-xid"));

    // A drill of the streamed base backup: extracted, recovered through the archive, checked.
    let config = std::fs::read_to_string(ws.config_path()).unwrap();
    std::fs::write(
        ws.config_path(),
        format!(
            "{config}\n[[checks]]\ntarget = \"db\"\nname = \"every event\"\nsql = \"SELECT count(*) FROM events\"\nexpect = \"175\"\n"
        ),
    )
    .unwrap();
    let run = ws.run(&["drill", "db", "--json"]);
    run.expect_code(0);
    let r = &run.json()["drills"][0]["report"];
    assert_eq!(r["kind"], "physical", "{r:#}");
    let checks = r["checks"].as_array().unwrap();
    for name in ["recover to the end of the archive", "every event"] {
        let c = checks.iter().find(|c| c["name"] == name).unwrap();
        assert_eq!(c["passed"], true, "{c}");
    }
}

#[test]
fn wal_push_is_create_only_refuses_strangers_and_fetch_is_quiet_when_missing() {
    let (pg, ws) = setup();
    sql(
        &pg,
        pg.port,
        "CREATE TABLE t AS SELECT g FROM generate_series(1, 10000) g",
    );
    archive_all(&pg, pg.port);
    let name = sql(
        &pg,
        pg.port,
        "SELECT last_archived_wal FROM pg_stat_archiver",
    );
    ws.run(&["backup"]).expect_code(0);

    // A segment the server archived, pushed again by hand: same content is fine.
    let sysid = sql(
        &pg,
        pg.port,
        "SELECT system_identifier FROM pg_control_system()",
    );
    let segment = ws.path().join("pushed").join(&name);
    std::fs::create_dir_all(segment.parent().unwrap()).unwrap();
    let fetch = |name: &str, to: &Path| {
        ws.run(&[
            "wal",
            "fetch",
            name,
            to.to_str().unwrap(),
            "--system-id",
            &sysid,
        ])
    };
    fetch(&name, &segment).expect_code(0);
    assert_eq!(
        std::fs::metadata(&segment).unwrap().len(),
        16 << 20,
        "{name}: {:?}",
        std::process::Command::new("ls")
            .arg("-lR")
            .arg(ws.repo().join("lifeboat/wal"))
            .output()
    );
    ws.run(&["wal", "push", segment.to_str().unwrap()])
        .expect_code(0);
    // Other content under the same name: refused.
    let mut changed = std::fs::read(&segment).unwrap();
    let n = changed.len() - 100;
    changed[n] ^= 0xff;
    let other = ws.path().join("other").join(&name);
    std::fs::create_dir_all(other.parent().unwrap()).unwrap();
    std::fs::write(&other, &changed).unwrap();
    let run = ws.run(&["wal", "push", other.to_str().unwrap()]);
    run.expect_code(1);
    run.expect_stderr(&["different content"], &[]);

    // A segment of another cluster (another system identifier in its header): refused.
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes[24..32].copy_from_slice(&42u64.to_le_bytes());
    let stranger = ws.path().join("stranger").join("0000000100000000000000AA");
    std::fs::create_dir_all(stranger.parent().unwrap()).unwrap();
    std::fs::write(&stranger, &bytes).unwrap();
    let run = ws.run(&["wal", "push", stranger.to_str().unwrap()]);
    run.expect_code(1);
    run.expect_stderr(&["belongs to cluster 42"], &[]);

    // A missing segment: exit 1 and nothing on stderr (how recovery learns it is done).
    let nowhere = ws.path().join("nowhere");
    let run = fetch("0000000100000000000000FF", &nowhere);
    run.expect_code(1);
    assert!(!nowhere.exists());
    assert_eq!(run.stderr, "");

    // A push killed at any moment leaves no object, or a whole one.
    let big = ws.path().join("kill").join("0000000100000000000000BB");
    std::fs::create_dir_all(big.parent().unwrap()).unwrap();
    std::fs::copy(&segment, &big).unwrap();
    for delay in [0u64, 20, 60, 150, 400] {
        let mut child = ws
            .command(&["wal", "push", big.to_str().unwrap()])
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay));
        let _ = child.kill();
        let _ = child.wait();
        let out = ws.path().join(format!("after-kill-{delay}"));
        let run = fetch("0000000100000000000000BB", &out);
        match run.code {
            1 => assert!(!out.exists()),
            0 => assert!(
                std::fs::read(&out).unwrap() == std::fs::read(&big).unwrap(),
                "a partial object after a kill"
            ),
            c => panic!("fetch after a killed push exited {c}: {}", run.stderr),
        }
    }

    // Look-ahead: one push also stores the other `.ready` files; the archiver's later
    // calls for them are answered from the spool without opening the repository.
    // (The spool is trusted only by its owner: start it afresh as the user running here.)
    let _ =
        std::fs::remove_dir_all(std::env::temp_dir().join(format!("lifeboat-wal-spool-{sysid}")));
    let pg_wal = ws.path().join("ahead").join("pg_wal");
    std::fs::create_dir_all(pg_wal.join("archive_status")).unwrap();
    let names = [
        "0000000100000000000000C1",
        "0000000100000000000000C2",
        "0000000100000000000000C3",
    ];
    for n in names {
        std::fs::copy(&segment, pg_wal.join(n)).unwrap();
        std::fs::write(pg_wal.join("archive_status").join(format!("{n}.ready")), "").unwrap();
    }
    ws.run(&["wal", "push", pg_wal.join(names[0]).to_str().unwrap()])
        .expect_code(0);
    for n in &names[1..] {
        let out = ws.path().join(format!("ahead-{n}"));
        fetch(n, &out).expect_code(0);
        assert!(
            std::fs::read(&out).unwrap() == std::fs::read(&segment).unwrap(),
            "{n} differs"
        );
    }
    let run = ws.run(&["-v", "wal", "push", pg_wal.join(names[2]).to_str().unwrap()]);
    run.expect_code(0);
    run.expect_stderr(&["pushed ahead"], &[]);
    // A spool someone else owns is not trusted: the push takes the long way.
    let spool = std::env::temp_dir().join(format!("lifeboat-wal-spool-{sysid}"));
    let postgres = std::fs::metadata(pg.data()).unwrap();
    let me = std::fs::metadata("/proc/self").unwrap();
    if std::os::unix::fs::MetadataExt::uid(&postgres) != std::os::unix::fs::MetadataExt::uid(&me) {
        std::os::unix::fs::chown(
            &spool,
            Some(std::os::unix::fs::MetadataExt::uid(&postgres)),
            None,
        )
        .unwrap();
        let run = ws.run(&["-v", "wal", "push", pg_wal.join(names[1]).to_str().unwrap()]);
        run.expect_code(0);
        assert!(!run.stderr.contains("pushed ahead"), "{}", run.stderr);
    }

    // `status` shows the archive's newest segment and the server's archiver; archiving
    // that fails is a missed objective.
    let status = ws.run(&["status", "--json"]);
    status.expect_code(0);
    let wal = &status.json()["targets"][0]["wal"];
    assert_eq!(wal["last_archived"].as_str().unwrap().len(), 24, "{wal}");
    assert_eq!(wal["server"]["failing"], false, "{wal}");
    sql(
        &pg,
        pg.port,
        "ALTER SYSTEM SET archive_command = '/bin/false'",
    );
    sql(&pg, pg.port, "SELECT pg_reload_conf()");
    sql(&pg, pg.port, "CREATE TABLE more AS SELECT 1 AS x");
    sql(&pg, pg.port, "SELECT pg_switch_wal()");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while sql(&pg, pg.port, "SELECT failed_count FROM pg_stat_archiver") == "0" {
        assert!(
            std::time::Instant::now() < deadline,
            "archiving never failed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = ws.run(&["status", "--json"]);
    status.expect_code(3);
    assert!(
        status.json()["targets"][0]["problems"]
            .to_string()
            .contains("WAL archiving is failing"),
        "{}",
        status.stdout
    );
    // Issue 19, point 5: `serve` raises it as a problem of its own, `archiving-failed`.
    let alerts = ws.path().join("alerts.jsonl");
    let config = std::fs::read_to_string(ws.config_path()).unwrap();
    std::fs::write(
        ws.config_path(),
        format!(
            "{config}\n[[notify]]\nname = \"log\"\nkind = \"command\"\ncommand = \"cat >> {}\"\n",
            alerts.display()
        ),
    )
    .unwrap();
    let serve = ws.spawn(&[
        "serve",
        "--listen",
        &format!("127.0.0.1:{}", lifeboat_testkit::free_port()),
    ]);
    lifeboat_testkit::wait_for("the archiving alert", Duration::from_secs(60), || {
        std::fs::read_to_string(&alerts).is_ok_and(|a| a.contains("\"kind\":\"archiving-failed\""))
    });
    lifeboat_testkit::terminate(serve).expect_code(0);
    std::fs::write(ws.config_path(), config).unwrap();

    // A target before the oldest base backup, or past the archived WAL: refused before
    // anything is written.
    for (time, why) in [
        ("2001-01-01 00:00:00+00", "before the oldest base backup"),
        ("2999-01-01 00:00:00+00", "past the archived WAL"),
    ] {
        let to = ws.path().join("never");
        let run = ws.run(&[
            "restore",
            "db",
            "--to-dir",
            to.to_str().unwrap(),
            "--time",
            time,
        ]);
        run.expect_code(1);
        run.expect_stderr(&[why], &[]);
        assert!(!to.exists());
    }
}

/// Retention keeps the WAL the kept base backups need, deletes the rest, and a PITR to a
/// moment after the oldest kept base backup still works.
#[test]
fn forget_prune_keeps_the_wal_kept_base_backups_need() {
    let (pg, ws) = setup();
    let main = pg.port;
    sql(&pg, main, "CREATE TABLE events (id int PRIMARY KEY)");
    sql(
        &pg,
        main,
        "INSERT INTO events SELECT g FROM generate_series(1, 10) g",
    );
    ws.run(&["backup"]).expect_code(0);
    sql(
        &pg,
        main,
        "INSERT INTO events SELECT g FROM generate_series(11, 20) g",
    );
    archive_all(&pg, main);
    let before_second = sql(&pg, main, "SELECT now()");
    std::thread::sleep(Duration::from_millis(1100));
    ws.run(&["backup"]).expect_code(0);
    sql(
        &pg,
        main,
        "INSERT INTO events SELECT g FROM generate_series(21, 30) g",
    );
    std::thread::sleep(Duration::from_millis(1100));
    let target = sql(&pg, main, "SELECT now()");
    std::thread::sleep(Duration::from_millis(1100));
    sql(&pg, main, "DELETE FROM events");
    archive_all(&pg, main);

    let config = std::fs::read_to_string(ws.config_path()).unwrap();
    std::fs::write(
        ws.config_path(),
        format!("{config}\n[retention]\nkeep-last = 1\n"),
    )
    .unwrap();
    let dry = ws.run(&["forget", "--prune", "--dry-run", "--json"]);
    dry.expect_code(0);
    let would = dry.json()["wal"]["deleted"].as_u64().unwrap();
    assert!(would > 0, "{}", dry.stdout);
    let run = ws.run(&["forget", "--prune", "--json"]);
    run.expect_code(0);
    let j = run.json();
    assert_eq!(j["forgotten"].as_array().unwrap().len(), 1, "{j}");
    assert_eq!(j["wal"]["deleted"].as_u64().unwrap(), would);
    assert!(j["wal"]["kept"].as_u64().unwrap() > 0);
    ws.run(&["check"]).expect_code(0);

    // After the oldest kept base backup: recovered exactly.
    let (port, run) = restore(&ws, "after-prune", &["--time", &target, "--no-archive"]);
    run.expect_code(0);
    assert_eq!(sql(&pg, port, "SELECT count(*) FROM events"), "30");
    stop_server(&pg, &ws.path().join("after-prune"));
    // Before it: refused, nothing written.
    let to = ws.path().join("too-early");
    let run = ws.run(&[
        "restore",
        "db",
        "--to-dir",
        to.to_str().unwrap(),
        "--time",
        &before_second,
    ]);
    run.expect_code(1);
    run.expect_stderr(&["before the oldest base backup"], &[]);
    assert!(!to.exists());

    // A drill of the physical target: the newest base backup, recovered through the whole
    // archive in a throwaway data directory, checked, and gone afterwards.
    sql(
        &pg,
        main,
        "INSERT INTO events SELECT g FROM generate_series(1, 7) g",
    );
    archive_all(&pg, main);
    let config = std::fs::read_to_string(ws.config_path()).unwrap();
    std::fs::write(
        ws.config_path(),
        format!(
            "{config}\n[[checks]]\ntarget = \"db\"\nname = \"events after the delete\"\nsql = \"SELECT count(*) FROM events\"\nexpect = \"7\"\n"
        ),
    )
    .unwrap();
    let run = ws.run(&["drill", "--json"]);
    run.expect_code(0);
    let r = &run.json()["drills"][0]["report"];
    assert_eq!(r["kind"], "physical", "{r:#}");
    let phases: Vec<&str> = r["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        phases,
        [
            "fetch",
            "provision",
            "restore",
            "recovery",
            "checks",
            "teardown"
        ]
    );
    let checks = r["checks"].as_array().unwrap();
    for name in [
        "recover to the end of the archive",
        "pg_amcheck: B-tree indexes",
        "events after the delete",
    ] {
        let c = checks.iter().find(|c| c["name"] == name).unwrap();
        assert_eq!(c["passed"], true, "{c}");
    }
    // RPO is measured to the last replayed commit: seconds, not the base backup's age.
    let rpo = r["rpo"]["measured-seconds"].as_f64().unwrap();
    assert!((0.0..120.0).contains(&rpo), "{rpo}");
    let scratch = r["scratch"].as_str().unwrap();
    let folder = scratch.trim_start_matches("throwaway data directory ");
    assert!(!Path::new(folder).exists(), "{folder} left behind");
    // The recovered copy promoted to timeline 2 but never archived into the repository.
    let sysid = sql(
        &pg,
        main,
        "SELECT system_identifier FROM pg_control_system()",
    );
    let timeline2 = ws.repo().join(format!("lifeboat/wal/{sysid}/00000002"));
    assert!(!timeline2.exists(), "the drill archived into production");
}

/// The WAL archive on S3, through a proxy that fails every request for a while: `wal push`
/// exits non-zero during the outage (PostgreSQL keeps the segment `.ready`), archiving
/// catches up once the server is back, and recovery from the S3 archive replays the rows
/// written during the outage. Then (issue 18, point 5) a signal while a restored server
/// waits for slowed WAL reads stops that restore: exit 130, the server stopped, the data
/// directory it made removed.
#[test]
fn wal_archiving_to_s3_rides_out_an_outage() {
    use lifeboat_testkit::s3::{Fault, FaultProxy, Faults, S3Server};
    let s3 = S3Server::start();
    let proxy = FaultProxy::start(s3.port());
    let bucket = s3.bucket();
    let ws = Workspace::s3(BIN, &proxy.endpoint(), &bucket);
    // The server's archive_command gets the credentials the way a service unit would.
    let pg = postgres_archiving(&format!(
        "AWS_ACCESS_KEY_ID={} AWS_SECRET_ACCESS_KEY={} LIFEBOAT_S3_RETRIES=1 {BIN} -q -c {} wal push %p",
        lifeboat_testkit::s3::ACCESS_KEY,
        lifeboat_testkit::s3::SECRET_KEY,
        ws.config_path().display()
    ));
    ws.write_config(&format!(
        "[targets.db]\nkind = \"postgres\"\nmode = \"physical\"\nurl = \"{}\"\ndata-dir = \"{}\"\n",
        pg.url("postgres"),
        pg.data().display()
    ));
    ws.run(&["init"]).expect_code(0);
    ws.share_with_server();
    let main = pg.port;
    sql(&pg, main, "CREATE TABLE t (id int PRIMARY KEY)");
    sql(&pg, main, "INSERT INTO t SELECT generate_series(1, 100)");
    ws.run(&["backup"]).expect_code(0);
    archive_all(&pg, main);

    proxy.set(Faults::always(Fault::Status(503)));
    sql(&pg, main, "INSERT INTO t SELECT generate_series(101, 200)");
    let stuck = sql(&pg, main, "SELECT pg_walfile_name(pg_switch_wal())");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while sql(&pg, main, "SELECT failed_count FROM pg_stat_archiver") == "0" {
        assert!(
            std::time::Instant::now() < deadline,
            "wal push never failed"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        pg.data()
            .join(format!("pg_wal/archive_status/{stuck}.ready"))
            .exists(),
        "PostgreSQL must keep the segment it could not archive"
    );

    proxy.set(Faults::NONE);
    sql(&pg, main, "INSERT INTO t SELECT generate_series(201, 250)");
    archive_all(&pg, main);
    let (port, run) = restore(&ws, "after-outage", &["--latest", "--no-archive"]);
    run.expect_code(0);
    assert_eq!(sql(&pg, port, "SELECT count(*), max(id) FROM t"), "250|250");
    stop_server(&pg, &ws.path().join("after-outage"));

    let wal_reads: &'static str =
        Box::leak(format!("GET /{bucket}/repo/lifeboat/wal/").into_boxed_str());
    proxy.set(Faults::always(Fault::Delay(Duration::from_secs(4))).only(wal_reads));
    let to = ws.path().join("stopped");
    let port = free_port().to_string();
    let child = ws.spawn(&[
        "restore",
        "db",
        "--to-dir",
        to.to_str().unwrap(),
        "--latest",
        "--no-archive",
        "--start",
        "--port",
        &port,
    ]);
    // The server is up and asking for WAL, which the proxy holds back.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while !to.join("postmaster.pid").exists() || proxy.counts().1 == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the restored server never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    lifeboat_testkit::terminate(child)
        .expect_code(130)
        .expect_stderr(&[&format!("`{}` was removed again", to.display())], &[]);
    proxy.set(Faults::NONE);
    assert!(!to.exists(), "the data directory is left");
    let running = std::process::Command::new("pgrep")
        .args(["-f", &format!("postgres.*{}", to.display())])
        .output()
        .unwrap();
    assert!(
        running.stdout.is_empty(),
        "a server still runs on the removed data directory: {}",
        String::from_utf8_lossy(&running.stdout)
    );
}

/// Run `cmd` as the `postgres` user (the tests run as root), with a home of its own (and
/// its caches there, not in root's workspace folder).
fn as_server_user(mut cmd: std::process::Command) -> Run {
    use std::os::unix::process::CommandExt;
    let (uid, gid) = lifeboat_postgres::cluster::server_user()
        .unwrap()
        .expect("the tests run as root");
    cmd.uid(uid)
        .gid(gid)
        .env("HOME", "/tmp")
        .env_remove("XDG_CACHE_HOME");
    Run::from(cmd.output().expect("run lifeboat"))
}
