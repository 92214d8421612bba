//! `bullmq`: BullMQ queues as they are in Redis, read without writing anything. The key
//! layout is BullMQ 5's (checked against 5.81): under `<prefix>:<queue>:` the lists `wait`,
//! `paused` and `active`, the sorted sets `prioritized`, `delayed`, `failed` and
//! `completed`, a hash per job (`<prefix>:<queue>:<id>`, with `timestamp`, `opts` (JSON, its
//! `delay`), `processedOn` and `finishedOn` in milliseconds) and `meta` (`version`,
//! `paused`). Workers take jobs from the right end of `wait`, so the oldest waiting job is
//! the last one (jobs added LIFO go there too: for such queues the age is approximate), and
//! push them onto the left of `active`, so the oldest active ones are on its right. Workers name their
//! connection `<prefix>:<base64 of the queue name>` (or `…:w:<name>`), which `CLIENT LIST`
//! shows.
//!
//! Per queue: the counts of each state; stuck jobs (active longer than `stuck-after`); the
//! oldest waiting job's age; the workers connected. Problems: `max-waiting` (waiting and
//! prioritized jobs), `max-failed`, `max-stuck` (default 0), `min-active-when-waiting`,
//! `max-waiting-age`.

use std::time::Duration;

use lifeboat_core::{Redacted, probes::ProbeConfig};
use lifeboat_redis::{Conn, RedisUrl, Value};
use serde::Serialize;

use super::Seen;

/// Active jobs looked at for being stuck, at most.
const ACTIVE_LOOKED_AT: i64 = 1000;

#[derive(Debug, Clone, Default, Serialize)]
pub struct QueueCounts {
    pub queue: String,
    pub waiting: u64,
    pub prioritized: u64,
    pub active: u64,
    pub delayed: u64,
    pub failed: u64,
    pub completed: u64,
    /// Active jobs older than `stuck-after`.
    pub stuck: u64,
    /// Age of the oldest waiting job, seconds.
    pub oldest_waiting_seconds: Option<f64>,
    /// Connections named as this queue's workers (`None`: `CLIENT LIST` is not allowed).
    pub workers: Option<u64>,
    pub paused: bool,
    /// `meta.version`, e.g. `bullmq:5.81.5`.
    pub version: Option<String>,
}

