//! `lifeboat serve` end to end (issue 19): schedules run backups by themselves, the job
//! history records every job (failures too), the HTTP endpoint answers from memory, one
//! `serve` per repository, SIGTERM stops it with exit 0, and a restart after a missed slot
//! catches up at once.

use std::{
    io::{Read, Write},
    time::{Duration, Instant},
};

use lifeboat_testkit::{Workspace, free_port, terminate, wait_for};

const BIN: &str = env!("CARGO_BIN_EXE_lifeboat");

/// One HTTP request; the status code and the body.
fn http(port: u16, method: &str, path: &str) -> (u16, String) {
    let a = lifeboat_testkit::http_request(port, method, path, &[], "");
    (a.status, a.body)
}

fn jobs(ws: &Workspace) -> Vec<serde_json::Value> {
    ws.run(&["jobs", "--json"]).json()["jobs"]
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn serve_runs_the_schedules_records_every_job_and_stops_cleanly() {
    let ws = Workspace::new(BIN);
    let data = ws.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("a.txt"), "hello").unwrap();
    let dead = free_port();
    ws.write_config(&format!(
        "[targets.f]\nkind = \"files\"\npaths = [\"{}\"]\nschedule = \"every 2s\"\ndrill-schedule = \"every 3s\"\nobjectives = {{ rpo = \"1h\" }}\n\n[maintenance]\ncheck-schedule = \"every 3s\"\ncheck-read-data = \"50%\"\n\n[targets.db]\nkind = \"postgres\"\nurl = \"postgres://u:secret@127.0.0.1:{dead}/db\"\nschedule = \"every 2s\"\n",
        data.display()
    ));
    ws.run(&["init"]).expect_code(0);
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let serve = ws.spawn(&["serve", "--listen", &listen]);

    // Snapshots appear on schedule: the catch-up at start, then every 2 s.
    let good = |ws: &Workspace| {
        jobs(ws)
            .iter()
            .filter(|j| j["target"] == "f" && j["outcome"] == "succeeded")
            .count()
    };
    wait_for("three backups of `f`", Duration::from_secs(60), || {
        good(&ws) >= 3
    });
    // The drill and the check have their own calendars.
    let ran = |ws: &Workspace, job: &str, target: &str| {
        jobs(ws)
            .iter()
            .any(|j| j["job"] == job && j["target"] == target && j["outcome"] == "succeeded")
    };
    wait_for(
        "a scheduled drill and check",
        Duration::from_secs(30),
        || ran(&ws, "drill", "f") && ran(&ws, "check", "repository"),
    );
    assert!(
        ws.run(&["drills", "f", "--json"])
            .stdout
            .contains("\"verdict\": \"pass\"")
    );
    // `check-read-data = "50%"`: each check reads the next half of the packs.
    let check_parts = |ws: &Workspace| -> Vec<String> {
        jobs(ws)
            .iter()
            .filter(|j| {
                j["job"] == "check"
                    && ["succeeded", "failed"].contains(&j["outcome"].as_str().unwrap_or(""))
            })
            .map(|j| j["detail"].as_str().unwrap_or("(none)").to_string())
            .collect()
    };
    wait_for("two checks", Duration::from_secs(30), || {
        check_parts(&ws).len() >= 2
    });
    let parts = check_parts(&ws);
    assert_eq!(
        parts[..2],
        [
            "read part 1 of 2 of the packs",
            "read part 2 of 2 of the packs"
        ],
        "{parts:?}"
    );
    // The repository's upkeep has its own history (`jobs repository` was once refused as
    // an unknown target).
    let upkeep = ws.run(&["jobs", "repository", "--json"]);
    upkeep.expect_code(0);
    assert!(
        upkeep.json()["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|j| j["job"] == "check"),
        "{}",
        upkeep.stdout
    );
    let history = jobs(&ws);
    let first_f = history.iter().find(|j| j["target"] == "f").unwrap();
    assert_eq!(first_f["trigger"], "catch-up", "{first_f:#}");
    assert!(
        history
            .iter()
            .any(|j| j["target"] == "f" && j["trigger"] == "schedule"),
        "{history:#?}"
    );
    // The server that is down: its failures are in the history, its secret is not.
    let failed = ws.run(&["jobs", "db", "--failed", "--json"]).json()["jobs"].clone();
    let failed = failed.as_array().unwrap();
    assert!(!failed.is_empty(), "no failed job of `db`");
    assert_eq!(failed[0]["outcome"], "failed");
    assert!(!failed[0].to_string().contains("secret"), "{failed:?}");

    let (status, body) = http(port, "GET", "/healthz");
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let (status, metrics) = http(port, "GET", "/metrics");
    assert_eq!(status, 200);
    for part in [
        "lifeboat_last_backup_success_timestamp_seconds{target=\"f\"}",
        "lifeboat_jobs_total{target=\"f\",job=\"backup\",outcome=\"succeeded\"}",
        "lifeboat_jobs_total{target=\"db\",job=\"backup\",outcome=\"failed\"}",
        "lifeboat_objective_met{target=\"f\",objective=\"rpo\"} 1",
    ] {
        assert!(metrics.contains(part), "no {part} in:\n{metrics}");
    }
    assert!(!metrics.contains("lifeboat_last_backup_success_timestamp_seconds{target=\"db\"}"));
    prometheus_rules_fire_on(&ws, &metrics);
    let (status, api) = http(port, "GET", "/api/status");
    assert_eq!(status, 200);
    let api: serde_json::Value = serde_json::from_str(&api).unwrap();
    assert!(
        api["targets"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["target"] == "f"),
        "{api:#}"
    );
    let (status, api) = http(port, "GET", "/api/jobs");
    assert_eq!(status, 200);
    assert!(api.contains("\"trigger\":\"catch-up\""), "{api}");
    assert_eq!(http(port, "GET", "/nowhere").0, 404);
    assert_eq!(http(port, "POST", "/api/targets/nope/backup").0, 404);

    // One serve per repository and host.
    ws.run(&["serve", "--listen", &format!("127.0.0.1:{}", free_port())])
        .expect_code(1)
        .expect_stderr(&["another `lifeboat serve` runs for this repository"], &[]);

    let stopped = terminate(serve);
    stopped.expect_code(0);
    let last_part = check_parts(&ws).last().unwrap().clone();
    stopped.expect_stderr(&["backup of `f` finished"], &[]);
    let snaps = ws.run(&["snapshots", "--json"]).json()["snapshots"].clone();
    let snaps = snaps.as_array().unwrap();
    assert!(snaps.iter().all(|s| s["complete"] == true), "{snaps:#?}");
    ws.run(&["check"]).expect_code(0);

    // Catch-up: started again after a missed slot, it backs up at once.
    std::thread::sleep(Duration::from_secs(3));
    let before = good(&ws);
    let started = Instant::now();
    let serve = ws.spawn(&["serve", "--listen", &listen]);
    wait_for("the catch-up backup", Duration::from_secs(30), || {
        jobs(&ws)
            .iter()
            .filter(|j| j["target"] == "f" && j["trigger"] == "catch-up")
            .count()
            >= 2
    });
    assert!(good(&ws) > before);
    assert!(started.elapsed() < Duration::from_secs(30));
    // The schedule's state is in the repository: the check missed while stopped catches
    // up too, and reads the part after the last one read before the restart.
    wait_for("the catch-up check", Duration::from_secs(30), || {
        jobs(&ws)
            .iter()
            .any(|j| j["job"] == "check" && j["trigger"] == "catch-up")
    });
    let caught_up = jobs(&ws)
        .into_iter()
        .find(|j| j["job"] == "check" && j["trigger"] == "catch-up")
        .unwrap();
    assert!(caught_up["detail"].as_str().is_some(), "{caught_up:#}");
    assert_ne!(
        caught_up["detail"].as_str().unwrap(),
        last_part,
        "{caught_up:#}"
    );
    terminate(serve).expect_code(0);
}

/// Issue 19, point 7: `packaging/prometheus-rules.yml` passes `promtool check rules`, and
/// `promtool test rules`, fed the samples this `serve` exposes (as Prometheus stores them
/// after a scrape: lifeboat's `job` label becomes `exported_job`), fires the backup alert
/// for the target whose backups fail and not for the one whose backups work; and the
/// serve-down alert when the scrape fails.
fn prometheus_rules_fire_on(ws: &Workspace, metrics: &str) {
    let rules = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../packaging/prometheus-rules.yml");
    promtool("check", &rules);
    let mut series = vec![serde_json::json!({
        "series": "up{job=\"lifeboat\",instance=\"serve\"}", "values": "1x15",
    })];
    for line in metrics
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (name_labels, value) = line.rsplit_once(' ').unwrap();
        let (name, labels) = name_labels.split_once('{').unwrap_or((name_labels, "}"));
        let labels = labels
            .trim_end_matches('}')
            .replace("job=\"", "exported_job=\"");
        let sep = if labels.is_empty() { "" } else { "," };
        series.push(serde_json::json!({
            "series": format!("{name}{{{labels}{sep}job=\"lifeboat\",instance=\"serve\"}}"),
            "values": format!("{value}+0x15"),
        }));
    }
    let base = serde_json::json!({"job": "lifeboat", "instance": "serve"});
    let with = |extra: serde_json::Value| {
        let mut m = base.clone();
        m.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        m
    };
    let test = serde_json::json!({
        "rule_files": [rules],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": series,
                "alert_rule_test": [{
                    "eval_time": "10m",
                    "alertname": "LifeboatBackupFailed",
                    "exp_alerts": [{
                        "exp_labels": with(serde_json::json!({"severity": "critical", "target": "db", "exported_job": "backup"})),
                        "exp_annotations": {
                            "summary": "lifeboat: the last backup of db failed",
                            "description": "Run `lifeboat jobs db --failed` for the error.",
                        },
                    }],
                }, {
                    "eval_time": "10m",
                    "alertname": "LifeboatServeDown",
                    "exp_alerts": [],
                }],
            },
            {
                "interval": "1m",
                "input_series": [{"series": "up{job=\"lifeboat\",instance=\"serve\"}", "values": "0x15"}],
                "alert_rule_test": [{
                    "eval_time": "10m",
                    "alertname": "LifeboatServeDown",
                    "exp_alerts": [{
                        "exp_labels": with(serde_json::json!({"severity": "critical"})),
                        "exp_annotations": {"summary": "lifeboat serve is not answering: nothing is scheduled, nothing alerts"},
                    }],
                }],
            },
        ],
    });
    let file = ws.path().join("rules-test.yml");
    std::fs::write(&file, serde_json::to_vec_pretty(&test).unwrap()).unwrap();
    promtool("test", &file);
}

