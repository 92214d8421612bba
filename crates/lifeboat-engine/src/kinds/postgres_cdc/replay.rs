//! Restoring a cdc target to a moment: the newest baseline at or before it (restored and
//! verified as a logical backup is), then every captured transaction that committed after
//! the baseline's consistent point and at or before the moment, in commit order, in
//! batches that commit together with the replay position; then the sequences.

use lifeboat_core::TargetConfig;
use lifeboat_postgres::{
    Target,
    cdc::{apply::Applier, stream},
};

use super::segments;
use crate::{
    Engine, EngineError, EngineResult,
    cancel::Cancel,
    restore::{
        act::{ActCx, RestorePlan},
        choose::chosen_snapshot,
        plan::RestoreRequest,
    },
};

/// A batch (one destination transaction, applied by its net effect where it can) ends
/// at this many changes or transactions, whichever comes first.
const BATCH_CHANGES: usize = 50_000;
const BATCH_TXNS: usize = 20_000;

pub(super) async fn plan(
    engine: &Engine,
    request: &RestoreRequest,
    target_cfg: &TargetConfig,
) -> EngineResult<RestorePlan> {
    if request.table.is_some() {
        return super::table::plan(engine, request, target_cfg).await;
    }
    whole(engine, request, target_cfg).await
}

/// What a restore to a moment replays: the baseline chosen (for the request as given, or
/// by `--lsn`), where the replay stops, and the segments after the baseline. Refuses a
/// moment in a gap, or past one the baseline does not reach beyond.
pub(super) struct Chain {
    /// The request, its snapshot the chosen baseline when `--lsn` chose it.
    pub request: RestoreRequest,
    pub baseline: lifeboat_repo::SnapshotInfo,
    pub manifest: lifeboat_core::Manifest,
    pub base_lsn: u64,
    pub until: Until,
    pub segments: Vec<segments::Segment>,
}

