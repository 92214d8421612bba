//! Recovery plans and incidents end to end (issue 21): a plan over a PostgreSQL, a files, a
//! Redis and a bucket target brings all four back after they were all broken, in order,
//! with emergency backups and checks, into an incident whose report has the figures;
//! `--time` picks the backup before a moment for every target; a failing step stops the
//! plan and `--resume` continues without restoring again; a signal leaves a resumable run.

use std::time::{Duration, Instant};

use lifeboat_testkit::{
    Workspace,
    redis::RedisServer,
    s3::{S3Server, TestObject, put_objects, test_bucket},
    terminate,
};

const BIN: &str = env!("CARGO_BIN_EXE_lifeboat");

/// The object `key` of `b`, as text, if it is there.
fn object(b: &lifeboat_repo::bucket::Bucket, key: &str) -> Option<String> {
    let listed = b.list().unwrap().into_iter().find(|o| o.key == key)?;
    let mut body = String::new();
    std::io::Read::read_to_string(&mut b.reader(key, listed.size), &mut body).unwrap();
    Some(body)
}

/// Issue 21, points 1, 2, 4-6: break four targets of four kinds, `recover --yes`: each is
/// back (checked by content), the steps ran in the declared order, each overwritten target
/// was saved first, the database's check ran on the restored database, and the incident
/// `recover` opened has the whole timeline and a report with the figures.
#[test]
fn a_plan_brings_four_broken_targets_back_in_order_into_an_incident() {
    let pg = lifeboat_testkit::postgres();
    pg.psql("postgres", "CREATE DATABASE shop").unwrap();
    pg.psql("shop", "CREATE TABLE orders (id int PRIMARY KEY, total int); INSERT INTO orders SELECT g, g * 10 FROM generate_series(1, 3) g").unwrap();
    let redis = RedisServer::start();
    let mut r = redis.conn();
    r.cmd(&[b"SET", b"session:1", b"alive"]).unwrap();
    let s3 = S3Server::start();
    let media = s3.bucket();
    let objects: Vec<TestObject<'static>> = (0..3)
        .map(|i| {
            (
                format!("img/{i}.png"),
                format!("picture {i}").into_bytes(),
                "image/png",
                Default::default(),
            )
        })
        .collect();
    put_objects(&s3.endpoint(), &media, &objects);
    let ws = Workspace::s3(BIN, &s3.endpoint(), &s3.bucket());
    let data = ws.path().join("conf");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("app.env"), "MODE=production\n").unwrap();
    let log = ws.path().join("steps.log");
    ws.write_config(&format!(
        "{}\n[targets.conf]\nkind = \"files\"\npaths = [\"{}\"]\n\n[targets.cache]\nkind = \"redis\"\nurl = \"{}\"\n\n[targets.media]\nkind = \"bucket\"\nurl = \"s3://{media}\"\nendpoint = \"{}\"\n\n[[probes]]\nname = \"db-up\"\nkind = \"postgres\"\ntarget = \"db\"\n\n[[checks]]\ntarget = \"db\"\nname = \"three orders\"\nsql = \"SELECT count(*) FROM orders\"\nexpect = \"3\"\n\n[plans.all]\ndescription = \"everything is down\"\nobjectives = {{ rto = \"1h\" }}\n[[plans.all.steps]]\nrun = \"echo maintenance-on >> {log}\"\n[[plans.all.steps]]\nrestore = [\"db\"]\n[[plans.all.steps]]\nprobe = \"db-up\"\nretry-for = \"30s\"\n[[plans.all.steps]]\nrun = \"echo db-is-back >> {log}\"\n[[plans.all.steps]]\nrestore = [\"conf\", \"cache\", \"media\"]\n[[plans.all.steps]]\nchecks = [\"db\"]\n[[plans.all.steps]]\nrun = \"echo maintenance-off >> {log}\"\n",
        lifeboat_testkit::postgres_target("db", &pg.url("shop")),
        data.display(),
        redis.url(),
        s3.endpoint(),
        log = log.display(),
    ));
    ws.run(&["init"]).expect_code(0);
    ws.run(&["backup"]).expect_code(0);

    // The dry run shows every target's point and data lost, and changes nothing.
    let dry = ws.run(&["recover", "all", "--dry-run"]);
    dry.expect_code(0).expect_stdout(
        &[
            "plan `all`: everything is down",
            "2. restore `db`",
            "`media`: snapshot",
            "data lost:",
            "nothing was changed",
        ],
        &[],
    );
    assert!(!log.exists(), "the dry run ran a step");

    // Everything breaks.
    pg.psql("shop", "DELETE FROM orders WHERE id > 1").unwrap();
    std::fs::write(data.join("app.env"), "MODE=broken\n").unwrap();
    r.cmd(&[b"FLUSHALL"]).unwrap();
    r.cmd(&[b"SET", b"junk", b"x"]).unwrap();
    let b = test_bucket(&s3.endpoint(), &media);
    b.delete("img/1.png").unwrap();
    put_objects(
        &s3.endpoint(),
        &media,
        &[(
            "img/2.png".into(),
            b"defaced".to_vec(),
            "image/png",
            Default::default(),
        )],
    );
    let before = ws.snapshots().len();

    let run = ws.run(&["recover", "all", "--yes"]);
    run.expect_code(0)
        .expect_stdout(&["recovery succeeded"], &[]);
    // Each target is back.
    assert_eq!(
        pg.psql("shop", "SELECT count(*), sum(total) FROM orders")
            .unwrap(),
        "3|60"
    );
    assert_eq!(
        std::fs::read_to_string(data.join("app.env")).unwrap(),
        "MODE=production\n"
    );
    assert_eq!(r.cmd(&[b"GET", b"session:1"]).unwrap().as_text(), "alive");
    assert_eq!(object(&b, "img/1.png").as_deref(), Some("picture 1"));
    assert_eq!(object(&b, "img/2.png").as_deref(), Some("picture 2"));
    // In the declared order.
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "maintenance-on\ndb-is-back\nmaintenance-off\n"
    );
    // Each target was saved before it was overwritten.
    let emergency: Vec<String> = ws
        .snapshots()
        .iter()
        .filter(|s| s["emergency"] == true)
        .map(|s| s["target"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ws.snapshots().len(), before + 4, "{emergency:?}");
    for t in ["db", "conf", "cache", "media"] {
        assert!(
            emergency.iter().any(|e| e == t),
            "no emergency backup of {t}: {emergency:?}"
        );
    }

    // The incident `recover` opened has it all, in order.
    let shown = ws.run(&["incident", "show", "--json"]).json();
    let timeline = shown["timeline"].as_array().unwrap().clone();
    let kinds: Vec<&str> = timeline
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    let steps: Vec<u64> = timeline
        .iter()
        .filter(|e| e["kind"] == "plan-step")
        .map(|e| e["data"]["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, [1, 2, 3, 4, 5, 6, 7], "{kinds:?}");
    // The probe step waited for the restored database to answer.
    let probe_step = timeline
        .iter()
        .find(|e| e["kind"] == "plan-step" && e["data"]["step"] == 3)
        .unwrap();
    assert!(
        probe_step.to_string().contains("probe `db-up` passed"),
        "{probe_step}"
    );
    for k in [
        "opened",
        "plan",
        "restore-planned",
        "emergency-backup",
        "restore",
        "checks",
    ] {
        assert!(kinds.contains(&k), "no {k} in {kinds:?}");
    }
    assert_eq!(
        kinds.iter().filter(|k| **k == "emergency-backup").count(),
        4
    );
    ws.run(&["incident", "note", "root cause: a bad migration"])
        .expect_code(0);
    ws.run(&["incident", "close", "--summary", "all four restored"])
        .expect_code(0);
    let list = ws.run(&["incident", "list", "--json"]).json();
    let id = list["incidents"][0]["id"].as_str().unwrap().to_string();
    assert!(list["incidents"][0]["closed-at"].is_string(), "{list:#}");

    let report = ws
        .run(&["incident", "report", &id[..10], "--format", "json"])
        .json();
    let targets = report["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 4, "{report:#}");
    for t in targets {
        assert!(t["restored_point"].is_string(), "{t:#}");
        assert!(t["data_loss_seconds"].as_f64().unwrap() >= 0.0, "{t:#}");
        assert!(t["emergency_snapshot"].is_string(), "{t:#}");
        assert!(
            t["verification"].as_str().unwrap().starts_with("verified"),
            "{t:#}"
        );
    }
    assert!(report["time_to_recover_seconds"].as_f64().unwrap() > 0.0);
    let md = ws.run(&["incident", "report", &id, "--format", "md"]);
    md.expect_code(0).expect_stdout(
        &[
            "root cause: a bad migration",
            "all four restored",
            "## Root cause",
            "## Action items",
            "| db |",
        ],
        &[],
    );
    let html = ws.path().join("incident.html");
    ws.run(&[
        "incident",
        "report",
        &id,
        "--format",
        "html",
        "-o",
        html.to_str().unwrap(),
    ])
    .expect_code(0);
    lifeboat_testkit::render_in_chromium(&html, &["timeline"], "incident-report.png");
}

/// Issue 21, point 2: `recover --time T` between two backups brings every target to the
/// backup before T.
#[test]
fn recover_at_a_time_takes_every_target_back_to_the_backup_before_it() {
    let pg = lifeboat_testkit::postgres();
    pg.psql("postgres", "CREATE DATABASE shop").unwrap();
    pg.psql(
        "shop",
        "CREATE TABLE t (v text); INSERT INTO t VALUES ('first')",
    )
    .unwrap();
    let ws = Workspace::new(BIN);
    let data = ws.path().join("conf");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("v"), "first\n").unwrap();
    ws.write_config(&format!(
        "{}\n[targets.conf]\nkind = \"files\"\npaths = [\"{}\"]\n\n[plans.both]\n[[plans.both.steps]]\nrestore = [\"db\", \"conf\"]\n",
        lifeboat_testkit::postgres_target("db", &pg.url("shop")),
        data.display()
    ));
    ws.run(&["init"]).expect_code(0);
    ws.run(&["backup"]).expect_code(0);
    std::thread::sleep(Duration::from_millis(1100));
    let between = jiff::Timestamp::now().to_string();
    std::thread::sleep(Duration::from_millis(1100));
    pg.psql("shop", "UPDATE t SET v = 'second'").unwrap();
    std::fs::write(data.join("v"), "second\n").unwrap();
    ws.run(&["backup"]).expect_code(0);
    pg.psql("shop", "UPDATE t SET v = 'third'").unwrap();
    std::fs::write(data.join("v"), "third\n").unwrap();

    let first: Vec<String> = ws
        .snapshots()
        .iter()
        .filter(|s| s["time"].as_str().unwrap() < between.as_str())
        .map(|s| s["id"].as_str().unwrap()[..8].to_string())
        .collect();
    assert_eq!(first.len(), 2);
    let dry = ws.run(&["recover", "both", "--time", &between, "--dry-run"]);
    dry.expect_code(0);
    for id in &first {
        dry.expect_stdout(&[&format!("snapshot {id}")], &[]);
    }
    ws.run(&["recover", "both", "--time", &between, "--yes"])
        .expect_code(0);
    assert_eq!(pg.psql("shop", "SELECT v FROM t").unwrap(), "first");
    assert_eq!(std::fs::read_to_string(data.join("v")).unwrap(), "first\n");
}

/// Issue 21: a failing `run` step stops the plan, saying what was done; `--resume`, once
/// the cause is fixed, continues after the steps that are done without restoring again
/// what was restored; a `manual` step with no one to confirm it fails.
#[test]
fn a_failing_step_stops_the_plan_and_resume_continues_after_it() {
    let ws = Workspace::new(BIN);
    let (a, b) = (ws.path().join("a"), ws.path().join("b"));
    for d in [&a, &b] {
        std::fs::create_dir_all(d).unwrap();
        std::fs::write(d.join("f"), "good\n").unwrap();
    }
    let flag = ws.path().join("service-is-up");
    ws.write_config(&format!(
        "[targets.a]\nkind = \"files\"\npaths = [\"{}\"]\n\n[targets.b]\nkind = \"files\"\npaths = [\"{}\"]\n\n[plans.p]\n[[plans.p.steps]]\nrestore = [\"a\"]\n[[plans.p.steps]]\nrun = \"test -f {}\"\n[[plans.p.steps]]\nrestore = [\"b\"]\n",
        a.display(),
        b.display(),
        flag.display()
    ));
    ws.run(&["init"]).expect_code(0);
    ws.run(&["backup"]).expect_code(0);
    for d in [&a, &b] {
        std::fs::write(d.join("f"), "bad\n").unwrap();
    }
    let failed = ws.run(&["recover", "p", "--yes"]);
    // From a review: a backup taken between the failed run and its resume (here of `b`,
    // broken) is not what the resume restores: it keeps the snapshots it decided.
    let decided = ws.run(&["recover", "p", "--resume", "--dry-run"]);
    ws.run(&["backup", "b"]).expect_code(0);
    failed
        .expect_code(1)
        .expect_stdout(&["recovery failed", "Failed", "Pending"], &[])
        .expect_stderr(&["--resume"], &[]);
    assert_eq!(std::fs::read_to_string(a.join("f")).unwrap(), "good\n");
    assert_eq!(
        std::fs::read_to_string(b.join("f")).unwrap(),
        "bad\n",
        "step 3 ran"
    );
    let emergency = |ws: &Workspace| {
        ws.snapshots()
            .iter()
            .filter(|s| s["emergency"] == true)
            .count()
    };
    assert_eq!(emergency(&ws), 1);

    // Fixed: the resumed run starts at step 2; `a` is not restored again.
    std::fs::write(&flag, "").unwrap();
    std::fs::write(a.join("f"), "changed after the restore\n").unwrap();
    let again = ws.run(&["recover", "p", "--resume", "--dry-run"]);
    again
        .expect_code(0)
        .expect_stdout(&["resuming run", "1. restore `a`  (done)"], &[]);
    let snapshot_of_b = |run: &lifeboat_testkit::Run| {
        run.stdout
            .lines()
            .find_map(|l| l.split("`b`: snapshot ").nth(1))
            .and_then(|rest| rest.split_whitespace().next())
            .map(str::to_string)
    };
    assert!(snapshot_of_b(&again).is_some(), "{}", again.stdout);
    assert_eq!(snapshot_of_b(&again), snapshot_of_b(&decided));
    ws.run(&["recover", "p", "--resume", "--time", "2026-01-01T00:00:00Z"])
        .expect_code(2)
        .expect_stderr(&["would mix two moments"], &[]);
    ws.run(&["recover", "p", "--resume", "--yes"])
        .expect_code(0)
        .expect_stdout(&["recovery succeeded"], &[]);
    assert_eq!(
        std::fs::read_to_string(a.join("f")).unwrap(),
        "changed after the restore\n"
    );
    assert_eq!(std::fs::read_to_string(b.join("f")).unwrap(), "good\n");
    assert_eq!(emergency(&ws), 2);
    ws.run(&["recover", "p", "--resume"])
        .expect_code(2)
        .expect_stderr(&["no failed or interrupted run to resume"], &[]);

    // A manual step nobody confirms fails the plan.
    ws.write_config(&format!(
        "[targets.a]\nkind = \"files\"\npaths = [\"{}\"]\n\n[plans.m]\n[[plans.m.steps]]\nmanual = \"switch DNS\"\n",
        a.display()
    ));
    ws.run(&["recover", "m", "--yes"])
        .expect_code(1)
        .expect_stdout(&["not confirmed: switch DNS"], &[]);
}

/// Issue 21: SIGTERM during a plan stops the running step and leaves a run that `--resume`
/// completes.
#[test]
fn a_signal_leaves_a_resumable_run() {
    let ws = Workspace::new(BIN);
    let a = ws.path().join("a");
    std::fs::create_dir_all(&a).unwrap();
    std::fs::write(a.join("f"), "good\n").unwrap();
    let started = ws.path().join("started");
    let fast = ws.path().join("fast");
    ws.write_config(&format!(
        "[targets.a]\nkind = \"files\"\npaths = [\"{}\"]\n\n[plans.p]\n[[plans.p.steps]]\nrun = \"test -f {fast} || (touch {started}; sleep 30)\"\n[[plans.p.steps]]\nrestore = [\"a\"]\n",
        a.display(),
        fast = fast.display(),
        started = started.display(),
    ));
    ws.run(&["init"]).expect_code(0);
    ws.run(&["backup"]).expect_code(0);
    std::fs::write(a.join("f"), "bad\n").unwrap();
    let child = ws.spawn(&["recover", "p", "--yes"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !started.exists() {
        assert!(Instant::now() < deadline, "the first step never ran");
        std::thread::sleep(Duration::from_millis(20));
    }
    let sent = Instant::now();
    terminate(child).expect_code(130);
    assert!(sent.elapsed() < Duration::from_secs(10));
    assert_eq!(std::fs::read_to_string(a.join("f")).unwrap(), "bad\n");
    std::fs::write(&fast, "").unwrap();
    ws.run(&["recover", "p", "--resume", "--yes"])
        .expect_code(0);
    assert_eq!(std::fs::read_to_string(a.join("f")).unwrap(), "good\n");
}

/// Issue 21, point 3: a whole-system drill restores the plan's targets into scratch
/// environments and runs its commands against them (`$LIFEBOAT_DRILL_<TARGET>_URL/_DIR`);
/// http and manual steps are skipped; the report has every step. A smoke test that fails
/// exits 3 naming the step; `status` says a plan changed since its last passing drill.
#[test]
fn a_whole_system_drill_runs_the_plan_against_scratch_copies() {
    let pg = lifeboat_testkit::postgres();
    pg.psql("postgres", "CREATE DATABASE shop").unwrap();
    pg.psql(
        "shop",
        "CREATE TABLE orders (id int PRIMARY KEY); INSERT INTO orders SELECT generate_series(1, 3)",
    )
    .unwrap();
    let ws = Workspace::new(BIN);
    let data = ws.path().join("conf");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("app.env"), "MODE=production\n").unwrap();
    let psql = "/usr/bin/psql";
    let plan = |smoke: &str| {
        format!(
            "{}\n[targets.conf]\nkind = \"files\"\npaths = [\"{}\"]\n\n[plans.all]\nobjectives = {{ rto = \"1h\" }}\n[[plans.all.steps]]\nrestore = [\"db\", \"conf\"]\n[[plans.all.steps]]\nname = \"smoke test\"\nrun = \"{smoke}\"\n[[plans.all.steps]]\nhttp = \"http://127.0.0.1:1/health\"\n[[plans.all.steps]]\nmanual = \"tell the customers\"\n",
            lifeboat_testkit::postgres_target("db", &pg.url("shop")),
            data.display(),
        )
    };
    let good = format!(
        "test $({psql} -XAtc 'SELECT count(*) FROM orders' \\\"$LIFEBOAT_DRILL_DB_URL\\\") = 3 && test -n \\\"$LIFEBOAT_DRILL_CONF_DIR\\\" && grep -q production \\\"$LIFEBOAT_DRILL_CONF_DIR{}/app.env\\\"",
        data.display()
    );
    ws.write_config(&plan(&good));
    ws.run(&["init"]).expect_code(0);
    ws.run(&["backup"]).expect_code(0);
    ws.run(&["status"])
        .expect_code(3)
        .expect_stdout(&["RTO unproven: never drilled"], &[]);

    let reports = ws.path().join("reports");
    let run = ws.run(&[
        "drill",
        "--plan",
        "all",
        "--json",
        "--report-dir",
        reports.to_str().unwrap(),
    ]);
    run.expect_code(0);
    let report = run.json()["plan_drill"].clone();
    assert_eq!(report["verdict"], "pass", "{report:#}");
    let states: Vec<&str> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["done", "done", "skipped", "skipped"], "{report:#}");
    assert_eq!(report["targets"].as_array().unwrap().len(), 2);
    assert!(report["rto_seconds"].as_f64().unwrap() > 0.0);
    let id = report["id"].as_str().unwrap();
    lifeboat_testkit::render_in_chromium(
        &reports.join(format!("{id}.html")),
        &["timeline"],
        "plan-drill.png",
    );
    // Each target's drill is in its history too, and production was not touched.
    assert_eq!(
        ws.run(&["drills", "db", "--json"]).json()["drills"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(pg.psql("shop", "SELECT count(*) FROM orders").unwrap(), "3");
    ws.run(&["status", "--json"]).expect_code(0);

    // The plan changes: no longer verified.
    ws.write_config(&plan(&format!("{good} && true")));
    let st = ws.run(&["status", "--json"]);
    st.expect_code(3);
    assert_eq!(
        st.json()["plans"][0]["problems"][0],
        "not verified since changed"
    );

    // A smoke test that fails: exit 3, the step named.
    ws.write_config(&plan("echo the app does not start >&2; exit 4"));
    let failed = ws.run(&["drill", "--plan", "all"]);
    failed.expect_code(3).expect_stdout(
        &[
            "FAIL",
            "| 2 | smoke test | failed |",
            "the app does not start",
        ],
        &[],
    );
}

/// From a review: a plan's restores are decided again when they run. Here the folder is
/// empty when the plan is shown (nothing to save), and an earlier step writes into it: the
/// restore saves that first. And a target restored but whose checks failed is restored and
/// checked again by `--resume`.
#[test]
fn restores_are_decided_when_they_run_and_failed_checks_are_redone() {
    let ws = Workspace::new(BIN);
    let a = ws.path().join("a");
    std::fs::create_dir_all(&a).unwrap();
    std::fs::write(a.join("x"), "backed up\n").unwrap();
    let flag = ws.path().join("checks-pass");
    ws.write_config(&format!(
        "[targets.a]\nkind = \"files\"\npaths = [\"{a}\"]\n\n[[checks]]\ntarget = \"a\"\nname = \"the flag\"\ncommand = \"test -f {flag}\"\n\n[plans.p]\n[[plans.p.steps]]\nrun = \"echo written-later > {a}/x\"\n[[plans.p.steps]]\nrestore = [\"a\"]\n",
        a = a.display(),
        flag = flag.display(),
    ));
    ws.run(&["init"]).expect_code(0);
    ws.run(&["backup"]).expect_code(0);
    std::fs::remove_file(a.join("x")).unwrap();
    let emergency = |ws: &Workspace| {
        ws.snapshots()
            .iter()
            .filter(|s| s["emergency"] == true)
            .count()
    };
    // Shown: nothing to overwrite. Run: step 1 wrote `x`, so it is saved first.
    ws.run(&["recover", "p", "--dry-run"])
        .expect_code(0)
        .expect_stdout(&["2. restore `a`"], &["overwrites"]);
    ws.run(&["recover", "p", "--yes"])
        .expect_code(1)
        .expect_stdout(&["the flag"], &[]);
    assert_eq!(emergency(&ws), 1, "what step 1 wrote was not saved");
    assert_eq!(std::fs::read_to_string(a.join("x")).unwrap(), "backed up\n");
    // The check failed: resumed, `a` is restored and checked again.
    std::fs::write(&flag, "").unwrap();
    ws.run(&["recover", "p", "--resume", "--yes"])
        .expect_code(0)
        .expect_stdout(&["1 of 1 check(s) passed"], &[]);

    // Issue 21, point 4: `restore` runs the target's checks on what it restored: one that
    // fails exits 3 naming it; `--no-checks` skips them.
    std::fs::remove_file(&flag).unwrap();
    ws.run(&["restore", "a", "--force"])
        .expect_code(3)
        .expect_stdout(&["check the flag: FAILED"], &[])
        .expect_stderr(&["1 of 1 check(s) of `a` failed"], &[]);
    ws.run(&["restore", "a", "--force", "--no-checks"])
        .expect_code(0)
        .expect_stdout(&[], &["check the flag"]);
}
