//! The drill of a logical PostgreSQL backup: a throwaway cluster of the backup's major
//! version (or a new database on `[drill] scratch-url`), the dump streamed into
//! `pg_restore`, then row counts, `pg_amcheck`, constraint re-validation and the target's
//! `[[checks]]` rules.

use std::sync::Arc;

use lifeboat_core::{
    Redacted,
    config::CheckConfig,
    manifest::{PostgresManifest, TableRecord},
};
use lifeboat_postgres::{
    Cluster, PgTools, Target, integrity, quote_ident,
    restore::{self as pg, RowCheck},
};
use lifeboat_repo::Repo;

use super::load::load_dump;
use crate::{
    drill::{
        checks::Findings,
        checks::run_command,
        rehearsal::{Chosen, Drill, Rehearsal, Stop},
    },
    format as output,
};

/// The drill of a logical snapshot: a [`PgRehearsal`] into a throwaway cluster of the
/// dump's major version (or the configured scratch server).
pub async fn rehearse(drill: &mut Drill, chosen: &Chosen) -> Result<(), Stop> {
    rehearse_in(drill, chosen, false).await
}

/// The drill of a cdc baseline: restored as a logical dump, then every captured
/// transaction replayed onto it (the recovery phase); RPO is the drill's start minus the
/// last replayed commit.
pub async fn rehearse_cdc(drill: &mut Drill, chosen: &Chosen) -> Result<(), Stop> {
    rehearse_in(drill, chosen, true).await
}

async fn rehearse_in(
    drill: &mut Drill,
    (info, manifest): &Chosen,
    replay: bool,
) -> Result<(), Stop> {
    let Some(pgm) = manifest.postgres.clone() else {
        return Err(drill.missing_section());
    };
    let tools = PgTools::find(
        pgm.server_version_num / 10_000,
        drill.cfg.pg_bin_dir.as_deref(),
    )
    .or_else(|_| PgTools::newest_installed())
    .map_err(|e| Stop::Error(e.to_string()))?;
    let mut r = PgRehearsal {
        repo: drill.engine.repo.clone(),
        snapshot: info.id.clone(),
        manifest: pgm,
        tools,
        rules: drill.rules.clone(),
        scratch_url: drill.scratch_url.clone(),
        started_at: drill.started_at,
        jobs: drill.jobs,
        scratch: None,
        replay: replay.then(|| (drill.engine.clone(), drill.name.clone())),
        replayed_to: None,
    };
    drill.rehearse(&mut r).await
}

struct PgRehearsal {
    repo: Arc<Repo>,
    snapshot: lifeboat_core::SnapshotId,
    manifest: PostgresManifest,
    tools: PgTools,
    rules: Vec<CheckConfig>,
    scratch_url: Option<Redacted>,
    started_at: jiff::Timestamp,
    jobs: u32,
    scratch: Option<Scratch>,
    /// A cdc baseline: its captured transactions are replayed after the restore.
    replay: Option<(crate::Engine, String)>,
    replayed_to: Option<jiff::Timestamp>,
}

/// Where the drill restores to.
enum Scratch {
    Cluster {
        cluster: Cluster,
        dest: Target,
        url: Redacted,
    },
    /// A database created on the user's `[drill] scratch-url` server.
    Server {
        server: Target,
        dest: Target,
        url: Redacted,
    },
}

impl Scratch {
    fn dest(&self) -> (&Target, &Redacted) {
        match self {
            Self::Cluster { dest, url, .. } | Self::Server { dest, url, .. } => (dest, url),
        }
    }
}

impl PgRehearsal {
    fn dest(&self) -> Result<(&Target, &Redacted), String> {
        self.scratch
            .as_ref()
            .map(Scratch::dest)
            .ok_or_else(|| "no scratch database".to_string())
    }

    /// A new database on the user's server; it is dropped at teardown.
    async fn on_server(&mut self, server_url: &Redacted) -> Result<String, String> {
        let server = Target::parse(server_url).map_err(|e| e.to_string())?;
        let database = format!(
            "lifeboat_drill_{}",
            self.started_at.strftime("%Y%m%d%H%M%S%3f")
        );
        let url = Redacted::new(url_with_database(server_url.expose(), &database));
        let dest = Target::parse(&url).map_err(|e| e.to_string())?;
        let text = format!("database `{database}` on {}", server.server());
        pg::create_database(&dest)
            .await
            .map_err(|e| e.to_string())?;
        self.scratch = Some(Scratch::Server { server, dest, url });
        Ok(text)
    }

