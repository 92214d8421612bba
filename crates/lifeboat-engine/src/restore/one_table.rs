//! One table as it was at a moment, brought back into the live database without touching
//! the rest of it (`restore TARGET --time T --table NAME`), for kinds that restore a whole
//! database to a moment (cdc: a baseline plus the replay; physical: a throwaway cluster
//! recovered to T). The kind brings a scratch database to the moment; this module decides
//! the live side (refusal over an existing table without `--force`, the emergency backup —
//! a logical dump of the live database — first) and copies the table: `pg_dump --table`
//! of the scratch, `pg_restore` into the live database in one transaction (the current
//! table dropped first with `--force`), verified by its row count against the scratch's.

use lifeboat_core::{Redacted, TargetConfig, config::PostgresMode, manifest::TableRecord};
use lifeboat_postgres::{
    Cluster, PgTools, Target, quote_ident,
    restore::{self as pg, RestoreOptions},
};
use serde_json::json;

use crate::{
    EngineError, EngineResult, FsContext,
    cancel::Cancel,
    format,
    restore::{
        act::RestoreOutcome,
        plan::{Emergency, Refusal, RestoreRequest},
    },
};

/// `schema.name` or `name` (schema `public`) as a table to look for.
pub fn table_named(wanted: &str) -> TableRecord {
    let (schema, name) = wanted.split_once('.').unwrap_or(("public", wanted));
    TableRecord {
        schema: schema.to_string(),
        name: name.to_string(),
        rows: 0,
        indexes: Vec::new(),
        sequences: Vec::new(),
    }
}

/// A PostgreSQL target's config as a logical one (the same server and tools): for the
/// logical dumps and restores of cdc and physical targets.
pub fn logical_view(cfg: &TargetConfig) -> TargetConfig {
    TargetConfig {
        mode: Some(PostgresMode::Logical),
        data_dir: None,
        flush_interval: None,
        slot: None,
        publication: None,
        max_slot_lag: None,
        on_slot_lag: None,
        baseline_every: None,
        ..cfg.clone()
    }
}

/// The live side of a one-table restore: where it goes, whether it replaces a table there,
/// and the refusal and emergency backup that follow.
pub struct LiveSide {
    pub dest: Target,
    pub url: Redacted,
    /// Rows of the table there now, if it exists.
    pub existing_rows: Option<u64>,
    pub refusal: Option<Refusal>,
    pub emergency: Option<Emergency>,
}

impl LiveSide {
    pub async fn inspect(
        request: &RestoreRequest,
        target_cfg: &TargetConfig,
        table: &TableRecord,
    ) -> EngineResult<Self> {
        let url = match &request.to {
            Some(u) => u.clone(),
            None => target_cfg.connection_url(&request.target)?,
        };
        let dest = Target::parse(&url)?;
        let state = pg::inspect(&dest).await?;
        if !state.exists {
            return Err(EngineError::usage(
                format!(
                    "database `{}` on `{}` does not exist: one table is restored into the live database",
                    dest.database(),
                    dest.server()
                ),
                Some("leave out `--table` to restore the whole database into a new one".into()),
            ));
        }
        let existing_rows = pg::table_rows(&dest, table).await?;
        let overwrites = existing_rows.is_some();
        let refusal = overwrites.then(|| Refusal {
            message: format!(
                "refusing to overwrite: table `{}` exists in database `{}` ({} rows)",
                table.qualified(),
                dest.database(),
                format::thousands(existing_rows.unwrap_or(0))
            ),
            hint: "pass `--force` to replace it after an emergency backup of the database, or restore the whole database into a new one with `--to` (without `--table`)".into(),
            forceable: true,
            why: "the table exists".into(),
        });
        // The emergency backup is a logical dump of the live database, whatever the kind.
        let emergency = overwrites.then(|| Emergency {
            target: logical_view(target_cfg),
            source: Some(url.clone()),
            optional_with_force: false,
            what: format!("`{}` (a logical dump)", dest.database()),
        });
        Ok(Self {
            dest,
            url,
            existing_rows,
            refusal,
            emergency,
        })
    }

    /// The plan's line for the copy.
    pub fn step(&self, table: &TableRecord) -> String {
        match self.existing_rows {
            Some(rows) => format!(
                "replace table `{}` in database `{}` ({} rows now) with it, in one transaction (pg_dump --table, pg_restore --clean)",
                table.qualified(),
                self.dest.database(),
                format::thousands(rows)
            ),
            None => format!(
                "copy table `{}` into database `{}`, in one transaction (pg_dump --table, pg_restore)",
                table.qualified(),
                self.dest.database()
            ),
        }
    }
}

