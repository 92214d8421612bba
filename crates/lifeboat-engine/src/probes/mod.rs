//! Health probes of the protected services (`[[probes]]`): one run of one probe
//! ([`run_once`]) and what it found ([`Finding`]). `serve` runs them on their intervals and
//! turns consecutive results into up/down ([`status::Status`]), alerts and hooks; `lifeboat
//! probe` runs them once.
//!
//! One file per kind: [`http`], [`tcp`], [`postgres`], [`redis`], [`bullmq`], [`sql`],
//! [`command`]. Each answers with the facts it saw and the problems among them; any problem,
//! an error or no answer within `timeout` is a failed run.

pub mod bullmq;
pub mod command;
pub mod http;
pub mod postgres;
pub mod redis;
pub mod sql;
pub mod status;
pub mod tcp;

use std::time::{Duration, Instant};

use lifeboat_core::{Redacted, probes::ProbeConfig};
use serde::Serialize;

use lifeboat_core::Config;

/// What one run of a probe found.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub probe: String,
    pub kind: &'static str,
    /// No error, no problem, an answer within the timeout.
    pub ok: bool,
    #[serde(with = "lifeboat_core::time::moment")]
    pub at: Option<jiff::Timestamp>,
    /// How long the run took (to the timeout, if it ran out).
    pub latency_seconds: f64,
    /// One line: what was seen, or what went wrong.
    pub detail: String,
    /// The thresholds crossed (each a sentence); empty when `ok`.
    pub problems: Vec<String>,
    /// BullMQ: each queue's counts.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub queues: Vec<bullmq::QueueCounts>,
}

/// What a kind's run returns when it got an answer.
#[derive(Debug, Default)]
pub struct Seen {
    pub detail: String,
    pub problems: Vec<String>,
    pub queues: Vec<bullmq::QueueCounts>,
}

/// What a probe remembers between runs (counters whose growth is the problem).
#[derive(Debug, Default, Clone)]
pub struct Memory {
    /// Redis `rejected_connections` at the last run.
    pub rejected_connections: Option<u64>,
}

/// Run `probe` once, within its timeout.
pub async fn run_once(config: &Config, probe: &ProbeConfig, memory: &mut Memory) -> Finding {
    let began = Instant::now();
    let at = jiff::Timestamp::now();
    let limit = probe.timeout().as_duration();
    // Resolved once: what the kind connects to, and the password in it that never shows,
    // whatever an error quotes.
    let watched = address(config, probe);
    let secret = watched
        .as_ref()
        .ok()
        .and_then(|u| crate::restore::checks::password_in(u.expose()));
    let run = tokio::time::timeout(limit, run_kind(config, probe, &watched, limit, memory)).await;
    let latency_seconds = began.elapsed().as_secs_f64();
    let (ok, detail, problems, queues) = match run {
        Ok(Ok(seen)) => (
            seen.problems.is_empty(),
            if seen.problems.is_empty() {
                seen.detail
            } else {
                format!("{}; {}", seen.problems.join("; "), seen.detail)
            },
            seen.problems,
            seen.queues,
        ),
        Ok(Err(e)) => (false, e, Vec::new(), Vec::new()),
        Err(_) => (
            false,
            format!(
                "no answer within {}",
                lifeboat_drill::render::seconds(limit.as_secs_f64())
            ),
            Vec::new(),
            Vec::new(),
        ),
    };
    let clean = |text: &str| match &secret {
        Some(s) => one_line(text).replace(s.as_str(), "[redacted]"),
        None => one_line(text),
    };
    Finding {
        probe: probe.name.clone(),
        kind: probe.kind.as_str(),
        ok,
        at: Some(at),
        latency_seconds,
        detail: clean(&detail),
        problems: problems.iter().map(|p| clean(p)).collect(),
        queues,
    }
}

async fn run_kind(
    config: &Config,
    probe: &ProbeConfig,
    watched: &Result<Redacted, String>,
    limit: Duration,
    memory: &mut Memory,
) -> Result<Seen, String> {
    use lifeboat_core::probes::ProbeKind as K;
    let url = || watched.clone();
    match probe.kind {
        K::Http => http::run(probe, &url()?, limit).await,
        K::Tcp => tcp::run(&url()?).await,
        K::Postgres => postgres::run(probe, &url()?).await,
        K::Redis => redis::run(probe, url()?, limit, memory).await,
        K::Bullmq => bullmq::run(probe, url()?, limit).await,
        K::Sql => sql::run(config, probe, &url()?).await,
        K::Command => command::run(probe).await,
    }
}

/// What the probe watches: its `url` (or `url-env`), else its target's connection.
fn address(config: &Config, probe: &ProbeConfig) -> Result<Redacted, String> {
    if let Some(url) = probe.own_url()? {
        return Ok(url);
    }
    let name = probe.target.as_deref().unwrap_or_default();
    let target = config
        .target(name)
        .ok_or_else(|| format!("target `{name}` is not configured"))?;
    target.connection_url(name).map_err(|e| e.to_string())
}

/// Text on one line, without secrets' usual hiding places (URL passwords), at most 300
/// characters.
fn one_line(text: &str) -> String {
    let flat = lifeboat_core::redact_url(&text.split_whitespace().collect::<Vec<_>>().join(" "));
    match flat.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &flat[..i]),
        None => flat,
    }
}

/// The probes named (all when `names` is empty), or the first name that is not one.
pub fn select<'c>(
    probes: &'c [ProbeConfig],
    names: &[String],
) -> Result<Vec<&'c ProbeConfig>, String> {
    if names.is_empty() {
        return Ok(probes.iter().collect());
    }
    names
        .iter()
        .map(|n| {
            probes.iter().find(|p| &p.name == n).ok_or_else(|| {
                let known: Vec<&str> = probes.iter().map(|p| p.name.as_str()).collect();
                if known.is_empty() {
                    format!("no probe `{n}`: the config has no `[[probes]]`")
                } else {
                    format!("no probe `{n}` (configured: {})", known.join(", "))
                }
            })
        })
        .collect()
}
