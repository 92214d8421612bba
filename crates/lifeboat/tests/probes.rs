//! Health probes (issue 20) against real servers: `lifeboat probe` once per kind (HTTP with
//! verified TLS, TCP, PostgreSQL, a production SQL rule, Redis with a failing BGSAVE, real
//! BullMQ queues and workers from npm, a command), and `serve` turning a stopped database
//! into one alert and one `on-down` run, held back for a probe that depends on it.

use std::{
    io::{BufRead, BufReader, Write},
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::Mutex,
    time::Duration,
};

use lifeboat_testkit::{Workspace, free_port, postgres, redis::RedisServer, terminate, wait_for};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_lifeboat");

/// `lifeboat probe --json` (of `names`): the exit code and each probe's finding by name.
fn probe(ws: &Workspace, names: &[&str], env: &[(&str, &str)]) -> (i32, Vec<Value>) {
    let mut args = vec!["probe", "--json"];
    args.extend_from_slice(names);
    let run = ws.run_env(&args, env);
    assert!(
        run.code == 0 || run.code == 3,
        "probe exited {}: {}",
        run.code,
        run.stderr
    );
    let found = run.json()["probes"].as_array().unwrap().clone();
    (run.code, found)
}

fn finding<'a>(found: &'a [Value], name: &str) -> &'a Value {
    found
        .iter()
        .find(|f| f["probe"] == name)
        .unwrap_or_else(|| panic!("no finding of `{name}` in {found:?}"))
}

/// A small HTTP server: `/ok` answers 200 "all good", `/down` 503, `/slow` after 600 ms,
/// `/hang` after 5 s.
fn http_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut stream = stream;
                let mut line = String::new();
                let _ = BufReader::new(&stream).read_line(&mut line);
                let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
                let (status, wait) = match path.as_str() {
                    "/down" => ("503 Service Unavailable", 0),
                    "/slow" => ("200 OK", 600),
                    "/hang" => ("200 OK", 5000),
                    _ => ("200 OK", 0),
                };
                std::thread::sleep(Duration::from_millis(wait));
                let body = "all good";
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    port
}

