//! Replaying captured transactions into a database restored from a baseline, in commit
//! order, with `session_replication_role = replica` (no triggers, no foreign-key checks:
//! the source already checked them). A batch of transactions and the replay position
//! (`lifeboat_cdc.replayed`, in the destination) commit together, so a replay that stops
//! part-way resumes exactly after the last batch it committed.
//!
//! Within a batch, the changes of a table with an integer or uuid key are applied by their
//! net effect ([`net`]): the rows' last images are copied (`COPY`) into a temporary staging
//! table and applied with one `DELETE`, `UPDATE` and `INSERT` each, inside a savepoint; where
//! that fails (a unique constraint the order of changes mattered to), the table's changes
//! go one statement each, in order. Other tables' changes are statements, runs of inserts
//! a `COPY`. Schema changes and `TRUNCATE` apply everything pending first.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use bytes::Bytes;
use futures_util::SinkExt;

use serde::{Deserialize, Serialize};
use tokio_postgres::Client;

use super::{
    net::{self, Net, TableRun},
    pgoutput::{Relation, Value},
    preflight::{DDL_PREFIX, SEQ_PREFIX},
};
use crate::{PgError, Target};

/// One captured change, as segments store it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Op {
    /// A table's columns as of here (the stream sends one before a table's first change and
    /// after its schema changed; segments repeat it so each stands alone).
    Rel(Relation),
    Ins {
        rel: u32,
        new: Vec<Value>,
    },
    Upd {
        rel: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        old: Option<Vec<Value>>,
        #[serde(default)]
        key_only: bool,
        new: Vec<Value>,
    },
    Del {
        rel: u32,
        old: Vec<Value>,
        #[serde(default)]
        key_only: bool,
    },
    Trunc {
        rels: Vec<u32>,
        cascade: bool,
        restart: bool,
    },
    /// A logical message: DDL (`lifeboat.ddl`) or sequence values (`lifeboat.seq`).
    Msg {
        prefix: String,
        content: String,
    },
    /// The last op of a transaction too large to hold in memory: its changes follow in this
    /// many part objects of their own. (A reader that does not know it fails on it, rather
    /// than skip the changes.)
    Parts {
        count: u32,
    },
}

/// One committed transaction. (Unknown fields are refused: a reader must not skip what a
/// newer writer put there.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Txn {
    pub xid: u32,
    /// The commit record's LSN and the end of it: a transaction is in a baseline taken at a
    /// consistent point C exactly when `end <= C`.
    pub lsn: u64,
    pub end: u64,
    /// The source's commit time, microseconds since 2000-01-01 (PostgreSQL's epoch).
    pub time: i64,
    pub ops: Vec<Op>,
}

/// Microseconds between 1970-01-01 and 2000-01-01.
pub const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

impl Txn {
    /// The commit time as a moment.
    pub fn committed_at(&self) -> Option<jiff::Timestamp> {
        jiff::Timestamp::from_microsecond(self.time + PG_EPOCH_MICROS).ok()
    }

    /// Changes to rows (not counting table descriptions and messages).
    pub fn changes(&self) -> usize {
        self.ops.iter().filter(|o| o.is_change()).count()
    }

    /// How many part objects hold the rest of its changes (0: none, all are in `ops`).
    pub fn parts(&self) -> u32 {
        match self.ops.last() {
            Some(Op::Parts { count }) => *count,
            _ => 0,
        }
    }
}

impl Op {
    /// A change to rows (not a table's description, a message or a marker).
    pub fn is_change(&self) -> bool {
        !matches!(self, Op::Rel(_) | Op::Msg { .. } | Op::Parts { .. })
    }
}

/// A replay transaction being built: its SQL not yet sent, the changes not yet applied
/// (per table), and how many changes it holds.
pub struct Pending {
    sql: String,
    net: Net,
    changes: usize,
}

/// A table's staging table in this session (kept across commits, emptied before each
/// use, dropped after a schema change), made for one description of the table.
struct Stage {
    name: String,
    rel: Relation,
}

/// A replay into one database.
pub struct Applier {
    client: Client,
    rels: HashMap<u32, Arc<Relation>>,
    /// Sequence values last captured, by `schema.name` (quoted).
    sequences: BTreeMap<String, i64>,
    /// The end LSN of the last transaction committed into the destination.
    position: u64,
    pub applied_txns: u64,
    pub applied_changes: u64,
    /// Of those, changes applied by their table's net effect.
    pub applied_net: u64,
    /// Times a table's net effect did not apply (a unique constraint the order of its
    /// changes mattered to) and its changes went one by one.
    pub net_fallbacks: u64,
    /// Within the transaction being replayed: how many DDL messages of each query text came.
    ddl_seen: HashMap<String, usize>,
    /// Whether each table's changes are reduced to their net effect (asked of the
    /// destination once per table, again after a schema change).
    reducible: HashMap<u32, bool>,
    stages: HashMap<u32, Stage>,
    /// Staging tables made in the open transaction (gone if it rolls back).
    made_here: Vec<String>,
    /// Staging tables made in this session.
    made: usize,
}

/// How values are printed, the same for the replication session (its `options`) and the
/// replay's: a full-identity row is found by comparing them.
pub const SETTINGS: &str = "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, MDY'; \
     SET IntervalStyle = 'postgres'; SET extra_float_digits = 3; SET bytea_output = 'hex'";

