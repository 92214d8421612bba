//! `lifeboat cdc run TARGET` (and `serve` for each cdc target): the slot's committed
//! transactions into segments.
//!
//! The loop: transactions are gathered as they commit; at least every `flush-interval`
//! (default 1 s: the RPO) the gathered ones are stored as one segment, and only then is the
//! slot told they are flushed — a crash before that redelivers them, and whatever a stored
//! segment already holds (end LSN at or below the newest stored) is dropped. On a quiet
//! database the server's keepalives are acknowledged when nothing is pending, so the slot
//! does not hold WAL back. Every 10 s the sequences' values go into the stream as a logical
//! message, to be set after a replay. Without a baseline, one is taken first (the slot
//! exists before it, so nothing between is lost).
//!
//! A capture takes a new baseline beside itself once the newest is `baseline-every` old
//! (default 7 days; looked at hourly), so a restore never replays more than that.
//!
//! Slot safety: a slot that keeps more WAL than `max-slot-lag` is an objective miss
//! (`status`); with `on-slot-lag = "drop"` the capture also drops it — at its start, or by
//! stopping when the check every 10 s finds it over — after recording the gap, and the
//! next chain begins with a new baseline.

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use lifeboat_core::config::OnSlotLag;
use lifeboat_postgres::{
    Target,
    cdc::{
        apply::{Op, Txn},
        pgoutput::{self, Change, Relation},
        preflight::{self, SEQ_PREFIX},
        stream::{self, ReplicationEvent, WalPosition},
    },
};

use super::{schema, segments};
use crate::{
    Engine, EngineError, EngineResult,
    cancel::Cancel,
    events::{Event, Op as EventOp},
};

/// How often sequence values go into the stream.
const SEQUENCES_EVERY: Duration = Duration::from_secs(10);
/// How old the newest baseline may grow before a capture takes a new one.
const DEFAULT_BASELINE_EVERY: Duration = Duration::from_secs(7 * 24 * 3600);
/// A segment is stored early once it holds this many bytes of changes.
const SEGMENT_BYTES: usize = 16 << 20;

/// What a capture did, for its caller.
#[derive(Debug, Default, Clone)]
pub struct Captured {
    pub segments: u64,
    pub transactions: u64,
    pub changes: u64,
    /// The end LSN of the newest stored transaction.
    pub durable: u64,
}