impl QueueCounts {
    /// (state, count) as the `lifeboat_queue_jobs` metric labels them.
    pub fn states(&self) -> [(&'static str, u64); 7] {
        [
            ("waiting", self.waiting),
            ("prioritized", self.prioritized),
            ("active", self.active),
            ("delayed", self.delayed),
            ("failed", self.failed),
            ("completed", self.completed),
            ("stuck", self.stuck),
        ]
    }
}

pub async fn run(probe: &ProbeConfig, url: Redacted, limit: Duration) -> Result<Seen, String> {
    let url = RedisUrl::parse(&url).map_err(|e| e.to_string())?;
    let probe = probe.clone();
    tokio::task::spawn_blocking(move || look(&probe, &url, limit))
        .await
        .map_err(|e| format!("the probe stopped: {e}"))?
}

fn look(probe: &ProbeConfig, url: &RedisUrl, limit: Duration) -> Result<Seen, String> {
    let began = std::time::Instant::now();
    let mut conn = super::redis::connect(url, limit)?;
    let now_ms = jiff::Timestamp::now().as_millisecond();
    let clients = conn.cmd(&[b"CLIENT", b"LIST"]).ok().map(|v| v.as_text());
    let mut seen = Seen::default();
    let mut facts = Vec::new();
    for queue in probe.queues.iter().flatten() {
        // One deadline for the whole run: the thread gives up with the run.
        if began.elapsed() > limit {
            return Err(format!("no answer within {} ms", limit.as_millis()));
        }
        let q = counts(&mut conn, probe, queue, now_ms, clients.as_deref())
            .map_err(|e| format!("queue `{queue}`: {e}"))?;
        judge(probe, &q, &mut seen.problems);
        let mut fact = format!(
            "{queue}: {} waiting, {} active, {} delayed, {} failed",
            q.waiting + q.prioritized,
            q.active,
            q.delayed,
            q.failed
        );
        if q.stuck > 0 {
            fact.push_str(&format!(", {} stuck", q.stuck));
        }
        if let Some(w) = q.workers {
            fact.push_str(&format!(", {w} workers"));
        }
        if q.paused {
            fact.push_str(", paused");
        }
        facts.push(fact);
        seen.queues.push(q);
    }
    seen.detail = facts.join("; ");
    Ok(seen)
}

fn counts(
    conn: &mut Conn,
    probe: &ProbeConfig,
    queue: &str,
    now_ms: i64,
    clients: Option<&str>,
) -> Result<QueueCounts, lifeboat_redis::RedisError> {
    let base = format!("{}:{queue}:", probe.prefix());
    let key = |k: &str| format!("{base}{k}");
    let mut n = |cmd: &[u8], k: &str| -> Result<u64, lifeboat_redis::RedisError> {
        Ok(conn
            .cmd(&[cmd, key(k).as_bytes()])?
            .as_int()
            .unwrap_or(0)
            .max(0) as u64)
    };
    let mut q = QueueCounts {
        queue: queue.to_string(),
        waiting: n(b"LLEN", "wait")? + n(b"LLEN", "paused")?,
        prioritized: n(b"ZCARD", "prioritized")?,
        active: n(b"LLEN", "active")?,
        delayed: n(b"ZCARD", "delayed")?,
        failed: n(b"ZCARD", "failed")?,
        completed: n(b"ZCARD", "completed")?,
        ..QueueCounts::default()
    };
    let meta = conn.cmd(&[b"HMGET", key("meta").as_bytes(), b"version", b"paused"])?;
    if let Value::Array(m) = meta {
        q.version = m.first().map(Value::as_text).filter(|v| !v.is_empty());
        q.paused = m.get(1).is_some_and(|v| !v.as_text().is_empty());
    }
    // Stuck: active since longer than `stuck-after`.
    let stuck_ms = probe.stuck_after().as_secs() as i64 * 1000;
    // Workers push onto the left of `active`: the oldest (the ones that may be stuck) are on
    // the right.
    let active = ids(conn.cmd(&[
        b"LRANGE",
        key("active").as_bytes(),
        (-ACTIVE_LOOKED_AT).to_string().as_bytes(),
        b"-1",
    ])?);
    for id in &active {
        conn.send(&[b"HGET", format!("{base}{id}").as_bytes(), b"processedOn"])?;
    }
    for _ in &active {
        let since = conn.read()?.as_text().parse::<i64>().ok();
        if since.is_some_and(|t| now_ms - t > stuck_ms) {
            q.stuck += 1;
        }
    }
    // The oldest waiting job: the right end of `wait` (markers `0:…` are not jobs).
    let tail = ids(conn.cmd(&[b"LRANGE", key("wait").as_bytes(), b"-2", b"-1"])?);
    if let Some(id) = tail.iter().rev().find(|id| !id.starts_with("0:")) {
        let job = conn.cmd(&[
            b"HMGET",
            format!("{base}{id}").as_bytes(),
            b"timestamp",
            b"opts",
            b"processedOn",
            b"finishedOn",
        ])?;
        if let Value::Array(f) = job {
            q.oldest_waiting_seconds =
                waiting_since(&f).map(|t| ((now_ms - t) as f64 / 1000.0).max(0.0));
        }
    }
    if let Some(list) = clients {
        let name = format!(
            "{}:{}",
            probe.prefix(),
            crate::format::base64(queue.as_bytes())
        );
        let named = format!("{name}:w:");
        q.workers = Some(
            list.lines()
                .filter_map(|l| l.split(' ').find_map(|f| f.strip_prefix("name=")))
                .filter(|n| *n == name || n.starts_with(&named))
                .count() as u64,
        );
    }
    Ok(q)
}

/// When a waiting job began to wait (ms), from its hash's `timestamp`, `opts`, `processedOn`
/// and `finishedOn`: created, plus the delay it asked for (BullMQ sets the hash's own `delay`
/// to 0 when it promotes the job, the options keep it), or — retried after a failure — when
/// its last attempt ended.
fn waiting_since(fields: &[Value]) -> Option<i64> {
    let num = |i: usize| fields.get(i).and_then(|v| v.as_text().parse::<i64>().ok());
    let created = num(0)?;
    let delay = fields
        .get(1)
        .and_then(|v| serde_json::from_str::<serde_json::Value>(&v.as_text()).ok())
        .and_then(|o| o["delay"].as_i64())
        .unwrap_or(0);
    [Some(created + delay), num(2), num(3)]
        .into_iter()
        .flatten()
        .max()
}

/// The thresholds `q` crosses, as sentences.
fn judge(probe: &ProbeConfig, q: &QueueCounts, problems: &mut Vec<String>) {
    let name = &q.queue;
    let waiting = q.waiting + q.prioritized;
    if let Some(max) = probe.max_waiting
        && waiting > max
    {
        problems.push(format!(
            "`{name}` has {waiting} jobs waiting, over `max-waiting` {max}"
        ));
    }
    if let Some(max) = probe.max_failed
        && q.failed > max
    {
        problems.push(format!(
            "`{name}` has {} failed jobs, over `max-failed` {max}",
            q.failed
        ));
    }
    let max_stuck = probe.max_stuck.unwrap_or(0);
    if q.stuck > max_stuck {
        problems.push(format!(
            "`{name}` has {} job(s) active for over {} (stuck), `max-stuck` is {max_stuck}",
            q.stuck,
            probe.stuck_after()
        ));
    }
    if let Some(min) = probe.min_active_when_waiting
        && waiting > 0
        && q.active < min
        && !q.paused
    {
        problems.push(format!(
            "`{name}` has {waiting} jobs waiting and {} active: are the workers running? (`min-active-when-waiting` {min})",
            q.active
        ));
    }
    if let (Some(max), Some(age)) = (probe.max_waiting_age, q.oldest_waiting_seconds)
        && age > max.as_secs() as f64
        && !q.paused
    {
        problems.push(format!(
            "`{name}`'s oldest waiting job has waited {}, over `max-waiting-age` {max}",
            lifeboat_drill::render::seconds(age)
        ));
    }
}

fn ids(v: Value) -> Vec<String> {
    match v {
        Value::Array(items) => items.iter().map(Value::as_text).collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_waits_from_its_delay_or_its_last_attempt_not_from_its_creation() {
        let t = |s: &str| Value::Text(s.into());
        // Created at 1000 with a 5 s delay (the hash's own `delay` already reset to 0).
        assert_eq!(
            waiting_since(&[t("1000"), t(r#"{"delay":5000}"#), Value::Nil, Value::Nil]),
            Some(6000)
        );
        // Retried: its last attempt ended at 9000.
        assert_eq!(
            waiting_since(&[t("1000"), t("{}"), t("8000"), t("9000")]),
            Some(9000)
        );
        assert_eq!(
            waiting_since(&[t("1000"), Value::Nil, Value::Nil, Value::Nil]),
            Some(1000)
        );
        assert_eq!(waiting_since(&[Value::Nil]), None);
    }
}