#[test]
fn http_and_tcp_probes_judge_status_body_latency_timeout_and_tls() {
    let ws = Workspace::new(BIN);
    let port = http_server();
    // An HTTPS server whose certificate a private CA signed.
    let certs = ws.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    lifeboat_testkit::tls::signed_for_ip(&certs, "server", "127.0.0.1");
    let tls_port = free_port();
    let mut tls_server = Command::new("openssl")
        .args([
            "s_server",
            "-quiet",
            "-www",
            "-accept",
            &tls_port.to_string(),
        ])
        .arg("-cert")
        .arg(certs.join("server.crt"))
        .arg("-key")
        .arg(certs.join("server.key"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the TLS server", Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", tls_port)).is_ok()
    });
    let dead = free_port();
    let base = format!("http://127.0.0.1:{port}");
    ws.write_config(&format!(
        "[[probes]]\nname = \"ok\"\nkind = \"http\"\nurl = \"{base}/ok\"\nbody-contains = \"good\"\n\n\
         [[probes]]\nname = \"body\"\nkind = \"http\"\nurl = \"{base}/ok\"\nbody-contains = \"nope\"\n\n\
         [[probes]]\nname = \"status\"\nkind = \"http\"\nurl = \"{base}/down\"\n\n\
         [[probes]]\nname = \"teapot\"\nkind = \"http\"\nurl = \"{base}/ok\"\nexpect-status = 418\n\n\
         [[probes]]\nname = \"slow\"\nkind = \"http\"\nurl = \"{base}/slow\"\nmax-latency = \"1s\"\n\n\
         [[probes]]\nname = \"slower\"\nkind = \"http\"\nurl = \"{base}/slow\"\nmethod = \"HEAD\"\n\n\
         [[probes]]\nname = \"hang\"\nkind = \"http\"\nurl = \"{base}/hang\"\ntimeout = \"1s\"\n\n\
         [[probes]]\nname = \"tls\"\nkind = \"http\"\nurl = \"https://127.0.0.1:{tls_port}/\"\n\n\
         [[probes]]\nname = \"port\"\nkind = \"tcp\"\nurl = \"127.0.0.1:{port}\"\n\n\
         [[probes]]\nname = \"closed\"\nkind = \"tcp\"\nurl = \"127.0.0.1:{dead}\"\n\n\
         [[probes]]\nname = \"script\"\nkind = \"command\"\ncommand = \"echo queue depth 3\"\n\n\
         [[probes]]\nname = \"failing-script\"\nkind = \"command\"\ncommand = \"echo disk full >&2; exit 4\"\n"
    ));
    let (code, found) = probe(&ws, &[], &[]);
    assert_eq!(code, 3, "some probes are down: {found:?}");
    let up = |n: &str| finding(&found, n)["ok"] == true;
    let detail = |n: &str| finding(&found, n)["detail"].as_str().unwrap().to_string();
    for name in ["ok", "slower", "port", "script"] {
        assert!(up(name), "{name} should be up: {}", detail(name));
    }
    for name in [
        "body",
        "status",
        "teapot",
        "hang",
        "tls",
        "closed",
        "failing-script",
    ] {
        assert!(!up(name), "{name} should be down: {}", detail(name));
    }
    assert!(
        detail("body").contains("without \"nope\""),
        "{}",
        detail("body")
    );
    assert!(detail("status").contains("503"), "{}", detail("status"));
    assert!(
        detail("teapot").contains("expected 418"),
        "{}",
        detail("teapot")
    );
    assert!(
        detail("script").contains("queue depth 3"),
        "{}",
        detail("script")
    );
    assert!(
        detail("failing-script").contains("exit 4")
            && detail("failing-script").contains("disk full"),
        "{}",
        detail("failing-script")
    );
    // 600 ms is within `max-latency = "1s"`; with 200 ms it is not.
    assert!(up("slow"), "{}", detail("slow"));
    // The timeout is honoured: an answer that takes 5 s is given up after 1 s.
    let hang = finding(&found, "hang");
    let took = hang["latency_seconds"].as_f64().unwrap();
    assert!((1.0..1.3).contains(&took), "the 1 s timeout took {took} s");
    assert!(
        detail("hang").contains("no answer within 1"),
        "{}",
        detail("hang")
    );
    // TLS is verified: the private CA is unknown to the system...
    assert!(
        detail("tls").to_lowercase().contains("certificate")
            || detail("tls").to_lowercase().contains("issuer"),
        "{}",
        detail("tls")
    );
    // ...and trusted once named (the same probe, now up).
    let ca = certs.join("ca.crt");
    let (code, found) = probe(&ws, &["tls"], &[("SSL_CERT_FILE", ca.to_str().unwrap())]);
    assert_eq!(code, 0, "{found:?}");
    assert_eq!(finding(&found, "tls")["ok"], true);

    // Max-latency below the answer's time: down.
    let config = std::fs::read_to_string(ws.config_path()).unwrap();
    std::fs::write(
        ws.config_path(),
        config.replace("max-latency = \"1s\"", "max-latency = \"200ms\""),
    )
    .unwrap();
    let (_, found) = probe(&ws, &["slow"], &[]);
    let slow = finding(&found, "slow");
    assert_eq!(slow["ok"], false, "{slow}");
    assert!(
        slow["problems"][0]
            .as_str()
            .unwrap()
            .contains("over `max-latency` 200 ms"),
        "{slow}"
    );
    // The table, and a name that is not a probe.
    let run = ws.run(&["probe", "ok", "port"]);
    run.expect_code(0)
        .expect_stdout(&["PROBE", "ok", "port", "up"], &["DOWN"]);
    ws.run(&["probe", "nosuch"])
        .expect_code(2)
        .expect_stderr(&["no probe `nosuch`", "configured: ok"], &[]);
    let _ = tls_server.kill();
    let _ = tls_server.wait();
}

