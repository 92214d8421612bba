//! `serve`'s HTTP endpoint, HTTP/1.1 with one request per connection: `GET /healthz`
//! (200 while the scheduler ticks), `GET /metrics` (Prometheus text from the state in
//! memory), `GET /api/status` (the last evaluation of the objectives, as `status --json`),
//! `GET /api/jobs` (the job history, as `jobs --json`), `GET /api/probes` (each probe's
//! state and recent runs), `POST
//! /api/targets/NAME/backup` (run now). With a token, every request must carry
//! `Authorization: Bearer <token>`.

use std::{sync::Arc, time::Duration};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

use super::Shared;
use crate::probes::status::State;
use crate::{
    cancel::Cancel,
    jobs::{Job, Trigger},
};

/// Answer requests on `listener` until `shutdown`.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, shutdown: Cancel) {
    loop {
        let Ok(accepted) = shutdown.guard(listener.accept()).await else {
            return;
        };
        match accepted {
            Ok((stream, _)) => {
                let shared = shared.clone();
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(Duration::from_secs(10), handle(stream, &shared))
                        .await;
                });
            }
            Err(e) => log::warn!("HTTP endpoint: {e}"),
        }
    }
}

struct Response {
    status: &'static str,
    content_type: &'static str,
    body: String,
    /// More headers (`Location`, `Set-Cookie`, `Content-Security-Policy`).
    headers: Vec<(&'static str, String)>,
}

fn text(status: &'static str, body: impl Into<String>) -> Response {
    Response {
        status,
        content_type: "text/plain; charset=utf-8",
        body: body.into(),
        headers: Vec::new(),
    }
}

fn html(status: &'static str, body: String, csp: &str) -> Response {
    Response {
        status,
        content_type: "text/html; charset=utf-8",
        body,
        headers: vec![
            ("Content-Security-Policy", csp.to_string()),
            ("X-Content-Type-Options", "nosniff".into()),
            ("Referrer-Policy", "no-referrer".into()),
            ("Cache-Control", "no-store".into()),
        ],
    }
}

fn json(value: serde_json::Value) -> Response {
    Response {
        content_type: "application/json",
        ..text("200 OK", value.to_string())
    }
}

fn see_other(location: &str) -> Response {
    let mut r = text("303 See Other", "");
    r.headers.push(("Location", location.to_string()));
    r
}

/// One request as read: the method, the path (without the query), the query, the headers
/// and the body.
struct Request {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The value of cookie `name`.
    fn cookie(&self, name: &str) -> Option<&str> {
        self.header("cookie")?.split(';').find_map(|c| {
            let (k, v) = c.trim().split_once('=')?;
            (k == name).then_some(v)
        })
    }
}

/// The value of `key` in a query string or a form body (`a=1&b=x%20y`).
fn form_value(form: &str, key: &str) -> Option<String> {
    form.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == key).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = |b: u8| (b as char).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether a `Host` header names this host by address or as `localhost`.
fn local_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => {
            return v6
                .split(']')
                .next()
                .is_some_and(|a| a.parse::<std::net::Ipv6Addr>().is_ok());
        }
        None => host.rsplit_once(':').map_or(host, |(n, port)| {
            if port.chars().all(|c| c.is_ascii_digit()) {
                n
            } else {
                host
            }
        }),
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok()
}

/// Equal, in a time that does not depend on where they differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Read one request: the head, then a body of `Content-Length` (at most 16 KiB).
async fn read_request(stream: &mut TcpStream) -> std::io::Result<Option<Request>> {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let end = loop {
        if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = stream.read(&mut buf).await?;
        if n == 0 || data.len() > 16 << 10 {
            return Ok(None);
        }
        data.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&data[..end]).into_owned();
    let mut lines = head.lines();
    let mut first = lines.next().unwrap_or_default().split_whitespace();
    let (method, target) = (
        first.next().unwrap_or("").to_string(),
        first.next().unwrap_or("").to_string(),
    );
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
        .min(16 << 10);
    let mut body = data[end + 4..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&buf[..n]);
    }
    body.truncate(length);
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (target, String::new()),
    };
    Ok(Some(Request {
        method,
        path,
        query,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }))
}

