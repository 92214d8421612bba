//! What `status` (and `serve`'s objectives) say of a cdc target: its restorable point is the
//! newest stored segment — or now, when a capture streams the slot and it has been told all
//! but the last 16 MiB of WAL is stored (a quiet database writes no segments, and loses nothing) — and the slot's
//! health: missing, or lost (`wal_status = lost`: the server dropped WAL the capture had not
//! read; a gap until a new baseline), or keeping more WAL than `max-slot-lag`. The slot's
//! state (active, `wal_status`, WAL kept, WAL not yet confirmed stored) is shown beside.

use std::time::Duration;

use lifeboat_core::{TargetConfig, config::OnSlotLag};
use lifeboat_postgres::{Target, cdc::preflight};
use lifeboat_repo::SnapshotInfo;

use super::segments;
use crate::{Engine, EngineResult, wal::ArchiveState};

/// WAL not yet acknowledged below which the capture counts as current.
const CURRENT_BYTES: i64 = 16 << 20;

pub(super) async fn archive(
    engine: &Engine,
    name: &str,
    target: &TargetConfig,
    _last: &SnapshotInfo,
) -> EngineResult<Option<ArchiveState>> {
    let segs = segments::list(&engine.repo, name).await.unwrap_or_default();
    let newest = segs.last().map(|s| s.name.clone());
    let written = match &newest {
        Some(n) => {
            let path = format!("{}/{name}/{n}", segments::DIR);
            engine
                .repo
                .call(move |r| r.side().written_at(&path))
                .await
                .ok()
                .flatten()
                .map(jiff::Timestamp::try_from)
                .and_then(Result::ok)
        }
        None => None,
    };
    let mut state = ArchiveState {
        last_archived: newest,
        last_archived_at: written.map(|t| t.to_string()),
        server: None,
        server_error: None,
        slot: None,
    };
    // What is wrong for certain (each said; a server that does not answer now is not one
    // of them: the RPO, from the stored segments, speaks for it).
    let mut problems: Vec<String> = Vec::new();
    // A gap found in the last week is said (and alerted, as an objective missed): the
    // moments in it cannot be restored.
    let week_ago = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(24 * 7);
    match segments::gaps(&engine.repo, name).await {
        Ok(gaps) => {
            if let Some(g) = gaps
                .iter()
                .rev()
                .filter(|g| !g.schema || g.pending())
                .find(|g| g.to_time.is_none_or(|t| t > week_ago))
            {
                problems.push(format!(
                    "the changes between {} and {} {} ({}): no moment between can be restored",
                    g.from_time
                        .map_or("the first capture".into(), |t| t.to_string()),
                    g.to_time.map_or("now".into(), |t| t.to_string()),
                    if g.schema {
                        "cannot replay (a schema change not captured; a baseline ends it)"
                    } else {
                        "were lost"
                    },
                    g.why
                ));
            }
        }
        Err(e) => problems.push(e.full_message()),
    }
    let (slot, _) = target.cdc_names(name);
    let seen = async {
        let db = Target::parse(&target.connection_url(name)?)?;
        let bare = preflight::tables_without_identity(&db.connect().await?).await?;
        Ok::<_, crate::EngineError>((preflight::slot_state(&db, &slot).await?, bare))
    };
    // Short: `status` looks at every target in turn.
    match tokio::time::timeout(Duration::from_secs(5), seen).await {
        Ok(Ok((found, bare))) => {
            // A table made since without a primary key: the publication (all tables)
            // makes its UPDATE and DELETE fail on the source.
            if !bare.is_empty() {
                problems.push(format!(
                    "table(s) {} have no primary key nor replica identity: their UPDATE and DELETE fail on the source while the publication exists; run `lifeboat cdc check {name} --fix`",
                    bare.join(", ")
                ));
            }
            if let Some(s) = &found
                && s.retained_bytes > 0
                && s.retained_bytes as u64 > target.max_slot_lag()
            {
                problems.push(format!(
                    "replication slot `{slot}` keeps {} of WAL on the server's disk, over `max-slot-lag` ({}){}",
                    crate::format::bytes(s.retained_bytes as u64),
                    crate::format::bytes(target.max_slot_lag()),
                    if target.on_slot_lag == Some(OnSlotLag::Drop) {
                        "; the capture drops it (`on-slot-lag = \"drop\"`)"
                    } else {
                        ": is the capture running and storing? (`on-slot-lag = \"drop\"` drops the slot beyond it, recording a gap)"
                    }
                ));
            }
            state.slot.clone_from(&found);
            match found {
                Some(s) if s.wal_status == "lost" => problems.push(format!(
                    "replication slot `{slot}` is lost: the server dropped WAL it had not sent (`max_slot_wal_keep_size`); the next `lifeboat cdc run {name}` records the gap and starts again from a new baseline"
                )),
                // Current: a capture streams the slot and has all but the last WAL stored.
                Some(s) if s.active && s.pending_bytes <= CURRENT_BYTES => {
                    state.last_archived_at = Some(jiff::Timestamp::now().to_string());
                }
                Some(_) => {}
                None => problems.push(format!(
                    "replication slot `{slot}` does not exist: nothing is captured (`lifeboat cdc run {name}` or `serve` creates it)"
                )),
            }
        }
        Ok(Err(e)) => log::debug!("cdc status of `{name}`: {}", e.full_message()),
        Err(_) => log::debug!("cdc status of `{name}`: the server did not answer within 5 s"),
    }
    if !problems.is_empty() {
        state.server_error = Some(problems.join("; "));
    }
    Ok(Some(state))
}
