//! Integrity checks of a restored database, run by drills: `pg_amcheck` on every B-tree
//! index, every foreign key and CHECK constraint re-validated against the data, no invalid
//! indexes, and the first value of an SQL query for `[[checks]]` rules.
//!
//! A restore that "worked" can still hold broken data: constraints are not re-checked by
//! `pg_restore` for rows loaded with COPY, and a corrupt index answers queries wrongly.

use std::process::Stdio;

use tokio_postgres::{Client, SimpleQueryMessage};

use crate::{PgError, PgTools, Target, quote_ident};

/// One finding: a named check and whether it passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// `amcheck`, `constraints` or `indexes`.
    pub kind: &'static str,
    pub name: String,
    pub passed: bool,
    pub detail: String,
}

/// `pg_amcheck` on every B-tree index of the database (installing the `amcheck` extension
/// when missing), with `jobs` connections.
pub async fn amcheck(tools: &PgTools, target: &Target, jobs: u32) -> Result<Finding, PgError> {
    let client = target.connect().await?;
    let indexes: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
             JOIN pg_am a ON a.oid = c.relam WHERE a.amname = 'btree'",
            &[],
        )
        .await
        .map_err(PgError::query("count indexes"))?
        .get(0);
    drop(client);
    let mut cmd = tokio::process::Command::from(target.command(&tools.path("pg_amcheck")));
    cmd.args([
        "--no-password",
        "--install-missing",
        "--index=*.*",
        &format!("--jobs={}", jobs.max(1)),
        target.database(),
    ])
    .stdin(Stdio::null())
    .kill_on_drop(true);
    let out = cmd
        .output()
        .await
        .map_err(|e| PgError::Io(format!("cannot run pg_amcheck: {e}")))?;
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = lines[lines.len().saturating_sub(4)..].join(" / ");
    Ok(Finding {
        kind: "amcheck",
        name: "pg_amcheck: B-tree indexes".into(),
        passed: out.status.success(),
        detail: if out.status.success() {
            format!("{indexes} B-tree indexes consistent")
        } else {
            format!("pg_amcheck failed ({}): {tail}", out.status)
        },
    })
}

/// Every foreign key and CHECK constraint of the user's schemas, re-checked against the
/// rows (one finding each), and one finding for invalid indexes.
pub async fn constraints(target: &Target) -> Result<Vec<Finding>, PgError> {
    let client = target.connect().await?;
    let mut findings = Vec::new();
    for fk in foreign_keys(&client).await? {
        let sql = fk.violations_sql();
        let bad = count(&client, &sql, &fk.name).await?;
        findings.push(Finding {
            kind: "constraints",
            name: format!("foreign key {} on {}", fk.name, fk.table),
            passed: bad == 0,
            detail: if bad == 0 {
                format!("every row of {} has its {} row", fk.table, fk.parent)
            } else {
                format!("{bad} row(s) of {} point to no {} row", fk.table, fk.parent)
            },
        });
    }
    let checks = client
        .query(
            "SELECT c.conname, c.conrelid::regclass::text, pg_get_constraintdef(c.oid)
             FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
             WHERE c.contype = 'c' AND c.conrelid <> 0
               AND n.nspname NOT IN ('pg_catalog', 'information_schema')
             ORDER BY 2, 1",
            &[],
        )
        .await
        .map_err(PgError::query("list CHECK constraints"))?;
    for row in checks {
        let (name, table, def): (String, String, String) = (row.get(0), row.get(1), row.get(2));
        let Some(expr) = check_expression(&def) else {
            continue;
        };
        let sql = format!("SELECT count(*) FROM {table} WHERE NOT ({expr})");
        let bad = count(&client, &sql, &name).await?;
        findings.push(Finding {
            kind: "constraints",
            name: format!("check {name} on {table}"),
            passed: bad == 0,
            detail: if bad == 0 {
                format!("every row satisfies {def}")
            } else {
                format!("{bad} row(s) violate {def}")
            },
        });
    }
    let invalid: Vec<String> = client
        .query(
            "SELECT indexrelid::regclass::text FROM pg_index
             WHERE NOT indisvalid OR NOT indisready ORDER BY 1",
            &[],
        )
        .await
        .map_err(PgError::query("list invalid indexes"))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    findings.push(Finding {
        kind: "indexes",
        name: "no invalid indexes".into(),
        passed: invalid.is_empty(),
        detail: if invalid.is_empty() {
            "every index is valid and ready".into()
        } else {
            format!("invalid: {}", invalid.join(", "))
        },
    });
    Ok(findings)
}