/// Capture `name` until `cancel`; what was stored. The gathered transactions are stored
/// before it returns on a cancellation. `stored` is told after each stored segment and each
/// acknowledged keepalive: the capture is current then.
pub async fn run(
    engine: &Engine,
    name: &str,
    cancel: &Cancel,
    stored: &(dyn Fn(&Captured) + Send + Sync),
) -> EngineResult<Captured> {
    let cfg = engine
        .config
        .target(name)
        .ok_or_else(|| crate::backup::unknown_target(&engine.config, name))?;
    let target = Target::parse(&cfg.connection_url(name)?)?;
    let (slot, publication) = cfg.cdc_names(name);
    // Over `max-slot-lag` with `on-slot-lag = "drop"`: dropped before anything else (the
    // repository may be what keeps the capture from storing), then a new chain below.
    guard_slot(engine, name).await?;
    // A slot the server invalidated (or that is gone once there is a history) cannot go
    // on: what it dropped is a gap, recorded — first as pending, durably, before the slot is
    // dropped — and then completed by the baseline that starts the next chain; never resumed
    // as if nothing happened. A pending gap left by a run that stopped before its baseline
    // is completed now.
    let snaps = engine.repo.list_snapshots(Some(name)).await?;
    let baselines: Vec<_> = snaps
        .iter()
        .filter(|s| s.kind == "cdc" && s.is_good())
        .collect();
    let stored_before = segments::durable(&engine.repo, name).await?;
    let history = stored_before.is_some() || !baselines.is_empty();
    let found = preflight::slot_state(&target, &slot).await?;
    // Without the DDL trigger: the tables' shape, watched from before any baseline below (a
    // change since the last capture looked records a gap, pending, so a baseline follows).
    let sequences = target.connect().await?;
    let mut watch = schema::Watch::start(engine, name, &sequences, history).await?;
    let pending = segments::gaps(&engine.repo, name)
        .await?
        .last()
        .is_some_and(segments::Gap::pending);
    let broken = match &found {
        Some(s) if s.wal_status == "lost" => Some(format!(
            "replication slot `{slot}` was invalidated by the server (`wal_status = lost`, `max_slot_wal_keep_size`)"
        )),
        None if history => Some(format!(
            "replication slot `{slot}` was gone (dropped, or the server restored from a backup)"
        )),
        _ => None,
    };
    // Recorded even over a pending gap (a schema change's): it widens it and says why.
    if let Some(why) = &broken {
        record_pending_gap(engine, name, why).await?;
    }
    if found.as_ref().is_some_and(|s| s.wal_status == "lost") {
        preflight::drop_slot(&target, &slot).await?;
    }
    let made = preflight::ensure_slot(&target, &slot, &publication).await?;
    for m in &made {
        info(engine, name, format!("created {m}"));
    }
    // A baseline to replay onto, if there is none yet (or a new chain begins).
    if broken.is_some() || pending || baselines.is_empty() {
        info(engine, name, "taking a baseline".into());
        let report = crate::backup::backup(engine, name, cancel).await?;
        if broken.is_some() || pending {
            let (to_lsn, to_time) = baseline_point(engine, name, &report).await?;
            let gap = segments::complete_gap(&engine.repo, name, to_lsn, to_time).await?;
            // The new chain must lie after the old one: a server that reuses WAL positions
            // (restored in place, another cluster) would mix the two.
            if to_lsn <= gap.from_lsn {
                return Err(EngineError::failure(
                    format!(
                        "the new baseline of `{name}` is at WAL position {}, not after the captured history ({}): the server is not the one captured (restored in place, or another cluster)",
                        stream::lsn_text(to_lsn),
                        stream::lsn_text(gap.from_lsn)
                    ),
                    Some("move the target's `cdc/` folder in the repository aside to start a new history".into()),
                ));
            }
            engine.events.event(Event::Warning {
                target: Some(name.into()),
                text: format!(
                    "{}: the changes between {} and {} {}; a new chain starts at the baseline just taken",
                    gap.why,
                    gap.from_time.map_or("the start".into(), |t| t.to_string()),
                    gap.to_time.map_or("now".into(), |t| t.to_string()),
                    if gap.schema {
                        "cannot replay onto the old baseline (nothing was lost on the server)"
                    } else {
                        "are lost"
                    }
                ),
            });
        }
    }
    let flush_every = cfg
        .flush_interval
        .map_or(Duration::from_secs(1), |d| d.as_duration())
        .max(Duration::from_millis(100));
    let mut durable = segments::durable(&engine.repo, name).await?.unwrap_or(0);
    let mut client = stream::stream(&target, &slot, &publication, Some(durable)).await?;
    info(
        engine,
        name,
        format!(
            "capturing from slot `{slot}`; stored up to {}",
            stream::lsn_text(durable)
        ),
    );
    let mut out = Captured {
        durable,
        ..Captured::default()
    };
    let mut batch = Batch::default();
    let mut open: Option<Txn> = None;
    // The open transaction's changes go to a local file once they pass this many bytes.
    let spill_at = spill_bytes();
    let mut open_bytes = 0usize;
    let mut spill: Option<Spill> = None;
    // The WAL position everything up to which is stored, and when that was known.
    let mut confirmed = segments::Stopped {
        lsn: durable,
        at: jiff::Timestamp::now(),
    };
    let mut next_flush = Instant::now() + flush_every;
    let mut next_sequences = Instant::now();
    let drop_on_lag = cfg.on_slot_lag == Some(OnSlotLag::Drop);
    // A new baseline once the newest is `baseline-every` old, taken beside the capture.
    let baseline_every = cfg
        .baseline_every
        .map_or(DEFAULT_BASELINE_EVERY, |d| d.as_duration());
    let mut next_baseline_check = Instant::now();
    let mut rebaseline: Option<Rebaseline> = None;
    // Set when the slot keeps more than `max-slot-lag` and may be dropped: the capture
    // stores what it gathered and stops, then the slot goes.
    let mut lagging = false;
    loop {
        if Instant::now() >= next_sequences {
            next_sequences = Instant::now() + SEQUENCES_EVERY;
            emit_sequences(&sequences).await;
            if let Some(mut r) = rebaseline.take_if(|r| r.handle.is_finished()) {
                let result = (&mut r.handle).await;
                baseline_done(engine, name, result, r.ends_gap.take(), &mut watch).await?;
            }
            if rebaseline.is_none()
                && let Some(w) = watch.as_mut()
                && let Some(held) = w.look(engine, name, &sequences).await?
            {
                info(
                    engine,
                    name,
                    "the tables' new shape held still: taking the baseline that ends the gap"
                        .into(),
                );
                rebaseline = Some(Rebaseline::start(engine, name, Some(held)));
            }
            if rebaseline.is_none() && Instant::now() >= next_baseline_check {
                next_baseline_check =
                    Instant::now() + baseline_every.min(Duration::from_secs(3600));
                if baseline_due(engine, name, baseline_every).await {
                    info(
                        engine,
                        name,
                        "the newest baseline is older than `baseline-every`: taking a new one"
                            .into(),
                    );
                    rebaseline = Some(Rebaseline::start(engine, name, None));
                }
            }
            if drop_on_lag {
                lagging = over_lag(&target, &slot, cfg.max_slot_lag())
                    .await
                    .unwrap_or_else(|e| {
                        log::debug!("cannot read the slot of `{name}`: {}", e.full_message());
                        None
                    })
                    .is_some();
            }
        }
        let wait = tokio::time::sleep_until(next_flush.into());
        let event = tokio::select! {
            _ = cancel.guard(std::future::pending::<()>()) => None,
            () = wait => Some(None),
            ev = client.recv() => Some(Some(ev)),
        };
        let stop = event.is_none() || lagging;
        match event.flatten() {
            None => {}
            Some(Err(e)) => {
                return Err(EngineError::failure(
                    format!("the replication stream of `{name}` broke: {e}"),
                    Some("`lifeboat cdc run` again resumes where the stored segments end".into()),
                ));
            }
            Some(Ok(None)) => {
                return Err(EngineError::failure(
                    format!("the server ended the replication stream of `{name}`"),
                    None,
                ));
            }
            Some(Ok(Some(ev))) => match ev {
                ReplicationEvent::Begin {
                    xid,
                    commit_time_micros,
                    ..
                } => {
                    open = Some(Txn {
                        xid,
                        lsn: 0,
                        end: 0,
                        time: commit_time_micros,
                        ops: Vec::new(),
                    });
                    open_bytes = 0;
                    spill = None;
                }
                ReplicationEvent::XLogData { data, .. } => {
                    let change = pgoutput::decode(&data)
                        .map_err(|e| EngineError::failure(e.to_string(), None))?;
                    if let Some(txn) = open.as_mut() {
                        push(txn, change);
                        open_bytes += txn.ops.last().map_or(0, op_bytes);
                        if open_bytes > spill_at {
                            let s = match spill.as_mut() {
                                Some(s) => s,
                                None => spill.insert(Spill::new()?),
                            };
                            for op in txn.ops.drain(..) {
                                s.add(&op, &batch.rels, txn.xid)?;
                            }
                            open_bytes = 0;
                        }
                    } else if let Change::Relation(r) = change {
                        batch.rels.insert(r.oid, r);
                    }
                }
                ReplicationEvent::Message {
                    transactional: true,
                    prefix,
                    content,
                    ..
                } => {
                    if let Some(txn) = open.as_mut() {
                        txn.ops.push(Op::Msg {
                            prefix,
                            content: String::from_utf8_lossy(&content).into_owned(),
                        });
                    }
                }
                ReplicationEvent::Message { .. } => {}
                ReplicationEvent::Commit {
                    lsn,
                    end_lsn,
                    commit_time_micros,
                } => {
                    if let Some(mut txn) = open.take() {
                        txn.lsn = lsn.as_u64();
                        txn.end = end_lsn.as_u64();
                        txn.time = commit_time_micros;
                        // Redelivered after a crash: already in a stored segment — but the
                        // tables it describes are described once per session, so they are kept.
                        match spill.take() {
                            Some(mut s) => {
                                for op in txn.ops.drain(..) {
                                    s.add(&op, &batch.rels, txn.xid)?;
                                }
                                if txn.end > durable {
                                    batch.large = Some((txn, s));
                                } else {
                                    batch.rels.extend(s.rels);
                                }
                            }
                            None if txn.end > durable => batch.add(txn)?,
                            None => batch.learn(&txn),
                        }
                    }
                }
                ReplicationEvent::KeepAlive { wal_end, .. } => {
                    // Nothing gathered and nothing open: everything up to here is stored.
                    if batch.txns.is_empty()
                        && batch.large.is_none()
                        && open.is_none()
                        && wal_end.as_u64() > durable
                    {
                        client.update_applied_lsn(wal_end);
                        confirmed = segments::Stopped {
                            lsn: wal_end.as_u64(),
                            at: jiff::Timestamp::now(),
                        };
                        stored(&out);
                    }
                }
                ReplicationEvent::StoppedAt { .. } => {}
            },
        }
        let due = Instant::now() >= next_flush
            || batch.bytes >= SEGMENT_BYTES
            || batch.large.is_some()
            || stop;
        if due && (!batch.txns.is_empty() || batch.large.is_some()) {
            let txns = std::mem::take(&mut batch.txns);
            batch.bytes = 0;
            batch.emitted.clear();
            let mut stored_txns = txns.len();
            let mut changes = txns.iter().map(Txn::changes).sum::<usize>();
            let mut names = Vec::new();
            if !txns.is_empty() {
                let seg = segments::write(&engine.repo, name, &txns).await?;
                durable = seg.last;
                names.push(seg.name);
            }
            // A large transaction after them: its parts, then its own segment.
            if let Some((header, s)) = batch.large.take() {
                let (seg, parts) =
                    store_large(engine, name, header, s, &mut batch.rels, &mut changes).await?;
                durable = seg.last;
                names.push(format!("{} ({parts} part(s))", seg.name));
                stored_txns += 1;
            }
            // Only now: the server may free the WAL of what is stored.
            client.update_applied_lsn(WalPosition::from_u64(durable));
            confirmed = segments::Stopped {
                lsn: durable,
                at: jiff::Timestamp::now(),
            };
            out.segments += names.len() as u64;
            out.transactions += stored_txns as u64;
            out.changes += changes as u64;
            out.durable = durable;
            stored(&out);
            engine.events.event(Event::Step {
                op: EventOp::Capture,
                target: name.into(),
                text: format!(
                    "stored segment {} ({stored_txns} transaction(s)); {} so far",
                    names.join(", "),
                    out.transactions
                ),
            });
        }
        if due {
            next_flush = Instant::now() + flush_every;
        }
        if stop {
            // A baseline under way stops with the capture (it leaves no snapshot).
            if let Some(mut r) = rebaseline.take() {
                r.stop.cancel();
                let result = (&mut r.handle).await;
                baseline_done(engine, name, result, r.ends_gap.take(), &mut watch).await?;
            }
            // Let the last acknowledgement reach the server.
            tokio::time::sleep(Duration::from_millis(600)).await;
            let _ = client.shutdown().await;
            if lagging {
                return Err(drop_lagging(engine, name).await);
            }
            if open.is_none() && batch.txns.is_empty() {
                segments::write_stopped(&engine.repo, name, &confirmed).await?;
            }
            return Ok(out);
        }
    }
}

