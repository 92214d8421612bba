//! The database side of a logical restore: looking at the restore target (does the
//! database exist, is it empty, does a table exist), creating it, running `pg_restore` on a
//! stream, choosing the archive entries of one table, and counting rows afterwards.
//!
//! It never drops a database. Overwriting is `pg_restore --clean --if-exists` inside one
//! transaction, and the caller takes an emergency backup first.

use std::process::{Child, Stdio};

use lifeboat_core::manifest::TableRecord;

use crate::{PgError, PgTools, Target, quote_ident};

/// What the restore target looks like now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetState {
    pub exists: bool,
    /// User tables (outside the system schemas).
    pub tables: u64,
}

/// Look at the target database; connects to `postgres` (then `template1`) to see whether
/// it exists.
pub async fn inspect(target: &Target) -> Result<TargetState, PgError> {
    let maintenance = maintenance_client(target).await?;
    let exists = maintenance
        .query_opt(
            "SELECT 1 FROM pg_database WHERE datname = $1",
            &[&target.database()],
        )
        .await
        .map_err(PgError::query("look up database"))?
        .is_some();
    if !exists {
        return Ok(TargetState { exists, tables: 0 });
    }
    let client = target.connect().await?;
    let row = client
        .query_one(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
               AND n.nspname NOT LIKE 'pg\\_toast%'",
            &[],
        )
        .await
        .map_err(PgError::query("count tables"))?;
    Ok(TargetState {
        exists,
        tables: u64::try_from(row.get::<_, i64>(0)).unwrap_or(0),
    })
}

async fn maintenance_client(target: &Target) -> Result<tokio_postgres::Client, PgError> {
    match target.with_database("postgres").connect().await {
        Ok(c) => Ok(c),
        Err(first) => target
            .with_database("template1")
            .connect()
            .await
            .map_err(|_| first),
    }
}

pub async fn create_database(target: &Target) -> Result<(), PgError> {
    on_database(target, "CREATE DATABASE", "create").await
}

/// Drop a database (its sessions too): what a failed restore into a database it created
/// leaves behind. Sessions are ended first (`WITH (FORCE)` needs PostgreSQL 13).
pub async fn drop_database(target: &Target) -> Result<(), PgError> {
    let client = maintenance_client(target).await?;
    client
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = $1 AND pid <> pg_backend_pid()",
            &[&target.database()],
        )
        .await
        .map_err(PgError::query(format!(
            "end the sessions on database `{}`",
            target.database()
        )))?;
    on_database(target, "DROP DATABASE IF EXISTS", "drop").await
}

/// `{statement} <target's database>` on the maintenance database.
async fn on_database(target: &Target, statement: &str, doing: &str) -> Result<(), PgError> {
    let client = maintenance_client(target).await?;
    let name = target.database();
    client
        .batch_execute(&format!("{statement} {}", quote_ident(name)))
        .await
        .map_err(PgError::query(format!("{doing} database `{name}`")))
}

/// Rows of a table, or `None` if it does not exist.
pub async fn table_rows(target: &Target, table: &TableRecord) -> Result<Option<u64>, PgError> {
    let client = target.connect().await?;
    let exists = client
        .query_opt(
            "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = $1 AND c.relname = $2",
            &[&table.schema, &table.name],
        )
        .await
        .map_err(PgError::query("look up table"))?
        .is_some();
    if !exists {
        return Ok(None);
    }
    count(&client, table).await.map(Some)
}

/// Exact `count(*)` of one table.
pub(crate) async fn count(
    client: &tokio_postgres::Client,
    t: &TableRecord,
) -> Result<u64, PgError> {
    let sql = format!(
        "SELECT count(*) FROM {}.{}",
        quote_ident(&t.schema),
        quote_ident(&t.name)
    );
    let row = client
        .query_one(&sql, &[])
        .await
        .map_err(PgError::query(format!("count rows of `{}`", t.qualified())))?;
    Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
}

/// One table's expected and restored row counts.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RowCheck {
    pub table: String,
    pub expected: u64,
    /// `None`: the table is missing after restore.
    pub restored: Option<u64>,
}

impl RowCheck {
    pub fn ok(&self) -> bool {
        self.restored == Some(self.expected)
    }
}

