//! The drill of a physical target: the chosen base backup (the newest, `--snapshot`, or the
//! newest before `--time`) restored into a throwaway data directory, recovered on a free
//! port (never archiving itself) through the whole WAL archive or to `--time`, then
//! `pg_amcheck`, constraint re-validation and the target's `[[checks]]` rules against the
//! recovered server. RPO is measured to its last replayed commit, or to `--time`.

use std::{path::PathBuf, sync::Arc};

use lifeboat_core::{TargetConfig, config::CheckConfig};
use lifeboat_postgres::{
    Target,
    physical::{self, RecoveredPoint, RecoveryTarget},
};
use lifeboat_repo::Repo;

use super::{self as pitr, PitrPlan};
use crate::{
    cancel::Cancel,
    drill::{
        checks::Findings,
        checks::{remove_scratch_dir, scratch_dir},
        rehearsal::{Chosen, Drill, Rehearsal, Stop},
    },
    format as output,
    kinds::postgres_logical::drill::{check_database, database_rule},
    wal::feed::WalFeed,
};

/// The drill of a base backup: a [`PhysicalRehearsal`], recovered through the whole archive
/// or to the drill's `--time`.
pub async fn rehearse(drill: &mut Drill, (info, _): &Chosen) -> Result<(), Stop> {
    let mut r = PhysicalRehearsal {
        repo: drill.engine.repo.clone(),
        config_path: drill.engine.config_path.clone(),
        copy: drill.engine.config.using_copy.clone(),
        target: drill.name.clone(),
        // The base backup chosen, recovered to `--time` when one is given.
        snapshot: info.id.clone(),
        recovery: drill.time.map_or(RecoveryTarget::Latest, pitr::recovery_to),
        cfg: drill.cfg.clone(),
        rules: drill.rules.clone(),
        dir: None,
        plan: None,
        feed: None,
        server: None,
        point: None,
        cancel: drill.cancel.clone(),
    };
    drill.rehearse(&mut r).await
}

struct PhysicalRehearsal {
    repo: Arc<Repo>,
    config_path: PathBuf,
    /// The copy the drill reads (`--repo NAME`): recovery fetches WAL from it.
    copy: Option<String>,
    target: String,
    /// The base backup to restore (its full id).
    snapshot: lifeboat_core::SnapshotId,
    /// Where recovery stops: the end of the archive, or a chosen moment.
    recovery: RecoveryTarget,
    cfg: TargetConfig,
    rules: Vec<CheckConfig>,
    dir: Option<tempfile::TempDir>,
    plan: Option<PitrPlan>,
    /// Fetches the plan's WAL ahead while the files are restored, then serves recovery.
    feed: Option<WalFeed>,
    server: Option<Target>,
    point: Option<RecoveredPoint>,
    /// The drill's token: stops the restore of the base backup part-way.
    cancel: Cancel,
}

impl PhysicalRehearsal {
    fn data(&self) -> Result<PathBuf, String> {
        self.dir
            .as_ref()
            .map(|d| d.path().join("data"))
            .ok_or_else(|| "no scratch folder".to_string())
    }
}

/// The recovered server's database as a URL (with its password), for the checks.
fn url_of(dest: &Target) -> String {
    let password = dest.password().unwrap_or_default();
    format!(
        "postgres://{}{}@{}/{}",
        dest.user(),
        if password.is_empty() {
            String::new()
        } else {
            format!(":{password}")
        },
        dest.server(),
        dest.database()
    )
}

impl Rehearsal for PhysicalRehearsal {
    fn env(&self) -> Vec<(&'static str, String)> {
        self.server
            .as_ref()
            .map(|t| vec![("URL", url_of(t))])
            .unwrap_or_default()
    }

    fn describe(&self) -> Vec<String> {
        vec![
            "create a throwaway data directory".into(),
            format!(
                "restore base backup {}, WAL from the archive",
                &self.snapshot.short()
            ),
            format!(
                "{} on a free port (the server does not archive)",
                self.recovery_goal()
            ),
            "check pg_amcheck, constraints re-validated, no invalid index".into(),
            "stop the server and remove the data directory".into(),
        ]
    }

