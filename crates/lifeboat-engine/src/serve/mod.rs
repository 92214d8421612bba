//! `lifeboat serve`: the schedules run by themselves. Each target with a `schedule` gets a
//! task that sleeps until its next slot and starts a recorded backup job ([`crate::jobs`]);
//! one job per target at a time (a slot that comes while the previous job runs is recorded
//! as skipped). On start, a target whose last good backup is older than one interval of its
//! schedule (or that has none) is backed up at once (catch-up). The HTTP endpoint
//! ([`http`]) serves health, metrics and the job history from the state kept in memory
//! ([`state`]). On shutdown nothing new starts, running jobs are cancelled (they leave no
//! snapshot) and waited for up to `[serve] shutdown-timeout`.
//!
//! `instance.rs` keeps it to one `serve` per repository and host.

pub mod alerts;
pub mod http;
pub mod instance;
pub mod state;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use lifeboat_core::{Redacted, Schedule};
use tokio::{net::TcpListener, task::JoinHandle};

use crate::{
    Engine, EngineError, EngineResult,
    cancel::Cancel,
    jobs::{self, JobRecord, Outcome, Trigger},
};

/// What the scheduler tasks and the HTTP endpoint share.
pub struct Shared {
    pub engine: Engine,
    state: Mutex<state::State>,
    alerts: Mutex<alerts::Alerts>,
    running: Mutex<HashMap<String, JoinHandle<()>>>,
    /// Cancels running jobs on shutdown.
    jobs_cancel: Cancel,
    token: Option<Redacted>,
}

impl Shared {
    pub fn state(&self) -> MutexGuard<'_, state::State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A failed backup raises `backup:<target>`; a good one clears it.
    fn alert_on(&self, record: &JobRecord) {
        let key = format!("backup:{}", record.target);
        let alert = {
            let mut alerts = self.alerts.lock().unwrap_or_else(|p| p.into_inner());
            match record.outcome {
                Outcome::Failed => alerts.problem(
                    &key,
                    "backup-failed",
                    &record.target,
                    &format!(
                        "the backup failed: {}",
                        record.error.as_deref().unwrap_or("(no error text)")
                    ),
                ),
                Outcome::Succeeded => alerts.cleared(
                    &key,
                    &format!(
                        "the backup succeeded (snapshot {})",
                        record.snapshot.as_ref().map_or("?", |s| s.short())
                    ),
                ),
                Outcome::Interrupted | Outcome::Skipped => None,
            }
        };
        if let Some(a) = alert {
            crate::notify::deliver(&self.engine.config.notify, &a);
        }
    }

    /// Evaluate every target's objectives as `status` does: a miss raises
    /// `objective:<target>`, meeting them again clears it.
    async fn watch_objectives(&self) {
        let rows = match crate::status::status(&self.engine).await {
            Ok(rows) => rows,
            Err(e) => {
                log::warn!("cannot evaluate the objectives: {}", e.full_message());
                return;
            }
        };
        let mut send = Vec::new();
        {
            let mut alerts = self.alerts.lock().unwrap_or_else(|p| p.into_inner());
            for row in rows {
                let key = format!("objective:{}", row.target);
                let alert = if row.problems.is_empty() {
                    alerts.cleared(&key, "every objective is met again")
                } else {
                    alerts.problem(
                        &key,
                        "objective-missed",
                        &row.target,
                        &row.problems.join("; "),
                    )
                };
                send.extend(alert);
            }
        }
        for a in send {
            crate::notify::deliver(&self.engine.config.notify, &a);
        }
    }

    fn running(&self) -> MutexGuard<'_, HashMap<String, JoinHandle<()>>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Start a backup job of `name`, unless one is running (then a skipped job is recorded).
    pub fn start_backup(self: &Arc<Self>, name: &str, trigger: Trigger) {
        let mut running = self.running();
        if running.get(name).is_some_and(|h| !h.is_finished()) {
            let mut skipped = JobRecord::new("backup", name, trigger, jiff::Timestamp::now());
            skipped.outcome = Outcome::Skipped;
            skipped.finished_at = skipped.started_at;
            skipped.error = Some("the previous backup of the target was still running".into());
            self.state().record(&skipped);
            let shared = self.clone();
            tokio::spawn(async move { jobs::store(&shared.engine, &skipped).await });
            return;
        }
        let (shared, target) = (self.clone(), name.to_string());
        let cancel = self.jobs_cancel.clone();
        self.state()
            .targets
            .entry(target.clone())
            .or_default()
            .running = true;
        let handle = tokio::spawn(async move {
            let (record, _) = jobs::backup_job(&shared.engine, &target, trigger, &cancel).await;
            shared.alert_on(&record);
            let mut state = shared.state();
            state.record(&record);
            state.targets.entry(target).or_default().running = false;
        });
        running.insert(name.to_string(), handle);
    }
}

