//! The net effect of a run of captured changes, per table: what a replay applies in a few
//! set-based statements instead of one statement per change.
//!
//! For a table whose rows are found by a key (a primary key or replica identity index of
//! integer or uuid columns, whose text is one value's only spelling), a run of changes
//! comes down to one outcome per key: the row's last image, or gone — and whether the row
//! was there before the run, which decides between `UPDATE`, `INSERT` and `DELETE`. An
//! update that leaves a TOAST value unchanged keeps it unknown; such rows update only
//! the columns known. Changes the outcome cannot describe (a key inserted twice, a row
//! updated after it was deleted, a changed key with unknown values) give the table up for
//! the run: its changes are replayed one by one, in order, as before. So is every table
//! without such a key (full identity, no key): runs of inserts into it go as `COPY`.
//!
//! Tables are independent here: the replay runs without triggers and foreign-key checks
//! (`session_replication_role = replica`), so only the order of changes within a table
//! matters, and schema changes and `TRUNCATE` end the run (see `apply`).

use std::{collections::HashMap, sync::Arc};

use super::{
    apply::Op,
    pgoutput::{Relation, Value},
};

/// Key column types whose text output is the value's only spelling (no collation, no
/// settings): `bool`, `int8`, `int2`, `int4`, `oid`, `uuid`.
const CANONICAL_KEY_TYPES: [u32; 6] = [16, 20, 21, 23, 26, 2950];

/// Whether changes of `r` can be reduced to their net effect: found by a key of canonical
/// types, and no column named like the staging table's own.
pub fn reducible(r: &Relation) -> bool {
    let mut keys = r.columns.iter().filter(|c| c.key).peekable();
    r.identity != 'f'
        && keys.peek().is_some()
        && keys.all(|c| CANONICAL_KEY_TYPES.contains(&c.type_oid))
        && !r
            .columns
            .iter()
            .any(|c| c.name == STAGE_OP || c.name == STAGE_MASK)
}

/// The staging table's columns before the table's own: what to do with the row, and which
/// columns it leaves unknown.
pub const STAGE_OP: &str = "lifeboat op";
pub const STAGE_MASK: &str = "lifeboat mask";

/// A row's outcome at the end of the run.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Now {
    Gone,
    /// Its last image; unchanged TOAST values (not sent) are unknown.
    Row(Vec<Value>),
}

#[derive(Debug, Clone)]
struct Entry {
    /// The row was there before the run (its first change was an update or a delete).
    existed: bool,
    now: Now,
}

/// A row's key: its key columns' text, joined by tabs (keys of the types reduced hold
/// none).
type Key = String;

/// The pending changes of one table.
#[derive(Debug)]
pub struct TableRun {
    pub rel: Arc<Relation>,
    /// Every change, in order: what is replayed one by one when the table is not reduced
    /// (a fold keeps none of a reduced table's).
    pub ops: Vec<Op>,
    /// Reduction was asked for.
    reduce: bool,
    keep_ops: bool,
    /// The outcome per key; `None` when the table is not (or no longer) reduced.
    rows: Option<HashMap<Key, Entry, Fx>>,
}

/// What a reduced table's run comes to.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Keys of rows that were there and are gone (their key values).
    pub delete: Vec<Vec<Value>>,
    /// Rows that were there and have a new image: which columns are unknown (a mask of
    /// '0'/'1' per column) and the image.
    pub update: Vec<(String, Vec<Value>)>,
    /// Rows that were not there and are now, whole.
    pub insert: Vec<Vec<Value>>,
}

impl Outcome {
    pub fn is_empty(&self) -> bool {
        self.delete.is_empty() && self.update.is_empty() && self.insert.is_empty()
    }
}

impl TableRun {
    fn new(rel: Arc<Relation>, reduce: bool, keep_ops: bool) -> Self {
        Self {
            rel,
            ops: Vec::new(),
            reduce,
            keep_ops,
            rows: reduce.then(HashMap::default),
        }
    }

    /// Whether the run is reduced to its net effect.
    pub fn reduced(&self) -> bool {
        self.rows.is_some()
    }

    fn key(&self, tuple: &[Value]) -> Option<Key> {
        let (mut k, mut first) = (String::new(), true);
        for (c, v) in self.rel.columns.iter().zip(tuple) {
            if !c.key {
                continue;
            }
            if !first {
                k.push('\t');
            }
            first = false;
            match v {
                Value::Text(t) => k.push_str(t),
                Value::Marker(_) => return None,
            }
        }
        Some(k)
    }

