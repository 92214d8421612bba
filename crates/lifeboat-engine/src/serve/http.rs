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
use crate::{cancel::Cancel, jobs::Trigger};

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
}

fn text(status: &'static str, body: impl Into<String>) -> Response {
    Response {
        status,
        content_type: "text/plain; charset=utf-8",
        body: body.into(),
    }
}

async fn handle(mut stream: TcpStream, shared: &Arc<Shared>) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 || head.len() > 16 << 10 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&head);
    let mut lines = head.lines();
    let mut first = lines.next().unwrap_or_default().split_whitespace();
    let (method, path) = (first.next().unwrap_or(""), first.next().unwrap_or(""));
    let authorized = match &shared.token {
        None => true,
        Some(token) => lines.any(|l| {
            l.split_once(':').is_some_and(|(k, v)| {
                k.eq_ignore_ascii_case("authorization")
                    && v.trim().strip_prefix("Bearer ") == Some(token.expose())
            })
        }),
    };
    let response = if !authorized {
        text("401 Unauthorized", "a bearer token is required\n")
    } else {
        route(method, path, shared).await
    };
    let reply = format!(
        "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        response.status,
        response.content_type,
        response.body.len(),
        response.body
    );
    stream.write_all(reply.as_bytes()).await?;
    stream.shutdown().await
}

async fn route(method: &str, path: &str, shared: &Arc<Shared>) -> Response {
    match (method, path) {
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
            status: "200 OK",
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            body: shared.state().metrics(jiff::Timestamp::now()),
        },
        ("GET", "/api/status") => {
            let rows = shared.state().status.clone();
            let ok = rows.iter().all(|r| r.problems.is_empty());
            Response {
                status: "200 OK",
                content_type: "application/json",
                body: serde_json::json!({ "targets": rows, "ok": ok }).to_string(),
            }
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
            Response {
                status: "200 OK",
                content_type: "application/json",
                body: serde_json::json!({ "probes": rows }).to_string(),
            }
        }
        ("GET", "/api/jobs") => match crate::jobs::history(&shared.engine.repo, None).await {
            Ok(jobs) => Response {
                status: "200 OK",
                content_type: "application/json",
                body: serde_json::json!({ "jobs": jobs }).to_string(),
            },
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
