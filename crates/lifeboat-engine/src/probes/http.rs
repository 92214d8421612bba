//! `http`: a request to the URL; the answer must have the expected status (any 2xx by
//! default), contain `body-contains`, and come within `max-latency`. TLS is verified against
//! the system's roots; redirects are followed.

use std::{sync::OnceLock, time::Duration};

use lifeboat_core::{Redacted, probes::ProbeConfig, redact_url};

use super::Seen;

/// What an answer must be.
pub struct Expect<'a> {
    pub method: &'a str,
    pub status: Option<u16>,
    pub body_contains: Option<&'a str>,
}

/// Ask `url` once: `Ok(status line)` when the answer is as expected, else what was wrong.
pub async fn ask(url: &str, expect: &Expect<'_>, limit: Duration) -> Result<String, String> {
    let method = reqwest::Method::from_bytes(expect.method.as_bytes())
        .map_err(|_| format!("`{}` is not an HTTP method", expect.method))?;
    let reply = client()?
        .request(method, url)
        .timeout(limit)
        .send()
        .await
        .map_err(|e| format!("no answer: {}", describe(&e)))?;
    let status = reply.status();
    let status_ok = match expect.status {
        Some(want) => status.as_u16() == want,
        None => status.is_success(),
    };
    if !status_ok {
        return Err(match expect.status {
            Some(want) => format!("answered {status}, expected {want}"),
            None => format!("answered {status}"),
        });
    }
    if let Some(needle) = expect.body_contains {
        let body = body_start(reply).await?;
        if !body.contains(needle) {
            return Err(format!("answered {status} without {needle:?} in the body"));
        }
    }
    Ok(format!("answered {status}"))
}

pub async fn run(probe: &ProbeConfig, url: &Redacted, limit: Duration) -> Result<Seen, String> {
    let began = std::time::Instant::now();
    let expect = Expect {
        method: probe.method.as_deref().unwrap_or("GET"),
        status: probe.expect_status,
        body_contains: probe.body_contains.as_deref(),
    };
    // The probe's own timeout decides (`run_once`); this one only bounds a stray request.
    let answered = ask(url.expose(), &expect, limit * 2).await?;
    let took = began.elapsed();
    let mut seen = Seen {
        detail: format!(
            "{} {answered} in {} ms",
            origin(url.expose()),
            took.as_millis()
        ),
        ..Seen::default()
    };
    if let Some(max) = probe.max_latency
        && took > max.as_duration()
    {
        seen.problems.push(format!(
            "answered in {} ms, over `max-latency` {} ms",
            took.as_millis(),
            max.as_duration().as_millis()
        ));
    }
    Ok(seen)
}

/// `https://host:port` of a URL: its path and query may hold a token (a ping URL, `?key=`),
/// so what is shown stops before them.
pub fn origin(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => format!(
            "{}://{}{}",
            u.scheme(),
            u.host_str().unwrap_or(""),
            u.port().map_or(String::new(), |p| format!(":{p}"))
        ),
        Err(_) => redact_url(url),
    }
}

/// The first MiB of the body: a health page is small, a wrong URL may not be.
async fn body_start(mut reply: reqwest::Response) -> Result<String, String> {
    let mut body = Vec::new();
    while body.len() < 1 << 20 {
        match reply.chunk().await {
            Ok(Some(c)) => body.extend_from_slice(&c),
            Ok(None) => break,
            Err(e) => return Err(format!("the body broke off: {}", describe(&e))),
        }
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// The error and its causes (the TLS or connection reason), without the URL.
fn describe(e: &reqwest::Error) -> String {
    let mut text = if e.is_timeout() {
        "timed out".to_string()
    } else {
        String::new()
    };
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = source {
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&s.to_string());
        source = s.source();
    }
    if text.is_empty() { e.to_string() } else { text }
}

/// One client for every probe (its connection pool and TLS roots are built once).
fn client() -> Result<&'static reqwest::Client, String> {
    static CLIENT: OnceLock<Result<reqwest::Client, String>> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            reqwest::Client::builder()
                .user_agent("lifeboat-probe")
                .pool_max_idle_per_host(1)
                .build()
                .map_err(|e| format!("cannot set up HTTP: {e}"))
        })
        .as_ref()
        .map_err(Clone::clone)
}