    fn add(&mut self, op: Op) {
        if self.rows.is_some() && self.reduce(&op).is_none() {
            self.rows = None;
        }
        if self.keep_ops || self.rows.is_none() {
            self.ops.push(op);
        }
    }

    /// Fold `op` into the outcome; `None`: the outcome cannot describe it.
    fn reduce(&mut self, op: &Op) -> Option<()> {
        match op {
            Op::Ins { new, .. } => {
                let k = self.key(new)?;
                let rows = self.rows.as_mut()?;
                match rows.get_mut(&k) {
                    None => {
                        rows.insert(
                            k,
                            Entry {
                                existed: false,
                                now: Now::Row(new.clone()),
                            },
                        );
                    }
                    Some(e) if e.now == Now::Gone => e.now = Now::Row(new.clone()),
                    Some(_) => return None,
                }
            }
            Op::Upd { old, new, .. } => {
                let k_new = self.key(new)?;
                let k_old = match old {
                    Some(old) => self.key(old)?,
                    None => k_new.clone(),
                };
                let rows = self.rows.as_mut()?;
                if k_old == k_new {
                    match rows.get_mut(&k_new) {
                        None => {
                            rows.insert(
                                k_new,
                                Entry {
                                    existed: true,
                                    now: Now::Row(new.clone()),
                                },
                            );
                        }
                        Some(Entry {
                            now: Now::Row(row), ..
                        }) => *row = merged(Some(row), new),
                        Some(_) => return None,
                    }
                } else {
                    // The row moves to a new key: gone from the old one.
                    let base = match rows.get_mut(&k_old) {
                        None => {
                            rows.insert(
                                k_old,
                                Entry {
                                    existed: true,
                                    now: Now::Gone,
                                },
                            );
                            None
                        }
                        Some(e) => match std::mem::replace(&mut e.now, Now::Gone) {
                            Now::Row(row) => Some(row),
                            Now::Gone => return None,
                        },
                    };
                    let row = merged(base.as_ref(), new);
                    // A row that moves takes all its values along: one not known here
                    // cannot be written at the new key.
                    if row.iter().any(Value::is_unchanged) {
                        return None;
                    }
                    match rows.get_mut(&k_new) {
                        None => {
                            rows.insert(
                                k_new,
                                Entry {
                                    existed: false,
                                    now: Now::Row(row),
                                },
                            );
                        }
                        Some(e) if e.now == Now::Gone => e.now = Now::Row(row),
                        Some(_) => return None,
                    }
                }
            }
            Op::Del { old, .. } => {
                let k = self.key(old)?;
                let rows = self.rows.as_mut()?;
                match rows.get_mut(&k) {
                    None => {
                        rows.insert(
                            k,
                            Entry {
                                existed: true,
                                now: Now::Gone,
                            },
                        );
                    }
                    Some(e) if e.now != Now::Gone => e.now = Now::Gone,
                    Some(_) => return None,
                }
            }
            _ => return None,
        }
        Some(())
    }

    /// The net effect of a reduced run; `None` when it was not reduced, or a row that was
    /// not there has unknown values (a key changed with TOAST values left unchanged).
    pub fn outcome(&self) -> Option<Outcome> {
        let rows = self.rows.as_ref()?;
        let mut out = Outcome::default();
        for (key, e) in rows {
            match (&e.now, e.existed) {
                (Now::Gone, true) => {
                    let mut it = key.split('\t');
                    out.delete.push(
                        self.rel
                            .columns
                            .iter()
                            .map(|c| match c.key {
                                true => Value::Text(it.next().unwrap_or_default().to_string()),
                                false => Value::NULL,
                            })
                            .collect(),
                    );
                }
                (Now::Gone, false) => {}
                (Now::Row(row), true) => {
                    let mask: String = row
                        .iter()
                        .map(|v| if v.is_unchanged() { '1' } else { '0' })
                        .collect();
                    out.update.push((mask, row.clone()));
                }
                (Now::Row(row), false) => {
                    if row.iter().any(Value::is_unchanged) {
                        return None;
                    }
                    out.insert.push(row.clone());
                }
            }
        }
        Some(out)
    }
}

/// `new` over `base`: a value left unchanged in `new` keeps `base`'s (unknown without one).
fn merged(base: Option<&Vec<Value>>, new: &[Value]) -> Vec<Value> {
    new.iter()
        .enumerate()
        .map(
            |(i, v)| match (v.is_unchanged(), base.and_then(|b| b.get(i))) {
                (true, Some(b)) => b.clone(),
                _ => v.clone(),
            },
        )
        .collect()
}

