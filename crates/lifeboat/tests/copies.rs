//! Second copies of the repository (issue 23, points 1 and 2): `lifeboat copy` into a local
//! copy and an S3 copy (each with its own password; the S3 one with its own credentials),
//! restic reading a copy, a second copy sending nothing, then the disaster: the primary
//! repository deleted and the source server gone, a physical target recovered to a chosen
//! moment with WAL from the S3 copy, a logical and a files target restored from the local
//! copy, and a drill of the copy.

use std::{path::Path, time::Duration};

use lifeboat_testkit::{
    Cluster, Run, Workspace, free_port, postgres_archiving, s3::S3Server, stop_server, wait_for,
};

const BIN: &str = env!("CARGO_BIN_EXE_lifeboat");

/// The S3 copy's credentials come from these variables, not `AWS_*`.
const COPY_CREDS: [(&str, &str); 2] = [
    ("COPY_KEY_ID", lifeboat_testkit::s3::ACCESS_KEY),
    ("COPY_SECRET", lifeboat_testkit::s3::SECRET_KEY),
];

fn sql(pg: &Cluster, port: u16, db: &str, q: &str) -> String {
    lifeboat_testkit::sql_at(pg, port, db, q)
}

/// Switch to a new segment and wait until everything written so far is archived.
fn archive_all(pg: &Cluster) {
    let done = sql(
        pg,
        pg.port,
        "postgres",
        "SELECT pg_walfile_name(pg_switch_wal())",
    );
    lifeboat_testkit::wait_for("the last segment archived", Duration::from_secs(30), || {
        let last = sql(
            pg,
            pg.port,
            "postgres",
            "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver",
        );
        last.len() >= 24 && last[..24] >= *done.as_str()
    });
}

fn copy(ws: &Workspace, args: &[&str]) -> Run {
    let mut all = vec!["copy", "--json"];
    all.extend_from_slice(args);
    ws.run_env(&all, &COPY_CREDS)
}

fn report<'a>(json: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    json["copies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["copy"] == name)
        .unwrap_or_else(|| panic!("no report of `{name}`: {json:#}"))
}

