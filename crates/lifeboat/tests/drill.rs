//! End to end: restore drills, their reports and `lifeboat status`, through the binary,
//! against real PostgreSQL clusters (the production one and the drill's throwaway one).

use std::{io::BufRead, time::Duration};

use lifeboat_testkit::{Cluster, Run, Workspace, postgres};

const BIN: &str = env!("CARGO_BIN_EXE_lifeboat");

const APP: &str = "
CREATE TABLE users (id bigserial PRIMARY KEY, email text UNIQUE NOT NULL);
CREATE TABLE images (id bigserial PRIMARY KEY, user_id bigint REFERENCES users(id), url text);
CREATE TABLE user_credits (user_id bigint PRIMARY KEY REFERENCES users(id),
                           balance int NOT NULL CHECK (balance >= 0));
INSERT INTO users (email) SELECT 'u' || i || '@example.com' FROM generate_series(1, 400) i;
INSERT INTO images (user_id, url) SELECT 1 + i % 400, md5(i::text) FROM generate_series(1, 1200) i;
INSERT INTO user_credits SELECT id, id % 50 FROM users;
";

const CHECKS: &str = r#"
[[checks]]
target = "app"
name = "no negative balances"
sql = "SELECT count(*) FROM user_credits WHERE balance < 0"
expect = "0"

[[checks]]
target = "app"
name = "enough users"
sql = "SELECT count(*) FROM users"
expect-min = 100

[[checks]]
target = "app"
name = "app smoke test"
command = "test -n \"$LIFEBOAT_DRILL_URL\" && echo smoke ok"
"#;

fn target(url: &str, objectives: &str, extra: &str) -> String {
    format!(
        "[targets.app]\nkind = \"postgres\"\nurl = \"{url}\"\nobjectives = {objectives}\n{extra}\n{CHECKS}"
    )
}

fn setup() -> (Cluster, Workspace) {
    let pg = postgres();
    pg.psql("postgres", "CREATE DATABASE app").unwrap();
    pg.psql("app", APP).unwrap();
    let ws = Workspace::new(BIN);
    ws.write_config(&target(
        &pg.url("app"),
        "{ rpo = \"1h\", rto = \"1h\" }",
        "",
    ));
    ws.run(&["init"]).expect_code(0);
    ws.run(&["backup"]).expect_code(0);
    (pg, ws)
}

fn report(run: &Run) -> serde_json::Value {
    run.json()["drills"][0]["report"].clone()
}

fn check<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check `{name}` in {report:#}"))
}

/// The port the drill's throwaway cluster listened on, from its progress output.
fn scratch_port(stderr: &str) -> u16 {
    let line = stderr
        .lines()
        .find(|l| l.contains("scratch: throwaway PostgreSQL"))
        .unwrap_or_else(|| panic!("no scratch line in:\n{stderr}"));
    line.rsplit(':').next().unwrap().trim().parse().unwrap()
}

fn listening(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(300),
    )
    .is_ok()
}