/// `promtool <what> rules FILE`; panics with its output unless it succeeds.
fn promtool(what: &str, file: &std::path::Path) {
    let run = std::process::Command::new("promtool")
        .args([what, "rules"])
        .arg(file)
        .output()
        .expect("promtool (Debian package `prometheus`; scripts/install-deps.sh installs it)");
    assert!(
        run.status.success(),
        "promtool {what} rules: {}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
}

#[test]
fn serve_refuses_to_listen_beyond_loopback_without_a_token() {
    let ws = Workspace::new(BIN);
    ws.write_config("");
    ws.run(&["init"]).expect_code(0);
    ws.run(&["serve", "--listen", "0.0.0.0:0"])
        .expect_code(2)
        .expect_stderr(&["without a token", "token-env"], &[]);
}

/// Issue 19, point 1 (`Type=notify`): `serve` tells systemd it is ready once it listens,
/// and that it stops on SIGTERM, through the datagram socket in `$NOTIFY_SOCKET`.
#[test]
fn serve_tells_systemd_when_it_is_ready_and_when_it_stops() {
    let ws = Workspace::new(BIN);
    ws.write_config("");
    ws.run(&["init"]).expect_code(0);
    let path = ws.path().join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let port = free_port();
    let serve = ws.spawn_env(
        &["serve", "--listen", &format!("127.0.0.1:{port}")],
        &[("NOTIFY_SOCKET", &path)],
    );
    let mut buf = [0u8; 256];
    let n = socket.recv(&mut buf).expect("no READY=1 from serve");
    assert_eq!(&buf[..n], b"READY=1");
    // Ready means listening.
    assert_eq!(http(port, "GET", "/healthz").0, 200);
    let stopped = terminate(serve);
    stopped.expect_code(0);
    let n = socket.recv(&mut buf).expect("no STOPPING=1 from serve");
    assert_eq!(&buf[..n], b"STOPPING=1");
}

/// Issue 19, point 2: after a clock jump (a host suspended for hours, a clock set
/// forward) the missed slot runs at once and is recorded as a catch-up. The jump is made
/// by libfaketime (Debian `faketime`) around the real binary: its wall clock moves 3 h
/// forward while its monotonic clock does not.
#[test]
fn a_clock_jump_forward_runs_the_missed_slot_at_once() {
    let lib = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";
    assert!(
        std::path::Path::new(lib).exists(),
        "{lib} is missing: install Debian's `faketime` (scripts/install-deps.sh does)"
    );
    let ws = Workspace::new(BIN);
    let data = ws.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("a.txt"), "hello").unwrap();
    ws.write_config(&format!(
        "[targets.f]\nkind = \"files\"\npaths = [\"{}\"]\nschedule = \"every 1h\"\n",
        data.display()
    ));
    ws.run(&["init"]).expect_code(0);
    let clock = ws.path().join("faketime");
    std::fs::write(&clock, "+0\n").unwrap();
    let serve = ws.spawn_env(
        &["serve", "--listen", &format!("127.0.0.1:{}", free_port())],
        &[
            ("LD_PRELOAD", &lib),
            ("FAKETIME_TIMESTAMP_FILE", &clock),
            ("FAKETIME_NO_CACHE", &"1"),
            ("FAKETIME_DONT_FAKE_MONOTONIC", &"1"),
        ],
    );
    let backups = |ws: &Workspace| -> Vec<serde_json::Value> {
        jobs(ws)
            .into_iter()
            .filter(|j| j["target"] == "f" && j["outcome"] == "succeeded")
            .collect()
    };
    wait_for("the first backup", Duration::from_secs(30), || {
        backups(&ws).len() == 1
    });
    // No slot within the hour: nothing more runs.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(backups(&ws).len(), 1);
    // The clock jumps 3 h: the scheduler, looking at the wall clock at least every 15 s,
    // runs the missed slot.
    std::fs::write(&clock, "+3h\n").unwrap();
    let jumped = Instant::now();
    wait_for("the backup after the jump", Duration::from_secs(40), || {
        backups(&ws).len() >= 2
    });
    assert!(
        jumped.elapsed() < Duration::from_secs(30),
        "{:?}",
        jumped.elapsed()
    );
    let after = &backups(&ws)[1];
    assert_eq!(after["trigger"], "catch-up", "{after:#}");
    terminate(serve).expect_code(0);
}

