//! The first stretch of captured changes after a baseline, folded into the baseline's load
//! ([`lifeboat_postgres::cdc::fold`]) rather than replayed after it: read here from the
//! segments, as far as every change folds exactly, before the load starts.

use std::{collections::HashMap, sync::Arc};

use lifeboat_core::manifest::PostgresManifest;
use lifeboat_postgres::{
    archive,
    cdc::{
        apply::Op,
        fold::{self, Fold},
        net::Net,
        pgoutput::{Relation, Value},
        preflight::SEQ_PREFIX,
    },
};

use super::{replay::Until, segments};
use crate::{Engine, EngineResult};

/// At most this many changes, and values of about this many bytes, are folded (the rest is
/// replayed): the fold holds each changed row's last image in memory, about three times.
const MAX_CHANGES: u64 = 4_000_000;
const MAX_BYTES: u64 = 512 << 20;
/// Segments are read and decoded this many at a time, beside the folding.
const READERS: usize = 2;

/// A stretch of changes folded into the load.
#[derive(Debug)]
pub struct Folded {
    pub fold: Arc<Fold>,
    /// The end LSN of the last transaction folded: the replay goes on after it.
    pub end: u64,
    pub txns: u64,
    pub changes: u64,
    pub last_commit: Option<jiff::Timestamp>,
    /// The sequence values captured in the folded transactions (the messages' contents).
    pub sequences: Vec<String>,
}

/// The fold of the changes of `name` after the baseline `snapshot_id` (at `base_lsn`),
/// from the first on, as far as they fold, `until` allows and `end` (where the chain ends
/// at a gap) — `None` when nothing folds (no recorded layout of the dump, a dump not in
/// UTF-8, a first transaction that does not fold).
pub async fn build(
    engine: &Engine,
    name: &str,
    snapshot_id: &str,
    pgm: &PostgresManifest,
    base_lsn: u64,
    until: Until,
    end: Option<u64>,
) -> EngineResult<Option<Folded>> {
    let Some(layout) = pgm.layout.clone() else {
        return Ok(None);
    };
    let (id, path, bytes) = (
        snapshot_id.to_string(),
        pgm.dump.path.clone(),
        pgm.dump.bytes,
    );
    let toc_bytes = layout.toc_bytes;
    let head = engine
        .repo
        .call(move |r| {
            r.reading(|reader| {
                let file = reader.open(&id, &path)?;
                let mut head = Vec::new();
                reader.copy_range(&file, 0, toc_bytes, &mut head)?;
                Ok(head)
            })
        })
        .await?;
    let toc = match archive::fitting_toc(&head, &layout, bytes) {
        Ok(toc) => toc,
        Err(why) => {
            log::debug!("no fold: {why}");
            return Ok(None);
        }
    };
    if !fold::dump_is_utf8(&toc) {
        log::debug!("no fold: the dump is not in UTF-8");
        return Ok(None);
    }
    let scan = Scan {
        engine,
        name,
        toc: &toc,
        base_lsn,
        until,
        end,
    };
    let (net, out) = match scan.run(None).await? {
        Scanned::Done(net, out) => (net, out),
        // A change that did not fold, found once others of its transaction were in: again,
        // stopping before that transaction.
        Scanned::Failed(at) => match scan.run(Some(at)).await? {
            Scanned::Done(net, out) => (net, out),
            Scanned::Failed(_) => return Ok(None),
        },
    };
    if out.txns == 0 {
        return Ok(None);
    }
    let fold = Arc::new(Fold::new(&toc, &net));
    // Freeing a million rows' images takes a while: not on the way to the load.
    let freeing = std::thread::Builder::new().name("fold-free".into());
    if let Err(e) = freeing.spawn(move || drop(net)) {
        log::debug!("freeing the fold's outcome inline: {e}");
    }
    Ok(Some(Folded { fold, ..out }))
}

/// One pass over the segments after the baseline.
struct Scan<'a> {
    engine: &'a Engine,
    name: &'a str,
    toc: &'a archive::Toc,
    base_lsn: u64,
    until: Until,
    end: Option<u64>,
}

enum Scanned {
    Done(Net, Folded),
    /// A change of the transaction ending here did not fold, after others of it had.
    Failed(u64),
}