#[test]
fn a_drill_of_a_healthy_backup_passes_with_every_check_and_a_report() {
    let (pg, ws) = setup();
    // Issue 18, point 3: `--dry-run` shows the plan and provisions nothing; the drill then
    // restores the snapshot the plan named.
    let dry = ws.run(&["drill", "--dry-run"]);
    dry.expect_code(0);
    for part in [
        "(logical) from snapshot",
        "1. start a throwaway PostgreSQL",
        "check the rows of",
        "nothing was provisioned",
    ] {
        assert!(dry.stdout.contains(part), "no {part:?} in:\n{}", dry.stdout);
    }
    let planned = ws.run(&["drill", "--dry-run", "--json"]).json()["drills"][0]["plan"].clone();
    assert!(
        ws.run(&["drills", "--json"]).stdout.contains("[]"),
        "a dry run stored a report"
    );
    let reports = ws.path().join("reports");
    let run = ws.run(&["drill", "--json", "--report-dir", reports.to_str().unwrap()]);
    run.expect_code(0);
    let r = report(&run);
    assert_eq!(r["snapshot"], planned["snapshot"], "{planned:#}");
    assert_eq!(r["verdict"], "pass", "{r:#}");
    assert_eq!(r["kind"], "logical");
    let phases: Vec<&str> = r["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        phases,
        ["fetch", "provision", "restore", "checks", "teardown"]
    );
    for (name, detail) in [
        ("rows of public.users", "400 rows"),
        ("rows of public.images", "1,200 rows"),
        ("no negative balances", "got 0"),
        ("enough users", "got 400"),
        ("app smoke test", "smoke ok"),
        ("pg_amcheck: B-tree indexes", "consistent"),
        ("foreign key images_user_id_fkey on images", "every row"),
        (
            "check user_credits_balance_check on user_credits",
            "every row",
        ),
        ("no invalid indexes", "valid"),
    ] {
        let c = check(&r, name);
        assert_eq!(c["passed"], true, "{c}");
        assert!(c["detail"].as_str().unwrap().contains(detail), "{c}");
    }
    let rto = r["rto"]["measured-seconds"].as_f64().unwrap();
    assert!(
        rto > 0.0 && rto < 3600.0 && r["rto"]["met"] == true,
        "{r:#}"
    );
    let rpo = r["rpo"]["measured-seconds"].as_f64().unwrap();
    assert!((0.0..600.0).contains(&rpo), "{r:#}");
    assert!(!run.stdout.contains(&pg.password) && !run.stderr.contains(&pg.password));

    // The scratch cluster is gone.
    assert!(!listening(scratch_port(&run.stderr)));

    // The report: in the side area and in --report-dir, in three renderings.
    let id = r["id"].as_str().unwrap();
    for ext in ["json", "md", "html"] {
        let stored = ws.repo().join(format!("lifeboat/drills/app/{id}.{ext}"));
        assert!(stored.is_file(), "{}", stored.display());
        let copy = reports.join(format!("{id}.{ext}"));
        let text = std::fs::read_to_string(&copy).unwrap();
        assert!(!text.contains(&pg.password), "password in {ext} report");
        assert!(text.contains("no negative balances"), "{ext}");
    }

    // A second drill: history, `drills`, `status`.
    ws.run(&["drill"]).expect_code(0);
    let drills = ws.run(&["drills", "--json"]);
    drills.expect_code(0);
    let list = drills.json()["drills"].as_array().unwrap().clone();
    assert_eq!(list.len(), 2, "{list:?}");
    assert!(list.iter().all(|d| d["verdict"] == "pass"));
    let status = ws.run(&["status", "--json"]);
    status.expect_code(0);
    let t = &status.json()["targets"][0];
    assert_eq!(t["target"], "app");
    assert_eq!(t["last_drill_verdict"], "pass");
    assert!(t["problems"].as_array().unwrap().is_empty(), "{t}");
    let human = ws.run(&["status"]);
    human.expect_stdout(&["OK"], &[]);

    lifeboat_testkit::render_in_chromium(
        &reports.join(format!("{id}.html")),
        &["timeline", "rto-trend", "rpo-trend"],
        "drill-report.png",
    );
}

/// The HTML report is looked at: headless Chromium loads it without console errors, the
/// three charts are in the rendered page, and a screenshot is kept as a test artifact.