/// A local HTTP receiver: every request's path and body, answered 200.
struct Receiver {
    port: u16,
    got: std::sync::Arc<std::sync::Mutex<Vec<(String, serde_json::Value)>>>,
}

impl Receiver {
    fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let keep = got.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { continue };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let (head_end, length) = loop {
                    let n = s.read(&mut chunk).unwrap_or(0);
                    if n == 0 {
                        break (0, 0);
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..i]).to_lowercase();
                        let length = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        break (i + 4, length);
                    }
                };
                while buf.len() < head_end + length {
                    let n = s.read(&mut chunk).unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
                let body = serde_json::from_slice(&buf[head_end..]).unwrap_or_default();
                keep.lock().unwrap().push((path, body));
                let _ = s.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            }
        });
        Self { port, got }
    }

    fn at(&self, path: &str) -> Vec<serde_json::Value> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, b)| b.clone())
            .collect()
    }
}

/// Issue 19, points 5-6: a backup that keeps failing alerts once (not once per attempt),
/// and once more when it works again; Slack gets its own format; the heartbeat is pinged
/// around every scheduled backup; `notify test` reaches every channel and names the one
/// that cannot be reached.
#[test]
fn a_failing_backup_alerts_once_and_resolves_once() {
    let pg = lifeboat_testkit::postgres();
    let hooks = Receiver::start();
    let ws = Workspace::new(BIN);
    let dead = free_port();
    let config = format!(
        "[targets.db]\nkind = \"postgres\"\nurl = \"{}\"\nschedule = \"every 2s\"\n\n[[notify]]\nname = \"ops\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:{}/hook\"\nevents = [\"backup-failed\"]\n\n[[notify]]\nname = \"chat\"\nkind = \"slack\"\nurl-env = \"TEST_SLACK_URL\"\nevents = [\"backup-failed\"]\n\n[[notify]]\nname = \"pager\"\nkind = \"pagerduty\"\nurl = \"http://127.0.0.1:{}/pd\"\nrouting-key-env = \"TEST_PD_KEY\"\nevents = [\"backup-failed\"]\n\n[[notify]]\nname = \"nag\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:{}/nag\"\nevents = [\"backup-failed\"]\nremind-every = \"2s\"\n\n[[notify]]\nname = \"talk\"\nkind = \"discord\"\nurl = \"http://127.0.0.1:{}/discord\"\nevents = [\"backup-failed\"]\n\n[heartbeat]\nurl = \"http://127.0.0.1:{}/hb/\"\n",
        pg.url("shop"),
        hooks.port,
        hooks.port,
        hooks.port,
        hooks.port,
        hooks.port
    );
    ws.write_config(&config);
    ws.run(&["init"]).expect_code(0);
    let slack = format!("http://127.0.0.1:{}/slack", hooks.port);
    let start = || {
        ws.spawn_env(
            &["serve", "--listen", &format!("127.0.0.1:{}", free_port())],
            &[
                ("TEST_SLACK_URL", &slack),
                ("TEST_PD_KEY", &"R0UTINGKEY"),
                // The history is pruned to the newest 3 records per target (1000 by default).
                ("LIFEBOAT_KEPT_JOBS", &"3"),
            ],
        )
    };
    let serve = start();
    // The alerts of `backup:db` in `state` that the webhook got.
    let alerts = |hooks: &Receiver, state: &str| {
        hooks
            .at("/hook")
            .into_iter()
            .filter(|a| a["key"] == "backup:db" && a["state"] == state)
            .count()
    };
    let firing = |hooks: &Receiver| alerts(hooks, "firing");
    wait_for("the firing alert", Duration::from_secs(60), || {
        firing(&hooks) >= 1
    });
    // Several more failed attempts (every 2 s): still one alert.
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(firing(&hooks), 1, "{:#?}", hooks.at("/hook"));
    let alert = hooks.at("/hook")[0].clone();
    assert_eq!(alert["kind"], "backup-failed", "{alert:#}");
    assert_eq!(alert["subject"], "db");
    assert!(
        alert["message"].as_str().unwrap().contains("shop"),
        "{alert:#}"
    );
    for field in ["time", "host"] {
        assert!(alert[field].is_string(), "no {field}: {alert:#}");
    }
    // `remind-every = "2s"`: the problem again, marked as a reminder, while it lasts; the
    // channels without it got it once.
    let nag = hooks.at("/nag");
    let (first, reminders): (Vec<_>, Vec<_>) =
        nag.iter().partition(|a| a.get("reminder").is_none());
    assert_eq!(first.len(), 1, "{nag:#?}");
    assert!(!reminders.is_empty(), "no reminder in {nag:#?}");
    for r in &reminders {
        assert_eq!(
            (r["key"].as_str(), r["state"].as_str()),
            (Some("backup:db"), Some("firing"))
        );
        assert_eq!(r["reminder"], true);
        assert_eq!(r["since"].as_str(), first[0]["time"].as_str(), "{r:#}");
        assert!(
            r["message"]
                .as_str()
                .unwrap()
                .starts_with("still failing after"),
            "{r:#}"
        );
    }
    let text = hooks.at("/slack")[0]["text"].as_str().unwrap().to_string();
    assert!(text.contains("db") && text.contains("failed"), "{text}");
    // Discord's webhook format: the message in `content` (at most 2,000 characters).
    let discord = hooks.at("/discord");
    assert_eq!(discord.len(), 1, "{discord:#?}");
    let content = discord[0]["content"].as_str().unwrap();
    assert!(
        content.contains("db") && content.contains("failed") && content.len() <= 2000,
        "{content}"
    );

    // Issue 21, point 5: an incident opened now starts its timeline with the problem that
    // was already firing: detection is when it began, not when someone opened it.
    wait_for("the firing alert kept", Duration::from_secs(10), || {
        std::fs::read_to_string(ws.repo().join("lifeboat/serve/alerts.json"))
            .is_ok_and(|a| a.contains("backup:db"))
    });
    ws.run(&[
        "incident",
        "open",
        "the shop database is gone",
        "--severity",
        "1",
    ])
    .expect_code(0);
    let report = ws.run(&["incident", "report", "--format", "json"]).json();
    let detected = report["detected_at"].as_str().unwrap().to_string();
    let opened = report["incident"]["opened-at"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(detected < opened, "detected {detected}, opened {opened}");
    assert_eq!(report["timeline"][0]["kind"], "alert", "{report:#}");
    ws.run(&["incident", "close"]).expect_code(0);

    // `serve` restarts, then the database comes: the next backup works, and the problem
    // that fired before the restart resolves once.
    terminate(serve).expect_code(0);
    pg.psql("postgres", "CREATE DATABASE shop").unwrap();
    let serve = start();
    let resolved = |hooks: &Receiver| alerts(hooks, "resolved");
    wait_for("the resolved alert", Duration::from_secs(60), || {
        resolved(&hooks) >= 1
    });
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!((firing(&hooks), resolved(&hooks)), (1, 1));
    let kept = jobs(&ws);
    assert!(!kept.is_empty() && kept.len() <= 3, "{kept:#?}");
    // PagerDuty: one trigger, then a resolve with the same dedup key (Events API v2).
    let pd = hooks.at("/pd");
    assert_eq!(pd.len(), 2, "{pd:#?}");
    assert_eq!(pd[0]["event_action"], "trigger");
    assert_eq!(pd[0]["routing_key"], "R0UTINGKEY");
    assert_eq!(pd[0]["payload"]["severity"], "error");
    assert_eq!(pd[0]["payload"]["component"], "db");
    assert!(pd[0]["payload"]["summary"].as_str().unwrap().contains("db"));
    assert!(pd[0]["payload"]["source"].is_string() && pd[0]["payload"]["timestamp"].is_string());
    assert_eq!(pd[1]["event_action"], "resolve");
    assert_eq!(pd[1]["dedup_key"], pd[0]["dedup_key"]);
    // The dead man's switch: pinged before each scheduled backup, then after it, `/fail`
    // after a failed one.
    for path in ["/hb/start", "/hb/fail", "/hb"] {
        assert!(!hooks.at(path).is_empty(), "no heartbeat ping {path}");
    }
    terminate(serve).expect_code(0);

    // `notify test`: each channel; one that cannot be reached is named, exit 1.
    ws.write_config(&format!(
        "{config}\n[[notify]]\nname = \"nowhere\"\nkind = \"discord\"\nurl = \"http://127.0.0.1:{dead}/x\"\n"
    ));
    let run = ws.run_env(
        &["notify", "test"],
        &[("TEST_SLACK_URL", &slack), ("TEST_PD_KEY", "R0UTINGKEY")],
    );
    run.expect_code(1);
    run.expect_stdout(&["ops: sent"], &[]);
    run.expect_stdout(&["chat: sent"], &[]);
    run.expect_stdout(&["nowhere: FAILED"], &[]);
    assert!(
        hooks.at("/hook").iter().any(|a| a["kind"] == "test"),
        "{:#?}",
        hooks.at("/hook")
    );
}

/// Issue 19, point 1: the shipped systemd unit passes `systemd-analyze verify` (pointing at
/// this build), and the shipped example config passes `config check`.
#[test]
fn the_service_unit_and_the_example_config_are_valid() {
    let packaging = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging");
    let unit = std::fs::read_to_string(packaging.join("lifeboat.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/bin/lifeboat -c /etc/lifeboat/lifeboat.toml serve"));
    let dir = tempfile::tempdir().unwrap();
    let here = dir.path().join("lifeboat.service");
    std::fs::write(&here, unit.replace("/usr/bin/lifeboat", BIN)).unwrap();
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&here)
        .output()
        .expect("systemd-analyze (systemd) is installed");
    let said =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && said.trim().is_empty(), "{said}");

    let env = [
        ("LIFEBOAT_PASSWORD", "x"),
        ("R2_ACCESS_KEY_ID", "a"),
        ("R2_SECRET_ACCESS_KEY", "b"),
        ("SUPABASE_DB_URL", "postgres://u:p@h/db"),
        ("REDIS_URL", "redis://h"),
        ("SLACK_WEBHOOK_URL", "https://hooks.slack.com/services/x"),
        ("ALERT_WEBHOOK_URL", "https://alerts.example/hook"),
        ("HEALTHCHECKS_URL", "https://hc-ping.com/abc"),
        ("LIFEBOAT_OFFSITE_PASSWORD", "y"),
        ("OFFSITE_ACCESS_KEY_ID", "c"),
        ("OFFSITE_SECRET_ACCESS_KEY", "d"),
    ];
    let example = packaging.join("lifeboat.toml.example");
    let run = lifeboat_testkit::Run::from(
        std::process::Command::new(BIN)
            .args(["-c", example.to_str().unwrap(), "config", "check"])
            .envs(env)
            .output()
            .unwrap(),
    );
    run.expect_code(0);
    assert!(
        !run.stdout.contains("hooks.slack.com"),
        "a secret was shown"
    );
}