/// Record, as pending (completed by the next chain's baseline), that the changes from the
/// newest of — the last commit stored, where a clean stop left the slot, the newest baseline
/// — on are lost, for `why`.
async fn record_pending_gap(engine: &Engine, name: &str, why: &str) -> EngineResult<()> {
    let stored_before = segments::durable(&engine.repo, name).await?;
    let last_commit = segments::last_commit(&engine.repo, name).await?;
    let stopped = segments::read_stopped(&engine.repo, name)
        .await?
        .filter(|s| s.lsn >= stored_before.unwrap_or(0));
    // Not a newer baseline: the moments between what was stored and it would pass as
    // restorable from an older baseline, and replay short. A baseline inside the gap
    // restores on its own (`--snapshot`).
    let mut from_lsn = stored_before.unwrap_or(0);
    let mut from_time = last_commit;
    if let Some(s) = &stopped {
        from_lsn = from_lsn.max(s.lsn);
        from_time = from_time.max(Some(s.at));
    }
    if stored_before.is_none() && stopped.is_none() {
        // Nothing captured yet: the gap starts at the newest baseline.
        let snaps = engine.repo.list_snapshots(Some(name)).await?;
        if let Some((l, t)) = snaps
            .iter()
            .filter(|s| s.kind == "cdc" && s.is_good() && !s.emergency)
            .filter_map(|s| s.manifest.as_ref().ok()?.postgres.clone())
            .filter_map(|p| Some((stream::lsn(&p.snapshot_lsn)?, p.snapshot_time)))
            .max_by_key(|(l, _)| *l)
        {
            from_lsn = l;
            from_time = t;
        }
    }
    segments::record_gap(
        &engine.repo,
        name,
        segments::Gap {
            from_lsn,
            from_time,
            to_lsn: 0,
            to_time: None,
            why: why.to_string(),
            schema: false,
        },
    )
    .await
}