/// The first column of the first row of `sql` as text (`None`: NULL or no row).
pub async fn first_value(target: &Target, sql: &str) -> Result<Option<String>, PgError> {
    let client = target.connect().await?;
    let messages = client
        .simple_query(sql)
        .await
        .map_err(PgError::query("run the check's SQL"))?;
    for m in messages {
        if let SimpleQueryMessage::Row(row) = m {
            return Ok(row.get(0).map(str::to_string));
        }
    }
    Ok(None)
}

async fn count(client: &Client, sql: &str, what: &str) -> Result<i64, PgError> {
    Ok(client
        .query_one(sql, &[])
        .await
        .map_err(PgError::query(format!("re-validate `{what}`")))?
        .get(0))
}

struct ForeignKey {
    name: String,
    table: String,
    parent: String,
    columns: Vec<String>,
    parent_columns: Vec<String>,
}

impl ForeignKey {
    /// Rows whose key is fully set (MATCH SIMPLE ignores rows with a NULL in it) and has
    /// no parent row.
    fn violations_sql(&self) -> String {
        let not_null: Vec<String> = self
            .columns
            .iter()
            .map(|c| format!("c.{c} IS NOT NULL"))
            .collect();
        let joined: Vec<String> = self
            .columns
            .iter()
            .zip(&self.parent_columns)
            .map(|(c, p)| format!("p.{p} = c.{c}"))
            .collect();
        format!(
            "SELECT count(*) FROM {} c WHERE {} AND NOT EXISTS (SELECT 1 FROM {} p WHERE {})",
            self.table,
            not_null.join(" AND "),
            self.parent,
            joined.join(" AND ")
        )
    }
}

async fn foreign_keys(client: &Client) -> Result<Vec<ForeignKey>, PgError> {
    let rows = client
        .query(
            "SELECT c.conname, c.conrelid::regclass::text, c.confrelid::regclass::text,
                    ARRAY(SELECT a.attname::text FROM unnest(c.conkey) WITH ORDINALITY k(n, o)
                          JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n
                          ORDER BY k.o),
                    ARRAY(SELECT a.attname::text FROM unnest(c.confkey) WITH ORDINALITY k(n, o)
                          JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n
                          ORDER BY k.o)
             FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
             WHERE c.contype = 'f' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
             ORDER BY 2, 1",
            &[],
        )
        .await
        .map_err(PgError::query("list foreign keys"))?;
    Ok(rows
        .iter()
        .map(|r| ForeignKey {
            name: r.get(0),
            table: r.get(1),
            parent: r.get(2),
            columns: r
                .get::<_, Vec<String>>(3)
                .iter()
                .map(|c| quote_ident(c))
                .collect(),
            parent_columns: r
                .get::<_, Vec<String>>(4)
                .iter()
                .map(|c| quote_ident(c))
                .collect(),
        })
        .collect())
}

/// The expression of a `CHECK (...)` definition as `pg_get_constraintdef` prints it.
fn check_expression(def: &str) -> Option<&str> {
    let body = def.strip_prefix("CHECK ")?;
    let body = body.strip_suffix(" NOT VALID").unwrap_or(body);
    let body = body.strip_suffix(" NO INHERIT").unwrap_or(body);
    Some(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_expressions() {
        assert_eq!(
            check_expression("CHECK ((balance >= 0))"),
            Some("((balance >= 0))")
        );
        assert_eq!(
            check_expression("CHECK ((a > b)) NOT VALID"),
            Some("((a > b))")
        );
        assert_eq!(check_expression("UNIQUE (a)"), None);
    }

    #[test]
    fn foreign_key_query_skips_null_keys() {
        let fk = ForeignKey {
            name: "fk".into(),
            table: "images".into(),
            parent: "users".into(),
            columns: vec!["\"user_id\"".into()],
            parent_columns: vec!["\"id\"".into()],
        };
        assert_eq!(
            fk.violations_sql(),
            "SELECT count(*) FROM images c WHERE c.\"user_id\" IS NOT NULL AND NOT EXISTS \
             (SELECT 1 FROM users p WHERE p.\"id\" = c.\"user_id\")"
        );
    }
}
