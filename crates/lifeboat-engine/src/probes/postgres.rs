//! `postgres`: connect and `SELECT 1`, then what the server says about itself — each
//! reported in the detail, and a problem when past its threshold:
//! - replication lag: of each standby (on a primary, `pg_stat_replication.replay_lag`; needs
//!   `pg_monitor`) or of this standby (`max-replication-lag`);
//! - `pg_stat_archiver`: archiving that fails (its last failure newer than its last success)
//!   is always a problem;
//! - the database's size (`max-size`);
//! - client connections over `max_connections` (`max-connections-ratio`);
//! - WAL retained by each replication slot (`max-slot-wal`); a slot whose WAL is lost is
//!   always a problem.
//!
//! A view this role may not read is left out of the detail, never a failure.

use lifeboat_core::{Redacted, probes::ProbeConfig};
use tokio_postgres::{Client, SimpleQueryMessage};

use super::Seen;
use crate::format::bytes as human_bytes;

pub async fn run(probe: &ProbeConfig, url: &Redacted) -> Result<Seen, String> {
    let target = lifeboat_postgres::Target::parse(url).map_err(|e| e.to_string())?;
    let client = target.connect().await.map_err(|e| e.to_string())?;
    let first = rows(
        &client,
        "SELECT 1, pg_is_in_recovery(), pg_database_size(current_database()), \
         (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'), \
         current_setting('max_connections')",
    )
    .await?;
    let row = first.first().ok_or("`SELECT 1` returned no row")?;
    let standby = row[1].as_deref() == Some("t");
    let size: u64 = parse(&row[2]);
    let (used, max): (u64, u64) = (parse(&row[3]), parse(&row[4]));
    let mut seen = Seen::default();
    let mut facts = vec![
        format!("{} up", if standby { "standby" } else { "primary" }),
        format!("size {}", human_bytes(size)),
        format!("{used}/{max} connections"),
    ];
    if let Some(limit) = probe.max_size
        && size > limit.0
    {
        seen.problems.push(format!(
            "the database is {}, over `max-size` {}",
            human_bytes(size),
            human_bytes(limit.0)
        ));
    }
    if let Some(ratio) = probe.max_connections_ratio
        && max > 0
        && used as f64 / max as f64 > ratio
    {
        seen.problems.push(format!(
            "{used} of {max} connections in use, over `max-connections-ratio` {ratio}"
        ));
    }
    // Replication lag, in seconds, of each standby or of this one.
    let lag_sql = if standby {
        "SELECT 'this standby', CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() \
         THEN 0 ELSE COALESCE(EXTRACT(epoch FROM now() - pg_last_xact_replay_timestamp()), 0) END"
    } else {
        "SELECT application_name, EXTRACT(epoch FROM replay_lag) FROM pg_stat_replication"
    };
    if let Ok(lags) = rows(&client, lag_sql).await {
        for lag in &lags {
            let name = lag[0].clone().unwrap_or_default();
            let Some(secs) = lag[1].as_deref().and_then(|s| s.parse::<f64>().ok()) else {
                continue;
            };
            facts.push(format!("replication lag of {name} {secs:.1} s"));
            if let Some(max) = probe.max_replication_lag
                && secs > max.as_secs() as f64
            {
                seen.problems.push(format!(
                    "replication lag of {name} is {secs:.0} s, over `max-replication-lag` {max}"
                ));
            }
        }
    }
    if let Ok(archiver) = rows(
        &client,
        "SELECT failed_count, last_failed_wal, \
         last_failed_time > COALESCE(last_archived_time, '-infinity') \
         FROM pg_stat_archiver",
    )
    .await
        && let Some(a) = archiver.first()
        && a[2].as_deref() == Some("t")
    {
        seen.problems.push(format!(
            "WAL archiving is failing ({} failures, the last of `{}`)",
            a[0].as_deref().unwrap_or("?"),
            a[1].as_deref().unwrap_or("?")
        ));
    }
    if let Ok(slots) = rows(
        &client,
        "SELECT slot_name, to_jsonb(s)->>'wal_status', \
         pg_wal_lsn_diff(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() \
         ELSE pg_current_wal_lsn() END, restart_lsn)::bigint \
         FROM pg_replication_slots s",
    )
    .await
    {
        for slot in &slots {
            let name = slot[0].clone().unwrap_or_default();
            if slot[1].as_deref() == Some("lost") {
                seen.problems.push(format!(
                    "replication slot `{name}` has lost WAL it needed (`wal_status = lost`)"
                ));
                continue;
            }
            let retained: u64 = parse(&slot[2]);
            facts.push(format!("slot {name} retains {}", human_bytes(retained)));
            if let Some(max) = probe.max_slot_wal
                && retained > max.0
            {
                seen.problems.push(format!(
                    "replication slot `{name}` retains {} of WAL, over `max-slot-wal` {}",
                    human_bytes(retained),
                    human_bytes(max.0)
                ));
            }
        }
    }
    seen.detail = facts.join(", ");
    Ok(seen)
}

/// The rows of `sql`, each column as text (`None` for NULL).
pub(super) async fn rows(client: &Client, sql: &str) -> Result<Vec<Vec<Option<String>>>, String> {
    let messages = client
        .simple_query(sql)
        .await
        .map_err(|e| lifeboat_postgres::conn::describe_pg_error(&e))?;
    Ok(messages
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect())
            }
            _ => None,
        })
        .collect())
}

fn parse(cell: &Option<String>) -> u64 {
    cell.as_deref().and_then(|s| s.parse().ok()).unwrap_or(0)
}
