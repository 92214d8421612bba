//! Captured changes folded into a baseline's load: instead of loading the baseline and then
//! replaying the first stretch of changes statement by statement, each table's rows are
//! changed on their way from the dump to `COPY` — a row deleted since is left out, a row
//! updated since goes with its last image, a row inserted since is added at the table's end.
//! The indexes are built afterwards on rows that are already as they were at the end of
//! the stretch, and the replay goes on from there.
//!
//! Only what is exact is folded: tables found by a key of one spelling ([`net::reducible`]:
//! the dump's text of the key is the capture's), whose columns are the dump's, and tables
//! only inserted into; the stretch ends before the first transaction with anything else
//! (a schema change, `TRUNCATE`, a large transaction, another table's change). Values are
//! written in `COPY`'s text format, which reads them as the statements would.

use std::{
    collections::{HashMap, HashSet},
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
};

use super::{
    net::{self, Fx, Net},
    pgoutput::{Relation, Value},
};
use crate::archive::Toc;

/// A stretch of changes, folded per table, by the dump id of the table's data.
#[derive(Debug, Default)]
pub struct Fold {
    tables: HashMap<i64, TableFold>,
}

/// What to do with one table's rows.
#[derive(Debug)]
pub struct TableFold {
    pub schema: String,
    pub name: String,
    /// Positions of the key's fields in a row.
    key_fields: Vec<usize>,
    /// Keys (their fields' text joined by tabs) of rows to leave out.
    delete: HashSet<Vec<u8>, Fx>,
    /// Keys of rows to change: each field's new text (escaped), or `None` to keep it.
    update: HashMap<Vec<u8>, Vec<Option<Vec<u8>>>, Fx>,
    /// Rows to add at the end (inserted, not in the baseline), in `COPY` text format.
    insert: Vec<u8>,
    inserts: u64,
    /// Rows left out and rows added (for the row counts), rows left out or changed (each
    /// must be found), and whether the end was reached.
    pub dropped: AtomicU64,
    matched: AtomicU64,
    pub appended: AtomicU64,
    pub ended: AtomicBool,
}

/// Where each of `r`'s columns is in the rows of the dump entry whose `COPY` statement is
/// `copy_stmt`; `None` unless the columns are the same, by name.
fn positions(r: &Relation, copy_stmt: &str) -> Option<Vec<usize>> {
    let cols = copy_columns(copy_stmt)?;
    if cols.len() != r.columns.len() {
        return None;
    }
    r.columns
        .iter()
        .map(|c| cols.iter().position(|n| *n == c.name))
        .collect()
}

/// The column names of `COPY name (a, "B c") FROM stdin;`.
fn copy_columns(stmt: &str) -> Option<Vec<String>> {
    let end = stmt.rfind(") FROM stdin")?;
    let b = stmt.as_bytes();
    // The opening parenthesis of the column list: the last one outside quotes before `end`.
    let (mut open, mut quoted) = (None, false);
    for (i, &c) in b[..end].iter().enumerate() {
        match c {
            b'"' => quoted = !quoted,
            b'(' if !quoted => open = Some(i),
            _ => {}
        }
    }
    let list = &stmt[open? + 1..end];
    let mut out = Vec::new();
    let (mut cur, mut quoted, mut chars) = (String::new(), false, list.chars().peekable());
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            ' ' if !quoted => {}
            c => cur.push(c),
        }
    }
    out.push(cur);
    Some(out)
}

/// Whether the dump's text is the capture's: the dump's encoding is UTF-8 (values are
/// captured as UTF-8).
pub fn dump_is_utf8(toc: &Toc) -> bool {
    toc.entries.iter().any(|e| {
        e.desc == "ENCODING"
            && e.defn
                .to_ascii_uppercase()
                .replace('-', "")
                .contains("'UTF8'")
    })
}

