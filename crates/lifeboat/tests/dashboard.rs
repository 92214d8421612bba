//! The dashboard of `serve` (issue 20, point 4): headless Chromium loads it under its strict
//! Content-Security-Policy with no console error, on a desktop and a phone; the DOM has the
//! target rows (a missed objective in red), the probes' states and the charts; the button
//! starts a backup (POST with the CSRF field; without it, or from another site, refused);
//! with a token, the page asks for it and a session cookie carries it.

use std::time::Duration;

use lifeboat_testkit::{Answer, Workspace, free_port, http_request, terminate, wait_for};

const BIN: &str = env!("CARGO_BIN_EXE_lifeboat");

fn get(port: u16, path: &str, headers: &[(&str, &str)]) -> Answer {
    http_request(port, "GET", path, headers, "")
}

/// The value of the first `name="csrf"` field of the page.
fn csrf_of(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    page[at..].split('"').next().unwrap().to_string()
}

fn listening(port: u16) {
    wait_for("serve to listen", Duration::from_secs(30), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
}

#[test]
fn the_dashboard_shows_targets_probes_and_jobs_and_its_button_runs_a_backup() {
    let ws = Workspace::new(BIN);
    let data = ws.path().join("docs");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("handbook.md"), "# restore the database first\n").unwrap();
    // Port 0: the system picks a free one (a port found free a moment before may be taken
    // by then: CI failed once with "Address already in use" here).
    let site = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let web = site.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in site.incoming().flatten() {
            let mut s = s;
            let mut buf = [0u8; 1024];
            let _ = std::io::Read::read(&mut s, &mut buf);
            let _ = std::io::Write::write_all(
                &mut s,
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
            );
        }
    });
    let dead = free_port();
    let config = format!(
        "[targets.docs]\nkind = \"files\"\npaths = [\"{}\"]\nobjectives = {{ rpo = \"1h\", rto = \"1h\" }}\n\n\
         [targets.search]\nkind = \"command\"\nbackup = \"echo '{{\\\"docs\\\": 3}}'\"\nobjectives = {{ rpo = \"1h\" }}\n\n\
         [[probes]]\nname = \"web\"\nkind = \"http\"\nurl = \"http://127.0.0.1:{web}/health\"\ninterval = \"1s\"\nfail-after = 1\n\n\
         [[probes]]\nname = \"queue\"\nkind = \"tcp\"\nurl = \"127.0.0.1:{dead}\"\ninterval = \"1s\"\nfail-after = 1\n",
        data.display()
    );
    ws.write_config(&config);
    ws.run(&["init"]).expect_code(0);
    ws.run(&["backup", "docs"]).expect_code(0);
    ws.run(&["drill", "docs"]).expect_code(0);
    let port = free_port();
    let serve = ws.spawn(&["serve", "--listen", &format!("127.0.0.1:{port}")]);
    listening(port);
    wait_for(
        "the objectives judged and the probes run",
        Duration::from_secs(30),
        || {
            let page = get(port, "/", &[]).body;
            page.contains("id=\"target-search\" class=\"missed\"")
                && page.contains("id=\"probe-queue\" class=\"down\"")
                && page.contains("id=\"probe-web\" class=\"up\"")
        },
    );

    let page = get(port, "/", &[]);
    assert_eq!(page.status, 200);
    let csp = page.header("content-security-policy").expect("a CSP");
    assert!(
        csp.contains("default-src 'none'") && csp.contains("style-src 'sha256-"),
        "{csp}"
    );
    assert!(!page.body.contains("<script"), "no JavaScript");
    // A met and a missed objective, the restorable point, the drill and its report.
    assert!(
        page.body.contains("id=\"target-docs\" class=\"met\""),
        "{}",
        page.body
    );
    assert!(page.body.contains("✗ missed: no backup"), "{}", page.body);
    let report = page
        .body
        .split("href=\"/drills/docs/")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("a link to the drill report")
        .to_string();
    let drill = get(port, &format!("/drills/docs/{report}"), &[]);
    assert_eq!(drill.status, 200);
    assert!(
        drill.body.contains("Drill of <code>docs</code>"),
        "{}",
        drill.body
    );
    assert_eq!(get(port, "/drills/docs/..%2Fsecret", &[]).status, 404);
    // Open alerts: none are channelled, but the failing probe's is open.
    assert!(page.body.contains("probe-down"), "{}", page.body);

    // Chromium, desktop and phone: no console error (a CSP violation would be one).
    let url = format!("http://127.0.0.1:{port}/");
    let dom = lifeboat_testkit::open_in_chromium(&url, "dashboard.png", (1200, 1800));
    for id in [
        "target-docs",
        "target-search",
        "probe-web",
        "probe-queue",
        "rpo-age",
        "backup-duration",
        "probe-latency",
        "backup-search",
    ] {
        assert!(dom.contains(&format!("id=\"{id}\"")), "no {id} in the DOM");
    }
    assert!(
        dom.contains("id=\"target-search\" class=\"missed\""),
        "the missed objective is not marked"
    );
    assert!(dom.contains("<polyline"), "the charts are empty");
    lifeboat_testkit::open_in_chromium(&url, "dashboard-phone.png", (390, 1600));

    // The button: a POST with the page's CSRF field starts a backup of `search`.
    let csrf = csrf_of(&page.body);
    let refused = http_request(port, "POST", "/actions/backup/search", &[], "csrf=forged");
    assert_eq!(refused.status, 403, "{refused:?}");
    let elsewhere = http_request(
        port,
        "POST",
        "/actions/backup/search",
        &[("Origin", "http://evil.example")],
        &format!("csrf={csrf}"),
    );
    assert_eq!(elsewhere.status, 403, "{elsewhere:?}");
    let pressed = http_request(
        port,
        "POST",
        "/actions/backup/search",
        &[
            ("Origin", &format!("http://127.0.0.1:{port}")),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        &format!("csrf={csrf}"),
    );
    assert_eq!(pressed.status, 303, "{pressed:?}");
    assert_eq!(
        pressed.header("location").as_deref(),
        Some("/?started=backup:search")
    );
    wait_for(
        "the backup the button started",
        Duration::from_secs(30),
        || ws.snapshots().iter().any(|s| s["target"] == "search"),
    );
    let after = get(port, "/?started=backup:search", &[]).body;
    assert!(after.contains("backup of `search` started"), "{after}");
    wait_for("the objective met", Duration::from_secs(90), || {
        get(port, "/", &[])
            .body
            .contains("id=\"target-search\" class=\"met\"")
    });
    terminate(serve).expect_code(0);

    // With a token: the page asks for it; a session cookie (not the token) carries it.
    std::fs::write(
        ws.config_path(),
        format!(
            "{}\n[serve]\ntoken-env = \"TEST_TOKEN\"\n",
            std::fs::read_to_string(ws.config_path()).unwrap()
        ),
    )
    .unwrap();
    let port = free_port();
    let serve = ws.spawn_env(
        &["serve", "--listen", &format!("127.0.0.1:{port}")],
        &[("TEST_TOKEN", &"s3cret-t0ken")],
    );
    listening(port);
    let asked = get(port, "/", &[]);
    assert_eq!(asked.status, 401);
    assert!(asked.body.contains("id=\"login\""), "{}", asked.body);
    let wrong = http_request(port, "POST", "/login", &[], "token=guess");
    assert_eq!(wrong.status, 401);
    let signed = http_request(port, "POST", "/login", &[], "token=s3cret-t0ken");
    assert_eq!(signed.status, 303, "{signed:?}");
    let cookie = signed.header("set-cookie").expect("a session cookie");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(
        !cookie.contains("s3cret-t0ken"),
        "the token is in the cookie"
    );
    let session = cookie.split(';').next().unwrap().to_string();
    let page = get(port, "/", &[("Cookie", &session)]);
    assert_eq!(page.status, 200);
    assert!(page.body.contains("id=\"target-docs\""));
    assert!(!page.body.contains("s3cret-t0ken"));
    assert_eq!(
        get(
            port,
            "/metrics",
            &[("Authorization", "Bearer s3cret-t0ken")]
        )
        .status,
        200
    );
    assert_eq!(get(port, "/metrics", &[]).status, 401);
    terminate(serve).expect_code(0);
}

/// The Chromium check above would miss a CSP violation if it did not read Chromium's console
/// lines as they are written (it did not, once): a page whose style the policy blocks fails.
#[test]
#[should_panic(expected = "console errors")]
fn a_page_whose_style_the_policy_blocks_fails_the_chromium_check() {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("blocked.html");
    std::fs::write(
        &page,
        "<!DOCTYPE html><html><head><meta http-equiv=\"Content-Security-Policy\" \
         content=\"default-src 'none'; style-src 'sha256-AAAA'\"><style>body { color: red }</style>\
         </head><body><p>blocked</p></body></html>",
    )
    .unwrap();
    lifeboat_testkit::open_in_chromium(
        &format!("file://{}", page.display()),
        "blocked.png",
        (400, 300),
    );
}
