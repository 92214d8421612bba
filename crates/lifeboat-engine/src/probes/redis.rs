//! `redis`: `PING`, then `INFO`: a failed background save (`rdb_last_bgsave_status`) or AOF
//! write (`aof_last_write_status`) is always a problem; so are connections the server
//! rejected since the last run (`rejected_connections` grew); used memory over `maxmemory`
//! is one past `max-memory-ratio`.

use std::time::Duration;

use lifeboat_core::{Redacted, probes::ProbeConfig};
use lifeboat_redis::{Conn, RedisUrl};

use super::{Memory, Seen};
use crate::format::bytes as human_bytes;

pub async fn run(
    probe: &ProbeConfig,
    url: Redacted,
    limit: Duration,
    memory: &mut Memory,
) -> Result<Seen, String> {
    let url = RedisUrl::parse(&url).map_err(|e| e.to_string())?;
    let ratio = probe.max_memory_ratio;
    let before = memory.rejected_connections;
    let (seen, rejected) = tokio::task::spawn_blocking(move || look(&url, limit, ratio, before))
        .await
        .map_err(|e| format!("the probe stopped: {e}"))??;
    memory.rejected_connections = Some(rejected);
    Ok(seen)
}

/// Connect within `limit` (blocking).
pub fn connect(url: &RedisUrl, limit: Duration) -> Result<Conn, String> {
    let mut conn = Conn::connect_within(url, Some(limit)).map_err(|e| e.to_string())?;
    conn.cmd(&[b"PING"]).map_err(|e| e.to_string())?;
    Ok(conn)
}

fn look(
    url: &RedisUrl,
    limit: Duration,
    ratio: Option<f64>,
    rejected_before: Option<u64>,
) -> Result<(Seen, u64), String> {
    let mut conn = connect(url, limit)?;
    let info = conn.info("everything").map_err(|e| e.to_string())?;
    let get = |k: &str| info.get(k).map(String::as_str).unwrap_or("");
    let num = |k: &str| get(k).parse::<u64>().unwrap_or(0);
    let mut seen = Seen::default();
    if get("rdb_last_bgsave_status") == "err" {
        seen.problems.push(
            "the last background save failed (`rdb_last_bgsave_status:err`; is the dump folder writable, the disk full?)"
                .into(),
        );
    }
    if get("aof_enabled") == "1" && get("aof_last_write_status") == "err" {
        seen.problems
            .push("the last AOF write failed (`aof_last_write_status:err`)".into());
    }
    let rejected = num("rejected_connections");
    if let Some(before) = rejected_before
        && rejected > before
    {
        seen.problems.push(format!(
            "{} connection(s) rejected since the last probe (`maxclients` {})",
            rejected - before,
            get("maxclients")
        ));
    }
    let (used, max) = (num("used_memory"), num("maxmemory"));
    let mut facts = vec![
        format!("PONG from Redis {}", get("redis_version")),
        format!("{} used", human_bytes(used)),
    ];
    if max > 0 {
        facts.push(format!("of maxmemory {}", human_bytes(max)));
        if let Some(r) = ratio
            && used as f64 / max as f64 > r
        {
            seen.problems.push(format!(
                "{} of maxmemory {} in use, over `max-memory-ratio` {r}",
                human_bytes(used),
                human_bytes(max)
            ));
        }
    }
    facts.push(format!("{} clients", get("connected_clients")));
    seen.detail = facts.join(", ");
    Ok((seen, rejected))
}