    async fn throwaway_cluster(&mut self) -> Result<String, String> {
        let tools = self.tools.clone();
        let cluster = lifeboat_repo::blocking(move || Cluster::start(&tools, &[]))
            .await
            .map_err(|e| e.to_string())?;
        let text = format!(
            "throwaway PostgreSQL {} on 127.0.0.1:{}",
            cluster.tools().major,
            cluster.port
        );
        let url = Redacted::new(cluster.url(&self.manifest.database));
        let dest = Target::parse(&url).map_err(|e| e.to_string())?;
        self.scratch = Some(Scratch::Cluster {
            cluster,
            dest: dest.clone(),
            url,
        });
        pg::create_database(&dest)
            .await
            .map_err(|e| e.to_string())?;
        Ok(text)
    }
}

impl Rehearsal for PgRehearsal {
    async fn recover(&mut self) -> Result<Option<String>, String> {
        let Some((engine, name)) = self.replay.clone() else {
            return Ok(None);
        };
        let base = lifeboat_postgres::cdc::stream::lsn(&self.manifest.snapshot_lsn)
            .ok_or("the baseline has no consistent LSN to replay from")?;
        let (dest, _) = self.dest()?;
        let done = crate::kinds::postgres_cdc::replay::replay(
            &engine,
            &name,
            dest,
            base,
            // What was captured until the drill began (later commits would make the RPO
            // look better than it is).
            crate::kinds::postgres_cdc::replay::Until {
                time: Some(self.started_at),
                lsn: None,
            },
            &crate::cancel::Cancel::new(),
            None,
        )
        .await
        .map_err(|e| e.full_message())?;
        self.replayed_to = done.last_commit.or(self.manifest.snapshot_time);
        Ok(Some(format!(
            "replayed {} captured transaction(s), {} change(s); {} sequence(s) set",
            done.txns, done.changes, done.sequences
        )))
    }

    fn restored_point(&self) -> Option<jiff::Timestamp> {
        self.replayed_to
    }

    fn recovery_goal(&self) -> String {
        "replay every captured transaction".into()
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        self.dest()
            .map(|(_, url)| vec![("URL", url.expose().to_string())])
            .unwrap_or_default()
    }

    fn describe(&self) -> Vec<String> {
        let m = &self.manifest;
        let mut steps = vec![
            match &self.scratch_url {
                Some(url) => format!(
                    "create a scratch database on {} (`[drill] scratch-url`)",
                    Target::parse(url).map_or_else(|_| "the scratch server".into(), |t| t.server())
                ),
                None => format!("start a throwaway PostgreSQL {} cluster", self.tools.major),
            },
            format!(
                "restore the dump ({}, {} tables) with {} pg_restore job(s)",
                output::bytes(m.dump.bytes),
                m.tables.len(),
                self.jobs
            ),
            format!(
                "check the rows of {} tables against the manifest, pg_amcheck, constraints re-validated, no invalid index",
                m.tables.len()
            ),
            "drop the scratch database or cluster".into(),
        ];
        if self.replay.is_some() {
            steps.insert(
                2,
                "replay every captured transaction after the baseline, then set the sequences"
                    .into(),
            );
        }
        steps
    }

    async fn provision(&mut self) -> Result<String, String> {
        match self.scratch_url.clone() {
            Some(url) => self.on_server(&url).await,
            None => self.throwaway_cluster().await,
        }
    }

    async fn restore(&mut self) -> Result<String, String> {
        let (dest, _) = self.dest()?;
        let stage = tempfile::Builder::new()
            .prefix("lifeboat-drill-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let opts = pg::RestoreOptions {
            jobs: self.jobs,
            ..Default::default()
        };
        let m = &self.manifest;
        load_dump(
            &self.repo,
            &self.snapshot,
            m,
            &self.tools,
            dest,
            opts,
            stage.path(),
            None,
        )
        .await
        .map_err(|e| e.message)?;
        Ok(format!(
            "{} dump, {} tables",
            output::bytes(m.dump.bytes),
            m.tables.len()
        ))
    }