/// The slot keeps more WAL than the target's `max-slot-lag`, and `on-slot-lag = "drop"`:
/// the gap is recorded (pending: the next capture completes it with a new baseline) and the
/// slot dropped, so the server's disk is safe. A slot a session streams is left alone (the
/// capture stops first). Should the repository not take the record, the slot is dropped
/// all the same: a missing slot with a history is a gap to the next capture by itself.
/// What was done, if anything.
pub async fn guard_slot(engine: &Engine, name: &str) -> EngineResult<Option<String>> {
    let Some(cfg) = engine.config.target(name) else {
        return Ok(None);
    };
    if cfg.on_slot_lag != Some(OnSlotLag::Drop) {
        return Ok(None);
    }
    let target = Target::parse(&cfg.connection_url(name)?)?;
    let (slot, _) = cfg.cdc_names(name);
    let Some(state) = over_lag(&target, &slot, cfg.max_slot_lag()).await? else {
        return Ok(None);
    };
    if state.active || state.wal_status == "lost" {
        return Ok(None);
    }
    let why = format!(
        "replication slot `{slot}` kept {} of WAL, over `max-slot-lag` ({}), and was dropped (`on-slot-lag = \"drop\"`)",
        crate::format::bytes(state.retained_bytes.max(0) as u64),
        crate::format::bytes(cfg.max_slot_lag())
    );
    if let Err(e) = record_pending_gap(engine, name, &why).await {
        log::warn!(
            "cannot record the gap of `{name}` before dropping its slot ({}); the next capture records it",
            e.full_message()
        );
    }
    preflight::drop_slot(&target, &slot).await?;
    engine.events.event(Event::Warning {
        target: Some(name.into()),
        text: format!("{why}: the changes from here to the next baseline are lost"),
    });
    Ok(Some(why))
}