#[test]
fn the_primary_repository_gone_every_kind_restores_from_a_copy_pitr_included() {
    let s3 = S3Server::start();
    let bucket = s3.bucket();
    let ws = Workspace::new(BIN);
    let pg = postgres_archiving(&format!(
        "{BIN} -q -c {} wal push %p",
        ws.config_path().display()
    ));
    let files = ws.path().join("files");
    std::fs::create_dir_all(files.join("sub")).unwrap();
    std::fs::write(files.join("a.txt"), "alpha\n").unwrap();
    std::fs::write(files.join("sub/b.bin"), lifeboat_testkit::noise(3, 300_000)).unwrap();
    let usb = ws.path().join("usb-copy");
    std::fs::write(
        ws.path().join("usb-password"),
        "the usb copy's own password\n",
    )
    .unwrap();
    std::fs::write(
        ws.path().join("offsite-password"),
        "the offsite copy's password\n",
    )
    .unwrap();
    pg.psql("postgres", "CREATE DATABASE shop").unwrap();
    ws.write_config(&format!(
        "[targets.db]\nkind = \"postgres\"\nmode = \"physical\"\nurl = \"{}\"\ndata-dir = \"{}\"\n\n\
         [targets.shop]\nkind = \"postgres\"\nurl = \"{}\"\n\n\
         [targets.d]\nkind = \"files\"\npaths = [\"{}\"]\n\n\
         [copies.usb]\nurl = \"{}\"\npassword-file = \"{}\"\nmax-lag = \"1h\"\n\n\
         [copies.offsite]\nurl = \"s3://{bucket}/copy\"\nendpoint = \"{}\"\npath-style = true\n\
         access-key-id-env = \"COPY_KEY_ID\"\nsecret-access-key-env = \"COPY_SECRET\"\npassword-file = \"{}\"\n",
        pg.url("postgres"),
        pg.data().display(),
        pg.url("shop"),
        files.display(),
        usb.display(),
        ws.path().join("usb-password").display(),
        s3.endpoint(),
        ws.path().join("offsite-password").display(),
    ));
    ws.run(&["init"]).expect_code(0);
    ws.share_with_server();

    let main = pg.port;
    sql(
        &pg,
        main,
        "postgres",
        "CREATE TABLE events (id int PRIMARY KEY)",
    );
    sql(
        &pg,
        main,
        "postgres",
        "INSERT INTO events SELECT generate_series(1, 1000)",
    );
    sql(
        &pg,
        main,
        "shop",
        "CREATE TABLE orders (id int PRIMARY KEY, note text)",
    );
    sql(
        &pg,
        main,
        "shop",
        "INSERT INTO orders SELECT g, repeat('x', g % 50) FROM generate_series(1, 5000) g",
    );
    ws.run(&["backup"]).expect_code(0);
    sql(
        &pg,
        main,
        "postgres",
        "INSERT INTO events SELECT generate_series(1001, 2000)",
    );
    std::thread::sleep(Duration::from_millis(1100));
    let moment = sql(&pg, main, "postgres", "SELECT now()");
    std::thread::sleep(Duration::from_millis(1100));
    sql(
        &pg,
        main,
        "postgres",
        "INSERT INTO events SELECT generate_series(2001, 3000)",
    );
    archive_all(&pg);

    // A copy is never created by itself (an unmounted disk would get one): `init --repo`.
    copy(&ws, &["usb"])
        .expect_code(1)
        .expect_stdout(&["no repository at", "lifeboat init --repo usb"], &[]);
    assert!(!usb.exists());
    for name in ["usb", "offsite"] {
        ws.run_env(&["init", "--repo", name], &COPY_CREDS)
            .expect_code(0);
    }

    // Before any copy: the copies lack every snapshot; a dry run changes nothing.
    let status = ws.run_env(&["status", "--json"], &COPY_CREDS).json();
    let usb_lag = status["copies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["copy"] == "usb")
        .unwrap()
        .clone();
    assert_eq!(usb_lag["missing"], 3, "{status:#}");
    let dry = copy(&ws, &["usb", "--dry-run"]);
    dry.expect_code(0);
    assert_eq!(
        report(&dry.json(), "usb")["pending"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    let nothing_in = |dir: &Path| std::fs::read_dir(dir).map_or(true, |mut d| d.next().is_none());
    assert!(
        nothing_in(&usb.join("snapshots")),
        "a dry run copies nothing"
    );

    // Both copies, each snapshot verified there.
    let first = copy(&ws, &[]);
    first.expect_code(0);
    let first = first.json();
    for name in ["usb", "offsite"] {
        let r = report(&first, name);
        assert_eq!(
            r["snapshots"]["copied"].as_array().unwrap().len(),
            3,
            "{r:#}"
        );
        assert!(
            r["snapshots"]["bytes_sent"].as_u64().unwrap() > 300_000,
            "{r:#}"
        );
    }
    // The WAL archive went too, every segment of it.
    let wal_of = |root: &Path| -> Vec<String> {
        let mut names = Vec::new();
        let mut dirs = vec![root.join("lifeboat/wal")];
        while let Some(d) = dirs.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    dirs.push(p);
                } else {
                    names.push(p.strip_prefix(root).unwrap().display().to_string());
                }
            }
        }
        names.sort();
        names
    };
    let archived = wal_of(&ws.repo());
    assert!(archived.len() >= 3, "{archived:?}");
    assert_eq!(wal_of(&usb), archived);
    let status = ws.run_env(&["status", "--json"], &COPY_CREDS).json();
    for c in status["copies"].as_array().unwrap() {
        assert_eq!(c["missing"], 0, "{status:#}");
        assert!(c["problems"].as_array().unwrap().is_empty(), "{status:#}");
    }
    // Again: nothing to send.
    let again = copy(&ws, &["usb"]);
    again.expect_code(0);
    let r = report(&again.json(), "usb").clone();
    assert_eq!(
        r["snapshots"]["copied"].as_array().unwrap().len(),
        0,
        "{r:#}"
    );
    assert_eq!(r["snapshots"]["already"], 3, "{r:#}");
    // Written-once objects are not sent again; these targets have no rewritten records.
    assert_eq!(r["side"]["objects"], 0, "{r:#}");
    assert!(r["side"]["unchanged"].as_u64().unwrap() >= 3, "{r:#}");

    // restic reads the copy with the copy's password, and finds nothing wrong.
    let restic = std::process::Command::new("restic")
        .args(["--no-cache", "-r"])
        .arg(&usb)
        .args(["check", "--read-data"])
        .env("RESTIC_PASSWORD_FILE", ws.path().join("usb-password"))
        .output()
        .expect("restic is installed");
    assert!(restic.status.success(), "{restic:?}");

    // The disaster: the repository is deleted, the server is gone.
    std::fs::remove_dir_all(ws.repo()).unwrap();
    stop_server(&pg, &pg.data());
    ws.run(&["snapshots"]).expect_code(1);

    // Reading commands run against a copy; writing ones are refused.
    // `$LIFEBOAT_PASSWORD` is the primary's: a copy opens with its own password.
    let listed = ws.run_env(
        &["snapshots", "--json", "--repo", "usb"],
        &[("LIFEBOAT_PASSWORD", "the primary's, not the copy's")],
    );
    listed.expect_code(0);
    assert_eq!(listed.json()["snapshots"].as_array().unwrap().len(), 3);
    ws.run(&["check", "--read-data", "--repo", "usb"])
        .expect_code(0);
    ws.run(&["backup", "d", "--repo", "usb"])
        .expect_code(2)
        .expect_stderr(&["does not run against a copy"], &[]);
    ws.run(&["snapshots", "--repo", "nowhere"])
        .expect_code(2)
        .expect_stderr(&["no copy of that name", "offsite, usb"], &[]);

    // The physical target, recovered to the moment with WAL from the S3 copy: restored,
    // then started by hand, so that the server fetches every segment itself through its
    // `restore_command` (and the prefetcher it starts), both reading the copy.
    let restored = ws.path().join("recovered");
    let port = free_port();
    ws.run_env(
        &[
            "restore",
            "db",
            "--repo",
            "offsite",
            "--to-dir",
            restored.to_str().unwrap(),
            "--time",
            &moment,
            "--no-archive",
        ],
        &COPY_CREDS,
    )
    .expect_code(0);
    let settings =
        std::fs::read_to_string(restored.join("postgresql.auto.conf")).unwrap_or_default();
    assert!(settings.contains("--repo offsite wal fetch"), "{settings}");
    {
        use std::os::unix::process::CommandExt;
        let (uid, gid) = lifeboat_postgres::cluster::server_user()
            .unwrap()
            .expect("the tests run as root");
        let out = std::process::Command::new(pg.tools().path("pg_ctl"))
            .arg("-D")
            .arg(&restored)
            .arg("-l")
            .arg(ws.path().join("recovered.log"))
            .args(["-o", &format!("-p {port} -k /tmp"), "start"])
            .envs(COPY_CREDS)
            .env("HOME", "/tmp")
            .uid(uid)
            .gid(gid)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }
    wait_for("recovery to the moment", Duration::from_secs(60), || {
        std::process::Command::new(pg.tools().path("psql"))
            .args(["-X", "-A", "-t", "-h", "127.0.0.1", "-p", &port.to_string()])
            .args(["-U", "postgres", "-d", "postgres"])
            .args(["-c", "SELECT pg_is_in_recovery()"])
            .env("PGPASSWORD", &pg.password)
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "f")
    });
    assert_eq!(
        sql(
            &pg,
            port,
            "postgres",
            "SELECT count(*), max(id) FROM events"
        ),
        "2000|2000",
        "{}",
        std::fs::read_to_string(ws.path().join("recovered.log")).unwrap_or_default()
    );

    // The logical target into a new database (on the recovered server), and the files,
    // from the local copy.
    sql(&pg, port, "postgres", "CREATE DATABASE shop_back");
    let shop_back = pg
        .url("shop_back")
        .replace(&format!(":{main}/"), &format!(":{port}/"));
    ws.run(&["restore", "shop", "--repo", "usb", "--to", &shop_back])
        .expect_code(0);
    assert_eq!(
        sql(
            &pg,
            port,
            "shop_back",
            "SELECT count(*), sum(length(note)) FROM orders"
        ),
        sql(
            &pg,
            port,
            "postgres",
            "SELECT 5000 || '|' || sum(g % 50) FROM generate_series(1, 5000) g"
        ),
    );
    stop_server(&pg, &restored);
    let back = ws.path().join("files-back");
    ws.run(&[
        "restore",
        "d",
        "--repo",
        "usb",
        "--to-dir",
        back.to_str().unwrap(),
    ])
    .expect_code(0);
    let restored_file = find_file(&back, "b.bin").expect("b.bin restored");
    assert_eq!(
        std::fs::read(restored_file).unwrap(),
        lifeboat_testkit::noise(3, 300_000)
    );

    // A drill of the copy writes its report into the copy.
    ws.run(&["drill", "d", "--repo", "usb"]).expect_code(0);
    let drills = ws.run(&["drills", "--json", "--repo", "usb"]).json();
    let verdicts: Vec<&str> = drills["drills"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["verdict"].as_str().unwrap())
        .collect();
    assert_eq!(verdicts, ["pass"], "{drills:#}");
}