/// The same, as a startup `options` value.
pub const OPTIONS: &str = "-c TimeZone=UTC -c DateStyle=ISO,MDY -c IntervalStyle=postgres \
     -c extra_float_digits=3 -c bytea_output=hex";

/// SQL of a batch is sent in pieces of about this many bytes; so is a `COPY`'s data.
const PIECE: usize = 1 << 20;
/// Changes held per table before they are applied, within one destination transaction
/// (a large captured transaction is applied in several steps).
const NET_LIMIT: usize = 100_000;
/// A run of inserts into a table not reduced goes as `COPY` from this many rows.
const COPY_MIN: usize = 8;
/// A table's changes go by their net effect from this many in a run (fewer cost less as
/// statements sent with others').
const NET_MIN: usize = 16;
/// The savepoint a reduced table's statements run in.
const SAVEPOINT: &str = "lifeboat_net";

impl Applier {
    /// Open `dest`, just loaded with a baseline whose consistent point is `from`, for replay:
    /// the position is set to `from` (a position left by an earlier replay into the same
    /// database belongs to another load and would skip transactions). Sessions are pinned to
    /// the settings the replication session prints values with, so values compare as sent.
    pub async fn open(dest: &Target, from: u64) -> Result<Self, PgError> {
        let client = dest.connect().await?;
        client
            .batch_execute(&format!(
                "{SETTINGS};
                 CREATE SCHEMA IF NOT EXISTS lifeboat_cdc;
                 CREATE TABLE IF NOT EXISTS lifeboat_cdc.replayed (
                   only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
                   end_lsn bigint NOT NULL, commit_time timestamptz);
                 INSERT INTO lifeboat_cdc.replayed (end_lsn) VALUES ({from})
                   ON CONFLICT (only_row) DO UPDATE SET end_lsn = {from}, commit_time = NULL"
            ))
            .await
            .map_err(PgError::query("prepare the replay position"))?;
        let position = i64::try_from(from).unwrap_or(0);
        Ok(Self {
            client,
            rels: HashMap::new(),
            sequences: BTreeMap::new(),
            position: u64::try_from(position).unwrap_or(0),
            applied_txns: 0,
            applied_changes: 0,
            applied_net: 0,
            net_fallbacks: 0,
            ddl_seen: HashMap::new(),
            reducible: HashMap::new(),
            stages: HashMap::new(),
            made_here: Vec::new(),
            made: 0,
        })
    }

    /// The end LSN of the last transaction replayed (0: none).
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Note what a transaction describes without changing rows (tables, sequence values):
    /// for transactions before the replay's start, whose rows are already there.
    pub fn learn(&mut self, txn: &Txn) {
        self.learn_ops(&txn.ops);
    }

    /// [`Applier::learn`] of some of a transaction's changes (a large one's part).
    pub fn learn_ops(&mut self, ops: &[Op]) {
        for op in ops {
            match op {
                Op::Rel(r) => {
                    self.rels.insert(r.oid, Arc::new(r.clone()));
                }
                Op::Msg { prefix, content } if prefix == SEQ_PREFIX => self.note_sequences(content),
                _ => {}
            }
        }
    }

    /// Replay `txns` (in commit order, each after the position) in one transaction, with
    /// the new position.
    pub async fn apply(&mut self, txns: &[Txn]) -> Result<(), PgError> {
        let Some(last) = txns.last() else {
            return Ok(());
        };
        let mut open = self.begin();
        for txn in txns {
            self.ddl_seen.clear();
            if let Err(e) = self.apply_ops(&mut open, &txn.ops).await {
                return Err(self.rolled_back(e).await);
            }
        }
        self.commit(open, last, txns.len()).await
    }

    /// Open a replay transaction (its SQL goes out in pieces as it grows).
    pub fn begin(&self) -> Pending {
        Pending {
            sql: String::from(
                "BEGIN; SET LOCAL session_replication_role = replica; SET LOCAL statement_timeout = 0; SET LOCAL jit = off;\n",
            ),
            net: Net::default(),
            changes: 0,
        }
    }

    /// Start the changes of the next transaction in `open` (a large one's parts follow
    /// with [`Applier::apply_ops`]).
    pub fn start_txn(&mut self) {
        self.ddl_seen.clear();
    }