/// Whether `r`'s changes can be folded into the load of the dump of `toc`: its data is in
/// the dump with the same columns; `reduced`: found by a key of one spelling (else only
/// inserts fold).
pub fn foldable(toc: &Toc, r: &Relation) -> Option<bool> {
    let e = table_data(toc, r)?;
    positions(r, &e.copy_stmt)?;
    // A table the dump creates: an extension's configuration table has data of its own
    // (only the rows added to it) but is created by its extension, with rows the dump
    // does not hold.
    toc.entries
        .iter()
        .any(|t| t.desc == "TABLE" && t.namespace == r.schema && t.tag == r.name)
        .then(|| net::reducible(r))
}

fn table_data<'t>(toc: &'t Toc, r: &Relation) -> Option<&'t crate::archive::TocEntry> {
    toc.entries
        .iter()
        .find(|e| e.desc == "TABLE DATA" && e.namespace == r.schema && e.tag == r.name)
}

impl Fold {
    /// The fold of `net` (built with [`Net::fold_in`] from changes of [`foldable`] tables)
    /// into the dump of `toc`.
    pub fn new(toc: &Toc, net: &Net) -> Self {
        let mut tables = HashMap::new();
        for run in net.runs() {
            let Some((e, pos)) = table_data(toc, &run.rel)
                .and_then(|e| Some((e, positions(&run.rel, &e.copy_stmt)?)))
            else {
                continue;
            };
            let fields = pos.len();
            let mut t = TableFold {
                schema: run.rel.schema.clone(),
                name: run.rel.name.clone(),
                key_fields: Vec::new(),
                delete: HashSet::default(),
                update: HashMap::default(),
                insert: Vec::new(),
                inserts: 0,
                dropped: AtomicU64::new(0),
                matched: AtomicU64::new(0),
                appended: AtomicU64::new(0),
                ended: AtomicBool::new(false),
            };
            if run.reduced() {
                let mut keys: Vec<(usize, usize)> = run
                    .rel
                    .columns
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| c.key)
                    .map(|(i, _)| (pos[i], i))
                    .collect();
                keys.sort();
                t.key_fields = keys.iter().map(|(f, _)| *f).collect();
                for (key, existed, now) in run.outcomes() {
                    // The key in field order (the capture lists it in column order).
                    let k = if keys.len() == 1 {
                        key.as_bytes().to_vec()
                    } else {
                        let parts: Vec<&str> = key.split('\t').collect();
                        let mut k = Vec::new();
                        for (n, (_, col)) in keys.iter().enumerate() {
                            if n > 0 {
                                k.push(b'\t');
                            }
                            let key_index =
                                run.rel.columns[..*col].iter().filter(|c| c.key).count();
                            k.extend_from_slice(parts.get(key_index).unwrap_or(&"").as_bytes());
                        }
                        k
                    };
                    match (existed, now) {
                        (true, None) => {
                            t.delete.insert(k);
                        }
                        (true, Some(row)) => {
                            let fields = in_fields(row, &pos, fields)
                                .iter()
                                .map(|v| match v {
                                    Some(v) if !v.is_unchanged() => {
                                        let mut b = Vec::new();
                                        escape(&mut b, v);
                                        Some(b)
                                    }
                                    _ => None,
                                })
                                .collect();
                            t.update.insert(k, fields);
                        }
                        (false, Some(row)) => {
                            t.add(&in_fields(row, &pos, fields));
                        }
                        (false, None) => {}
                    }
                }
            } else {
                for op in &run.ops {
                    if let super::apply::Op::Ins { new, .. } = op {
                        t.add(&in_fields(new, &pos, fields));
                    }
                }
            }
            tables.insert(e.id, t);
        }
        Self { tables }
    }

    /// The fold of the table whose data is dump entry `id`.
    pub fn table(&self, id: i64) -> Option<&TableFold> {
        self.tables.get(&id)
    }

    pub fn tables(&self) -> impl Iterator<Item = &TableFold> {
        self.tables.values()
    }

    /// Whether every table's data went through its fold to its end.
    pub fn complete(&self) -> bool {
        self.tables.values().all(|t| t.ended.load(Ordering::SeqCst))
    }

    /// Tables with rows to leave out or change that their data did not hold, and how many.
    pub fn missing(&self) -> Vec<(String, u64)> {
        self.tables
            .values()
            .filter_map(|t| {
                let want = (t.delete.len() + t.update.len()) as u64;
                let found = t.matched.load(Ordering::SeqCst);
                (found < want).then(|| (format!("{}.{}", t.schema, t.name), want - found))
            })
            .collect()
    }

    /// Whether no table's data went through its fold (the load passed the dump on as it
    /// is: the whole stretch is still to replay).
    pub fn untouched(&self) -> bool {
        self.tables.values().all(|t| {
            !t.ended.load(Ordering::SeqCst)
                && t.dropped.load(Ordering::SeqCst) == 0
                && t.appended.load(Ordering::SeqCst) == 0
        })
    }
}