pub(super) async fn chain(engine: &Engine, request: &RestoreRequest) -> EngineResult<Chain> {
    let r = &request.recovery;
    if r.xid.is_some() || r.name.is_some() || r.pause || r.start || r.latest {
        return Err(EngineError::usage(
            "a cdc restore stops at a moment (`--time T`) or a WAL position (`--lsn L`); `--xid`, `--name`, `--latest`, `--pause` and `--start` are for physical targets",
            Some("without `--time` or `--lsn` it replays everything captured".into()),
        ));
    }
    let until_lsn = match &r.lsn {
        Some(l) => Some(stream::lsn(l).ok_or_else(|| {
            EngineError::usage(
                format!("`{l}` is not a WAL position"),
                Some("as PostgreSQL writes them: `0/16B3748`".into()),
            )
        })?),
        None => None,
    };
    // `--lsn L` alone: the newest baseline whose consistent point is at or before L.
    let by_lsn;
    let request = match until_lsn {
        Some(l) if request.time.is_none() && request.snapshot == "latest" => {
            by_lsn = RestoreRequest {
                snapshot: baseline_at_lsn(engine, &request.target, l).await?,
                ..request.clone()
            };
            &by_lsn
        }
        _ => request,
    };
    let (baseline, manifest) = chosen_snapshot(engine, request).await?;
    if baseline.kind != "cdc" {
        return Err(EngineError::usage(
            format!(
                "snapshot `{}` is a `{}` backup, not a cdc baseline: no captured change follows it",
                baseline.short_id(),
                baseline.kind
            ),
            Some(
                "choose a cdc baseline (`lifeboat snapshots`), or take one with `lifeboat backup`"
                    .into(),
            ),
        ));
    }
    let base_lsn = manifest
        .postgres
        .as_ref()
        .and_then(|p| stream::lsn(&p.snapshot_lsn))
        .ok_or_else(|| {
            EngineError::failure(
                format!(
                    "snapshot `{}` has no consistent LSN to replay from",
                    baseline.short_id()
                ),
                None,
            )
        })?;
    let until = match &request.time {
        Some(t) => Some(crate::time::parse_time(t).map_err(|e| EngineError::usage(e, None))?),
        None => None,
    };
    let gaps = segments::gaps(&engine.repo, &request.target).await?;
    // A gap after the chosen baseline that begins at or before the moment: reaching it
    // would cross the gap (the moment is in it, or after it but before the next baseline's
    // snapshot was stored).
    let crossing = |t: jiff::Timestamp| {
        gaps.iter().find(|g| {
            g.holds(t)
                || ((g.to_lsn > base_lsn || g.pending()) && g.from_time.is_none_or(|f| f < t))
        })
    };
    if let Some(l) = until_lsn {
        if l < base_lsn {
            return Err(EngineError::usage(
                format!(
                    "WAL position {} is before the consistent point of baseline `{}` ({})",
                    stream::lsn_text(l),
                    baseline.short_id(),
                    stream::lsn_text(base_lsn)
                ),
                Some("choose an earlier baseline with `--snapshot`".into()),
            ));
        }
        if let Some(g) = gaps
            .iter()
            .find(|g| g.from_lsn < l && (g.to_lsn > base_lsn || g.pending()))
        {
            return Err(EngineError::failure(
                format!(
                    "WAL position {} of `{}` is in or after a gap of the capture that the baseline does not reach past: the changes from {} to {} were lost ({})",
                    stream::lsn_text(l),
                    request.target,
                    stream::lsn_text(g.from_lsn),
                    if g.pending() {
                        "now".into()
                    } else {
                        stream::lsn_text(g.to_lsn)
                    },
                    g.why
                ),
                Some(if g.pending() {
                    format!(
                        "restore to {} or before; later positions need the baseline the next capture takes",
                        stream::lsn_text(g.from_lsn)
                    )
                } else {
                    format!(
                        "restore to {} or before, or to {} or after",
                        stream::lsn_text(g.from_lsn),
                        stream::lsn_text(g.to_lsn)
                    )
                }),
            ));
        }
    }
    if let Some(t) = until
        && let Some(g) = crossing(t)
    {
        let from = g
            .from_time
            .map_or("the first capture".into(), |t| t.to_string());
        let to = g.to_time.map_or("now".into(), |t| t.to_string());
        return Err(EngineError::failure(
            format!(
                "{t} falls in a gap of the capture of `{}`: the changes between {from} and {to} were lost ({})",
                request.target, g.why
            ),
            Some(format!("restore to {from} or before, or to {to} or after")),
        ));
    }
    let segs: Vec<segments::Segment> = segments::list(&engine.repo, &request.target)
        .await?
        .into_iter()
        .filter(|s| s.last > base_lsn)
        .collect();
    Ok(Chain {
        request: request.clone(),
        baseline,
        manifest,
        base_lsn,
        until: Until {
            time: until,
            lsn: until_lsn,
        },
        segments: segs,
    })
}