    /// Add `ops` to the open replay transaction.
    pub async fn apply_ops(&mut self, open: &mut Pending, ops: &[Op]) -> Result<(), PgError> {
        for op in ops {
            match op {
                Op::Rel(r) => {
                    // A new description (a schema change): what is pending was captured
                    // under the old one.
                    if self.rels.get(&r.oid).map(|k| &**k) != Some(r) {
                        self.apply_pending(open).await?;
                        self.reducible.remove(&r.oid);
                        self.rels.insert(r.oid, Arc::new(r.clone()));
                    }
                }
                Op::Ins { rel, .. } | Op::Upd { rel, .. } | Op::Del { rel, .. } => {
                    let r = self.rel(*rel)?;
                    let reduce = self.reducible(&r).await?;
                    open.net.add(&r, reduce, op.clone());
                }
                Op::Trunc { .. } | Op::Msg { .. } | Op::Parts { .. } => {
                    let ddl = matches!(op, Op::Msg { prefix, .. } if prefix == DDL_PREFIX);
                    if ddl || matches!(op, Op::Trunc { .. }) {
                        self.apply_pending(open).await?;
                    }
                    if let Some(stmt) = self.statement(op)? {
                        open.sql.push_str(&stmt);
                        open.sql.push_str(";\n");
                    }
                    if ddl {
                        // Keys, types and indexes may have changed.
                        self.reducible.clear();
                        self.drop_stages().await?;
                    }
                }
            }
            if op.is_change() {
                open.changes += 1;
            }
            if open.sql.len() > PIECE {
                self.send(&open.sql).await?;
                open.sql.clear();
            }
            if open.net.changes() >= NET_LIMIT {
                self.apply_pending(open).await?;
            }
        }
        Ok(())
    }

    fn rel(&self, oid: u32) -> Result<Arc<Relation>, PgError> {
        self.rels.get(&oid).cloned().ok_or_else(|| {
            PgError::Io(format!(
                "a change of table {oid} comes before its description: the captured stream is incomplete"
            ))
        })
    }

    /// Whether `r`'s changes are reduced to their net effect: a key of one spelling
    /// ([`net::reducible`]) and, in the destination, a plain table. (A replica identity's
    /// key is never deferrable, so no two rows hold one key even for a moment.)
    async fn reducible(&mut self, r: &Relation) -> Result<bool, PgError> {
        if let Some(known) = self.reducible.get(&r.oid) {
            return Ok(*known);
        }
        let yes = net::reducible(r)
            && self
                .client
                .query_opt(
                    "SELECT c.relkind = 'r' FROM pg_catalog.pg_class c
                     JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                     WHERE n.nspname = $1 AND c.relname = $2",
                    &[&r.schema, &r.name],
                )
                .await
                .map_err(PgError::query("replay captured changes"))?
                .is_some_and(|row| row.get::<_, bool>(0));
        self.reducible.insert(r.oid, yes);
        Ok(yes)
    }

    /// Apply every change pending in `open`: its SQL first (it came before them), then each
    /// table's changes.
    async fn apply_pending(&mut self, open: &mut Pending) -> Result<(), PgError> {
        if !open.sql.is_empty() {
            self.send(&open.sql).await?;
            open.sql.clear();
        }
        // Statements of small runs and tables not reduced go together.
        let mut sql = String::new();
        for run in open.net.take() {
            match run.outcome() {
                Some(outcome) if run.ops.len() >= NET_MIN => {
                    if !outcome.is_empty() {
                        self.apply_outcome(&run, outcome).await?;
                    }
                }
                _ => self.apply_in_order(&run.rel, &run.ops, &mut sql).await?,
            }
        }
        if !sql.is_empty() {
            self.send(&sql).await?;
        }
        Ok(())
    }

    /// A reduced table's net effect through its staging table, in a savepoint; where that
    /// fails on a unique or exclusion constraint (the order of the changes mattered), the
    /// changes one by one. Any other failure also gives the table up for the session.
    async fn apply_outcome(&mut self, run: &TableRun, o: net::Outcome) -> Result<(), PgError> {
        let r = &run.rel;
        let stage = self.stage(r).await?;
        self.send(&format!("SAVEPOINT {SAVEPOINT}")).await?;
        match self.apply_staged(r, &stage, &o).await {
            Ok(()) => {
                self.applied_net += run.ops.len() as u64;
                Ok(())
            }
            Err(e) => {
                self.net_fallbacks += 1;
                self.send(&format!(
                    "ROLLBACK TO SAVEPOINT {SAVEPOINT}; RELEASE SAVEPOINT {SAVEPOINT}"
                ))
                .await?;
                log::debug!(
                    "table {}: the net effect of {} change(s) did not apply ({e}); replaying them one by one",
                    table(r),
                    run.ops.len(),
                );
                // A constraint the order mattered to is this run's; anything else (a
                // domain refusing the staged NULLs, a type) would come again.
                let code = match &e {
                    PgError::Query { code, .. } => code.clone(),
                    _ => None,
                };
                if !matches!(code.as_deref(), Some("23505" | "23P01")) {
                    self.reducible.insert(r.oid, false);
                }
                let mut sql = String::new();
                self.apply_in_order(r, &run.ops, &mut sql).await?;
                if !sql.is_empty() {
                    self.send(&sql).await?;
                }
                Ok(())
            }
        }
    }