/// Count `tables` in the restored database and compare with the manifest.
pub async fn verify_rows(
    target: &Target,
    tables: &[TableRecord],
) -> Result<Vec<RowCheck>, PgError> {
    // The restore is done and the machine is free: count on one session per core, the
    // largest tables first so the sessions finish together.
    let sessions = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 4)
        .min(tables.len().max(1));
    let mut order: Vec<usize> = (0..tables.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(tables[i].rows));
    let mut shares: Vec<Vec<usize>> = vec![Vec::new(); sessions];
    let mut load = vec![0u64; sessions];
    for i in order {
        let least = (0..sessions).min_by_key(|&s| load[s]).unwrap_or(0);
        load[least] += tables[i].rows.max(1);
        shares[least].push(i);
    }
    let mut tasks = tokio::task::JoinSet::new();
    for share in shares {
        let (target, mine): (Target, Vec<(usize, TableRecord)>) = (
            target.clone(),
            share.into_iter().map(|i| (i, tables[i].clone())).collect(),
        );
        tasks.spawn(async move {
            let client = target.connect().await?;
            let mut counted = Vec::new();
            for (i, t) in mine {
                let restored = match count(&client, &t).await {
                    Ok(n) => Some(n),
                    // undefined_table: the table is missing after the restore.
                    Err(PgError::Query { code: Some(c), .. }) if c == "42P01" => None,
                    Err(e) => return Err(e),
                };
                counted.push((i, restored));
            }
            Ok::<_, PgError>(counted)
        });
    }
    let mut restored = vec![None; tables.len()];
    while let Some(joined) = tasks.join_next().await {
        let counted = joined.map_err(|e| PgError::Io(format!("row count task failed: {e}")))??;
        for (i, n) in counted {
            restored[i] = n;
        }
    }
    Ok(tables
        .iter()
        .zip(restored)
        .map(|(t, restored)| RowCheck {
            table: t.qualified(),
            expected: t.rows,
            restored,
        })
        .collect())
}

/// How `pg_restore` runs.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// Drop the archive's objects before recreating them (over an existing database).
    pub clean: bool,
    /// Keep the archive's owners and privileges (roles must exist on the target).
    pub keep_owners: bool,
    /// Parallel jobs; > 1 needs `input` to be a file.
    pub jobs: u32,
    /// A `-L` list selecting entries (one table).
    pub list_file: Option<std::path::PathBuf>,
    /// Read the archive from this file instead of stdin.
    pub input: Option<std::path::PathBuf>,
    /// Restore one section only: `pre-data`, `data` or `post-data`.
    pub section: Option<&'static str>,
}

/// The `application_name` of lifeboat's `pg_restore` sessions.
pub const RESTORE_APPLICATION: &str = "lifeboat-restore";

/// End lifeboat's `pg_restore` sessions on the target's database, as a stopped restore must:
/// the server rolls back their transaction at once, whatever `pg_restore` does next. Returns
/// how many there were.
pub async fn end_restore_sessions(target: &Target) -> Result<usize, PgError> {
    let client = maintenance_client(target).await?;
    let ended = client
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = $1 AND application_name = $2 AND pid <> pg_backend_pid()",
            &[&target.database(), &RESTORE_APPLICATION],
        )
        .await
        .map_err(PgError::query(format!(
            "end the restore's sessions on database `{}`",
            target.database()
        )))?;
    Ok(ended.len())
}

/// Start `pg_restore` into `target`; write the archive to its stdin unless `opts.input`.
pub fn spawn_restore(
    tools: &PgTools,
    target: &Target,
    opts: &RestoreOptions,
) -> Result<Child, PgError> {
    let mut cmd = target.command(&tools.path("pg_restore"));
    // Its sessions are recognisable: a stopped restore ends them (`end_restore_sessions`).
    cmd.env("PGAPPNAME", RESTORE_APPLICATION);
    cmd.args(["--no-password", "--exit-on-error"])
        .arg(format!("--dbname={}", target.database()));
    if opts.jobs > 1 {
        cmd.arg(format!("--jobs={}", opts.jobs));
    } else {
        // One transaction: a failed restore leaves the target as it was.
        cmd.arg("--single-transaction");
    }
    if opts.clean {
        cmd.args(["--clean", "--if-exists"]);
    }
    if !opts.keep_owners {
        cmd.args(["--no-owner", "--no-privileges"]);
    }
    if let Some(section) = opts.section {
        cmd.arg(format!("--section={section}"));
    }
    if let Some(list) = &opts.list_file {
        cmd.arg(format!("--use-list={}", list.display()));
    }
    if let Some(input) = &opts.input {
        cmd.arg(input);
        cmd.stdin(Stdio::null());
    } else {
        cmd.stdin(Stdio::piped());
    }
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    cmd.spawn()
        .map_err(|e| PgError::Io(format!("cannot start pg_restore: {e}")))
}