/// The whole database restored to the moment: the baseline as a logical restore, then the
/// replay.
pub(super) async fn whole(
    engine: &Engine,
    request: &RestoreRequest,
    target_cfg: &TargetConfig,
) -> EngineResult<RestorePlan> {
    let Chain {
        request,
        baseline,
        manifest,
        base_lsn,
        until: stop,
        segments: segs,
    } = chain(engine, request).await?;
    // The load takes the very baseline the fold is made for (a newer one stored meanwhile
    // must not be chosen by a second look at `latest`).
    let request = &RestoreRequest {
        snapshot: baseline.id.to_string(),
        time: None,
        ..request
    };
    let (until, until_lsn) = (stop.time, stop.lsn);
    let slot = crate::kinds::postgres_logical::restore::FoldSlot::default();
    let mut inner = crate::kinds::postgres_logical::restore::plan_folding(
        engine,
        request,
        target_cfg,
        Some(slot.clone()),
    )
    .await?;
    inner.plan.steps.push(format!(
        "fold the transactions captured after the baseline's LSN {} {} ({} segment(s)) into the load as far as they fold exactly (rows left out, changed and added on their way to COPY), replay the rest in commit order, then set the sequences",
        stream::lsn_text(base_lsn),
        match (&until, until_lsn) {
            (Some(t), _) => format!("that committed at or before {t}"),
            (None, Some(l)) => format!("whose commit is at or before WAL position {}", stream::lsn_text(l)),
            (None, None) => "up to the last one captured".into(),
        },
        segs.len()
    ));
    if let Some(t) = &until {
        inner.plan.restored_point = t.to_string();
    }
    // A moment past what the capture stored (it is behind, or stopped): said, since the
    // restore holds only what was stored — unlike a physical restore, nothing says whether
    // anything committed in between.
    let stored_until = stored_until(engine, &request.target).await?;
    let beyond = match (until, stored_until) {
        (Some(t), Some(s)) => t > s + jiff::SignedDuration::from_secs(5),
        (Some(_), None) => true,
        _ => false,
    };
    let beyond_note = beyond.then(|| {
        format!(
            "note: the capture has stored what committed up to {}; anything committed after that and at or before the moment was not captured (yet) and is not in the restore",
            stored_until.map_or("its start".into(), |t| t.to_string())
        )
    });
    if let Some(n) = &beyond_note {
        inner.plan.notes.push(n.clone());
        inner.plan.facts.insert(
            "captured_until".into(),
            stored_until.map(|t| t.to_string()).into(),
        );
    }
    inner
        .plan
        .facts
        .insert("baseline_lsn".into(), stream::lsn_text(base_lsn).into());
    inner
        .plan
        .facts
        .insert("segments".into(), segs.len().into());
    let load = inner.act;
    let name = request.target.clone();
    let url = match &request.to {
        Some(u) => u.clone(),
        None => target_cfg.connection_url(&request.target)?,
    };
    let snapshot_id = baseline.id.to_string();
    inner.act = Box::new(move |cx: ActCx| {
        Box::pin(async move {
            let (engine, cancel) = (cx.engine.clone(), cx.cancel.clone());
            let folded = match &manifest.postgres {
                Some(pgm) => {
                    let (_, end) = chain_end(&engine, &name, base_lsn).await?;
                    let building =
                        super::fold::build(&engine, &name, &snapshot_id, pgm, base_lsn, stop, end);
                    match cancel.guard(building).await {
                        Ok(built) => built?,
                        Err(_) => {
                            return Err(EngineError::interrupted(
                                "the restore was stopped before its load; nothing was changed",
                            ));
                        }
                    }
                }
                None => None,
            };
            if let Some(f) = &folded {
                log::info!(
                    "folding {} captured change(s) of {} transaction(s) into the load",
                    f.changes,
                    f.txns
                );
                *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(f.fold.clone());
            }
            let mut outcome = load(cx).await?;
            if !outcome.verified {
                return Ok(outcome);
            }
            // The load took the fold everywhere, or (its layout not fitting the dump) not
            // at all; never in part.
            if let Some(f) = folded.as_ref().filter(|f| f.fold.complete()) {
                let missing = f.fold.missing();
                if !missing.is_empty() {
                    return Err(EngineError::failure(
                        format!(
                            "the baseline's dump lacks rows the captured changes update or delete ({}): the restored database is not at one moment",
                            missing
                                .iter()
                                .map(|(t, n)| format!("{n} in {t}"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                        Some("restore again with an earlier `--snapshot`, and report this".into()),
                    ));
                }
            }
            let folded = match folded {
                Some(f) if f.fold.complete() => Some(f),
                Some(f) if f.fold.untouched() => None,
                Some(_) => {
                    return Err(EngineError::failure(
                        "the captured changes were folded into the load of some tables and not others: the restored database is not at one moment",
                        Some("restore again; report this if it happens again".into()),
                    ));
                }
                None => None,
            };
            let dest = Target::parse(&url)?;
            let done = replay(
                &engine,
                &name,
                &dest,
                base_lsn,
                stop,
                &cancel,
                folded.as_ref(),
            )
            .await?;
            let last = done.last_commit.map_or("—".to_string(), |t| t.to_string());
            for (key, value) in [
                ("replayed_transactions", done.txns.into()),
                ("replayed_changes", done.changes.into()),
                ("replayed_by_net_effect", done.net_changes.into()),
                ("folded_into_load", done.folded_changes.into()),
                ("net_effect_fallbacks", done.net_fallbacks.into()),
                ("replayed_until", last.clone().into()),
                ("sequences_set", done.sequences.into()),
            ] {
                outcome.facts.insert(key.into(), value);
            }
            outcome.lines.push(format!(
                "replayed {} transaction(s), {} change(s) ({} folded into the load, {} by their net effect), the last committed at {last}; {} sequence(s) set",
                done.txns, done.changes, done.folded_changes, done.net_changes, done.sequences
            ));
            if let Some(n) = beyond_note {
                outcome.lines.push(n);
            }
            if let Some(g) = &done.gap {
                outcome.lines.push(format!(
                    "warning: the replay stopped where the capture lost changes ({}, from {}): a later moment needs the baseline that starts the next chain{}",
                    g.why,
                    g.from_time.map_or("the start".into(), |t| t.to_string()),
                    if g.pending() { ", not taken yet (`lifeboat cdc run` or `serve` takes it)" } else { "" }
                ));
                outcome
                    .facts
                    .insert("stopped_at_gap".into(), g.why.clone().into());
            }
            Ok(outcome)
        })
    });
    Ok(inner)
}

/// What a replay did.
#[derive(Debug, Default)]
pub struct Replayed {
    /// The gap the replay stopped at, when it did.
    pub gap: Option<segments::Gap>,
    pub txns: u64,
    pub changes: u64,
    /// Of the changes, those folded into the baseline's load.
    pub folded_changes: u64,
    /// Of the changes, those applied by their table's net effect.
    pub net_changes: u64,
    /// Tables' net effects that did not apply (their changes went one by one).
    pub net_fallbacks: u64,
    pub last_commit: Option<jiff::Timestamp>,
    pub sequences: usize,
}

/// Where a replay stops: before the first transaction that committed after `time`, or
/// whose commit record lies after `lsn`.
#[derive(Debug, Default, Clone, Copy)]
pub struct Until {
    pub time: Option<jiff::Timestamp>,
    pub lsn: Option<u64>,
}

/// Up to when the capture of `target` is known complete: the newest stored commit, or a
/// clean stop after it.
async fn stored_until(engine: &Engine, target: &str) -> EngineResult<Option<jiff::Timestamp>> {
    let last = segments::last_commit(&engine.repo, target).await?;
    let stopped = segments::read_stopped(&engine.repo, target).await?;
    Ok(last.max(stopped.map(|s| s.at)))
}

/// The newest good baseline of `target` whose consistent point is at or before `lsn`.
async fn baseline_at_lsn(engine: &Engine, target: &str, lsn: u64) -> EngineResult<String> {
    let snaps = engine.repo.list_snapshots(Some(target)).await?;
    snaps
        .iter()
        .filter(|s| s.kind == "cdc" && s.is_good() && !s.emergency)
        .filter_map(|s| {
            let at = stream::lsn(&s.manifest.as_ref().ok()?.postgres.as_ref()?.snapshot_lsn)?;
            (at <= lsn).then_some((at, s.id.clone()))
        })
        .max_by_key(|(at, _)| *at)
        .map(|(_, id)| id.to_string())
        .ok_or_else(|| {
            EngineError::usage(
                format!(
                    "no baseline of `{target}` starts at or before WAL position {}",
                    stream::lsn_text(lsn)
                ),
                Some(format!("list them with `lifeboat snapshots {target}`")),
            )
        })
}

/// Where the chain after a baseline at `base_lsn` ends: a chain ends where the capture
/// lost changes, never replayed across. A gap that ends after the baseline ends its chain
/// at its start (or at once, when it began before the baseline: a baseline taken inside a
/// gap has no captured chain after it).
async fn chain_end(
    engine: &Engine,
    name: &str,
    base_lsn: u64,
) -> EngineResult<(Option<segments::Gap>, Option<u64>)> {
    let gaps = segments::gaps(&engine.repo, name).await?;
    let ending = gaps
        .iter()
        .filter(|g| g.to_lsn > base_lsn || g.pending())
        .min_by_key(|g| g.from_lsn.max(base_lsn))
        .cloned();
    let end = ending.as_ref().map(|g| g.from_lsn.max(base_lsn));
    Ok((ending, end))
}

/// Replay into `dest` the transactions of `name` after `base_lsn` — after `folded`'s end,
/// when the load took its fold — up to where `until` says.
pub async fn replay(
    engine: &Engine,
    name: &str,
    dest: &Target,
    base_lsn: u64,
    until: Until,
    cancel: &Cancel,
    folded: Option<&super::fold::Folded>,
) -> EngineResult<Replayed> {
    let start = folded.map_or(base_lsn, |f| f.end);
    let mut applier = Applier::open(dest, start).await?;
    let (ending, end) = chain_end(engine, name, base_lsn).await?;
    let ending = ending.as_ref();
    let segs = segments::list(&engine.repo, name).await?;
    let mut out = Replayed::default();
    if let Some(f) = folded {
        for seq in &f.sequences {
            applier.learn_sequences(seq);
        }
        out.last_commit = f.last_commit;
        out.folded_changes = f.changes;
    }
    let mut batch = Vec::new();
    let mut batch_changes = 0;
    'segments: for seg in segs.iter().filter(|s| s.last > start) {
        for txn in segments::read(&engine.repo, name, seg).await? {
            if txn.end <= start || txn.end <= applier.position() {
                applier.learn(&txn);
                for n in 0..txn.parts() {
                    applier.learn_ops(&segments::read_part(&engine.repo, name, &txn, n).await?);
                }
                continue;
            }
            if let (Some(t), Some(at)) = (until.time, txn.committed_at())
                && at > t
            {
                break 'segments;
            }
            if until.lsn.is_some_and(|l| txn.lsn > l) {
                break 'segments;
            }
            if end.is_some_and(|e| txn.end > e) {
                out.gap = ending.cloned();
                break 'segments;
            }
            out.last_commit = txn.committed_at().or(out.last_commit);
            if txn.parts() > 0 {
                flush(&mut applier, &mut batch, cancel).await?;
                batch_changes = 0;
                apply_large(engine, name, &mut applier, &txn, cancel).await?;
                continue;
            }
            batch_changes += txn.ops.len();
            batch.push(txn);
            if batch.len() >= BATCH_TXNS || batch_changes >= BATCH_CHANGES {
                flush(&mut applier, &mut batch, cancel).await?;
                batch_changes = 0;
            }
        }
    }
    flush(&mut applier, &mut batch, cancel).await?;
    out.sequences = applier.set_sequences().await?;
    out.txns = applier.applied_txns + folded.map_or(0, |f| f.txns);
    out.changes = applier.applied_changes + out.folded_changes;
    out.net_changes = applier.applied_net;
    out.net_fallbacks = applier.net_fallbacks;
    Ok(out)
}

/// A large transaction, its parts read one at a time, replayed in one destination
/// transaction of its own.
async fn apply_large(
    engine: &Engine,
    name: &str,
    applier: &mut Applier,
    txn: &lifeboat_postgres::cdc::apply::Txn,
    cancel: &Cancel,
) -> EngineResult<()> {
    let mut open = applier.begin();
    applier.start_txn();
    let applying = async {
        applier.apply_ops(&mut open, &txn.ops).await?;
        for n in 0..txn.parts() {
            let ops = segments::read_part(&engine.repo, name, txn, n).await?;
            applier.apply_ops(&mut open, &ops).await?;
        }
        EngineResult::Ok(())
    };
    match cancel.guard(applying).await {
        Ok(Ok(())) => Ok(applier.commit(open, txn, 1).await?),
        Ok(Err(e)) => {
            applier.rollback().await;
            Err(e)
        }
        Err(_) => {
            applier.rollback().await;
            Err(EngineError::interrupted(
                "the replay was stopped; what was replayed is committed with its position",
            ))
        }
    }
}

async fn flush(
    applier: &mut Applier,
    batch: &mut Vec<lifeboat_postgres::cdc::apply::Txn>,
    cancel: &Cancel,
) -> EngineResult<()> {
    if batch.is_empty() {
        return Ok(());
    }
    match cancel.guard(applier.apply(batch)).await {
        Ok(r) => r?,
        Err(_) => {
            return Err(EngineError::interrupted(
                "the replay was stopped; what was replayed is committed with its position",
            ));
        }
    }
    batch.clear();
    Ok(())
}