fn find_file(dir: &Path, name: &str) -> Option<std::path::PathBuf> {
    for e in std::fs::read_dir(dir).ok()? {
        let p = e.ok()?.path();
        if p.is_dir() {
            if let Some(f) = find_file(&p, name) {
                return Some(f);
            }
        } else if p.file_name().is_some_and(|n| n == name) {
            return Some(p);
        }
    }
    None
}

/// A copy after a small change sends little; a copy further behind than `max-lag` is a
/// missed objective in `status` until it is brought up to date.
#[test]
fn a_second_copy_sends_little_and_a_late_copy_is_an_objective_missed() {
    let ws = Workspace::new(BIN);
    let data = ws.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(
        data.join("big.bin"),
        lifeboat_testkit::noise(11, 16_000_000),
    )
    .unwrap();
    let copy_dir = ws.path().join("second");
    ws.write_config(&format!(
        "[targets.d]\nkind = \"files\"\npaths = [\"{}\"]\n\n[copies.second]\nurl = \"{}\"\npassword-file = \"{}\"\nmax-lag = \"1s\"\n\n[copies.alias]\nurl = \"{}\"\npassword-file = \"{}\"\n",
        data.display(),
        copy_dir.display(),
        ws.path().join("password").display(),
        ws.path().join("alias").display(),
        ws.path().join("password").display(),
    ));
    ws.run(&["init"]).expect_code(0);
    ws.run(&["init", "--repo", "second"]).expect_code(0);
    // A copy that is the repository under another name is found by the repository's id.
    std::os::unix::fs::symlink(ws.repo(), ws.path().join("alias")).unwrap();
    copy(&ws, &["alias"])
        .expect_code(1)
        .expect_stdout(&["copy `alias`", "is the repository itself"], &[]);
    ws.run(&["backup", "d"]).expect_code(0);
    std::thread::sleep(Duration::from_millis(1500));
    let late = ws.run(&["status", "--json"]);
    late.expect_code(3);
    let problems = report(&late.json(), "second")["problems"].to_string();
    assert!(
        problems.contains("copy `second` lacks 1 snapshot"),
        "{problems}"
    );

    let first = copy(&ws, &["second"]);
    first.expect_code(0);
    let sent_first = report(&first.json(), "second")["snapshots"]["bytes_sent"]
        .as_u64()
        .unwrap();
    assert!(sent_first > 16_000_000, "{sent_first}");
    ws.run(&["status"]).expect_code(0);

    // 1% of the data changes: the second copy sends a small part of the first.
    let mut bytes = std::fs::read(data.join("big.bin")).unwrap();
    for b in &mut bytes[4_000_000..4_160_000] {
        *b = !*b;
    }
    std::fs::write(data.join("big.bin"), &bytes).unwrap();
    ws.run(&["backup", "d"]).expect_code(0);
    let second = copy(&ws, &["second"]);
    second.expect_code(0);
    let r = report(&second.json(), "second").clone();
    assert_eq!(
        r["snapshots"]["copied"].as_array().unwrap().len(),
        1,
        "{r:#}"
    );
    let sent = r["snapshots"]["bytes_sent"].as_u64().unwrap();
    // What the backup itself added to the repository: the changed chunks (1 MiB on
    // average, up to 8 MiB; where they fall depends on the repository's random chunker
    // polynomial). The copy sends that and a few small files, not the 16 MB again.
    let added = ws.snapshots().last().unwrap()["stored_bytes"]
        .as_u64()
        .unwrap();
    assert!(
        added > 0 && added < sent_first * 3 / 4,
        "{added} of {sent_first}"
    );
    assert!(
        sent <= added + added / 10 + 65_536,
        "second copy sent {sent}; the backup added {added}"
    );
    // The copy opens with the same password, but its own key: restoring from it works.
    let back = ws.path().join("back");
    ws.run(&[
        "restore",
        "d",
        "--repo",
        "second",
        "--to-dir",
        back.to_str().unwrap(),
    ])
    .expect_code(0);
    let restored = find_file(&back, "big.bin").unwrap();
    assert_eq!(std::fs::read(restored).unwrap(), bytes);

    // A run that stopped between saving snapshots in the copy and verifying them (its
    // record never written), and a pack of the copy damaged meanwhile: the next run
    // verifies what it finds unverified, removes what fails, and says so.
    std::fs::remove_file(ws.repo().join("lifeboat/copies/second.json")).unwrap();
    let mut packs: Vec<(u64, std::path::PathBuf)> = Vec::new();
    for d in std::fs::read_dir(copy_dir.join("data")).unwrap() {
        for f in std::fs::read_dir(d.unwrap().path()).unwrap() {
            let p = f.unwrap().path();
            packs.push((std::fs::metadata(&p).unwrap().len(), p));
        }
    }
    packs.sort();
    let (size, biggest) = packs.last().unwrap().clone();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&biggest)
        .unwrap();
    file.set_len(size / 2).unwrap();
    let failed = copy(&ws, &["second"]);
    failed.expect_code(1);
    let text = failed.stdout.clone() + &failed.stderr;
    assert!(text.contains("failed verification"), "{text}");
    assert!(text.contains("removed from the copy"), "{text}");
    assert!(text.contains("shorter than its index says"), "{text}");
    let left = ws.run(&["snapshots", "--json", "--repo", "second"]).json()["snapshots"]
        .as_array()
        .unwrap()
        .len();
    assert!(
        left < 2,
        "the damaged snapshots are gone from the copy: {left} left"
    );
    let status = ws.run(&["status", "--json"]);
    status.expect_code(3);
    assert_eq!(report(&status.json(), "second")["missing"], 2 - left);
}