/// A PostgreSQL to bring a database to a moment in: a new database on `[drill]
/// scratch-url`, or a throwaway cluster of `tools`' version. Removed on [`Scratch::remove`]
/// (a throwaway cluster also when dropped).
pub enum Scratch {
    Cluster { cluster: Cluster, url: Redacted },
    Server { dest: Target, url: Redacted },
}

impl Scratch {
    pub async fn provision(
        scratch_url: Option<Redacted>,
        tools: &PgTools,
        database: &str,
    ) -> EngineResult<Self> {
        match scratch_url {
            Some(server) => {
                let name = format!(
                    "lifeboat_table_{}",
                    jiff::Timestamp::now().strftime("%Y%m%d%H%M%S%3f")
                );
                let url = Redacted::new(crate::kinds::postgres_logical::drill::url_with_database(
                    server.expose(),
                    &name,
                ));
                let dest = Target::parse(&url)?;
                Ok(Self::Server { dest, url })
            }
            None => {
                let tools = tools.clone();
                let cluster = lifeboat_repo::blocking(move || Cluster::start(&tools, &[])).await?;
                let url = Redacted::new(cluster.url(database));
                Ok(Self::Cluster { cluster, url })
            }
        }
    }

    /// The scratch database's URL (it does not exist yet: the kind's restore creates it).
    pub fn url(&self) -> &Redacted {
        match self {
            Self::Cluster { url, .. } | Self::Server { url, .. } => url,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Self::Cluster { cluster, .. } => format!(
                "a throwaway PostgreSQL {} on 127.0.0.1:{}",
                cluster.tools().major,
                cluster.port
            ),
            Self::Server { dest, .. } => format!(
                "database `{}` on {} (`[drill] scratch-url`)",
                dest.database(),
                dest.server()
            ),
        }
    }

    pub async fn remove(self) {
        match self {
            Self::Cluster { cluster, .. } => {
                lifeboat_repo::blocking(move || drop(cluster)).await;
            }
            Self::Server { dest, .. } => {
                if let Err(e) = pg::drop_database(&dest).await {
                    log::warn!(
                        "cannot drop the scratch database `{}`: {e}; drop it by hand",
                        dest.database()
                    );
                }
            }
        }
    }
}