async fn handle(mut stream: TcpStream, shared: &Arc<Shared>) -> std::io::Result<()> {
    let Some(req) = read_request(&mut stream).await? else {
        return Ok(());
    };
    let authorized = match &shared.token {
        None => true,
        Some(token) => {
            let bearer = req
                .header("authorization")
                .and_then(|v| v.strip_prefix("Bearer "))
                .is_some_and(|b| same(b, token.expose()));
            let session = req
                .cookie(SESSION_COOKIE)
                .is_some_and(|c| same(c, &shared.session));
            bearer || session
        }
    };
    // A browser on another site may not make this one act (CSRF): a POST that says where
    // it comes from must come from here.
    let cross_site = req.method == "POST"
        && req.header("origin").is_some_and(|o| {
            let here = req.header("host").unwrap_or_default();
            o != format!("http://{here}") && o != format!("https://{here}")
        });
    // Without a token, only this host may ask: a name that is not an address or
    // `localhost` is a site that had its name point here (DNS rebinding).
    let foreign_host = shared.token.is_none() && req.header("host").is_some_and(|h| !local_host(h));
    let response = if foreign_host {
        text(
            "421 Misdirected Request",
            "without a token, serve answers requests to an address or `localhost` only\n",
        )
    } else if cross_site {
        text("403 Forbidden", "a request from another site is refused\n")
    } else if (req.method.as_str(), req.path.as_str()) == ("POST", "/login") {
        login(&req, shared)
    } else if !authorized {
        match (req.method.as_str(), req.path.as_str()) {
            ("GET", "/") => html(
                "401 Unauthorized",
                super::dashboard::login("This lifeboat asks for its token (`[serve] token-env`)."),
                super::dashboard::csp(),
            ),
            _ => text("401 Unauthorized", "a bearer token is required\n"),
        }
    } else {
        route(&req, shared).await
    };
    let mut reply = format!(
        "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        response.status,
        response.content_type,
        response.body.len(),
    );
    for (k, v) in &response.headers {
        reply.push_str(&format!("{k}: {v}\r\n"));
    }
    reply.push_str("\r\n");
    reply.push_str(&response.body);
    stream.write_all(reply.as_bytes()).await?;
    stream.shutdown().await
}

/// The cookie a signed-in browser carries: a hash of the token, never the token.
const SESSION_COOKIE: &str = "lifeboat_session";

/// `POST /login` with the token as a form field: a session cookie and back to the page.
fn login(req: &Request, shared: &Shared) -> Response {
    let given = form_value(&req.body, "token").unwrap_or_default();
    match &shared.token {
        Some(token) if same(&given, token.expose()) => {
            let mut r = see_other("/");
            r.headers.push((
                "Set-Cookie",
                format!(
                    "{SESSION_COOKIE}={}; HttpOnly; SameSite=Strict; Path=/",
                    shared.session
                ),
            ));
            r
        }
        Some(_) => html(
            "401 Unauthorized",
            super::dashboard::login("That is not the token. Try again."),
            super::dashboard::csp(),
        ),
        None => see_other("/"),
    }
}

async fn route(req: &Request, shared: &Arc<Shared>) -> Response {
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/") => {
            let notice = form_value(&req.query, "started").and_then(|s| {
                s.split_once(':')
                    .map(|(j, t)| format!("{j} of `{t}` started"))
            });
            html(
                "200 OK",
                super::dashboard::page(shared, &shared.csrf, notice.as_deref()),
                super::dashboard::csp(),
            )
        }
        ("GET", p) if p.starts_with("/drills/") => drill_report(p, shared).await,
        ("POST", p) if p.starts_with("/actions/") => action(req, p, shared),
        ("GET", "/healthz") => {
            let fresh = shared
                .state()
                .tick
                .is_some_and(|t| t.elapsed() < Duration::from_secs(10));
            if fresh {
                text("200 OK", "ok\n")
            } else {
                text("503 Service Unavailable", "the scheduler is not ticking\n")
            }
        }
        ("GET", "/metrics") => Response {
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            ..text("200 OK", shared.state().metrics(jiff::Timestamp::now()))
        },
        ("GET", "/api/status") => {
            let rows = shared.state().status.clone();
            let ok = rows.iter().all(|r| r.problems.is_empty());
            json(serde_json::json!({ "targets": rows, "ok": ok }))
        }
        ("GET", "/api/probes") => {
            let probes = shared.state().probes.clone();
            let config = &shared.engine.config;
            let rows: Vec<serde_json::Value> = probes
                .iter()
                .map(|(name, s)| {
                    let mut row = serde_json::to_value(s).unwrap_or_default();
                    row["probe"] = name.clone().into();
                    row["held_by"] = match super::probes::hold(config, &probes, name) {
                        super::probes::Hold::By(d) if s.state == State::Down => d.into(),
                        _ => serde_json::Value::Null,
                    };
                    row
                })
                .collect();
            json(serde_json::json!({ "probes": rows }))
        }
        ("GET", "/api/jobs") => match crate::jobs::history(&shared.engine.repo, None).await {
            Ok(jobs) => json(serde_json::json!({ "jobs": jobs })),
            Err(e) => text(
                "500 Internal Server Error",
                format!("{}\n", e.full_message()),
            ),
        },
        ("POST", p) => match p
            .strip_prefix("/api/targets/")
            .and_then(|rest| rest.strip_suffix("/backup"))
        {
            Some(name) if shared.engine.config.targets.contains_key(name) => {
                shared.start_backup(name, Trigger::Command);
                text("202 Accepted", format!("backup of `{name}` started\n"))
            }
            Some(name) => text("404 Not Found", format!("no target `{name}`\n")),
            None => text("404 Not Found", "not found\n"),
        },
        _ => text("404 Not Found", "not found\n"),
    }
}