#[test]
fn a_postgres_probe_reports_the_server_and_a_production_rule_turns_red_after_a_bad_update() {
    let ws = Workspace::new(BIN);
    let pg = postgres();
    pg.psql("postgres", "CREATE DATABASE shop; ").unwrap();
    pg.psql(
        "shop",
        "CREATE TABLE accounts (id int PRIMARY KEY, balance numeric NOT NULL); \
         INSERT INTO accounts SELECT g, 100 FROM generate_series(1, 50) g;",
    )
    .unwrap();
    let url = pg.url("shop");
    let password = url
        .split("://")
        .nth(1)
        .and_then(|r| r.split('@').next())
        .and_then(|u| u.split(':').nth(1))
        .unwrap()
        .to_string();
    ws.write_config(&format!(
        "{}\n\
         [[checks]]\ntarget = \"shop\"\nname = \"no-negative-balances\"\nsql = \"SELECT count(*) FROM accounts WHERE balance < 0\"\nexpect = \"0\"\non = [\"drill\", \"production\"]\n\n\
         [[checks]]\ntarget = \"shop\"\nname = \"drill-only\"\nsql = \"SELECT 1/0\"\n\n\
         [[probes]]\nname = \"db\"\nkind = \"postgres\"\ntarget = \"shop\"\nmax-connections-ratio = 0.9\n\n\
         [[probes]]\nname = \"small\"\nkind = \"postgres\"\nurl = \"{url}\"\nmax-size = \"1MB\"\n\n\
         [[probes]]\nname = \"balances\"\nkind = \"sql\"\ntarget = \"shop\"\n",
        lifeboat_testkit::postgres_target("shop", &url)
    ));
    let (code, found) = probe(&ws, &[], &[]);
    assert_eq!(code, 3, "{found:?}");
    let db = finding(&found, "db");
    assert_eq!(db["ok"], true, "{db}");
    let detail = db["detail"].as_str().unwrap();
    assert!(
        detail.contains("primary up") && detail.contains("connections"),
        "{detail}"
    );
    // A database of a few MB is over `max-size = "1MB"`.
    let small = finding(&found, "small");
    assert_eq!(small["ok"], false);
    assert!(
        small["problems"][0]
            .as_str()
            .unwrap()
            .contains("over `max-size`"),
        "{small}"
    );
    // The production rule passes; the drill-only rule (which would fail) does not run.
    let balances = finding(&found, "balances");
    assert_eq!(balances["ok"], true, "{balances}");
    assert!(
        !balances["detail"].as_str().unwrap().contains("drill-only"),
        "{balances}"
    );

    // A bad UPDATE: the rule fails on production.
    pg.psql("shop", "UPDATE accounts SET balance = -5 WHERE id = 17")
        .unwrap();
    let (code, found) = probe(&ws, &["balances"], &[]);
    assert_eq!(code, 3);
    let balances = finding(&found, "balances");
    assert_eq!(balances["ok"], false);
    let text = balances["detail"].as_str().unwrap();
    assert!(
        text.contains("check `no-negative-balances` failed") && text.contains('1'),
        "{text}"
    );
    // A stopped server: down, and its password shows nowhere.
    let mut pg = pg;
    pg.stop();
    let run = ws.run(&["probe", "--json", "db", "small"]);
    run.expect_code(3);
    assert!(
        !run.stdout.contains(&password),
        "the password leaked: {}",
        run.stdout
    );
    let found = run.json()["probes"].as_array().unwrap().clone();
    assert_eq!(finding(&found, "db")["ok"], false);
}

/// A `redis-server` on `port` saving into `dir`; killed on drop.
struct OwnRedis(std::process::Child);