impl Scan<'_> {
    /// Fold transactions in, up to the first that does not fold (known from its changes
    /// before any goes in) or `stop_before` (the end of one whose change did not fold
    /// once in).
    async fn run(&self, stop_before: Option<u64>) -> EngineResult<Scanned> {
        let mut rels: HashMap<u32, Arc<Relation>> = HashMap::new();
        // Per table: folds (reduced or inserts only), or not at all.
        let mut folds: HashMap<u32, Option<bool>> = HashMap::new();
        let mut net = Net::folding();
        let mut bytes = 0u64;
        let mut out = Folded {
            fold: Arc::default(),
            end: self.base_lsn,
            txns: 0,
            changes: 0,
            last_commit: None,
            sequences: Vec::new(),
        };
        let segs: Vec<segments::Segment> = segments::list(&self.engine.repo, self.name)
            .await?
            .into_iter()
            .filter(|s| s.last > self.base_lsn)
            .collect();
        // Two readers, taking turns (segment k goes to reader k % 2), received in turn.
        let mut readers = Vec::new();
        let mut queues = Vec::new();
        for k in 0..READERS {
            let (tx, rx) = tokio::sync::mpsc::channel(2);
            let (repo, target) = (self.engine.repo.clone(), self.name.to_string());
            let mine: Vec<segments::Segment> =
                segs.iter().skip(k).step_by(READERS).cloned().collect();
            readers.push(tokio::spawn(async move {
                for seg in mine {
                    let txns = segments::read(&repo, &target, &seg).await;
                    if tx.send(txns).await.is_err() {
                        break;
                    }
                }
            }));
            queues.push(rx);
        }
        let mut turn = 0;
        let result = 'segments: loop {
            let Some(txns) = queues[turn % READERS].recv().await else {
                break Scanned::Done(net, out);
            };
            turn += 1;
            for txn in txns? {
                if txn.end <= self.base_lsn {
                    for op in &txn.ops {
                        if let Op::Rel(r) = op {
                            rels.insert(r.oid, Arc::new(r.clone()));
                        }
                    }
                    continue;
                }
                if self
                    .until
                    .time
                    .zip(txn.committed_at())
                    .is_some_and(|(t, at)| at > t)
                    || self.until.lsn.is_some_and(|l| txn.lsn > l)
                    || self.end.is_some_and(|e| txn.end > e)
                    || stop_before == Some(txn.end)
                    || txn.parts() > 0
                    || out.changes + txn.ops.len() as u64 > MAX_CHANGES
                    || bytes > MAX_BYTES
                {
                    break 'segments Scanned::Done(net, out);
                }
                // Whether every change of it folds, as far as can be told before any goes in.
                let mut seen: HashMap<u32, &Relation> = HashMap::new();
                for op in &txn.ops {
                    let folds_in = match op {
                        Op::Rel(r) => {
                            // Any other description than the one folded under (also a
                            // second one in this transaction) is a schema change.
                            let known =
                                seen.get(&r.oid).copied().or(rels.get(&r.oid).map(|k| &**k));
                            seen.insert(r.oid, r);
                            known.is_none_or(|known| *known == *r)
                        }
                        Op::Ins { rel, .. } | Op::Upd { rel, .. } | Op::Del { rel, .. } => {
                            match seen.get(rel).copied().or(rels.get(rel).map(|r| &**r)) {
                                // A table not reduced folds its inserts only.
                                Some(r) => folds
                                    .entry(*rel)
                                    .or_insert_with(|| fold::foldable(self.toc, r))
                                    .is_some_and(|reduced| reduced || matches!(op, Op::Ins { .. })),
                                None => false,
                            }
                        }
                        Op::Msg { prefix, .. } => prefix == SEQ_PREFIX,
                        // TRUNCATE, a large transaction's marker: replayed.
                        Op::Trunc { .. } | Op::Parts { .. } => false,
                    };
                    if !folds_in {
                        break 'segments Scanned::Done(net, out);
                    }
                }
                let (end, changes, at) = (txn.end, txn.changes() as u64, txn.committed_at());
                for op in txn.ops {
                    bytes += value_bytes(&op);
                    match op {
                        Op::Rel(r) => {
                            rels.entry(r.oid).or_insert_with(|| Arc::new(r));
                        }
                        Op::Ins { rel, .. } | Op::Upd { rel, .. } | Op::Del { rel, .. } => {
                            let (Some(r), Some(Some(reduced))) = (rels.get(&rel), folds.get(&rel))
                            else {
                                break 'segments Scanned::Failed(end);
                            };
                            if !net.fold_in(r, *reduced, op) {
                                break 'segments Scanned::Failed(end);
                            }
                        }
                        Op::Msg { content, .. } => out.sequences.push(content),
                        _ => {}
                    }
                }
                out.end = end;
                out.txns += 1;
                out.changes += changes;
                out.last_commit = at.or(out.last_commit);
            }
        };
        drop(queues);
        for r in readers {
            r.abort();
        }
        Ok(result)
    }
}

/// Bytes of the values an op carries (what folding it holds in memory).
fn value_bytes(op: &Op) -> u64 {
    let row = |v: &[Value]| -> u64 {
        v.iter()
            .map(|v| match v {
                Value::Text(t) => t.len() as u64 + 24,
                Value::Marker(_) => 24,
            })
            .sum()
    };
    match op {
        Op::Ins { new, .. } => row(new),
        Op::Upd { old, new, .. } => row(new) + old.as_deref().map_or(0, row),
        Op::Del { old, .. } => row(old),
        _ => 0,
    }
}