/// The pending changes of a replay transaction, per table, in the order tables first
/// changed.
#[derive(Debug)]
pub struct Net {
    tables: Vec<TableRun>,
    index: HashMap<u32, usize>,
    changes: usize,
    /// Reduced tables keep their changes too (for the replay's one-by-one fallback).
    keep_ops: bool,
}

impl Default for Net {
    fn default() -> Self {
        Self {
            tables: Vec::new(),
            index: HashMap::new(),
            changes: 0,
            keep_ops: true,
        }
    }
}

impl Net {
    /// For a fold: reduced tables keep only their outcome.
    pub fn folding() -> Self {
        Self {
            keep_ops: false,
            ..Self::default()
        }
    }

    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }

    /// Changes pending.
    pub fn changes(&self) -> usize {
        self.changes
    }

    /// Add a change of table `rel` (Insert, Update or Delete); `reduce`: the table may be
    /// reduced to its net effect.
    pub fn add(&mut self, rel: &Arc<Relation>, reduce: bool, op: Op) {
        let keep_ops = self.keep_ops;
        let i = *self.index.entry(rel.oid).or_insert_with(|| {
            self.tables
                .push(TableRun::new(rel.clone(), reduce, keep_ops));
            self.tables.len() - 1
        });
        self.tables[i].add(op);
        self.changes += 1;
    }

    /// The pending changes, table by table; empty afterwards.
    pub fn take(&mut self) -> Vec<TableRun> {
        self.index.clear();
        self.changes = 0;
        std::mem::take(&mut self.tables)
    }

    /// For a fold: add one change straight into the outcome (a reduced table keeps no
    /// list of changes; a table not reduced takes only inserts). False when it cannot be
    /// folded — the outcome is then no longer whole, and the caller starts again, stopping
    /// before the change's transaction.
    pub fn fold_in(&mut self, rel: &Arc<Relation>, reduce: bool, op: Op) -> bool {
        let i = *self.index.entry(rel.oid).or_insert_with(|| {
            self.tables.push(TableRun::new(rel.clone(), reduce, false));
            self.tables.len() - 1
        });
        self.changes += 1;
        let t = &mut self.tables[i];
        if t.reduce != reduce || !(Arc::ptr_eq(&t.rel, rel) || t.rel == *rel) {
            return false;
        }
        if reduce {
            t.rows.is_some() && t.reduce(&op).is_some()
        } else if matches!(op, Op::Ins { .. }) {
            t.ops.push(op);
            true
        } else {
            false
        }
    }

    /// The tables, in the order they first changed.
    pub fn runs(&self) -> &[TableRun] {
        &self.tables
    }
}

impl TableRun {
    /// The keys and outcomes of a reduced run: the key's values (as text), whether the
    /// row was there before the run, and its last image (`None`: gone). With unknown
    /// values only for rows that were there.
    pub fn outcomes(&self) -> impl Iterator<Item = (&str, bool, Option<&[Value]>)> {
        self.rows.iter().flatten().map(|(k, e)| {
            (
                k.as_str(),
                e.existed,
                match &e.now {
                    Now::Gone => None,
                    Now::Row(r) => Some(r.as_slice()),
                },
            )
        })
    }
}

/// A fast hash for row keys (looked up for every change, and for every row of a dump a
/// fold goes through), seeded at random per map so that key values chosen in the source
/// cannot be made to collide.
#[derive(Debug, Clone, Copy)]
pub struct Fx(u64);

impl Default for Fx {
    fn default() -> Self {
        use std::hash::BuildHasher;
        Fx(std::collections::hash_map::RandomState::new().hash_one(0x5eed_u64))
    }
}

impl std::hash::BuildHasher for Fx {
    type Hasher = FxHasher;
    fn build_hasher(&self) -> FxHasher {
        FxHasher(self.0)
    }
}

pub struct FxHasher(u64);