    /// The outcome `o` of table `r` copied into `stage` and applied (inside the savepoint).
    async fn apply_staged(
        &mut self,
        r: &Relation,
        stage: &str,
        o: &net::Outcome,
    ) -> Result<(), PgError> {
        let mut data = Vec::new();
        for key in &o.delete {
            copy_row(&mut data, "d", None, key);
        }
        for (mask, row) in &o.update {
            copy_row(&mut data, "u", Some(mask), row);
        }
        for row in &o.insert {
            copy_row(&mut data, "i", None, row);
        }
        let cols: Vec<String> = r.columns.iter().map(|c| ident(&c.name)).collect();
        self.copy(
            &format!(
                "COPY pg_temp.{} ({}, {}, {}) FROM STDIN",
                ident(stage),
                ident(net::STAGE_OP),
                ident(net::STAGE_MASK),
                cols.join(", ")
            ),
            data,
        )
        .await?;
        let (t, s) = (table(r), format!("pg_temp.{}", ident(stage)));
        let op = ident(net::STAGE_OP);
        let on_key = r
            .columns
            .iter()
            .filter(|c| c.key)
            .map(|c| format!("t.{0} = s.{0}", ident(&c.name)))
            .collect::<Vec<_>>()
            .join(" AND ");
        let mut sql = String::new();
        if !o.delete.is_empty() {
            sql.push_str(&format!(
                "DELETE FROM ONLY {t} t USING {s} s WHERE s.{op} = 'd' AND {on_key};\n"
            ));
        }
        let mut masks: Vec<&String> = o.update.iter().map(|(m, _)| m).collect();
        masks.sort();
        masks.dedup();
        for mask in masks {
            let set: Vec<String> = r
                .columns
                .iter()
                .zip(mask.chars())
                .filter(|(c, unknown)| !c.key && *unknown == '0')
                .map(|(c, _)| format!("{0} = s.{0}", ident(&c.name)))
                .collect();
            if set.is_empty() {
                continue;
            }
            sql.push_str(&format!(
                "UPDATE ONLY {t} t SET {} FROM {s} s WHERE s.{op} = 'u' AND s.{} = {} AND {on_key};\n",
                set.join(", "),
                ident(net::STAGE_MASK),
                literal(mask)
            ));
        }
        if !o.insert.is_empty() {
            sql.push_str(&format!(
                "INSERT INTO {t} ({0}) OVERRIDING SYSTEM VALUE SELECT {0} FROM {s} WHERE {op} = 'i';\n",
                cols.join(", ")
            ));
        }
        sql.push_str(&format!("RELEASE SAVEPOINT {SAVEPOINT}"));
        self.send(&sql).await
    }

    /// The staging table of `r` in this session, made (or emptied) for use.
    async fn stage(&mut self, r: &Relation) -> Result<String, PgError> {
        if let Some(st) = self.stages.get(&r.oid)
            && st.rel == *r
        {
            let name = st.name.clone();
            self.send(&format!("TRUNCATE pg_temp.{}", ident(&name)))
                .await?;
            return Ok(name);
        }
        self.made += 1;
        let name = format!("lifeboat stage {}", self.made);
        let cols: Vec<String> = r.columns.iter().map(|c| ident(&c.name)).collect();
        self.send(&format!(
            "CREATE TEMPORARY TABLE {} AS SELECT NULL::\"char\" AS {}, NULL::text AS {}, {} FROM ONLY {} WITH NO DATA",
            ident(&name),
            ident(net::STAGE_OP),
            ident(net::STAGE_MASK),
            cols.join(", "),
            table(r)
        ))
        .await?;
        if let Some(old) = self.stages.insert(
            r.oid,
            Stage {
                name: name.clone(),
                rel: r.clone(),
            },
        ) {
            self.drop_stage(&old.name).await?;
        }
        self.made_here.push(name.clone());
        Ok(name)
    }

    async fn drop_stage(&mut self, name: &str) -> Result<(), PgError> {
        self.made_here.retain(|n| n != name);
        self.send(&format!("DROP TABLE IF EXISTS pg_temp.{}", ident(name)))
            .await
    }

    /// Forget every staging table (after a schema change: types may have changed).
    async fn drop_stages(&mut self) -> Result<(), PgError> {
        for (_, st) in std::mem::take(&mut self.stages) {
            self.drop_stage(&st.name).await?;
        }
        Ok(())
    }

    /// A table's changes one by one, in order, as statements added to `sql` (sent when it
    /// is large, and before a `COPY`); runs of inserts as `COPY`.
    async fn apply_in_order(
        &mut self,
        r: &Relation,
        ops: &[Op],
        sql: &mut String,
    ) -> Result<(), PgError> {
        let mut i = 0;
        while i < ops.len() {
            let run = ops[i..]
                .iter()
                .take_while(
                    |op| matches!(op, Op::Ins { new, .. } if !new.iter().any(Value::is_unchanged)),
                )
                .count();
            if run >= COPY_MIN {
                if !sql.is_empty() {
                    self.send(sql).await?;
                    sql.clear();
                }
                let mut data = Vec::new();
                for op in &ops[i..i + run] {
                    if let Op::Ins { new, .. } = op {
                        copy_row(&mut data, "", None, new);
                    }
                }
                let cols: Vec<String> = r.columns.iter().map(|c| ident(&c.name)).collect();
                self.copy(
                    &format!("COPY {} ({}) FROM STDIN", table(r), cols.join(", ")),
                    data,
                )
                .await?;
                i += run;
                continue;
            }
            if let Some(stmt) = self.statement(&ops[i])? {
                sql.push_str(&stmt);
                sql.push_str(";\n");
                if sql.len() > PIECE {
                    self.send(sql).await?;
                    sql.clear();
                }
            }
            i += 1;
        }
        Ok(())
    }