    async fn check(&mut self, findings: &mut Findings) {
        let Ok((dest, _)) = self.dest() else {
            return;
        };
        // After a replay the baseline's row counts no longer hold.
        let tables = if self.replay.is_some() {
            &[][..]
        } else {
            &self.manifest.tables[..]
        };
        check_database(&self.tools, dest, tables, findings).await;
        let secrets: Vec<String> = dest.password().into_iter().collect();
        let url = self
            .dest()
            .map(|(_, u)| u.expose().to_string())
            .unwrap_or_default();
        for rule in &self.rules {
            let result = database_rule(rule, dest, &url, &secrets).await;
            findings.rule(
                if rule.sql.is_some() { "sql" } else { "command" },
                rule,
                result,
            );
        }
    }

    async fn teardown(&mut self) -> Result<(), String> {
        match self.scratch.take() {
            None => Ok(()),
            Some(Scratch::Cluster { cluster, .. }) => {
                lifeboat_repo::blocking(move || drop(cluster)).await;
                Ok(())
            }
            Some(Scratch::Server { server, dest, .. }) => {
                let client = server.connect().await.map_err(|e| e.to_string())?;
                client
                    .batch_execute(&format!(
                        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                        quote_ident(dest.database())
                    ))
                    .await
                    .map_err(|e| lifeboat_postgres::conn::describe_pg_error(&e))
            }
        }
    }
}

/// Row counts against `tables` (none for a physical recovery), `pg_amcheck` and constraint
/// re-validation of a restored database, run side by side, into `findings`.
pub(crate) async fn check_database(
    tools: &PgTools,
    dest: &Target,
    tables: &[TableRecord],
    findings: &mut Findings,
) {
    let jobs = std::thread::available_parallelism().map_or(2, |n| n.get() as u32);
    let (rows, amcheck, constraints) = tokio::join!(
        pg::verify_rows(dest, tables),
        integrity::amcheck(tools, dest, jobs),
        integrity::constraints(dest),
    );
    match rows {
        Ok(rows) => rows.iter().for_each(|r| row_finding(findings, r)),
        Err(e) => findings.add("rows", "row counts", false, e.to_string()),
    }
    match amcheck {
        Ok(f) => findings.add(f.kind, f.name, f.passed, f.detail),
        Err(e) => findings.add("amcheck", "pg_amcheck", false, e.to_string()),
    }
    match constraints {
        Ok(fs) => fs
            .into_iter()
            .for_each(|f| findings.add(f.kind, f.name, f.passed, f.detail)),
        Err(e) => findings.add(
            "constraints",
            "re-validate constraints",
            false,
            e.to_string(),
        ),
    }
}

/// One `[[checks]]` rule against a restored database: its SQL judged, or its command run
/// with the database's URL in `LIFEBOAT_DRILL_URL` (`secrets` masked in what it prints).
pub(crate) async fn database_rule(
    rule: &CheckConfig,
    dest: &Target,
    url: &str,
    secrets: &[String],
) -> Result<String, String> {
    if let Some(sql) = &rule.sql {
        let value = integrity::first_value(dest, sql)
            .await
            .map_err(|e| e.to_string())?;
        return lifeboat_drill::expect::judge(rule, value.as_deref());
    }
    run_command(
        rule.command.as_deref().unwrap_or_default(),
        &[("LIFEBOAT_DRILL_URL", url)],
        secrets,
    )
    .await
}

fn row_finding(findings: &mut Findings, r: &RowCheck) {
    let detail = match r.restored {
        Some(n) if n == r.expected => format!("{} rows, as in the manifest", output::thousands(n)),
        Some(n) => format!(
            "{} rows restored, the manifest says {}",
            output::thousands(n),
            output::thousands(r.expected)
        ),
        None => "table missing after restore".into(),
    };
    findings.add("rows", format!("rows of {}", r.table), r.ok(), detail);
}

/// `url` pointing at another database on the same server.
pub(crate) fn url_with_database(url: &str, database: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return format!("{url} dbname={database}");
    };
    let rest = &url[scheme_end + 3..];
    let (before_query, query) = match rest.find('?') {
        Some(q) => (&rest[..q], &rest[q..]),
        None => (rest, ""),
    };
    let authority = before_query.split('/').next().unwrap_or(before_query);
    format!("{}{authority}/{database}{query}", &url[..scheme_end + 3])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_database_urls() {
        assert_eq!(
            url_with_database("postgres://u:p@h:5/db?sslmode=require", "x"),
            "postgres://u:p@h:5/x?sslmode=require"
        );
        assert_eq!(url_with_database("postgresql://h", "x"), "postgresql://h/x");
        assert_eq!(url_with_database("host=h", "x"), "host=h dbname=x");
    }
}