#[test]
fn a_drill_fails_loudly_naming_what_failed() {
    let (pg, ws) = setup();

    // A `[[checks]]` rule fails.
    pg.psql(
        "app",
        "ALTER TABLE user_credits DROP CONSTRAINT user_credits_balance_check",
    )
    .unwrap();
    pg.psql(
        "app",
        "UPDATE user_credits SET balance = -5 WHERE user_id <= 3",
    )
    .unwrap();
    ws.run(&["backup"]).expect_code(0);
    let run = ws.run(&["drill", "--json"]);
    run.expect_code(3);
    let r = report(&run);
    assert_eq!(r["verdict"], "fail");
    let c = check(&r, "no negative balances");
    assert_eq!(c["passed"], false);
    assert_eq!(c["detail"], "expected 0, got 3");
    let human = ws.run(&["drill"]);
    human.expect_code(3);
    human.expect_stdout(&["FAILED no negative balances"], &[]);
    assert!(!listening(scratch_port(&human.stderr)));
    ws.run(&["status"]).expect_code(3);

    // The backup is older than the RPO objective.
    pg.psql(
        "app",
        "UPDATE user_credits SET balance = 0 WHERE balance < 0",
    )
    .unwrap();
    ws.run(&["backup"]).expect_code(0);
    std::thread::sleep(Duration::from_millis(2100));
    ws.write_config(&target(
        &pg.url("app"),
        "{ rpo = \"1s\", rto = \"1h\" }",
        "",
    ));
    let run = ws.run(&["drill", "--json"]);
    run.expect_code(3);
    let r = report(&run);
    assert_eq!(r["rpo"]["met"], false, "{r:#}");
    assert!(
        r["checks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["passed"] == true)
    );
    let status = ws.run(&["status", "--json"]);
    status.expect_code(3);
    assert!(
        status.json()["targets"][0]["problems"][0]
            .as_str()
            .unwrap()
            .contains("RPO objective 1.0 s"),
        "{}",
        status.stdout
    );

    // The dump lost a table's rows (a pg_dump that skips them): the counts differ.
    let bin = ws.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let real = pg.tools().bin_dir.clone();
    for entry in std::fs::read_dir(&real).unwrap() {
        let name = entry.unwrap().file_name();
        if name != "pg_dump" {
            std::os::unix::fs::symlink(real.join(&name), bin.join(&name)).unwrap();
        }
    }
    let script = format!(
        "#!/bin/sh\nexec {}/pg_dump --exclude-table-data=images \"$@\"\n",
        real.display()
    );
    std::fs::write(bin.join("pg_dump"), script).unwrap();
    std::fs::set_permissions(
        bin.join("pg_dump"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let with_bin = format!("pg-bin-dir = \"{}\"", bin.display());
    ws.write_config(&target(&pg.url("app"), "{ rpo = \"1h\" }", &with_bin));
    ws.run(&["backup"]).expect_code(0);
    let run = ws.run(&["drill", "--json"]);
    run.expect_code(3);
    let r = report(&run);
    let c = check(&r, "rows of public.images");
    assert_eq!(c["passed"], false);
    assert_eq!(c["detail"], "0 rows restored, the manifest says 1,200");

    // A pack file of the repository is corrupted: the newest backup cannot be restored.
    ws.write_config(&target(&pg.url("app"), "{ rpo = \"1h\" }", ""));
    let before = std::time::SystemTime::now();
    ws.run(&["backup"]).expect_code(0);
    let mut packs = Vec::new();
    for dir in std::fs::read_dir(ws.repo().join("data")).unwrap() {
        for f in std::fs::read_dir(dir.unwrap().path()).unwrap() {
            let p = f.unwrap().path();
            let meta = std::fs::metadata(&p).unwrap();
            if meta.modified().unwrap() >= before {
                packs.push((meta.len(), p));
            }
        }
    }
    packs.sort();
    let (_, newest) = packs.last().expect("the backup wrote a pack");
    let mut bytes = std::fs::read(newest).unwrap();
    let middle = bytes.len() / 2;
    for b in &mut bytes[middle..middle + 64] {
        *b ^= 0xff;
    }
    std::fs::write(newest, bytes).unwrap();
    let run = ws.run(&["drill", "--json"]);
    run.expect_code(3);
    let r = report(&run);
    let failed: Vec<&serde_json::Value> = r["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["passed"] == false)
        .collect();
    assert_eq!(failed.len(), 1, "{r:#}");
    assert_eq!(failed[0]["kind"], "restore", "{r:#}");
    // The drill history keeps every verdict.
    let drills = ws.run(&["drills", "--json"]).json();
    let verdicts: Vec<&str> = drills["drills"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["verdict"].as_str().unwrap())
        .collect();
    assert_eq!(verdicts, ["fail", "fail", "fail", "fail", "fail"]);
}

/// SIGINT in the middle of a drill: the throwaway cluster and the running check command
/// are gone afterwards, and the exit code says "interrupted".
#[test]
fn an_interrupted_drill_tears_everything_down() {
    let (pg, ws) = setup();
    let marker = "61.2345";
    ws.write_config(&format!(
        "{}\n[[checks]]\ntarget = \"app\"\nname = \"slow\"\ncommand = \"sleep {marker}\"\n",
        target(&pg.url("app"), "{ rpo = \"1h\" }", "")
    ));
    let mut child = ws.spawn(&["drill"]);
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    // Keep reading stderr to the end: lifeboat writes to it while tearing down.
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let _ = tx.send(line.unwrap_or_default());
        }
    });
    let mut seen = String::new();
    for line in rx.iter() {
        seen.push_str(&line);
        seen.push('\n');
        if line.contains("checking") {
            break;
        }
    }
    let port = scratch_port(&seen);
    assert!(listening(port), "the scratch cluster should be up: {seen}");
    // Let the slow check start.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !sleeping(marker) {
        assert!(
            std::time::Instant::now() < deadline,
            "the check never started"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let started = std::time::Instant::now();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    let rest: Vec<String> = rx.iter().collect();
    assert!(
        rest.iter().any(|l| l.contains("interrupted: tearing down")),
        "{rest:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(!listening(port), "the scratch cluster is still up");
    assert!(!sleeping(marker), "the check command is still running");
}

/// Whether a process with `marker` in its command line exists.
fn sleeping(marker: &str) -> bool {
    std::fs::read_dir("/proc").unwrap().any(|e| {
        let p = e.unwrap().path().join("cmdline");
        std::fs::read(p)
            .map(|c| String::from_utf8_lossy(&c).contains(marker))
            .unwrap_or(false)
    })
}

#[test]
fn a_files_drill_verifies_every_file() {
    let ws = Workspace::new(BIN);
    let src = ws.path().join("etc");
    std::fs::create_dir_all(src.join("conf.d")).unwrap();
    std::fs::write(src.join("app.env"), "DATABASE_URL=postgres://x\n").unwrap();
    std::fs::write(src.join("conf.d/site.conf"), vec![b'x'; 300_000]).unwrap();
    ws.write_config(&format!(
        "[targets.env]\nkind = \"files\"\npaths = [\"{}\"]\n\n[[checks]]\ntarget = \"env\"\nname = \"env file present\"\ncommand = \"find \\\"$LIFEBOAT_DRILL_DIR\\\" -name app.env | grep -q .\"\n",
        src.display()
    ));
    ws.run(&["init"]).expect_code(0);
    ws.run(&["backup"]).expect_code(0);
    let run = ws.run(&["drill", "--json"]);
    run.expect_code(0);
    let r = report(&run);
    assert_eq!(r["kind"], "files");
    let c = check(&r, "every file's size and SHA-256");
    assert_eq!(c["detail"], "2 of 2 files match the manifest");
    assert_eq!(check(&r, "env file present")["passed"], true);

    // A chosen snapshot, and a time before any backup: nothing to restore is a failure.
    let id = r["snapshot"].as_str().unwrap().to_string();
    let run = ws.run(&["drill", "--json", "--snapshot", &id[..10]]);
    run.expect_code(0);
    assert_eq!(report(&run)["snapshot"], id.as_str());
    let run = ws.run(&["drill", "--json", "--time", "2001-01-01 00:00:00+00"]);
    run.expect_code(3);
    let r = report(&run);
    let c = check(&r, "a restorable snapshot");
    assert!(
        c["detail"].as_str().unwrap().contains("at or before"),
        "{c}"
    );
}

/// `[drill] scratch-url`: the drill restores into a new database on a server the user
/// provides and drops it afterwards.
#[test]
fn a_drill_on_a_provided_server_leaves_it_as_it_was() {
    let (pg, ws) = setup();
    let scratch = postgres();
    let before = scratch
        .psql(
            "postgres",
            "SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database",
        )
        .unwrap();
    ws.write_config(&format!(
        "{}
[drill]
scratch-url-env = \"SCRATCH_URL\"
",
        target(&pg.url("app"), "{ rpo = \"1h\" }", "")
    ));
    let run = ws.run_env(
        &["drill", "--json"],
        &[("SCRATCH_URL", &scratch.url("postgres"))],
    );
    run.expect_code(0);
    let r = report(&run);
    assert!(
        r["scratch"]
            .as_str()
            .unwrap()
            .starts_with("database `lifeboat_drill_"),
        "{r:#}"
    );
    assert_eq!(check(&r, "rows of public.users")["passed"], true);
    let after = scratch
        .psql(
            "postgres",
            "SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database",
        )
        .unwrap();
    assert_eq!(before, after, "the drill database was not dropped");
    assert!(!run.stdout.contains(&scratch.password));
}
