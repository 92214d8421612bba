//! The logical backup's database side: one REPEATABLE READ session exports its snapshot and
//! `pg_dump --snapshot` dumps exactly that snapshot. Each table's rows are counted in the
//! dump's data as it streams past (a parent in inheritance, whose `count(*)` holds its
//! children's rows, is counted inside the snapshot beside the dump), so the manifest's
//! counts match what the restore counts.
//!
//! `-Fc -Z0`: the repository compresses, and an uncompressed dump deduplicates from one day
//! to the next. Roles come from `pg_dumpall --globals-only`, falling back to
//! `--no-role-passwords` where the service forbids reading passwords.

use lifeboat_core::manifest::TableRecord;
use tokio_postgres::Client;

use crate::{ChildStream, PgError, PgTools, Target};

/// An open exported-snapshot transaction. Keep it alive until the dump has ended.
pub struct SnapshotSession {
    client: Client,
    pub snapshot: String,
    pub lsn: String,
    pub snapshot_time: String,
    pub server_version: String,
    pub server_version_num: u32,
    pub database_size: u64,
    pub tables: Vec<TableRecord>,
    /// Per table: counted by a query beside the dump, not in it (see [`Self::count_beside`]).
    query: Vec<bool>,
}

/// The newest pg_dump whose archives [`crate::archive`] reads (archive version 1.16).
const DUMP_READ_UP_TO: u32 = 18;

impl SnapshotSession {
    pub async fn open(target: &Target) -> Result<Self, PgError> {
        Self::begin(target, None).await
    }

    /// A session in a snapshot another session exported (a replication slot's, for a cdc
    /// baseline), at `lsn`: its consistent point.
    pub async fn import(target: &Target, snapshot: &str, lsn: &str) -> Result<Self, PgError> {
        Self::begin(target, Some((snapshot, lsn))).await
    }