/// The capture stopped because its slot keeps more than `max-slot-lag`: the slot is dropped
/// once the server has let go of the session; the error that ends the capture.
async fn drop_lagging(engine: &Engine, name: &str) -> EngineError {
    for _ in 0..20 {
        match guard_slot(engine, name).await {
            Ok(Some(why)) => {
                return EngineError::failure(
                    format!("the capture of `{name}` stopped: {why}"),
                    Some("the next capture takes a new baseline and starts a new chain".into()),
                );
            }
            Ok(None) => tokio::time::sleep(Duration::from_millis(250)).await,
            Err(e) => return e,
        }
    }
    EngineError::failure(
        format!(
            "the capture of `{name}` stopped because its slot keeps more than `max-slot-lag`, but the slot could not be dropped yet"
        ),
        Some("the next capture drops it if it is still over".into()),
    )
}

/// The slot's state when it keeps more WAL than `max` bytes.
async fn over_lag(
    target: &Target,
    slot: &str,
    max: u64,
) -> EngineResult<Option<preflight::SlotState>> {
    // The WAL the slot keeps on the server's disk (from its `restart_lsn`): what fills the
    // disk. (Not the WAL after its confirmed position: the server may be told positions
    // inside a large transaction not yet stored, which it sends again whole.) A caught-up
    // capture's `restart_lsn` trails by up to a checkpoint's worth, far below the default.
    Ok(preflight::slot_state(target, slot)
        .await?
        .filter(|s| s.retained_bytes > 0 && s.retained_bytes as u64 > max))
}

/// A baseline taken beside the capture; stopped (leaving no snapshot) if the capture ends
/// without waiting for it.
struct Rebaseline {
    handle: tokio::task::JoinHandle<EngineResult<crate::backup::BackupReport>>,
    stop: Cancel,
    /// Taken because the schema changed unseen: the shape it found, and the baseline ends
    /// the gap recorded then.
    ends_gap: Option<preflight::Shape>,
}