/// Wait for `pg_restore` and turn a failure into an error with its message.
pub fn wait_restore(child: Child) -> Result<(), PgError> {
    let out = child
        .wait_with_output()
        .map_err(|e| PgError::Io(format!("pg_restore: {e}")))?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    // pg_restore echoes the failing statement after the error: the error lines say why.
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("error") || l.contains("ERROR") || l.contains("FATAL"))
        .collect();
    let lines: Vec<&str> = if errors.is_empty() {
        stderr.lines().filter(|l| !l.trim().is_empty()).collect()
    } else {
        errors
    };
    let tail = lines[lines.len().saturating_sub(3)..].join(" / ");
    Err(PgError::Io(format!("pg_restore failed: {tail}")))
}

/// Keep the archive entries (`pg_restore -l` lines) that make up one table: its
/// definition and data, its constraints, defaults, triggers, policies and rules (tagged
/// `<table> <name>`), its indexes and owned sequences (by the names in the manifest).
pub fn table_list(toc: &str, table: &TableRecord) -> String {
    let mut out = String::new();
    for line in toc.lines() {
        if line.starts_with(';') || line.trim().is_empty() {
            continue;
        }
        let Some((_, rest)) = line.split_once(' ') else {
            continue;
        };
        // "<catalog oid> <oid> TYPE SCHEMA TAG OWNER": TYPE may have spaces.
        let mut words = rest.split_whitespace().skip(2).peekable();
        let mut kind = String::new();
        while let Some(w) = words.peek() {
            if w.chars().all(|c| c.is_ascii_uppercase()) {
                if !kind.is_empty() {
                    kind.push(' ');
                }
                kind.push_str(w);
                words.next();
            } else {
                break;
            }
        }
        let schema = words.next().unwrap_or("");
        let rest: Vec<&str> = words.collect();
        // The owner is the last word; the tag is what stands between.
        let tag = rest[..rest.len().saturating_sub(1)].join(" ");
        if schema != table.schema {
            continue;
        }
        let keep = match kind.as_str() {
            "TABLE" | "TABLE DATA" => tag == table.name,
            "CONSTRAINT" | "FK CONSTRAINT" | "DEFAULT" | "TRIGGER" | "POLICY" | "RULE"
            | "ROW SECURITY" => tag == table.name || tag.starts_with(&format!("{} ", table.name)),
            "INDEX" => table.indexes.contains(&tag),
            "SEQUENCE" | "SEQUENCE OWNED BY" | "SEQUENCE SET" => table.sequences.contains(&tag),
            _ => false,
        };
        if keep {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOC: &str = ";
; Archive created at 2026-11-22 03:00:00 UTC
;
215; 1259 16390 TABLE public users postgres
216; 1259 16389 SEQUENCE public users_id_seq postgres
3340; 0 0 SEQUENCE OWNED BY public users_id_seq postgres
217; 1259 16400 TABLE public images postgres
3180; 2604 16393 DEFAULT public users id postgres
3330; 0 16390 TABLE DATA public users postgres
3331; 0 16400 TABLE DATA public images postgres
3341; 0 0 SEQUENCE SET public users_id_seq postgres
3185; 2606 16395 CONSTRAINT public users users_pkey postgres
3187; 1259 16410 INDEX public users_email_idx postgres
3188; 1259 16411 INDEX public images_user_idx postgres
3189; 2606 16412 FK CONSTRAINT public images images_user_id_fkey postgres
";

    #[test]
    fn picks_one_table_and_what_belongs_to_it() {
        let t = TableRecord {
            schema: "public".into(),
            name: "users".into(),
            rows: 3,
            indexes: vec!["users_email_idx".into(), "users_pkey".into()],
            sequences: vec!["users_id_seq".into()],
        };
        let list = table_list(TOC, &t);
        let ids: Vec<&str> = list.lines().map(|l| l.split(';').next().unwrap()).collect();
        assert_eq!(
            ids,
            ["215", "216", "3340", "3180", "3330", "3341", "3185", "3187"]
        );
    }
}