    /// `COPY … FROM STDIN` of `data` (text format).
    async fn copy(&self, statement: &str, data: Vec<u8>) -> Result<(), PgError> {
        const WHAT: &str = "replay captured changes (COPY)";
        let sink = self
            .client
            .copy_in::<_, Bytes>(statement)
            .await
            .map_err(PgError::query(WHAT))?;
        let mut sink = std::pin::pin!(sink);
        let data = Bytes::from(data);
        let mut at = 0;
        while at < data.len() {
            let end = (at + PIECE).min(data.len());
            sink.send(data.slice(at..end))
                .await
                .map_err(PgError::query(WHAT))?;
            at = end;
        }
        sink.as_mut().finish().await.map_err(PgError::query(WHAT))?;
        Ok(())
    }

    /// Commit the open replay transaction with `last` as the position reached.
    pub async fn commit(
        &mut self,
        mut open: Pending,
        last: &Txn,
        txns: usize,
    ) -> Result<(), PgError> {
        if let Err(e) = self.apply_pending(&mut open).await {
            return Err(self.rolled_back(e).await);
        }
        let at = last
            .committed_at()
            .map_or("NULL".to_string(), |t| literal(&t.to_string()));
        open.sql.push_str(&format!(
            "UPDATE lifeboat_cdc.replayed SET end_lsn = {}, commit_time = {at};\nCOMMIT;",
            last.end
        ));
        if let Err(e) = self.send(&open.sql).await {
            return Err(self.rolled_back(e).await);
        }
        self.made_here.clear();
        self.position = last.end;
        self.applied_txns += txns as u64;
        self.applied_changes += open.changes as u64;
        Ok(())
    }

    /// Roll the open replay transaction back after `e`; `e`.
    async fn rolled_back(&mut self, e: PgError) -> PgError {
        self.rollback().await;
        e
    }

    /// Roll the open replay transaction back (after a failure, or a stop). Staging tables
    /// made in it are gone with it.
    pub async fn rollback(&mut self) {
        let _ = self.client.batch_execute("ROLLBACK").await;
        let made = std::mem::take(&mut self.made_here);
        self.stages.retain(|_, s| !made.contains(&s.name));
    }

    async fn send(&self, sql: &str) -> Result<(), PgError> {
        self.client
            .batch_execute(sql)
            .await
            .map_err(PgError::query("replay captured changes"))
    }

    /// The statement of one change; `None` for what changes no row.
    fn statement(&mut self, op: &Op) -> Result<Option<String>, PgError> {
        let rel = |rels: &HashMap<u32, Arc<Relation>>,
                   oid: u32|
         -> Result<Arc<Relation>, PgError> {
            rels.get(&oid).cloned().ok_or_else(|| {
                PgError::Io(format!(
                    "a change of table {oid} comes before its description: the captured stream is incomplete"
                ))
            })
        };
        Ok(match op {
            Op::Rel(r) => {
                self.rels.insert(r.oid, Arc::new(r.clone()));
                None
            }
            Op::Ins { rel: oid, new } => {
                let r = rel(&self.rels, *oid)?;
                let (cols, vals): (Vec<String>, Vec<String>) = r
                    .columns
                    .iter()
                    .zip(new)
                    .filter(|(_, v)| !v.is_unchanged())
                    .map(|(c, v)| (ident(&c.name), value(v)))
                    .unzip();
                // Identity columns `GENERATED ALWAYS` take the source's values too.
                Some(format!(
                    "INSERT INTO {} ({}) OVERRIDING SYSTEM VALUE VALUES ({})",
                    table(&r),
                    cols.join(", "),
                    vals.join(", ")
                ))
            }
            Op::Upd {
                rel: oid,
                old,
                key_only,
                new,
            } => {
                let r = rel(&self.rels, *oid)?;
                // Without `old` the key did not change: not set (an identity column
                // `GENERATED ALWAYS` may only be set to DEFAULT).
                let set: Vec<String> = r
                    .columns
                    .iter()
                    .zip(new)
                    .filter(|(c, v)| !(v.is_unchanged() || (old.is_none() && c.key)))
                    .map(|(c, v)| format!("{} = {}", ident(&c.name), value(v)))
                    .collect();
                if set.is_empty() {
                    return Ok(None);
                }
                let found = match old {
                    Some(old) => row_filter(&r, old, *key_only),
                    None => row_filter(&r, new, true),
                };
                Some(format!(
                    "UPDATE ONLY {} SET {} WHERE {found}",
                    table(&r),
                    set.join(", ")
                ))
            }
            Op::Del {
                rel: oid,
                old,
                key_only,
            } => {
                let r = rel(&self.rels, *oid)?;
                Some(format!(
                    "DELETE FROM ONLY {} WHERE {}",
                    table(&r),
                    row_filter(&r, old, *key_only)
                ))
            }
            Op::Trunc {
                rels,
                cascade,
                restart,
            } => {
                let names = rels
                    .iter()
                    .map(|oid| rel(&self.rels, *oid).map(|r| table(&r)))
                    .collect::<Result<Vec<_>, _>>()?;
                Some(format!(
                    "TRUNCATE {}{}{}",
                    names.join(", "),
                    if *restart { " RESTART IDENTITY" } else { "" },
                    if *cascade { " CASCADE" } else { "" }
                ))
            }
            Op::Msg { prefix, content } if prefix == DDL_PREFIX => {
                // The message holds the command's tag, the whole query it came in
                // (`current_query()`, which may hold more statements, rows changed among
                // them) and the search_path: the k-th message of one tag and query in a
                // transaction is the query's k-th statement of that tag, and only that is
                // replayed, with the caller's search_path.
                let ddl: Ddl = serde_json::from_str(content).unwrap_or_else(|_| Ddl {
                    tag: None,
                    query: content.clone(),
                    search_path: None,
                });
                let key = format!("{:?}\u{0}{}", ddl.tag, ddl.query);
                let k = self.ddl_seen.entry(key).or_insert(0);
                let statement = split_statements(&ddl.query)
                    .into_iter()
                    .filter(|s| match &ddl.tag {
                        Some(tag) => has_tag(s, tag),
                        None => is_ddl(s),
                    })
                    .nth(*k);
                *k += 1;
                let Some(statement) = statement else {
                    return Err(PgError::Io(format!(
                        "a captured schema change (`{}`) cannot be replayed on its own: it ran inside a function, a DO block or an extension script; take a new baseline after such a change",
                        ddl.tag.as_deref().unwrap_or("DDL")
                    )));
                };
                let statement = without_concurrently(&statement);
                // The path as a literal: it is the source's text, never SQL to run.
                Some(match &ddl.search_path {
                    Some(path) => format!(
                        "SELECT pg_catalog.set_config('search_path', {}, true);\n{statement};\nSET LOCAL search_path TO DEFAULT",
                        literal(path)
                    ),
                    None => statement,
                })
            }
            Op::Msg { prefix, content } if prefix == SEQ_PREFIX => {
                self.note_sequences(content);
                None
            }
            Op::Msg { .. } | Op::Parts { .. } => None,
        })
    }