    async fn provision(&mut self) -> Result<String, String> {
        let dir = scratch_dir("pitr")?;
        // The server runs as `postgres` when we are root: it must reach its data directory.
        physical::hand_over(dir.path()).map_err(|e| e.to_string())?;
        let text = format!("throwaway data directory {}/data", dir.path().display());
        self.dir = Some(dir);
        Ok(text)
    }

    async fn restore(&mut self) -> Result<String, String> {
        let data = self.data()?;
        let plan = pitr::plan_recovery(
            &self.repo,
            (&self.config_path, self.copy.as_deref()),
            &self.target,
            &self.snapshot,
            &self.recovery,
        )
        .await
        .map_err(|e| e.message)?;
        self.feed = pitr::feed(&self.repo, &plan).await.map_err(|e| e.message)?;
        pitr::materialize(
            &self.repo,
            &self.target,
            &plan,
            &data,
            &self.recovery,
            (false, false),
            &self.cancel,
        )
        .await
        .map_err(|e| e.message)?;
        let text = format!(
            "base backup {} ({} files, {}); WAL archived up to {}",
            plan.base.short_id(),
            plan.manifest.files.files.len(),
            output::bytes(plan.manifest.files.total_bytes),
            plan.newest_wal
        );
        self.plan = Some(plan);
        Ok(text)
    }

    async fn recover(&mut self) -> Result<Option<String>, String> {
        let data = self.data()?;
        let plan = self.plan.as_ref().ok_or("nothing restored")?;
        let port = lifeboat_postgres::cluster::free_port().map_err(|e| e.to_string())?;
        let (_, point, server) =
            pitr::start_and_wait(&self.cfg, &self.target, plan, &data, port, self.feed.take())
                .await
                .map_err(|e| e.message)?;
        let text = format!(
            "{} on timeline {} at LSN {}; last replayed commit {}",
            point.state,
            point.timeline,
            point.replay_lsn.as_deref().unwrap_or("?"),
            point.last_commit_time.as_deref().unwrap_or("(none)")
        );
        self.server = Some(server);
        self.point = Some(point);
        Ok(Some(text))
    }

    fn restored_point(&self) -> Option<jiff::Timestamp> {
        self.point.as_ref()?;
        // Recovered to a chosen moment: the state is that moment's, whenever the last
        // commit before it was.
        if let RecoveryTarget::Time(t) = &self.recovery {
            return crate::time::parse_time(t).ok();
        }
        let t = self.point.as_ref()?.last_commit_time.as_deref()?;
        crate::time::parse_time(t).ok()
    }

    fn recovery_goal(&self) -> String {
        match &self.recovery {
            RecoveryTarget::Time(t) => format!("recover to {t}"),
            _ => "recover to the end of the archive".into(),
        }
    }

    async fn check(&mut self, findings: &mut Findings) {
        let Some(dest) = self.server.clone() else {
            return;
        };
        let tools = self.plan.as_ref().and_then(|p| {
            lifeboat_postgres::PgTools::find(
                p.manifest.server_version_num / 10_000,
                self.cfg.pg_bin_dir.as_deref(),
            )
            .ok()
        });
        let Some(tools) = tools else {
            findings.add("amcheck", "pg_amcheck", false, "no PostgreSQL tools".into());
            return;
        };
        check_database(&tools, &dest, &[], findings).await;
        let password = dest.password().unwrap_or_default();
        let url = url_of(&dest);
        for rule in &self.rules {
            let result = database_rule(rule, &dest, &url, std::slice::from_ref(&password)).await;
            findings.rule(
                if rule.sql.is_some() { "sql" } else { "command" },
                rule,
                result,
            );
        }
    }

    async fn teardown(&mut self) -> Result<(), String> {
        let stopped = match (&self.plan, self.data()) {
            (Some(plan), Ok(data)) => pitr::recover::stop_server_on(&self.cfg, plan, &data).await,
            _ => Ok(()),
        };
        let removed = remove_scratch_dir(self.dir.take());
        stopped.and(removed)
    }
}