/// Issue 19, point 5: an email alert through a real SMTP server (aiosmtpd, writing what it
/// receives into a Maildir): subject and body name the target and what failed.
#[test]
fn a_failing_backup_is_emailed_through_a_real_smtp_server() {
    let ws = Workspace::new(BIN);
    let maildir = ws.path().join("mail");
    let smtp_port = free_port();
    struct Stopped(std::process::Child);
    impl Drop for Stopped {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _smtp = Stopped(
        std::process::Command::new("python3")
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{smtp_port}"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("aiosmtpd (scripts/install-deps.sh installs it)"),
    );
    wait_for("the SMTP server", Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", smtp_port)).is_ok()
    });
    ws.write_config(
        "[targets.search]\nkind = \"command\"\nbackup = \"echo 'index export failed' >&2; exit 3\"\nrestore = \"cat\"\nschedule = \"every 2s\"\n\n[[notify]]\nname = \"team\"\nkind = \"email\"\nurl-env = \"TEST_SMTP_URL\"\nfrom = \"lifeboat@acme.test\"\nto = [\"ops@acme.test\", \"cto@acme.test\"]\n",
    );
    ws.run(&["init"]).expect_code(0);
    let serve = ws
        .command(&[
            "serve",
            "--listen",
            &format!("127.0.0.1:{}", free_port()),
            "--log-format",
            "json",
        ])
        .env("TEST_SMTP_URL", format!("smtp://127.0.0.1:{smtp_port}"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mails = || -> Vec<String> {
        std::fs::read_dir(maildir.join("new"))
            .map(|d| {
                d.flatten()
                    .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
                    .collect()
            })
            .unwrap_or_default()
    };
    wait_for("the email", Duration::from_secs(60), || {
        mails().iter().any(|m| m.contains("backup-failed"))
    });
    std::thread::sleep(Duration::from_secs(3));
    let stopped = terminate(serve);
    stopped.expect_code(0);
    // `--log-format json`: a JSON object per line, for log shippers.
    let events: Vec<serde_json::Value> = stopped
        .stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(events.iter().all(|e| e["time"].is_string()), "{events:#?}");
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "failed" && e["target"] == "search" && e["op"] == "backup"),
        "{}",
        stopped.stderr
    );
    let got: Vec<String> = mails()
        .into_iter()
        .filter(|m| m.contains("backup-failed"))
        .collect();
    assert_eq!(
        got.len(),
        1,
        "one alert, not one per failed attempt: {got:#?}"
    );
    let mail = &got[0];
    for part in [
        "Subject: [lifeboat] FIRING backup-failed: search",
        "From: lifeboat@acme.test",
        "ops@acme.test",
        "cto@acme.test",
        "text/plain",
        "text/html",
        "key:     backup:search",
    ] {
        assert!(mail.contains(part), "no {part:?} in:\n{mail}");
    }
    assert!(mail.contains("status 3: index export failed"), "{mail}");
}