    /// Note a sequence message's values (of a transaction replayed elsewhere: folded into
    /// the load).
    pub fn learn_sequences(&mut self, content: &str) {
        self.note_sequences(content);
    }

    fn note_sequences(&mut self, content: &str) {
        if let Ok(values) = serde_json::from_str::<Vec<(String, i64)>>(content) {
            self.sequences.extend(values);
        }
    }

    /// After the last batch: every sequence at least at its captured value and past the
    /// highest value of the column it feeds, so new rows never collide. Returns how many
    /// were set.
    pub async fn set_sequences(&mut self) -> Result<usize, PgError> {
        let owned = self
            .client
            .query(
                "SELECT format('%I.%I', sn.nspname, s.relname), format('%I.%I', tn.nspname, t.relname),
                        quote_ident(a.attname)
                 FROM pg_depend d
                 JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
                 JOIN pg_namespace sn ON sn.oid = s.relnamespace
                 JOIN pg_class t ON t.oid = d.refobjid
                 JOIN pg_namespace tn ON tn.oid = t.relnamespace
                 JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid
                 WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
                   AND d.deptype IN ('a', 'i')",
                &[],
            )
            .await
            .map_err(PgError::query("list the sequences"))?;
        let mut feeds: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
        for r in &owned {
            feeds
                .entry(r.get(0))
                .or_default()
                .push((r.get(1), r.get(2)));
        }
        let mut names: Vec<String> = feeds.keys().cloned().collect();
        names.extend(self.sequences.keys().cloned());
        names.sort();
        names.dedup();
        let mut set = 0;
        for seq in names {
            let mut candidates = vec![format!("(SELECT last_value FROM {seq})")];
            if let Some(v) = self.sequences.get(&seq) {
                candidates.push(v.to_string());
            }
            for (t, col) in feeds.get(&seq).into_iter().flatten() {
                candidates.push(format!("(SELECT max({col})::bigint FROM {t})"));
            }
            let sql = format!(
                "SELECT setval({}, v) FROM (SELECT greatest({}) AS v) x WHERE v IS NOT NULL AND v >= 1",
                literal(&seq),
                candidates.join(", ")
            );
            match self.client.batch_execute(&sql).await {
                Ok(()) => set += 1,
                // A sequence dropped meanwhile, or a column that is not a number.
                Err(e) => log::debug!("sequence {seq}: {e}"),
            }
        }
        Ok(set)
    }
}