/// `serve` copies on `copy-schedule`; a copy that cannot be opened fails its job (in the
/// history, naming the copy) and one that falls behind its `max-lag` fires `copy-lag:<name>`,
/// kept with the other firing alerts when `serve` stops.
#[test]
fn serve_copies_on_schedule_and_alerts_on_a_copy_that_falls_behind() {
    use lifeboat_testkit::terminate;
    let ws = Workspace::new(BIN);
    let data = ws.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("a.txt"), "hello").unwrap();
    // A copy under a regular file can never be opened.
    std::fs::write(ws.path().join("not-a-folder"), "").unwrap();
    ws.write_config(&format!(
        "[targets.f]\nkind = \"files\"\npaths = [\"{}\"]\nschedule = \"every 2s\"\n\n\
         [copies.near]\nurl = \"{}\"\npassword-file = \"{}\"\ncopy-schedule = \"every 2s\"\nmax-lag = \"1h\"\n\n\
         [copies.broken]\nurl = \"{}\"\npassword-file = \"{}\"\ncopy-schedule = \"every 2s\"\nmax-lag = \"1s\"\n",
        data.display(),
        ws.path().join("near").display(),
        ws.path().join("password").display(),
        ws.path().join("not-a-folder/copy").display(),
        ws.path().join("password").display(),
    ));
    ws.run(&["init"]).expect_code(0);
    ws.run(&["init", "--repo", "near"]).expect_code(0);
    let port = free_port();
    let serve = ws.spawn(&["serve", "--listen", &format!("127.0.0.1:{port}")]);
    let jobs = |ws: &Workspace| -> Vec<serde_json::Value> {
        ws.run(&["jobs", "--json"]).json()["jobs"]
            .as_array()
            .unwrap()
            .clone()
    };
    // Two copies of `near`, each with a record of its own beside the failures of `broken`
    // (they start in the same millisecond: their records once shared a name).
    wait_for("two copies into `near`", Duration::from_secs(60), || {
        jobs(&ws)
            .iter()
            .filter(|j| {
                j["job"] == "copy"
                    && j["outcome"] == "succeeded"
                    && j["detail"].as_str().unwrap_or("").contains("copy `near`: ")
            })
            .count()
            >= 2
            && ws.run(&["snapshots", "--json", "--repo", "near"]).json()["snapshots"]
                .as_array()
                .is_some_and(|s| s.len() >= 2)
    });
    wait_for(
        "a failed copy into `broken`",
        Duration::from_secs(30),
        || {
            jobs(&ws).iter().any(|j| {
                j["job"] == "copy"
                    && j["outcome"] == "failed"
                    && j["error"].as_str().unwrap_or("").contains("copy `broken`")
            })
        },
    );
    // Each copy's jobs are its own: `jobs NAME`.
    let failed_broken = ws.run(&["jobs", "broken", "--failed", "--json"]).json()["jobs"]
        .as_array()
        .unwrap()
        .len();
    assert!(failed_broken >= 1);
    let near_jobs = ws.run(&["jobs", "near", "--json"]).json()["jobs"].clone();
    assert!(
        near_jobs
            .as_array()
            .unwrap()
            .iter()
            .all(|j| j["target"] == "near" && j["outcome"] != "failed"),
        "{near_jobs:#}"
    );
    // The metrics say the same: `broken` misses its max-lag, `near` meets it.
    wait_for("the copies' metrics", Duration::from_secs(90), || {
        let m = lifeboat_testkit::http_request(port, "GET", "/metrics", &[], "").body;
        m.contains("lifeboat_copy_objective_met{copy=\"broken\"} 0")
            && m.contains("lifeboat_copy_objective_met{copy=\"near\"} 1")
    });
    // The dashboard has a row per copy: `broken` behind, `near` well; Chromium shows it
    // without a console error (the page's strict policy).
    let page = lifeboat_testkit::open_in_chromium(
        &format!("http://127.0.0.1:{port}/"),
        "dashboard-copies.png",
        (1200, 1800),
    );
    assert!(
        page.contains("<tr id=\"copy-broken\" class=\"bad\">")
            && page.contains("<tr id=\"copy-near\" class=\"ok\">"),
        "{page}"
    );
    terminate(serve).expect_code(0);
    let firing = std::fs::read_to_string(ws.repo().join("lifeboat/serve/alerts.json")).unwrap();
    assert!(firing.contains("copy-lag:broken"), "{firing}");
    assert!(!firing.contains("copy-lag:near"), "{firing}");
}