impl std::hash::Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x517c_c1b7_2722_0a95;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let w = u64::from_le_bytes(c.try_into().unwrap_or_default());
            self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cdc::pgoutput::Column;

    fn rel() -> Relation {
        Relation {
            oid: 9,
            schema: "public".into(),
            name: "t".into(),
            identity: 'd',
            columns: vec![
                Column {
                    name: "id".into(),
                    key: true,
                    type_oid: 23,
                },
                Column {
                    name: "v".into(),
                    key: false,
                    type_oid: 25,
                },
                Column {
                    name: "big".into(),
                    key: false,
                    type_oid: 25,
                },
            ],
        }
    }

    fn t(s: &str) -> Value {
        Value::Text(s.into())
    }

    fn row(id: &str, v: &str, big: Value) -> Vec<Value> {
        vec![t(id), t(v), big]
    }

    fn ins(new: Vec<Value>) -> Op {
        Op::Ins { rel: 9, new }
    }

    fn upd(old: Option<&str>, new: Vec<Value>) -> Op {
        Op::Upd {
            rel: 9,
            old: old.map(|k| vec![t(k), Value::NULL, Value::NULL]),
            key_only: true,
            new,
        }
    }

    fn del(k: &str) -> Op {
        Op::Del {
            rel: 9,
            old: vec![t(k), Value::NULL, Value::NULL],
            key_only: true,
        }
    }

    fn run(ops: Vec<Op>) -> TableRun {
        let mut net = Net::default();
        let r = Arc::new(rel());
        for op in ops {
            net.add(&r, true, op);
        }
        net.take().pop().unwrap()
    }

    fn sorted(mut o: Outcome) -> Outcome {
        o.delete
            .sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
        o.update
            .sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
        o.insert
            .sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
        o
    }

    #[test]
    fn a_run_comes_down_to_one_outcome_per_key() {
        let r = run(vec![
            ins(row("1", "a", t("x"))),
            upd(None, row("1", "b", Value::UNCHANGED)),
            upd(None, row("2", "c", Value::UNCHANGED)),
            upd(None, row("2", "d", t("y"))),
            del("3"),
            ins(row("4", "e", t("z"))),
            del("4"),
            del("5"),
            ins(row("5", "again", t("w"))),
            // A key that changes: 6 is gone, 7 holds the row.
            upd(Some("6"), row("7", "moved", t("m"))),
        ]);
        assert!(r.reduced());
        assert_eq!(r.ops.len(), 10);
        let o = sorted(r.outcome().unwrap());
        assert_eq!(
            o.insert,
            vec![row("1", "b", t("x")), row("7", "moved", t("m"))]
        );
        assert_eq!(
            o.update,
            vec![
                ("000".to_string(), row("2", "d", t("y"))),
                ("000".to_string(), row("5", "again", t("w"))),
            ]
        );
        assert_eq!(
            o.delete,
            vec![
                vec![t("3"), Value::NULL, Value::NULL],
                vec![t("6"), Value::NULL, Value::NULL]
            ]
        );
    }

    #[test]
    fn an_unchanged_toast_value_stays_unknown_and_only_known_columns_update() {
        let o = run(vec![upd(None, row("1", "a", Value::UNCHANGED))])
            .outcome()
            .unwrap();
        assert_eq!(
            o.update,
            vec![("001".to_string(), row("1", "a", Value::UNCHANGED))]
        );
        // A changed key with an unknown value cannot be written whole: not reduced, also
        // onto a key freed before (the row there kept its own value).
        for ops in [
            vec![upd(Some("1"), row("2", "a", Value::UNCHANGED))],
            vec![del("2"), upd(Some("1"), row("2", "a", Value::UNCHANGED))],
        ] {
            assert!(run(ops).outcome().is_none());
        }
    }

    #[test]
    fn what_the_outcome_cannot_describe_gives_the_table_up() {
        for ops in [
            vec![ins(row("1", "a", t("x"))), ins(row("1", "b", t("x")))],
            vec![del("1"), upd(None, row("1", "b", t("x")))],
            vec![del("1"), del("1")],
            vec![upd(Some("1"), row("2", "a", t("x"))), del("1")],
            vec![
                ins(row("2", "a", t("x"))),
                upd(Some("1"), row("2", "b", t("x"))),
            ],
        ] {
            let r = run(ops.clone());
            assert!(!r.reduced(), "{ops:?}");
            assert!(r.outcome().is_none());
            assert_eq!(r.ops, ops, "every change kept, in order");
        }
    }

    #[test]
    fn only_keys_of_one_spelling_are_reduced() {
        let mut r = rel();
        assert!(reducible(&r));
        r.columns[0].type_oid = 1700; // numeric: 1.0 = 1.00
        assert!(!reducible(&r));
        r.columns[0].type_oid = 25; // text: collations
        assert!(!reducible(&r));
        let mut full = rel();
        full.identity = 'f';
        assert!(!reducible(&full));
        let mut named = rel();
        named.columns[1].name = STAGE_OP.into();
        assert!(!reducible(&named));
        let mut keyless = rel();
        keyless.columns[0].key = false;
        assert!(!reducible(&keyless));
    }
}