/// Issue 19, point 4: a job still running after `[serve] job-timeout` raises `job-overdue`
/// (it goes on), resolved when it ends. (`jitter` delays only scheduled slots, not the
/// catch-up; its offset has a unit test.)
#[test]
fn a_job_running_past_its_timeout_is_overdue_until_it_ends() {
    let hooks = Receiver::start();
    let ws = Workspace::new(BIN);
    ws.write_config(&format!(
        "[serve]\njob-timeout = \"1s\"\n\n[targets.slow]\nkind = \"command\"\nbackup = \"sleep 4; echo done\"\nrestore = \"cat\"\nschedule = \"every 1h\"\njitter = \"10m\"\n\n[[notify]]\nname = \"ops\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:{}/hook\"\nevents = [\"job-overdue\"]\n",
        hooks.port
    ));
    ws.run(&["init"]).expect_code(0);
    let serve = ws.spawn(&["serve", "--listen", &format!("127.0.0.1:{}", free_port())]);
    let alerts = |state: &str| {
        hooks
            .at("/hook")
            .into_iter()
            .filter(|a| a["key"] == "overdue:backup:slow" && a["state"] == state)
            .count()
    };
    wait_for("the overdue alert", Duration::from_secs(30), || {
        alerts("firing") == 1
    });
    let first = hooks.at("/hook")[0].clone();
    assert_eq!(first["kind"], "job-overdue", "{first:#}");
    assert_eq!(first["subject"], "slow");
    wait_for("its resolution", Duration::from_secs(30), || {
        alerts("resolved") == 1
    });
    // The catch-up job ran (the jitter only delays scheduled slots).
    assert!(jobs(&ws).iter().any(|j| j["outcome"] == "succeeded"));
    terminate(serve).expect_code(0);
}