/// Copy `table` from `from` (a database at the moment) into `live`, in one transaction,
/// replacing the table there when `replace` (its owner and grants put back after);
/// then count its rows on both sides.
pub async fn copy_table(
    tools: &PgTools,
    from: &Target,
    table: &TableRecord,
    live: &Target,
    replace: bool,
    cancel: &Cancel,
) -> EngineResult<RestoreOutcome> {
    let Some(source_rows) = pg::table_rows(from, table).await? else {
        return Err(EngineError::failure(
            format!("table `{}` did not exist at that moment", table.qualified()),
            Some("choose a later moment, or check the name (`schema.table`)".into()),
        ));
    };
    let stage = tempfile::Builder::new()
        .prefix("lifeboat-table-")
        .tempdir()
        .fs("create a staging folder in", &std::env::temp_dir())?;
    let file = stage.path().join("table.dump");
    let mut dump = from.command(&tools.path("pg_dump"));
    dump.args([
        "--format=custom",
        "--compress=0",
        "--no-password",
        "--strict-names",
    ])
    .arg(format!(
        "--table={}.{}",
        quote_ident(&table.schema),
        quote_ident(&table.name)
    ))
    .arg(format!("--file={}", file.display()))
    .arg(format!("--dbname={}", from.database()));
    let out = lifeboat_repo::blocking(move || dump.output())
        .await
        .map_err(|e| EngineError::failure(format!("cannot start pg_dump: {e}"), None))?;
    if !out.status.success() {
        return Err(EngineError::failure(
            format!(
                "pg_dump of table `{}` failed: {}",
                table.qualified(),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            None,
        ));
    }
    // The live table's owner and grants, put back after the copy (the copy is owned by
    // the restoring role and has none: the scratch had not the live roles).
    let keep = if replace {
        owner_and_grants(live, table).await?
    } else {
        Vec::new()
    };
    let opts = RestoreOptions {
        clean: replace,
        keep_owners: false,
        jobs: 1,
        input: Some(file),
        ..RestoreOptions::default()
    };
    let child = pg::spawn_restore(tools, live, &opts)?;
    let waiting = lifeboat_repo::blocking(move || pg::wait_restore(child));
    match cancel.guard(waiting).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            return Err(EngineError::failure(
                format!(
                    "the copy of table `{}` failed and was rolled back, database `{}` is as it was: {e}",
                    table.qualified(),
                    live.database()
                ),
                replace.then(|| "a table other tables' foreign keys point at cannot be dropped: restore the whole database into a new one with `--to` and copy what you need".into()),
            ));
        }
        Err(_) => {
            let _ = pg::end_restore_sessions(live).await;
            return Err(EngineError::interrupted(format!(
                "interrupted: the copy was stopped and rolled back; database `{}` is as it was",
                live.database()
            )));
        }
    }
    if !keep.is_empty() {
        let client = live.connect().await?;
        let sql = keep.join(";\n");
        if let Err(e) = client.batch_execute(&sql).await {
            let why = e
                .as_db_error()
                .map_or(e.to_string(), |d| d.message().to_string());
            return Err(EngineError::failure(
                format!(
                    "table `{}` was restored, but its owner and grants could not be put back: {why}",
                    table.qualified()
                ),
                Some(format!(
                    "run them as the table's owner or a superuser:\n{sql}"
                )),
            ));
        }
    }
    let restored = pg::table_rows(live, table).await?;
    let ok = restored == Some(source_rows);
    let line = format!(
        "table `{}`: {} rows at that moment, {} in database `{}` now{}{}",
        table.qualified(),
        format::thousands(source_rows),
        restored.map_or("none".into(), format::thousands),
        live.database(),
        if ok { "" } else { " — MISMATCH" },
        if keep.is_empty() {
            String::new()
        } else {
            format!(
                "; its owner and {} grant(s) kept",
                keep.iter().filter(|s| s.starts_with("GRANT")).count()
            )
        }
    );
    Ok(RestoreOutcome::new(
        ok,
        "the restored table's row count differs from the moment's",
        json!({
            "table": table.qualified(),
            "rows_at_moment": source_rows,
            "rows_restored": restored,
            "replaced": replace,
            "verified": ok,
        }),
        vec![line],
    ))
}

/// The statements that give `table` in `live` its current owner (its owned sequences follow
/// it) and grants again — the table's, its columns', and those of the sequences it owns
/// (`serial` columns), which the copy recreates too.
async fn owner_and_grants(live: &Target, table: &TableRecord) -> EngineResult<Vec<String>> {
    let client = live.connect().await?;
    let rows = client
        .query(
            "WITH t AS (
               SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE n.nspname = $1 AND c.relname = $2),
             o AS (
               SELECT t.oid, 'TABLE' AS kind FROM t
               UNION ALL
               SELECT d.objid, 'SEQUENCE' FROM t JOIN pg_depend d
                 ON d.refobjid = t.oid AND d.classid = 'pg_class'::regclass
                AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
               JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S')
             SELECT 0, format('ALTER TABLE %s OWNER TO %I', c.oid::regclass, pg_get_userbyid(c.relowner))
             FROM t JOIN pg_class c ON c.oid = t.oid
             UNION ALL
             SELECT 1, format('GRANT %s ON %s %s TO %s%s', a.privilege_type, o.kind, c.oid::regclass,
                              CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END,
                              CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END)
             FROM o JOIN pg_class c ON c.oid = o.oid, aclexplode(c.relacl) a
             WHERE a.grantee <> c.relowner
             UNION ALL
             SELECT 2, format('GRANT %s (%I) ON TABLE %s TO %s%s', a.privilege_type, att.attname, c.oid::regclass,
                              CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END,
                              CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END)
             FROM t JOIN pg_class c ON c.oid = t.oid
             JOIN pg_attribute att ON att.attrelid = t.oid AND att.attnum > 0 AND NOT att.attisdropped,
             aclexplode(att.attacl) a
             WHERE a.grantee <> c.relowner
             ORDER BY 1, 2",
            &[&table.schema, &table.name],
        )
        .await
        .map_err(|e| {
            EngineError::failure(
                format!("cannot read the owner and grants of `{}`: {e}", table.qualified()),
                None,
            )
        })?;
    Ok(rows.iter().map(|r| r.get::<_, String>(1)).collect())
}
