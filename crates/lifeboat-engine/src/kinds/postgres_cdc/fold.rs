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
        pgoutput::Relation,
        preflight::SEQ_PREFIX,
    },
};

use super::{replay::Until, segments};
use crate::{Engine, EngineResult};

/// At most this many changes are folded (the rest is replayed): the fold holds each changed
/// row's last image in memory.
const MAX_CHANGES: u64 = 4_000_000;

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
    let mut rels: HashMap<u32, Relation> = HashMap::new();
    // Per table: folds (reduced or inserts only), or not at all.
    let mut folds: HashMap<u32, Option<bool>> = HashMap::new();
    let mut net = Net::default();
    let mut out = Folded {
        fold: Arc::default(),
        end: base_lsn,
        txns: 0,
        changes: 0,
        last_commit: None,
        sequences: Vec::new(),
    };
    'segments: for seg in segments::list(&engine.repo, name)
        .await?
        .iter()
        .filter(|s| s.last > base_lsn)
    {
        for txn in segments::read(&engine.repo, name, seg).await? {
            if txn.end <= base_lsn {
                for op in &txn.ops {
                    if let Op::Rel(r) = op {
                        rels.insert(r.oid, r.clone());
                    }
                }
                continue;
            }
            if until
                .time
                .zip(txn.committed_at())
                .is_some_and(|(t, at)| at > t)
                || until.lsn.is_some_and(|l| txn.lsn > l)
                || end.is_some_and(|e| txn.end > e)
                || txn.parts() > 0
                || out.changes + txn.ops.len() as u64 > MAX_CHANGES
            {
                break 'segments;
            }
            let mut this = Net::default();
            let mut seqs = Vec::new();
            for op in &txn.ops {
                match op {
                    Op::Rel(r) => match rels.get(&r.oid) {
                        Some(known) if known != r => break 'segments,
                        Some(_) => {}
                        None => {
                            rels.insert(r.oid, r.clone());
                        }
                    },
                    Op::Ins { rel, .. } | Op::Upd { rel, .. } | Op::Del { rel, .. } => {
                        let Some(r) = rels.get(rel) else {
                            break 'segments;
                        };
                        let reduced = *folds.entry(*rel).or_insert_with(|| fold::foldable(&toc, r));
                        match reduced {
                            Some(reduced) => this.add(r, reduced, op.clone()),
                            None => break 'segments,
                        }
                    }
                    Op::Msg { prefix, content } if prefix == SEQ_PREFIX => {
                        seqs.push(content.clone());
                    }
                    // Schema changes, TRUNCATE, other messages: replayed.
                    _ => break 'segments,
                }
            }
            if !net.absorb(this) {
                break 'segments;
            }
            out.end = txn.end;
            out.txns += 1;
            out.changes += txn.changes() as u64;
            out.last_commit = txn.committed_at().or(out.last_commit);
            out.sequences.extend(seqs);
        }
    }
    if out.txns == 0 {
        return Ok(None);
    }
    out.fold = Arc::new(Fold::new(&toc, &net));
    Ok(Some(out))
}