impl Rebaseline {
    fn start(engine: &Engine, name: &str, ends_gap: Option<preflight::Shape>) -> Self {
        let stop = Cancel::new();
        let (e, n, c) = (engine.clone(), name.to_string(), stop.clone());
        let handle = tokio::spawn(async move { crate::backup::backup(&e, &n, &c).await });
        Self {
            handle,
            stop,
            ends_gap,
        }
    }
}

impl Drop for Rebaseline {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Whether the newest good baseline of `name` is at least `every` old (or unreadable: then
/// not, the capture goes on).
async fn baseline_due(engine: &Engine, name: &str, every: Duration) -> bool {
    let Ok(snaps) = engine.repo.list_snapshots(Some(name)).await else {
        return false;
    };
    let newest = snaps
        .iter()
        .filter(|s| s.kind == "cdc" && s.is_good() && !s.emergency)
        .map(|s| s.time.timestamp())
        .max();
    let age = |t: jiff::Timestamp| {
        Duration::from_millis(
            (jiff::Timestamp::now().as_millisecond() - t.as_millisecond()).max(0) as u64,
        )
    };
    newest.is_some_and(|t| age(t) >= every)
}

/// Say how a baseline taken beside the capture ended; one that ends a schema gap completes
/// it, and the watch goes on from there (failed, it is tried again a minute later while the
/// capture goes on).
async fn baseline_done(
    engine: &Engine,
    name: &str,
    result: Result<EngineResult<crate::backup::BackupReport>, tokio::task::JoinError>,
    ends_gap: Option<preflight::Shape>,
    watch: &mut Option<schema::Watch>,
) -> EngineResult<()> {
    let failed = match result {
        Ok(Ok(report)) => {
            info(engine, name, "new baseline stored".into());
            if let Some(shape) = ends_gap {
                let to = baseline_point(engine, name, &report).await?;
                segments::complete_gap(&engine.repo, name, to.0, to.1).await?;
                if let Some(w) = watch.as_mut() {
                    w.ended(engine, name, shape, to).await?;
                }
            }
            return Ok(());
        }
        Ok(Err(e)) if e.failure == crate::error::Failure::Interrupted => return Ok(()),
        Ok(Err(e)) => e.full_message(),
        Err(e) => e.to_string(),
    };
    engine.events.event(Event::Warning {
        target: Some(name.into()),
        text: format!("the new baseline failed (tried again later): {failed}"),
    });
    if ends_gap.is_some()
        && let Some(w) = watch.as_mut()
    {
        w.failed();
    }
    Ok(())
}

/// The consistent point and time of the baseline `report` stored.
async fn baseline_point(
    engine: &Engine,
    name: &str,
    report: &crate::backup::BackupReport,
) -> EngineResult<(u64, Option<jiff::Timestamp>)> {
    let snaps = engine.repo.list_snapshots(Some(name)).await?;
    let pg = snaps
        .iter()
        .find(|s| s.id == report.snapshot)
        .and_then(|s| s.manifest.as_ref().ok())
        .and_then(|m| m.postgres.clone())
        .ok_or_else(|| EngineError::failure("the new baseline has no manifest", None))?;
    Ok((stream::lsn(&pg.snapshot_lsn).unwrap_or(0), pg.snapshot_time))
}

/// A change into the open transaction (a table's new description replaces the old one).
fn push(txn: &mut Txn, change: Change) {
    txn.ops.push(match change {
        Change::Relation(r) => Op::Rel(r),
        Change::Insert { rel, new } => Op::Ins { rel, new },
        Change::Update {
            rel,
            old,
            key_only,
            new,
        } => Op::Upd {
            rel,
            old,
            key_only,
            new,
        },
        Change::Delete { rel, old, key_only } => Op::Del { rel, old, key_only },
        Change::Truncate {
            rels,
            cascade,
            restart_identity,
        } => Op::Trunc {
            rels,
            cascade,
            restart: restart_identity,
        },
        Change::Other => return,
    });
}

/// Bytes of an open transaction's changes held in memory before they go to a local file:
/// `$LIFEBOAT_CDC_SPILL_BYTES`, default 64 MiB.
fn spill_bytes() -> usize {
    std::env::var("LIFEBOAT_CDC_SPILL_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(64 << 20)
}

fn op_bytes(op: &Op) -> usize {
    64 + match op {
        Op::Ins { new, .. } | Op::Upd { new, .. } => value_bytes(new),
        Op::Del { old, .. } => value_bytes(old),
        Op::Msg { content, .. } => content.len(),
        Op::Rel(_) | Op::Trunc { .. } | Op::Parts { .. } => 0,
    }
}

/// An open transaction's changes, in a local file once they outgrew memory (an anonymous
/// temporary file: gone with the process). Every table is described right before the
/// transaction's first change to it (as the stream described it then, inside the
/// transaction or before it), so the parts come out the same however a session described
/// the tables: a transaction sent again after a failure finds its parts already stored.
struct Spill {
    file: std::io::BufWriter<std::fs::File>,
    changes: usize,
    /// Tables described in the file so far.
    described: HashSet<u32>,
    /// The newest description of each table inside the transaction.
    rels: HashMap<u32, Relation>,
}

impl Spill {
    fn new() -> EngineResult<Self> {
        let file = tempfile::tempfile().map_err(|e| spill_error("create", &e))?;
        Ok(Self {
            file: std::io::BufWriter::new(file),
            changes: 0,
            described: HashSet::new(),
            rels: HashMap::new(),
        })
    }

    /// Add `op`; `known` holds the tables' descriptions from before the transaction.
    fn add(&mut self, op: &Op, known: &HashMap<u32, Relation>, xid: u32) -> EngineResult<()> {
        let mentioned: Vec<u32> = match op {
            Op::Rel(r) => {
                self.described.insert(r.oid);
                self.rels.insert(r.oid, r.clone());
                Vec::new()
            }
            Op::Ins { rel, .. } | Op::Upd { rel, .. } | Op::Del { rel, .. } => vec![*rel],
            Op::Trunc { rels, .. } => rels.clone(),
            Op::Msg { .. } | Op::Parts { .. } => Vec::new(),
        };
        for oid in mentioned {
            if self.described.insert(oid) {
                let r = known.get(&oid).cloned().ok_or_else(|| {
                    EngineError::failure(
                        format!(
                            "transaction {xid} changes table {oid}, which the stream never described: a segment without it could not be replayed"
                        ),
                        Some("`lifeboat cdc run` again: a new session describes every table again".into()),
                    )
                })?;
                self.write(&Op::Rel(r))?;
            }
        }
        if op.is_change() {
            self.changes += 1;
        }
        self.write(op)
    }

    fn write(&mut self, op: &Op) -> EngineResult<()> {
        use std::io::Write;
        serde_json::to_writer(&mut self.file, op).map_err(|e| spill_error("write", &e.into()))?;
        self.file
            .write_all(b"\n")
            .map_err(|e| spill_error("write", &e))
    }
}

fn spill_error(doing: &str, e: &std::io::Error) -> EngineError {
    EngineError::failure(
        format!("cannot {doing} the temporary file of a large transaction: {e}"),
        Some(
            "give TMPDIR a folder with room for the largest transaction (not a small tmpfs)".into(),
        ),
    )
}

/// A large transaction's parts hold at most this many bytes of changes.
const PART_BYTES: usize = 16 << 20;

/// Store a large transaction: its changes from `spill` in parts, then its segment (the
/// transaction with [`Op::Parts`] saying how many follow). `rels` (the newest
/// descriptions) learns the transaction's own; `changes` counts its changes. The segment
/// and how many parts.
async fn store_large(
    engine: &Engine,
    name: &str,
    mut header: Txn,
    spill: Spill,
    rels: &mut HashMap<u32, Relation>,
    changes: &mut usize,
) -> EngineResult<(segments::Segment, u32)> {
    use std::io::{BufRead, Seek};
    let mut file = spill
        .file
        .into_inner()
        .map_err(|e| spill_error("write", e.error()))?;
    file.rewind().map_err(|e| spill_error("read", &e))?;
    let mut part = Vec::new();
    let (mut bytes, mut n) = (0, 0u32);
    for line in std::io::BufReader::new(file).lines() {
        let line = line.map_err(|e| spill_error("read", &e))?;
        bytes += line.len();
        part.push(serde_json::from_str::<Op>(&line).map_err(|e| spill_error("read", &e.into()))?);
        if bytes >= PART_BYTES {
            segments::write_part(&engine.repo, name, header.end, n, &part).await?;
            part.clear();
            bytes = 0;
            n += 1;
        }
    }
    if !part.is_empty() {
        segments::write_part(&engine.repo, name, header.end, n, &part).await?;
        n += 1;
    }
    header.ops = vec![Op::Parts { count: n }];
    rels.extend(spill.rels);
    *changes += spill.changes;
    let seg = segments::write(&engine.repo, name, std::slice::from_ref(&header)).await?;
    Ok((seg, n))
}

/// The transactions gathered for the next segment.
#[derive(Default)]
struct Batch {
    txns: Vec<Txn>,
    /// A large transaction, committed after `txns`: stored at once, in parts.
    large: Option<(Txn, Spill)>,
    bytes: usize,
    /// The newest description of every table seen.
    rels: HashMap<u32, Relation>,
    /// Tables described in this segment already.
    emitted: HashSet<u32>,
}

impl Batch {
    /// Add a committed transaction, with the description of each table it changes that
    /// this segment has not described yet (as of the transaction's start), so the segment
    /// stands alone.
    /// The table descriptions of a transaction that is not stored again.
    fn learn(&mut self, txn: &Txn) {
        for op in &txn.ops {
            if let Op::Rel(r) = op {
                self.rels.insert(r.oid, r.clone());
            }
        }
    }

    fn add(&mut self, mut txn: Txn) -> EngineResult<()> {
        let mut described: HashSet<u32> = HashSet::new();
        let mut missing: Vec<u32> = Vec::new();
        for op in &txn.ops {
            let rels: Vec<u32> = match op {
                Op::Rel(r) => {
                    described.insert(r.oid);
                    continue;
                }
                Op::Ins { rel, .. } | Op::Upd { rel, .. } | Op::Del { rel, .. } => vec![*rel],
                Op::Trunc { rels, .. } => rels.clone(),
                Op::Msg { .. } | Op::Parts { .. } => continue,
            };
            for r in rels {
                if !described.contains(&r) && !self.emitted.contains(&r) && !missing.contains(&r) {
                    missing.push(r);
                }
            }
        }
        let head: Vec<Op> = missing
            .iter()
            .map(|oid| {
                self.rels.get(oid).cloned().map(Op::Rel).ok_or_else(|| {
                    EngineError::failure(
                        format!(
                            "transaction {} changes table {oid}, which the stream never described: a segment without it could not be replayed",
                            txn.xid
                        ),
                        Some("`lifeboat cdc run` again: a new session describes every table again".into()),
                    )
                })
            })
            .collect::<EngineResult<_>>()?;
        txn.ops.splice(0..0, head);
        for op in &txn.ops {
            if let Op::Rel(r) = op {
                self.rels.insert(r.oid, r.clone());
                self.emitted.insert(r.oid);
            }
        }
        self.bytes += txn.ops.len() * 64
            + txn
                .ops
                .iter()
                .map(|o| match o {
                    Op::Ins { new, .. } | Op::Upd { new, .. } => value_bytes(new),
                    Op::Del { old, .. } => value_bytes(old),
                    _ => 0,
                })
                .sum::<usize>();
        self.txns.push(txn);
        Ok(())
    }
}

fn value_bytes(values: &[pgoutput::Value]) -> usize {
    values
        .iter()
        .map(|v| match v {
            pgoutput::Value::Text(t) => t.len(),
            pgoutput::Value::Marker(_) => 1,
        })
        .sum()
}

/// The sequences' values into the stream (a failure is a debug line: the next replay sets
/// sequences past their columns' values anyway).
async fn emit_sequences(client: &tokio_postgres::Client) {
    let sql = format!(
        "SELECT pg_logical_emit_message(true, '{SEQ_PREFIX}', coalesce((
           SELECT json_agg(json_build_array(format('%I.%I', schemaname, sequencename), last_value))::text
           FROM pg_sequences WHERE last_value IS NOT NULL), '[]'))"
    );
    if let Err(e) = client.batch_execute(&sql).await {
        log::debug!("cannot send the sequences' values: {e}");
    }
}

fn info(engine: &Engine, name: &str, text: String) {
    engine.events.event(Event::Step {
        op: EventOp::Capture,
        target: name.into(),
        text,
    });
}