/// Run until `shutdown` is set: the schedules, the HTTP endpoint on `listener` (requests
/// need `token` when one is given), then the orderly stop.
pub async fn run(
    engine: Engine,
    listener: TcpListener,
    token: Option<Redacted>,
    shutdown: Cancel,
) -> EngineResult<()> {
    let tz = engine
        .config
        .serve
        .time_zone()
        .map_err(|e| EngineError::usage(e, None))?;
    let shared = Arc::new(Shared {
        engine: engine.clone(),
        state: Mutex::new(state::State::default()),
        alerts: Mutex::new(alerts::Alerts::default()),
        running: Mutex::new(HashMap::new()),
        jobs_cancel: Cancel::new(),
        token,
    });
    // What ran before this process: the newest good backup of each target.
    let snaps = engine.repo.list_snapshots(None).await?;
    {
        let mut state = shared.state();
        for name in engine.config.targets.keys() {
            let last = snaps
                .iter()
                .rev()
                .find(|s| &s.target == name && !s.emergency && s.is_good());
            let t = state.targets.entry(name.clone()).or_default();
            t.last_success = last.map(|s| s.time.timestamp());
            t.last_bytes = last
                .and_then(|s| s.manifest.as_ref().ok())
                .map_or(0, lifeboat_core::Manifest::logical_bytes);
        }
        state.tick = Some(std::time::Instant::now());
    }
    let mut tasks = Vec::new();
    for (name, target) in &engine.config.targets {
        if let Some(schedule) = target.schedule.clone() {
            tasks.push(tokio::spawn(schedule_target(
                shared.clone(),
                name.clone(),
                schedule,
                tz.clone(),
                shutdown.clone(),
            )));
        }
    }
    tasks.push(tokio::spawn(http::serve(
        listener,
        shared.clone(),
        shutdown.clone(),
    )));
    // The objectives, every minute, as `status` evaluates them.
    let watching = shared.clone();
    let watch_stop = shutdown.clone();
    tasks.push(tokio::spawn(async move {
        loop {
            watching.watch_objectives().await;
            if watch_stop
                .guard(tokio::time::sleep(Duration::from_secs(60)))
                .await
                .is_err()
            {
                return;
            }
        }
    }));
    // The tick `/healthz` looks at.
    let ticking = shared.clone();
    let tick_stop = shutdown.clone();
    tasks.push(tokio::spawn(async move {
        while tick_stop
            .guard(tokio::time::sleep(Duration::from_secs(1)))
            .await
            .is_ok()
        {
            ticking.state().tick = Some(std::time::Instant::now());
        }
    }));

    let _ = shutdown.guard(std::future::pending::<()>()).await;
    log::info!("stopping: no new jobs; running jobs are cancelled");
    shared.jobs_cancel.cancel();
    let running: Vec<JoinHandle<()>> = shared.running().drain().map(|(_, h)| h).collect();
    let limit = Duration::from_secs(engine.config.serve.shutdown_timeout.as_secs());
    if tokio::time::timeout(limit, futures_join(running))
        .await
        .is_err()
    {
        log::warn!("jobs still running after the shutdown timeout; leaving them");
    }
    for t in tasks {
        t.abort();
    }
    Ok(())
}

async fn futures_join(handles: Vec<JoinHandle<()>>) {
    for h in handles {
        let _ = h.await;
    }
}

/// One target's calendar: catch up if overdue, then a job at every slot until shutdown.
async fn schedule_target(
    shared: Arc<Shared>,
    name: String,
    schedule: Schedule,
    tz: jiff::tz::TimeZone,
    shutdown: Cancel,
) {
    let now = jiff::Timestamp::now().to_zoned(tz.clone());
    let last = shared
        .state()
        .targets
        .get(&name)
        .and_then(|t| t.last_success);
    let overdue = match (last, schedule.interval(&now)) {
        (None, _) => true,
        (Some(at), Some(interval)) => at.duration_until(now.timestamp()) > interval,
        (Some(_), None) => false,
    };
    if overdue {
        log::info!("`{name}`: no good backup within one interval of `{schedule}`; catching up");
        shared.start_backup(&name, Trigger::CatchUp);
    }
    loop {
        let now = jiff::Timestamp::now().to_zoned(tz.clone());
        let Some(next) = schedule.next_after(&now) else {
            log::warn!("`{name}`: the schedule `{schedule}` has no next slot");
            return;
        };
        let wait = now
            .duration_until(&next)
            .try_into()
            .unwrap_or(Duration::ZERO);
        if shutdown.guard(tokio::time::sleep(wait)).await.is_err() {
            return;
        }
        shared.start_backup(&name, Trigger::Schedule);
    }
}