impl OwnRedis {
    fn start(port: u16, dir: &Path) -> Self {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "no", "--dir"])
            .arg(dir)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed");
        wait_for("redis-server", Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Self(child)
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_redis_probe_sees_ping_down_and_up_and_a_failing_background_save() {
    let ws = Workspace::new(BIN);
    let port = free_port();
    let dir = ws.path().join("redis-dir");
    std::fs::create_dir_all(&dir).unwrap();
    let redis = OwnRedis::start(port, &dir);
    let url = format!("redis://127.0.0.1:{port}");
    ws.write_config(&format!(
        "[[probes]]\nname = \"cache\"\nkind = \"redis\"\nurl = \"{url}\"\nmax-memory-ratio = 0.9\n"
    ));
    let (code, found) = probe(&ws, &[], &[]);
    assert_eq!(code, 0, "{found:?}");
    assert!(
        finding(&found, "cache")["detail"]
            .as_str()
            .unwrap()
            .contains("PONG"),
        "{found:?}"
    );
    // Saving into a folder that is gone fails (also as root, unlike an unwritable one).
    std::fs::remove_dir_all(&dir).unwrap();
    let mut conn =
        lifeboat_testkit::redis::Conn::connect(&lifeboat_testkit::redis::RedisUrl::local(port))
            .unwrap();
    conn.cmd(&[b"BGSAVE"]).unwrap();
    wait_for(
        "the background save to fail",
        Duration::from_secs(20),
        || conn.info("persistence").unwrap()["rdb_last_bgsave_status"] == "err",
    );
    let (code, found) = probe(&ws, &[], &[]);
    assert_eq!(code, 3);
    let cache = finding(&found, "cache");
    assert!(
        cache["problems"][0]
            .as_str()
            .unwrap()
            .contains("background save failed"),
        "{cache}"
    );
    // Stopped: down; started again: up.
    drop(conn);
    drop(redis);
    let (code, found) = probe(&ws, &[], &[]);
    assert_eq!(code, 3);
    assert!(
        finding(&found, "cache")["detail"]
            .as_str()
            .unwrap()
            .contains("cannot connect"),
        "{found:?}"
    );
    std::fs::create_dir_all(&dir).unwrap();
    let _redis = OwnRedis::start(port, &dir);
    let (code, found) = probe(&ws, &[], &[]);
    assert_eq!(code, 0, "{found:?}");
}

/// `npm install` of the BullMQ fixture, once per test run (into `target/`).
fn bullmq_fixture() -> PathBuf {
    static ONCE: Mutex<Option<PathBuf>> = Mutex::new(None);
    let mut done = ONCE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(dir) = done.as_ref() {
        return dir.clone();
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bullmq");
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bullmq-fixture");
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["package.json", "package-lock.json", "queues.js"] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    if !dir.join("node_modules/bullmq/package.json").exists() {
        let out = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .output()
            .expect("npm is installed (scripts/install-deps.sh)");
        assert!(out.status.success(), "npm ci: {out:?}");
    }
    *done = Some(dir.clone());
    dir
}

#[test]
fn a_bullmq_probe_reads_real_queues_as_bullmq_counts_them() {
    let ws = Workspace::new(BIN);
    let redis = RedisServer::start();
    let fixture = bullmq_fixture();
    let addr = redis.url().trim_start_matches("redis://").to_string();
    let mut node = Command::new("node")
        .arg("queues.js")
        .arg(&addr)
        .current_dir(&fixture)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(node.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let bullmq: Value = serde_json::from_str(&line).expect("the fixture's counts");
    ws.write_config(&format!(
        "[[probes]]\nname = \"queues\"\nkind = \"bullmq\"\nurl = \"{}\"\nqueues = [\"idle\", \"work\"]\nstuck-after = \"1s\"\nmin-active-when-waiting = 1\nmax-failed = 0\n",
        redis.url()
    ));
    // Held active longer than `stuck-after`.
    std::thread::sleep(Duration::from_millis(1500));
    let (code, found) = probe(&ws, &[], &[]);
    assert_eq!(code, 3, "{found:?}");
    let q = finding(&found, "queues");
    let queues = q["queues"].as_array().unwrap();
    for (i, name) in ["idle", "work"].iter().enumerate() {
        let ours = &queues[i];
        assert_eq!(ours["queue"], *name);
        let theirs = &bullmq[name];
        for (state, key) in [
            ("waiting", "waiting"),
            ("active", "active"),
            ("delayed", "delayed"),
            ("failed", "failed"),
            ("completed", "completed"),
            ("prioritized", "prioritized"),
        ] {
            assert_eq!(
                ours[state], theirs[key],
                "`{name}` {state}: lifeboat {} BullMQ {}",
                ours[state], theirs[key]
            );
        }
    }
    let (idle, work) = (&queues[0], &queues[1]);
    assert_eq!(idle["waiting"], 3);
    assert_eq!(idle["workers"], 0, "{idle}");
    assert!(
        idle["oldest_waiting_seconds"].as_f64().unwrap() >= 1.0,
        "{idle}"
    );
    assert_eq!(work["failed"], 1);
    assert_eq!(work["stuck"], 1, "{work}");
    assert!(work["workers"].as_u64().unwrap() >= 1, "{work}");
    assert!(
        work["version"].as_str().unwrap().starts_with("bullmq:5."),
        "{work}"
    );
    let problems: Vec<&str> = q["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    let has = |s: &str| problems.iter().any(|p| p.contains(s));
    assert!(
        has("`idle` has 3 jobs waiting and 0 active"),
        "{problems:?}"
    );
    assert!(has("`work` has 1 failed jobs"), "{problems:?}");
    assert!(
        has("`work` has 1 job(s) active for over 1s"),
        "{problems:?}"
    );
    // In `serve`: the alert says what is wrong, and the counts are metrics.
    let alerts = ws.path().join("alerts.jsonl");
    let config = std::fs::read_to_string(ws.config_path()).unwrap();
    std::fs::write(
        ws.config_path(),
        config.replace(
            "queues = [",
            "interval = \"1s\"\nfail-after = 1\nqueues = [",
        ) + &format!(
            "\n[[notify]]\nname = \"log\"\nkind = \"command\"\ncommand = \"cat >> {a}; echo >> {a}\"\n",
            a = alerts.display()
        ),
    )
    .unwrap();
    ws.run(&["init"]).expect_code(0);
    let port = free_port();
    let serve = ws.spawn(&["serve", "--listen", &format!("127.0.0.1:{port}")]);
    wait_for("the queue alert", Duration::from_secs(30), || {
        alerts_in(&alerts)
            .iter()
            .any(|a| a["key"] == "probe:queues")
    });
    let alert = alerts_in(&alerts)
        .into_iter()
        .find(|a| a["key"] == "probe:queues")
        .unwrap();
    let message = alert["message"].as_str().unwrap();
    assert!(
        message.contains("stuck") && message.contains("are the workers running?"),
        "{message}"
    );
    let metrics = lifeboat_testkit::http_request(port, "GET", "/metrics", &[], "").body;
    for line in [
        "lifeboat_queue_jobs{probe=\"queues\",queue=\"idle\",state=\"waiting\"} 3",
        "lifeboat_queue_jobs{probe=\"queues\",queue=\"work\",state=\"stuck\"} 1",
        "lifeboat_queue_jobs{probe=\"queues\",queue=\"work\",state=\"failed\"} 1",
        "lifeboat_probe_up{probe=\"queues\"} 0",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no {line} in:\n{metrics}"
        );
    }
    terminate(serve).expect_code(0);
    // Nothing was written: the keys are BullMQ's alone.
    let mut conn = redis.conn();
    let keys = conn.cmd(&[b"KEYS", b"*lifeboat*"]).unwrap();
    assert!(matches!(keys, lifeboat_testkit::redis::Value::Array(ref k) if k.is_empty()));
    drop(node.stdin.take());
    let _ = node.wait();
}

/// The alerts a `command` channel wrote, one JSON object per line.
fn alerts_in(file: &Path) -> Vec<Value> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn probes_api(port: u16) -> Vec<Value> {
    let a = lifeboat_testkit::http_request(port, "GET", "/api/probes", &[], "");
    assert_eq!(a.status, 200, "{a:?}");
    serde_json::from_str::<Value>(&a.body).unwrap()["probes"]
        .as_array()
        .unwrap()
        .clone()
}

/// Issue 20, points 2 and 3: a stopped PostgreSQL goes down after `fail-after` runs; its
/// `on-down` runs exactly once and its `probe-down` alert says so; a probe that depends on
/// it goes down too but its alert is held back; the server is started: `on-up` and the
/// resolution follow (a `probe-up` channel gets it alone); down again within the cooldown,
/// it alerts at once but fails over only when the cooldown is over; the hooks are in the job
/// history; the metrics follow the states.
#[test]
fn serve_turns_a_stopped_database_into_one_alert_and_one_failover() {
    let ws = Workspace::new(BIN);
    let mut pg = postgres();
    pg.psql("postgres", "CREATE DATABASE shop").unwrap();
    let alerts = ws.path().join("alerts.jsonl");
    let hooks = ws.path().join("hooks.log");
    let ups = ws.path().join("ups.jsonl");
    ws.write_config(&format!(
        "{}\n\
         [[probes]]\nname = \"db\"\nkind = \"postgres\"\ntarget = \"shop\"\ninterval = \"1s\"\nfail-after = 2\n\
         on-down = \"echo down:$LIFEBOAT_PROBE >> {hooks}; echo promoted the standby\"\n\
         on-up = \"echo up:$LIFEBOAT_PROBE >> {hooks}\"\ncooldown = \"15s\"\n\n\
         [[probes]]\nname = \"port\"\nkind = \"tcp\"\nurl = \"127.0.0.1:{}\"\ninterval = \"1s\"\nfail-after = 1\ndepends-on = [\"db\"]\n\n\
         [[notify]]\nname = \"log\"\nkind = \"command\"\nevents = [\"probe-down\"]\ncommand = \"cat >> {alerts}; echo >> {alerts}\"\n\n\
         [[notify]]\nname = \"recoveries\"\nkind = \"command\"\nevents = [\"probe-up\"]\ncommand = \"cat >> {ups}; echo >> {ups}\"\n",
        lifeboat_testkit::postgres_target("shop", &pg.url("shop")),
        pg.port,
        ups = ups.display(),
        hooks = hooks.display(),
        alerts = alerts.display(),
    ));
    ws.run(&["init"]).expect_code(0);
    let port = free_port();
    let serve = ws.spawn(&["serve", "--listen", &format!("127.0.0.1:{port}")]);
    wait_for("serve to listen", Duration::from_secs(30), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let state = |name: &str| {
        probes_api(port)
            .iter()
            .find(|p| p["probe"] == name)
            .map(|p| p["state"].as_str().unwrap().to_string())
    };
    wait_for("both probes up", Duration::from_secs(30), || {
        state("db").as_deref() == Some("up") && state("port").as_deref() == Some("up")
    });
    let metrics = || lifeboat_testkit::http_request(port, "GET", "/metrics", &[], "").body;
    assert!(metrics().contains("lifeboat_probe_up{probe=\"db\"} 1"));
    assert!(metrics().contains("lifeboat_probe_latency_seconds{probe=\"db\"}"));

    pg.stop();
    wait_for("db down", Duration::from_secs(30), || {
        state("db").as_deref() == Some("down")
    });
    wait_for("the probe-down alert", Duration::from_secs(30), || {
        alerts_in(&alerts)
            .iter()
            .any(|a| a["key"] == "probe:db" && a["state"] == "firing")
    });
    // Several more failed runs: still one alert, one hook run.
    std::thread::sleep(Duration::from_secs(4));
    let sent = alerts_in(&alerts);
    let firing: Vec<&Value> = sent.iter().filter(|a| a["state"] == "firing").collect();
    assert_eq!(firing.len(), 1, "one page for one root cause: {sent:?}");
    assert_eq!(firing[0]["kind"], "probe-down");
    let message = firing[0]["message"].as_str().unwrap();
    assert!(
        message.contains("on-down ran: exit 0: promoted the standby"),
        "{message}"
    );
    assert_eq!(
        std::fs::read_to_string(&hooks).unwrap(),
        "down:db\n",
        "on-down runs exactly once"
    );
    // The dependent probe is down too, held back by `db`.
    let port_probe = probes_api(port)
        .into_iter()
        .find(|p| p["probe"] == "port")
        .unwrap();
    assert_eq!(port_probe["state"], "down", "{port_probe}");
    assert_eq!(port_probe["held_by"], "db", "{port_probe}");
    assert!(metrics().contains("lifeboat_probe_up{probe=\"db\"} 0"));

    pg.start_again().unwrap();
    wait_for("the resolution", Duration::from_secs(30), || {
        alerts_in(&alerts)
            .iter()
            .any(|a| a["key"] == "probe:db" && a["state"] == "resolved")
    });
    wait_for("on-up", Duration::from_secs(10), || {
        std::fs::read_to_string(&hooks).unwrap() == "down:db\nup:db\n"
    });
    wait_for("both up", Duration::from_secs(10), || {
        state("port").as_deref() == Some("up")
    });
    assert!(
        alerts_in(&alerts).iter().all(|a| a["key"] != "probe:port"),
        "the held-back probe never paged"
    );
    // A channel that asks for `probe-up` gets the recovery alone.
    let recoveries = alerts_in(&ups);
    assert_eq!(recoveries.len(), 1, "{recoveries:?}");
    assert_eq!(recoveries[0]["state"], "resolved");
    // Down again within the cooldown (15 s here): alerted at once, but no second failover
    // until the cooldown is over — then, still down, it fails over.
    pg.stop();
    wait_for(
        "the second probe-down alert",
        Duration::from_secs(30),
        || {
            alerts_in(&alerts)
                .iter()
                .filter(|a| a["key"] == "probe:db" && a["state"] == "firing")
                .count()
                == 2
        },
    );
    let second = alerts_in(&alerts)
        .into_iter()
        .rfind(|a| a["key"] == "probe:db" && a["state"] == "firing")
        .unwrap();
    let message = second["message"].as_str().unwrap();
    assert!(
        message.contains("on-down not run: it ran within `cooldown` 15s; it runs in"),
        "{message}"
    );
    assert_eq!(std::fs::read_to_string(&hooks).unwrap(), "down:db\nup:db\n");
    wait_for("the held-back failover", Duration::from_secs(30), || {
        std::fs::read_to_string(&hooks).unwrap() == "down:db\nup:db\ndown:db\n"
    });
    // The hooks are in the job history.
    wait_for("four hook records", Duration::from_secs(10), || {
        ws.run(&["jobs", "--json"]).json()["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|j| j["target"] == "probe:db")
            .count()
            == 4
    });
    let jobs = ws.run(&["jobs", "--json"]).json()["jobs"].clone();
    let hook_jobs: Vec<&Value> = jobs
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["target"] == "probe:db")
        .collect();
    assert_eq!(hook_jobs[0]["job"], "on-down");
    assert_eq!(hook_jobs[0]["outcome"], "succeeded");
    assert_eq!(hook_jobs[0]["trigger"], "probe");
    assert!(
        hook_jobs[0]["detail"]
            .as_str()
            .unwrap()
            .contains("promoted the standby"),
        "{}",
        hook_jobs[0]
    );
    assert_eq!(hook_jobs[1]["job"], "on-up");
    assert_eq!(hook_jobs[2]["job"], "on-down");
    assert_eq!(hook_jobs[2]["outcome"], "skipped", "{}", hook_jobs[2]);
    assert_eq!(
        (&hook_jobs[3]["job"], &hook_jobs[3]["outcome"]),
        (&Value::from("on-down"), &Value::from("succeeded"))
    );
    terminate(serve).expect_code(0);

    // The probe taken out of the config: its alert, left firing, is resolved at the next
    // start instead of firing for ever.
    ws.write_config(&format!(
        "{}\n[[notify]]\nname = \"log\"\nkind = \"command\"\nevents = [\"probe-down\"]\ncommand = \"cat >> {alerts}; echo >> {alerts}\"\n",
        lifeboat_testkit::postgres_target("shop", &pg.url("shop")),
        alerts = alerts.display(),
    ));
    let serve = ws.spawn(&["serve", "--listen", &format!("127.0.0.1:{}", free_port())]);
    wait_for("the stale alert resolved", Duration::from_secs(30), || {
        alerts_in(&alerts).iter().any(|a| {
            a["key"] == "probe:db"
                && a["state"] == "resolved"
                && a["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("no longer configured"))
        })
    });
    terminate(serve).expect_code(0);
}