    async fn begin(target: &Target, imported: Option<(&str, &str)>) -> Result<Self, PgError> {
        let client = target.connect().await?;
        client
            // Counting runs beside pg_dump: parallel workers would only take CPU from it.
            .batch_execute(
                "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;
                 SET LOCAL max_parallel_workers_per_gather = 0",
            )
            .await
            .map_err(PgError::query("begin snapshot transaction"))?;
        if let Some((snapshot, _)) = imported {
            client
                .batch_execute(&format!(
                    "SET TRANSACTION SNAPSHOT '{}'",
                    snapshot.replace('\'', "''")
                ))
                .await
                .map_err(PgError::query("import the slot's snapshot"))?;
        }
        let export = if imported.is_some() {
            "NULL::text"
        } else {
            "pg_export_snapshot()"
        };
        let row = client
            .query_one(
                &format!(
                    "SELECT {export},
                        (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()
                              ELSE pg_current_wal_lsn() END)::text,
                        to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),
                        current_setting('server_version'),
                        current_setting('server_version_num')::int,
                        pg_database_size(current_database())"
                ),
                &[],
            )
            .await
            .map_err(PgError::query("export snapshot"))?;
        let server_version_num: i32 = row.get(4);
        let database_size: i64 = row.get(5);
        let tables = client
            .query(
                "SELECT n.nspname, c.relname,
                        coalesce((SELECT array_agg(i.relname::text ORDER BY i.relname)
                                  FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
                                  WHERE x.indrelid = c.oid), '{}'),
                        coalesce((SELECT array_agg(s.relname::text ORDER BY s.relname)
                                  FROM pg_depend d JOIN pg_class s ON s.oid = d.objid
                                  WHERE d.refobjid = c.oid AND d.classid = 'pg_class'::regclass
                                    AND s.relkind = 'S' AND d.deptype IN ('a', 'i')), '{}'),
                        EXISTS (SELECT 1 FROM pg_inherits h WHERE h.inhparent = c.oid)
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE c.relkind = 'r' AND c.relpersistence <> 't'
                   AND n.nspname NOT IN ('pg_catalog', 'information_schema')
                   AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
                   AND NOT EXISTS (SELECT 1 FROM pg_depend e
                                   WHERE e.objid = c.oid AND e.classid = 'pg_class'::regclass
                                     AND e.deptype = 'e')
                 ORDER BY 1, 2",
                &[],
            )
            .await
            .map_err(PgError::query("list tables"))?;
        let server_version_num = u32::try_from(server_version_num).unwrap_or(0);
        // A parent in classic inheritance: `count(*)` (as the restore verifies) counts its
        // children's rows too, the dump's COPY only its own. An archive lifeboat cannot
        // read: no counts in it.
        let unread = server_version_num / 10_000 > DUMP_READ_UP_TO;
        let query = tables
            .iter()
            .map(|r| unread || r.get::<_, bool>(4))
            .collect();
        let tables = tables
            .into_iter()
            .map(|r| TableRecord {
                schema: r.get(0),
                name: r.get(1),
                rows: 0,
                indexes: r.get(2),
                sequences: r.get(3),
            })
            .collect();
        let (snapshot, lsn) = match imported {
            Some((name, lsn)) => (name.to_string(), lsn.to_string()),
            None => (row.get(0), row.get(1)),
        };
        Ok(Self {
            client,
            snapshot,
            lsn,
            snapshot_time: row.get(2),
            server_version: row.get(3),
            server_version_num,
            database_size: u64::try_from(database_size).unwrap_or(0),
            tables,
            query,
        })
    }

    pub fn major(&self) -> u32 {
        self.server_version_num / 10_000
    }

    /// Count, inside the exported snapshot, the rows of the tables the dump's data cannot
    /// tell (parents in inheritance; every table of an archive lifeboat does not read):
    /// while the dump runs.
    pub async fn count_beside(&mut self) -> Result<(), PgError> {
        for (t, query) in self.tables.iter_mut().zip(&self.query) {
            if *query {
                t.rows = crate::restore::count(&self.client, t).await?;
            }
        }
        Ok(())
    }

    /// Every table's rows, once the dump has ended: counted beside it, or in its data
    /// (`counted`, by schema and name), else by a query inside the exported snapshot (a
    /// table whose data the dump left out, or whose data block did not end as expected).
    pub async fn rows(
        &mut self,
        counted: &std::collections::HashMap<(String, String), u64>,
    ) -> Result<Vec<TableRecord>, PgError> {
        let mut after = 0;
        for (t, query) in self.tables.iter_mut().zip(&self.query) {
            if *query {
                continue;
            }
            t.rows = match counted.get(&(t.schema.clone(), t.name.clone())) {
                Some(rows) => *rows,
                None => {
                    after += 1;
                    crate::restore::count(&self.client, t).await?
                }
            };
        }
        let beside = self.query.iter().filter(|q| **q).count();
        log::debug!(
            "rows of {} tables counted in the dump, {} by a query",
            self.tables.len() - beside - after,
            beside + after
        );
        Ok(self.tables.clone())
    }

    /// End the transaction (the snapshot is no longer needed).
    pub async fn close(self) {
        let _ = self.client.batch_execute("COMMIT").await;
    }
}

/// Start `pg_dump` of the exported snapshot, custom format, uncompressed, to a stream.
pub fn spawn_dump(
    tools: &PgTools,
    target: &Target,
    snapshot: &str,
    extra: &[&str],
) -> Result<ChildStream, PgError> {
    let mut cmd = target.command(&tools.path("pg_dump"));
    cmd.args(["--format=custom", "--compress=0", "--no-password"])
        .arg(format!("--snapshot={snapshot}"))
        .args(extra);
    ChildStream::spawn("pg_dump", cmd).map_err(|e| PgError::Io(e.to_string()))
}

/// Roles and tablespaces. Managed services often forbid reading role passwords:
/// retry with `--no-role-passwords`. Returns the SQL and whether passwords were left out.
pub fn dump_globals(tools: &PgTools, target: &Target) -> Result<(Vec<u8>, bool), PgError> {
    let run = |extra: &[&str]| -> Result<Vec<u8>, String> {
        let out = target
            .command(&tools.path("pg_dumpall"))
            .args(["--globals-only", "--no-password"])
            .arg(format!("--database={}", target.database()))
            .args(extra)
            .output()
            .map_err(|e| format!("cannot start pg_dumpall: {e}"))?;
        if out.status.success() {
            Ok(out.stdout)
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    };
    match run(&[]) {
        Ok(sql) => Ok((sql, false)),
        Err(first) => match run(&["--no-role-passwords"]) {
            Ok(sql) => {
                log::warn!(
                    "role passwords could not be read ({first}); globals saved without them"
                );
                Ok((sql, true))
            }
            Err(e) => Err(PgError::Io(format!(
                "pg_dumpall --globals-only failed: {e}"
            ))),
        },
    }
}