impl TableFold {
    /// A row to add at the end, its values in field order.
    fn add(&mut self, fields: &[Option<&Value>]) {
        for (i, v) in fields.iter().enumerate() {
            if i > 0 {
                self.insert.push(b'\t');
            }
            escape(&mut self.insert, v.unwrap_or(&Value::NULL));
        }
        self.insert.push(b'\n');
        self.inserts += 1;
    }

    /// One row of the dump (without its newline) into `out`: as it is, changed, or not at
    /// all.
    pub fn row(&self, line: &[u8], out: &mut Vec<u8>) {
        if self.key_fields.is_empty() || (self.delete.is_empty() && self.update.is_empty()) {
            out.extend_from_slice(line);
            out.push(b'\n');
            return;
        }
        let joined;
        let key: &[u8] = match self.key_fields.as_slice() {
            // The usual single column: the field itself, nothing allocated.
            [f] => line.split(|&b| b == b'\t').nth(*f).unwrap_or_default(),
            many => {
                let last = many.iter().max().copied().unwrap_or(0);
                let fields: Vec<&[u8]> = line.split(|&b| b == b'\t').take(last + 1).collect();
                joined = many
                    .iter()
                    .map(|&f| fields.get(f).copied().unwrap_or_default())
                    .collect::<Vec<_>>()
                    .join(&b'\t');
                &joined
            }
        };
        if self.delete.contains(key) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            self.matched.fetch_add(1, Ordering::Relaxed);
            return;
        }
        match self.update.get(key) {
            None => out.extend_from_slice(line),
            Some(new) => {
                self.matched.fetch_add(1, Ordering::Relaxed);
                for (i, old) in line.split(|&b| b == b'\t').enumerate() {
                    if i > 0 {
                        out.push(b'\t');
                    }
                    match new.get(i) {
                        Some(Some(v)) => out.extend_from_slice(v),
                        _ => out.extend_from_slice(old),
                    }
                }
            }
        }
        out.push(b'\n');
    }

    /// At the end of the table's data (seen once, by whichever part holds it): the rows
    /// inserted since.
    pub fn end(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.insert);
        self.appended.fetch_add(self.inserts, Ordering::SeqCst);
        self.ended.store(true, Ordering::SeqCst);
    }
}

/// Each of a row's values (in column order) at its field.
fn in_fields<'v>(row: &'v [Value], pos: &[usize], fields: usize) -> Vec<Option<&'v Value>> {
    let mut f = vec![None; fields];
    for (i, v) in row.iter().enumerate() {
        if let Some(&p) = pos.get(i) {
            f[p] = Some(v);
        }
    }
    f
}

/// A value in `COPY` text format.
pub(crate) fn escape(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Text(t) => {
            let special = |b: &u8| matches!(b, b'\\' | b'\n' | b'\r' | b'\t');
            let mut rest = t.as_bytes();
            // Stretches without a character to escape go in whole.
            while let Some(at) = rest.iter().position(special) {
                out.extend_from_slice(&rest[..at]);
                out.extend_from_slice(match rest[at] {
                    b'\\' => b"\\\\",
                    b'\n' => b"\\n",
                    b'\r' => b"\\r",
                    _ => b"\\t",
                });
                rest = &rest[at + 1..];
            }
            out.extend_from_slice(rest);
        }
        Value::Marker(_) => out.extend_from_slice(b"\\N"),
    }
}