/// The statements of a query text, split at `;` outside quotes, dollar quotes and comments.
pub fn split_statements(sql: &str) -> Vec<String> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let (mut start, mut i) = (0, 0);
    while i < b.len() {
        match b[i] {
            b'\'' | b'"' => {
                let q = b[i];
                // `E'…'`: a backslash escapes the next character.
                let escapes = q == b'\''
                    && i > 0
                    && (b[i - 1] == b'E' || b[i - 1] == b'e')
                    && (i < 2 || !(b[i - 2].is_ascii_alphanumeric() || b[i - 2] == b'_'));
                i += 1;
                while i < b.len() {
                    if escapes && b[i] == b'\\' {
                        i += 2;
                        continue;
                    }
                    if b[i] == q {
                        if b.get(i + 1) == Some(&q) {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                    i += 1;
                }
                i += 1;
            }
            b'$' => {
                // `$tag$ … $tag$`
                let tag_end = b[i + 1..]
                    .iter()
                    .position(|c| !(c.is_ascii_alphanumeric() || *c == b'_'))
                    .map(|p| i + 1 + p);
                if let Some(e) = tag_end
                    && b[e] == b'$'
                {
                    let tag = &sql[i..=e];
                    match sql[e + 1..].find(tag) {
                        Some(close) => i = e + 1 + close + tag.len() - 1,
                        None => i = b.len(),
                    }
                }
            }
            b';' => {
                let stmt = sql[start..i].trim();
                if !stmt.is_empty() {
                    out.push(stmt.to_string());
                }
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    let rest = sql[start.min(sql.len())..].trim();
    if !rest.is_empty() {
        out.push(rest.to_string());
    }
    out
}

/// A DDL message as the event trigger sends it.
#[derive(Deserialize)]
struct Ddl {
    tag: Option<String>,
    query: String,
    search_path: Option<String>,
}

/// The leading words of a statement, upper case, past comments, without the modifiers a
/// command's tag leaves out (`OR REPLACE`, `UNIQUE`, `UNLOGGED`, `TEMP`, `IF NOT EXISTS`…).
fn leading_words(statement: &str) -> Vec<String> {
    let mut rest = statement.trim_start();
    loop {
        if let Some(r) = rest.strip_prefix("--") {
            rest = r
                .split_once('\n')
                .map_or("", |(_, after)| after)
                .trim_start();
        } else if let Some(r) = rest.strip_prefix("/*") {
            rest = r
                .split_once("*/")
                .map_or("", |(_, after)| after)
                .trim_start();
        } else {
            break;
        }
    }
    rest.split_whitespace()
        .take(8)
        .map(|w| {
            w.trim_matches(|c: char| !c.is_ascii_alphabetic())
                .to_ascii_uppercase()
        })
        .filter(|w| {
            !matches!(
                w.as_str(),
                "OR" | "REPLACE"
                    | "UNIQUE"
                    | "UNLOGGED"
                    | "TEMP"
                    | "TEMPORARY"
                    | "GLOBAL"
                    | "LOCAL"
                    | "CONCURRENTLY"
                    | "RECURSIVE"
                    | "TRUSTED"
                    | "PROCEDURAL"
            )
        })
        .collect()
}

/// Whether `statement` is a command of `tag` (`ALTER TABLE`, `CREATE INDEX`).
fn has_tag(statement: &str, tag: &str) -> bool {
    let words = leading_words(statement);
    let want: Vec<&str> = tag.split_whitespace().collect();
    words.len() >= want.len() && words.iter().zip(&want).all(|(a, b)| a == b)
}

/// `CREATE INDEX CONCURRENTLY` and `DROP INDEX CONCURRENTLY` cannot run in the replay's
/// transaction: the same without `CONCURRENTLY` (nobody else uses the restored database).
fn without_concurrently(statement: &str) -> String {
    // Among the leading words only (past comments, any whitespace), never inside a
    // literal further on.
    let words = leading_words(statement);
    if !matches!(
        words.first().map(String::as_str),
        Some("CREATE" | "DROP" | "REINDEX")
    ) {
        return statement.to_string();
    }
    let mut seen = 0;
    let mut out = String::with_capacity(statement.len());
    let mut rest = statement;
    while let Some(start) = rest.find(|c: char| !c.is_whitespace()) {
        let (space, tail) = rest.split_at(start);
        let end = tail.find(char::is_whitespace).unwrap_or(tail.len());
        let (word, after) = tail.split_at(end);
        seen += 1;
        if seen <= 10 && word.eq_ignore_ascii_case("CONCURRENTLY") {
            out.push_str(space);
            out.push_str(after.trim_start());
            return out;
        }
        out.push_str(space);
        out.push_str(word);
        rest = after;
    }
    out.push_str(rest);
    statement.to_string()
}

/// Whether a statement is one the DDL event trigger fires for (a message without its tag).
fn is_ddl(statement: &str) -> bool {
    leading_words(statement).first().is_some_and(|w| {
        matches!(
            w.as_str(),
            "CREATE"
                | "ALTER"
                | "DROP"
                | "COMMENT"
                | "GRANT"
                | "REVOKE"
                | "SECURITY"
                | "IMPORT"
                | "REFRESH"
        )
    })
}

fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn table(r: &Relation) -> String {
    format!("{}.{}", ident(&r.schema), ident(&r.name))
}

fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn value(v: &Value) -> String {
    match v {
        Value::Text(t) => literal(t),
        Value::Marker(_) => "NULL".into(),
    }
}

/// One row of `COPY` text format: `op` and `mask` first when `op` is not empty (a staging
/// table's row), then the values; unknown values as NULL.
fn copy_row(out: &mut Vec<u8>, op: &str, mask: Option<&String>, values: &[Value]) {
    if !op.is_empty() {
        out.extend_from_slice(op.as_bytes());
        out.push(b'\t');
        match mask {
            Some(m) => out.extend_from_slice(m.as_bytes()),
            None => out.extend_from_slice(b"\\N"),
        }
        out.push(b'\t');
    }
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push(b'\t');
        }
        super::fold::escape(out, v);
    }
    out.push(b'\n');
}

/// The WHERE that finds the row `old` describes: by the replica identity's key columns
/// (`key_only`: `old` holds only them, the others null), or — full identity — by every
/// sent column compared as text, one row of equal ones (`ctid`), as the source may hold
/// duplicates.
/// Types without an equality operator (json, xml, point, line, lseg, path, polygon, circle,
/// box compares areas): compared as text.
const NO_EQUALITY: [u32; 9] = [114, 142, 600, 628, 601, 602, 604, 718, 603];

fn row_filter(r: &Relation, old: &[Value], key_only: bool) -> String {
    let keyed = r.identity != 'f' && r.columns.iter().any(|c| c.key);
    if keyed {
        let parts: Vec<String> = r
            .columns
            .iter()
            .zip(old)
            .filter(|(c, _)| c.key)
            .map(|(c, v)| match v {
                Value::Text(t) => format!("{} = {}", ident(&c.name), literal(t)),
                Value::Marker(_) => format!("{} IS NULL", ident(&c.name)),
            })
            .collect();
        return parts.join(" AND ");
    }
    let _ = key_only;
    let parts: Vec<String> = r
        .columns
        .iter()
        .zip(old)
        .filter(|(_, v)| !v.is_unchanged())
        .map(|(c, v)| match v {
            // Typed equality (`char(n)`, times, floats compare as values); as text only
            // for types without `=`, printed alike on both sessions ([`SETTINGS`]).
            Value::Text(t) if NO_EQUALITY.contains(&c.type_oid) => {
                format!("{}::text = {}", ident(&c.name), literal(t))
            }
            Value::Text(t) => format!("{} = {}", ident(&c.name), literal(t)),
            Value::Marker(_) => format!("{} IS NULL", ident(&c.name)),
        })
        .collect();
    format!(
        "ctid = (SELECT ctid FROM ONLY {} WHERE {} LIMIT 1)",
        table(r),
        if parts.is_empty() {
            "true".to_string()
        } else {
            parts.join(" AND ")
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cdc::pgoutput::Column;

    fn rel(identity: char) -> Relation {
        Relation {
            oid: 1,
            schema: "public".into(),
            name: "o'rders".into(),
            identity,
            columns: vec![
                Column {
                    name: "id".into(),
                    key: identity != 'f',
                    type_oid: 23,
                },
                Column {
                    name: "note".into(),
                    key: false,
                    type_oid: 25,
                },
            ],
        }
    }

    #[test]
    fn a_query_is_split_into_its_statements_and_its_ddl_found() {
        let sql = "ALTER TABLE a ADD COLUMN b text DEFAULT ';'; UPDATE a SET b = 'x;y' -- c;\n\
                   WHERE true; CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $q$ SELECT 1; $q$; \
                   /* ; */ DROP TABLE \"odd;name\"";
        let parts = split_statements(sql);
        assert_eq!(parts.len(), 4, "{parts:?}");
        let ddl: Vec<&String> = parts.iter().filter(|s| is_ddl(s)).collect();
        assert_eq!(ddl.len(), 3);
        assert!(ddl[1].starts_with("CREATE FUNCTION") && ddl[1].ends_with("$q$"));
        assert!(ddl[2].ends_with("\"odd;name\""));
    }

    #[test]
    fn ddl_is_matched_by_its_tag_and_replays_without_concurrently() {
        assert!(has_tag(
            "CREATE UNIQUE INDEX CONCURRENTLY i ON t (a)",
            "CREATE INDEX"
        ));
        assert!(has_tag(
            "create or replace function f() ...",
            "CREATE FUNCTION"
        ));
        assert!(has_tag("/* m */ ALTER TABLE t ADD c int", "ALTER TABLE"));
        assert!(!has_tag("ALTER ROLE app LOGIN", "ALTER TABLE"));
        assert_eq!(
            without_concurrently("CREATE INDEX CONCURRENTLY i ON t (a)"),
            "CREATE INDEX i ON t (a)"
        );
        assert_eq!(
            without_concurrently("INSERT INTO t VALUES (' CONCURRENTLY')"),
            "INSERT INTO t VALUES (' CONCURRENTLY')"
        );
        assert_eq!(
            without_concurrently("/* m */ CREATE INDEX\nCONCURRENTLY i ON t (a)"),
            "/* m */ CREATE INDEX\ni ON t (a)"
        );
        assert_eq!(
            without_concurrently("CREATE INDEX i ON t ((' CONCURRENTLY'))"),
            "CREATE INDEX i ON t ((' CONCURRENTLY'))"
        );
        // An escaped quote in an E-string ends no literal.
        assert_eq!(
            split_statements("SELECT E'it\\'s; fine'; ALTER TABLE t ADD c int").len(),
            2
        );
    }

    #[test]
    fn rows_are_found_by_key_or_whole_and_quoted() {
        let t = |s: &str| Value::Text(s.into());
        assert_eq!(
            row_filter(&rel('d'), &[t("7"), Value::NULL], true),
            "\"id\" = '7'"
        );
        assert_eq!(
            row_filter(&rel('f'), &[t("7"), t("it's")], false),
            "ctid = (SELECT ctid FROM ONLY \"public\".\"o'rders\" WHERE \"id\" = '7' AND \"note\" = 'it''s' LIMIT 1)"
        );
        // An unchanged TOAST value is never compared.
        assert!(!row_filter(&rel('f'), &[t("7"), Value::UNCHANGED], false).contains("note"));
    }
}