/// `GET /drills/<target>/<id>`: a drill report's HTML page, from the side area.
async fn drill_report(path: &str, shared: &Arc<Shared>) -> Response {
    let rest = path.trim_start_matches("/drills/");
    let Some((target, id)) = rest.split_once('/') else {
        return text("404 Not Found", "not found\n");
    };
    let plain = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && !s.starts_with('.')
    };
    if !shared.engine.config.targets.contains_key(target) || !plain(id) {
        return text("404 Not Found", "no such drill report\n");
    }
    let key = format!("{}/{target}/{id}.html", crate::drill::history::DRILLS_DIR);
    match shared.engine.repo.call(move |r| r.side().get(&key)).await {
        Ok(Some(bytes)) => html(
            "200 OK",
            String::from_utf8_lossy(&bytes).into_owned(),
            // The report's own policy: inline styles, nothing loaded.
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
        ),
        Ok(None) => text("404 Not Found", "no such drill report\n"),
        Err(e) => text("500 Internal Server Error", format!("{e}\n")),
    }
}

/// `POST /actions/<backup|drill>/<target>` from the page's buttons: the form's CSRF field
/// must match; then the job starts and the browser goes back to the page.
fn action(req: &Request, path: &str, shared: &Arc<Shared>) -> Response {
    let given = form_value(&req.body, "csrf").unwrap_or_default();
    if !same(&given, &shared.csrf) {
        return text(
            "403 Forbidden",
            "the form is stale or from elsewhere: reload the page\n",
        );
    }
    let Some((job, target)) = path.trim_start_matches("/actions/").split_once('/') else {
        return text("404 Not Found", "not found\n");
    };
    if !shared.engine.config.targets.contains_key(target) {
        return text("404 Not Found", format!("no target `{target}`\n"));
    }
    let job = match job {
        "backup" => Job::Backup(target.to_string()),
        "drill" => Job::Drill(target.to_string()),
        _ => return text("404 Not Found", "not found\n"),
    };
    let started = format!("{}:{target}", job.name());
    shared.start_job(job, Trigger::Command);
    see_other(&format!("/?started={started}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_and_hosts_are_read_as_browsers_send_them() {
        assert_eq!(
            form_value("a=1&csrf=x%2By+z", "csrf").as_deref(),
            Some("x+y z")
        );
        assert_eq!(form_value("token=%zz", "token").as_deref(), Some("%zz"));
        // Never a slice inside a character.
        assert_eq!(form_value("t=%a€", "t").as_deref(), Some("%a€"));
        assert_eq!(form_value("t=%€", "t").as_deref(), Some("%€"));
        assert_eq!(form_value("t=%41%", "t").as_deref(), Some("A%"));
        assert_eq!(form_value("a=1", "b"), None);
        for ok in [
            "127.0.0.1:9300",
            "localhost:9300",
            "[::1]:9300",
            "10.0.0.5",
            "LOCALHOST",
        ] {
            assert!(local_host(ok), "{ok}");
        }
        for bad in ["evil.example:9300", "evil.example", "127.0.0.1.nip.io:9300"] {
            assert!(!local_host(bad), "{bad}");
        }
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
    }
}
