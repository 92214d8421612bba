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
pub mod calendar;
pub mod capture;
pub mod dashboard;
pub mod http;
pub mod instance;
pub mod probes;
pub mod state;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use lifeboat_core::{Redacted, Schedule};
use lifeboat_repo::ReadData;
use tokio::{net::TcpListener, task::JoinHandle};

use crate::{
    Engine, EngineError, EngineResult,
    cancel::Cancel,
    jobs::{self, Job, JobRecord, Outcome, Trigger},
};

/// What the scheduler tasks and the HTTP endpoint share.
pub struct Shared {
    pub engine: Engine,
    state: Mutex<state::State>,
    alerts: Mutex<alerts::Alerts>,
    /// What ran, kept in the side area for the next `serve`.
    calendar: Mutex<calendar::Calendar>,
    /// One side-area write of the kept state at a time, each of the state as it is then,
    /// so a later state is never overwritten by an earlier one.
    side_writes: tokio::sync::Mutex<()>,
    /// Asks for the objectives to be judged again (a job changed what `status` says).
    judge: tokio::sync::Notify,
    /// When each (alert key, channel) was last sent a reminder.
    reminded: Mutex<HashMap<(String, String), jiff::Timestamp>>,
    running: Mutex<HashMap<String, JoinHandle<()>>>,
    /// Cancels running jobs on shutdown.
    jobs_cancel: Cancel,
    /// Forget (prune) waits here for backups and drills to end, and they for it, instead
    /// of failing on the repository lock's short wait.
    upkeep: tokio::sync::RwLock<()>,
    /// Job records kept per target.
    kept_jobs: usize,
    heartbeat: Option<Redacted>,
    token: Option<Redacted>,
    /// The dashboard's session cookie value (a hash of the token) and its forms' CSRF value
    /// (a hash of the token, or of a random secret of this process without one).
    session: String,
    csrf: String,
    /// When each probe's hook (`on-down`, `on-up`) last ran, for its cooldown.
    hooks: Mutex<HashMap<(String, String), std::time::Instant>>,
    /// The hooks of one probe run one at a time.
    hook_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Hooks that outlived their alert's wait, finished before `serve` exits.
    hook_tasks: Mutex<Vec<JoinHandle<String>>>,
}

impl Shared {
    pub fn state(&self) -> MutexGuard<'_, state::State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn running(&self) -> MutexGuard<'_, HashMap<String, JoinHandle<()>>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn calendar(&self) -> MutexGuard<'_, calendar::Calendar> {
        self.calendar.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn alerts(&self) -> MutexGuard<'_, alerts::Alerts> {
        self.alerts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The alerts firing now.
    pub fn firing(&self) -> Vec<crate::notify::Alert> {
        self.alerts().firing()
    }

    /// Resolve the alerts the last `serve` left firing about a target, probe or copy that is no
    /// longer configured: nothing would ever resolve them.
    fn resolve_unconfigured(self: &Arc<Self>) {
        let config = &self.engine.config;
        let gone: Vec<String> = self
            .firing()
            .into_iter()
            .map(|a| a.key)
            .filter(|key| match key.split_once(':') {
                Some(("probe", name)) => !config.probes.iter().any(|p| p.name == name),
                Some(("copy" | "copy-lag", name)) => !config.copies.contains_key(name),
                Some(("backup" | "drill" | "objective" | "archiving" | "capture", name)) => {
                    !config.targets.contains_key(name)
                }
                _ => false,
            })
            .collect();
        for key in gone {
            let cleared = self
                .alerts()
                .cleared(&key, "no longer configured: nothing watches it now");
            if let Some(a) = cleared {
                self.announce(&a);
            }
        }
    }

    /// How long the cooldown of hook `which` of probe `name` still holds it back, if it
    /// ran less than `cooldown` ago.
    fn cooldown_left(&self, name: &str, which: &str, cooldown: Duration) -> Option<Duration> {
        let hooks = self.hooks.lock().unwrap_or_else(|p| p.into_inner());
        let at = hooks.get(&(name.to_string(), which.to_string()))?;
        cooldown.checked_sub(at.elapsed()).filter(|d| !d.is_zero())
    }

    /// Hook `which` of probe `name` starts now (its cooldown begins).
    fn hook_started(&self, name: &str, which: &str) {
        self.hooks.lock().unwrap_or_else(|p| p.into_inner()).insert(
            (name.to_string(), which.to_string()),
            std::time::Instant::now(),
        );
    }

    /// The lock the hooks of probe `name` take turns on.
    fn hook_lock(&self, name: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.hook_locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(name.to_string())
            .or_default()
            .clone()
    }

    /// A hook still running after its alert went: waited for at shutdown.
    fn track_hook(&self, handle: JoinHandle<String>) {
        let mut hooks = self.hook_tasks.lock().unwrap_or_else(|p| p.into_inner());
        hooks.retain(|h| !h.is_finished());
        hooks.push(handle);
    }

    /// Start a backup of `name` now.
    pub fn start_backup(self: &Arc<Self>, name: &str, trigger: Trigger) {
        self.start_job(Job::Backup(name.to_string()), trigger);
    }

    /// Start `job`, unless the same job is running (then a skipped one is recorded).
    pub fn start_job(self: &Arc<Self>, job: Job, trigger: Trigger) {
        // A scheduled check reads the next part of the packs.
        let job = match (job, self.engine.config.maintenance.check_read_data) {
            (Job::Check(_), Some(share)) if share.parts > 1 => Job::Check(ReadData::Part {
                n: self.calendar().next_check_part % share.parts,
                of: share.parts,
            }),
            (Job::Check(_), Some(_)) => Job::Check(ReadData::All),
            (job, _) => job,
        };
        let key = job.key();
        let mut running = self.running();
        if running.get(&key).is_some_and(|h| !h.is_finished()) {
            let mut skipped =
                JobRecord::new(job.name(), job.subject(), trigger, jiff::Timestamp::now());
            skipped.outcome = Outcome::Skipped;
            skipped.finished_at = skipped.started_at;
            skipped.error = Some(format!("the previous {} was still running", job.name()));
            self.state().record(&skipped);
            let shared = self.clone();
            tokio::spawn(async move { jobs::store(&shared.engine, &skipped).await });
            return;
        }
        let shared = self.clone();
        let cancel = self.jobs_cancel.clone();
        let subject = job.subject().to_string();
        self.state()
            .targets
            .entry(subject.clone())
            .or_default()
            .running
            .insert(job.name().to_string(), jiff::Timestamp::now());
        let pinged = match (&job, &self.heartbeat) {
            (Job::Backup(_), Some(url)) if trigger != Trigger::Command => Some(url.clone()),
            _ => None,
        };
        if let Some(url) = &pinged {
            crate::notify::heartbeat(url, "/start");
        }
        let handle = tokio::spawn(async move {
            // Forget holds the repository alone; the others share it.
            let (_read, _write) = match job {
                Job::Forget => (None, Some(shared.upkeep.write().await)),
                _ => (Some(shared.upkeep.read().await), None),
            };
            // Beside other operations on the repository, as the commands run.
            let lock = match job {
                Job::Backup(_) | Job::Drill(_) => Some(
                    shared
                        .engine
                        .repo
                        .lock_async(
                            lifeboat_repo::LockKind::Shared,
                            &format!("lifeboat serve: {}", job.key()),
                        )
                        .await,
                ),
                Job::Forget | Job::Check(_) | Job::Copy(_) => None,
            };
            let record = match lock {
                Some(Err(e)) => {
                    let mut r =
                        JobRecord::new(job.name(), job.subject(), trigger, jiff::Timestamp::now());
                    r.outcome = Outcome::Failed;
                    r.finished_at = r.started_at;
                    r.error = Some(EngineError::from(e).full_message());
                    jobs::store(&shared.engine, &r).await;
                    r
                }
                _ => jobs::run_job(&shared.engine, &job, trigger, &cancel).await,
            };
            shared.alert_on(&job, &record);
            // What the job did joins the open incident, if one is open.
            shared.engine.keep_timeline().await;
            jobs::prune(&shared.engine.repo, job.subject(), shared.kept_jobs).await;
            if let Some(url) = &pinged {
                // One heartbeat for all targets: it is good only while no target's last
                // backup failed.
                let any_failing = shared.alerts().firing_with_prefix("backup:");
                match record.outcome {
                    Outcome::Failed => crate::notify::heartbeat(url, "/fail"),
                    Outcome::Succeeded if any_failing => crate::notify::heartbeat(url, "/fail"),
                    Outcome::Succeeded => crate::notify::heartbeat(url, ""),
                    Outcome::Interrupted | Outcome::Skipped => {}
                }
            }
            {
                let mut state = shared.state();
                state.record(&record);
                state
                    .targets
                    .entry(subject)
                    .or_default()
                    .running
                    .remove(job.name());
            }
            shared.calendar().record(
                &job.key(),
                &record,
                matches!(job, Job::Check(ReadData::Part { .. })),
            );
            shared.keep(Kept::Calendar);
            // The last job running: what the jobs freed goes back to the system.
            if shared
                .running()
                .values()
                .filter(|h| !h.is_finished())
                .count()
                <= 1
            {
                crate::memory::trim();
            }
            // A new backup or drill changes what `status` says: judge again soon — once
            // for all the jobs of a slot, not once per job (each judgement reads every
            // snapshot's manifest).
            if record.outcome == Outcome::Succeeded && matches!(job, Job::Backup(_) | Job::Drill(_))
            {
                shared.judge.notify_one();
            }
        });
        // Overdue: still running after `[serve] job-timeout` — an alert; it goes on.
        let (watch, limit) = (
            self.clone(),
            Duration::from_secs(self.engine.config.serve.job_timeout.as_secs()),
        );
        let overdue_key = format!("overdue:{key}");
        let job_name = job_name_for_alert(&key);
        let subject = subject_for_alert(&key);
        let watched = key.clone();
        tokio::spawn(async move {
            let key = watched;
            tokio::time::sleep(limit).await;
            let still = watch.running().get(&key).is_some_and(|h| !h.is_finished());
            if !still {
                return;
            }
            let alert = watch.alerts().problem(
                &overdue_key,
                "job-overdue",
                &subject,
                &format!(
                    "the {job_name} has been running for over {}",
                    lifeboat_drill::render::seconds(limit.as_secs_f64())
                ),
            );
            if let Some(a) = alert {
                watch.announce(&a);
            }
            // Resolved when it ends.
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                if watch.running().get(&key).is_none_or(|h| h.is_finished()) {
                    break;
                }
            }
            let cleared = watch.alerts().cleared(&overdue_key, "the job ended");
            if let Some(a) = cleared {
                watch.announce(&a);
            }
        });
        running.insert(key, handle);
    }

    /// A failed job raises `<job>:<subject>` (`backup:app`, `drill:app`, `forget:repository`);
    /// the next good one clears it.
    fn alert_on(self: &Arc<Self>, job: &Job, record: &JobRecord) {
        let key = job.key();
        let alert = {
            let mut alerts = self.alerts();
            match record.outcome {
                Outcome::Failed => alerts.problem(
                    &key,
                    &format!("{}-failed", job.name()),
                    job.subject(),
                    &format!(
                        "the {} failed: {}",
                        job.name(),
                        record.error.as_deref().unwrap_or("(no error text)")
                    ),
                ),
                Outcome::Succeeded => alerts.cleared(
                    &key,
                    &match &record.snapshot {
                        Some(s) => format!("the {} succeeded (snapshot {})", job.name(), s.short()),
                        None => format!("the {} succeeded", job.name()),
                    },
                ),
                Outcome::Interrupted | Outcome::Skipped => None,
            }
        };
        if let Some(a) = alert {
            self.announce(&a);
        }
    }

    /// A problem began or ended: keep the firing alerts, tell the channels, and add it to
    /// the open incident's timeline.
    fn announce(self: &Arc<Self>, alert: &crate::notify::Alert) {
        self.keep(Kept::Alerts);
        crate::notify::deliver(&self.engine.config.notify, alert);
        let entry = crate::incidents::Entry::new("alert", Some(&alert.subject), alert.headline())
            .with(serde_json::json!({
                "key": alert.key, "state": alert.state, "kind": alert.kind,
            }));
        let shared = self.clone();
        tokio::spawn(async move { crate::incidents::record(&shared.engine, vec![entry]).await });
    }

    /// Keep the firing alerts or the schedule's state in the side area, on a task of its
    /// own. Writes take turns, and each writes the state as it is at its turn.
    fn keep(self: &Arc<Self>, what: Kept) {
        let shared = self.clone();
        tokio::spawn(async move {
            let _turn = shared.side_writes.lock().await;
            let repo = &shared.engine.repo;
            match what {
                Kept::Alerts => {
                    let bytes = shared.alerts().snapshot();
                    alerts::Alerts::keep(repo, bytes).await;
                }
                Kept::Calendar => {
                    let bytes = shared.calendar().bytes();
                    calendar::Calendar::keep(repo, bytes).await;
                }
            }
        });
    }

    /// Send the reminders that are due: for each firing alert, to each channel with a
    /// `remind-every`, once per that interval since the alert began or was last recalled.
    fn remind(&self, now: jiff::Timestamp) {
        let channels: Vec<_> = self
            .engine
            .config
            .notify
            .iter()
            .filter(|c| c.remind_every.is_some())
            .collect();
        if channels.is_empty() {
            return;
        }
        let firing = self.alerts().firing();
        let mut reminded = self.reminded.lock().unwrap_or_else(|p| p.into_inner());
        reminded.retain(|(key, _), _| firing.iter().any(|a| &a.key == key));
        for alert in &firing {
            let began: jiff::Timestamp = alert.time.parse().unwrap_or(now);
            for channel in channels.iter().filter(|c| c.wants(&alert.kind)) {
                let every = channel.remind_every.map_or(0, |d| d.as_secs());
                let last = *reminded
                    .get(&(alert.key.clone(), channel.name.clone()))
                    .unwrap_or(&began);
                if every == 0 || last.duration_until(now).as_secs() < every as i64 {
                    continue;
                }
                reminded.insert((alert.key.clone(), channel.name.clone()), now);
                crate::notify::deliver_to(channel, &alert.reminder(began));
            }
        }
    }

    /// Evaluate every target's objectives as `status` does: a miss raises
    /// `objective:<target>`, meeting them again clears it.
    async fn watch_objectives(self: &Arc<Self>) {
        let rows = match crate::status::status(&self.engine).await {
            Ok(rows) => rows,
            Err(e) => {
                log::warn!("cannot evaluate the objectives: {}", e.full_message());
                return;
            }
        };
        self.state().status = rows.clone();
        let lags = crate::copies::lags(&self.engine, &rows).await;
        let mut send = Vec::new();
        {
            let mut alerts = self.alerts();
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
                // WAL archiving of a physical target, as the server reports it: its own
                // problem (`archiving:<target>`), besides the objectives it endangers.
                if let Some(server) = row.wal.as_ref().and_then(|w| w.server.as_ref()) {
                    let key = format!("archiving:{}", row.target);
                    send.extend(if server.failing {
                        alerts.problem(
                            &key,
                            "archiving-failed",
                            &row.target,
                            &format!(
                                "WAL archiving is failing: {} failures, the last of `{}`",
                                server.failed_count,
                                server.last_failed_wal.as_deref().unwrap_or("?")
                            ),
                        )
                    } else {
                        alerts.cleared(&key, "WAL archiving works again")
                    });
                }
            }
        }
        // Each copy's lag (`max-lag`): its own problem, `copy-lag:<copy>`.
        match lags {
            Ok(lags) => {
                self.state().copies = lags.clone();
                let mut alerts = self.alerts();
                for lag in lags {
                    let key = format!("copy-lag:{}", lag.copy);
                    send.extend(if lag.problems.is_empty() {
                        alerts.cleared(&key, "the copy is within its max-lag again")
                    } else {
                        alerts.problem(&key, "copy-behind", &lag.copy, &lag.problems.join("; "))
                    });
                }
            }
            Err(e) => log::warn!("cannot judge the copies' lag: {}", e.full_message()),
        }
        for a in send {
            self.announce(&a);
        }
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
        alerts: Mutex::new(alerts::Alerts::load(&engine.repo).await),
        calendar: Mutex::new(calendar::Calendar::load(&engine.repo).await),
        side_writes: tokio::sync::Mutex::new(()),
        reminded: Mutex::new(HashMap::new()),
        judge: tokio::sync::Notify::new(),
        heartbeat: engine.config.heartbeat.address()?,
        running: Mutex::new(HashMap::new()),
        jobs_cancel: Cancel::new(),
        upkeep: tokio::sync::RwLock::new(()),
        kept_jobs: std::env::var("LIFEBOAT_KEPT_JOBS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(jobs::KEPT_PER_TARGET),
        session: derive(token.as_ref().map(Redacted::expose), "session"),
        csrf: derive(token.as_ref().map(Redacted::expose), "csrf"),
        token,
        hooks: Mutex::new(HashMap::new()),
        hook_locks: Mutex::new(HashMap::new()),
        hook_tasks: Mutex::new(Vec::new()),
    });
    shared.resolve_unconfigured();
    let statuses = probes::initial(&shared);
    shared.state().probes = statuses;
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
            t.backups = snaps
                .iter()
                .filter(|s| &s.target == name && !s.emergency && s.is_good())
                .map(|s| s.time.timestamp())
                .collect();
            while t.backups.len() > state::KEPT_RECENT {
                t.backups.pop_front();
            }
            t.last_success = last.map(|s| s.time.timestamp());
            t.last_bytes = last
                .and_then(|s| s.manifest.as_ref().ok())
                .map_or(0, lifeboat_core::Manifest::logical_bytes);
        }
        state.tick = Some(std::time::Instant::now());
    }
    // The recent jobs of earlier runs, for the dashboard (read in the background: a long
    // history on S3 must not hold up the start).
    let seeding = shared.clone();
    tokio::spawn(async move {
        if let Ok(mut jobs) = jobs::history(&seeding.engine.repo, None).await {
            let mut state = seeding.state();
            let since = jobs.len().saturating_sub(state::KEPT_RECENT);
            let mut earlier: std::collections::VecDeque<JobRecord> = jobs.drain(since..).collect();
            // Jobs this `serve` ran meanwhile are already there (and in the history too).
            earlier.retain(|j| !state.recent.iter().any(|r| r.id == j.id));
            earlier.extend(state.recent.drain(..));
            while earlier.len() > state::KEPT_RECENT {
                earlier.pop_front();
            }
            state.recent = earlier;
        }
    });
    let mut calendar: Vec<(Job, Schedule)> = Vec::new();
    for (name, target) in &engine.config.targets {
        if let Some(s) = &target.schedule {
            calendar.push((Job::Backup(name.clone()), s.clone()));
        }
        if let Some(s) = &target.drill_schedule {
            calendar.push((Job::Drill(name.clone()), s.clone()));
        }
    }
    let upkeep = &engine.config.maintenance;
    if let Some(s) = &upkeep.forget_schedule {
        calendar.push((Job::Forget, s.clone()));
    }
    if let Some(s) = &upkeep.check_schedule {
        calendar.push((Job::Check(ReadData::None), s.clone()));
    }
    for (name, copy) in &engine.config.copies {
        if let Some(s) = &copy.copy_schedule {
            calendar.push((Job::Copy(name.clone()), s.clone()));
        }
    }
    let mut tasks = Vec::new();
    for (job, schedule) in calendar {
        tasks.push(tokio::spawn(schedule_job(
            shared.clone(),
            job,
            schedule,
            tz.clone(),
            shutdown.clone(),
        )));
    }
    // The change capture of every cdc target, for as long as `serve` runs.
    let mut captures = Vec::new();
    for (name, target) in &engine.config.targets {
        if target.mode == Some(lifeboat_core::config::PostgresMode::Cdc) {
            captures.push(tokio::spawn(capture::keep_capturing(
                shared.clone(),
                name.clone(),
                shutdown.clone(),
            )));
        }
    }
    for probe in &engine.config.probes {
        tasks.push(tokio::spawn(probes::watch(
            shared.clone(),
            probe.clone(),
            shutdown.clone(),
        )));
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
            let next = async {
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(60)) => {}
                    () = watching.judge.notified() => {
                        // The jobs of one slot end close together: judge once after them.
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            };
            if watch_stop.guard(next).await.is_err() {
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
            ticking.remind(jiff::Timestamp::now());
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
    // The captures store what they gathered and say where they stopped.
    let stopping = async {
        for c in captures {
            let _ = c.await;
        }
    };
    if tokio::time::timeout(limit, stopping).await.is_err() {
        log::warn!("a capture still storing after the shutdown timeout; leaving it");
    }
    // A failover hook is never cut off half-way by a stop of `serve`: it gets the same time.
    let hooks: Vec<JoinHandle<String>> =
        std::mem::take(&mut *shared.hook_tasks.lock().unwrap_or_else(|p| p.into_inner()));
    let waiting = async {
        for h in hooks {
            let _ = h.await;
        }
    };
    if tokio::time::timeout(limit, waiting).await.is_err() {
        log::warn!("a probe's hook still running after the shutdown timeout; leaving it");
    }
    for t in tasks {
        t.abort();
    }
    // The last state, written after every write still under way (they take turns): the
    // next `serve` starts from it.
    {
        let _turn = shared.side_writes.lock().await;
        let (alerts, calendar) = (shared.alerts().snapshot(), shared.calendar().bytes());
        alerts::Alerts::keep(&engine.repo, alerts).await;
        calendar::Calendar::keep(&engine.repo, calendar).await;
    }
    Ok(())
}

/// A value derived from the token (or from a random secret of this process): hex of
/// SHA-256 over the purpose and the secret.
fn derive(token: Option<&str>, purpose: &str) -> String {
    use sha2::Digest;
    static SECRET: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let secret = match token {
        Some(t) => t.to_string(),
        None => SECRET
            .get_or_init(|| {
                let mut bytes = [0u8; 32];
                let _ = std::fs::File::open("/dev/urandom")
                    .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes));
                hex::encode(bytes)
                    + &std::process::id().to_string()
                    + &jiff::Timestamp::now().as_nanosecond().to_string()
            })
            .clone(),
    };
    hex::encode(sha2::Sha256::digest(format!("lifeboat-{purpose}:{secret}")))
}

/// What [`Shared::keep`] writes.
#[derive(Debug, Clone, Copy)]
enum Kept {
    Alerts,
    Calendar,
}

async fn futures_join(handles: Vec<JoinHandle<()>>) {
    for h in handles {
        let _ = h.await;
    }
}

/// One job's calendar: a backup catches up if overdue; then the job at every slot until
/// shutdown.
async fn schedule_job(
    shared: Arc<Shared>,
    job: Job,
    schedule: Schedule,
    tz: jiff::tz::TimeZone,
    shutdown: Cancel,
) {
    {
        let now = jiff::Timestamp::now().to_zoned(tz.clone());
        // What ran: the kept schedule state, and for a backup its snapshots. A backup that
        // never ran is overdue; another job that never ran starts with its calendar.
        let kept = shared.calendar().last_succeeded(&job.key());
        let (last, never_ran_is_overdue) = match &job {
            Job::Backup(name) => (
                shared
                    .state()
                    .targets
                    .get(name)
                    .and_then(|t| t.last_success)
                    .max(kept),
                true,
            ),
            _ => (kept, shared.calendar().jobs.contains_key(&job.key())),
        };
        // Overdue: no success since the most recent slot that has passed.
        let overdue = match (last, latest_slot(&schedule, &now)) {
            (None, _) => never_ran_is_overdue,
            (Some(at), Some(slot)) => at < slot.timestamp(),
            (Some(_), None) => false,
        };
        if overdue {
            log::info!(
                "`{}`: no success within one interval of `{schedule}`; catching up",
                job.key()
            );
            shared.start_job(job.clone(), Trigger::CatchUp);
        }
    }
    loop {
        let now = jiff::Timestamp::now().to_zoned(tz.clone());
        let Some(next) = schedule.next_after(&now) else {
            log::warn!(
                "`{}`: the schedule `{schedule}` has no next slot",
                job.key()
            );
            return;
        };
        let due = next
            .timestamp()
            .checked_add(
                jiff::SignedDuration::try_from(jitter_of(&shared, &job)).unwrap_or_default(),
            )
            .unwrap_or(next.timestamp());
        // Sleep in short steps against the wall clock: the monotonic clock stands still
        // while the host is suspended and ignores a clock that is set, so one long sleep
        // would miss the slot by that much.
        loop {
            let left = jiff::Timestamp::now().duration_until(due);
            if left <= jiff::SignedDuration::ZERO {
                break;
            }
            let step = Duration::try_from(left)
                .unwrap_or(Duration::ZERO)
                .min(WALL_CLOCK_STEP);
            if shutdown.guard(tokio::time::sleep(step)).await.is_err() {
                return;
            }
        }
        // Woken long after the slot (a suspended host, a clock set forward): a catch-up.
        let late = due.duration_until(jiff::Timestamp::now());
        let trigger = match schedule.interval(&next) {
            Some(interval) if late > interval => Trigger::CatchUp,
            _ => Trigger::Schedule,
        };
        shared.start_job(job.clone(), trigger);
    }
}

/// How long the scheduler sleeps at most before it looks at the wall clock again.
const WALL_CLOCK_STEP: Duration = Duration::from_secs(15);

/// `backup` of the key `backup:app`.
fn job_name_for_alert(key: &str) -> String {
    key.split_once(':').map_or(key, |(j, _)| j).to_string()
}

/// `app` of the key `backup:app`.
fn subject_for_alert(key: &str) -> String {
    key.split_once(':').map_or(key, |(_, s)| s).to_string()
}

/// The target's fixed offset within its `jitter`: the same every slot, different between
/// targets (a hash of the job's key).
fn jitter_of(shared: &Shared, job: &Job) -> Duration {
    let jitter = match job {
        Job::Backup(t) | Job::Drill(t) => shared
            .engine
            .config
            .targets
            .get(t)
            .and_then(|c| c.jitter)
            .map_or(0, |j| j.as_secs()),
        Job::Forget | Job::Check(_) | Job::Copy(_) => 0,
    };
    offset_within(&job.key(), jitter)
}

/// A fixed offset below `seconds` for `key` (FNV-1a of the key, stable across runs).
fn offset_within(key: &str, seconds: u64) -> Duration {
    if seconds == 0 {
        return Duration::ZERO;
    }
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    Duration::from_millis(hash % (seconds * 1000))
}

/// The latest slot of `schedule` at or before `now`.
fn latest_slot(schedule: &Schedule, now: &jiff::Zoned) -> Option<jiff::Zoned> {
    let interval = schedule.interval(now)?;
    let mut slot = schedule.next_after(&now.checked_sub(interval.checked_mul(2)?).ok()?)?;
    if slot > *now {
        return None;
    }
    while let Some(next) = schedule.next_after(&slot) {
        if next > *now {
            break;
        }
        slot = next;
    }
    Some(slot)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_is_a_fixed_offset_per_job_within_its_bound() {
        let a = offset_within("backup:app", 600);
        assert_eq!(a, offset_within("backup:app", 600), "not stable");
        assert!(a < Duration::from_secs(600));
        let offsets: std::collections::HashSet<Duration> = (0..20)
            .map(|i| offset_within(&format!("backup:t{i}"), 600))
            .collect();
        assert!(offsets.len() > 15, "targets start together: {offsets:?}");
        assert_eq!(offset_within("backup:app", 0), Duration::ZERO);
    }

    #[test]
    fn the_latest_slot_is_the_one_that_passed_last() {
        let now: jiff::Zoned = "2026-12-06T10:07:30+00:00[UTC]".parse().unwrap();
        let slot = |s: &str| {
            latest_slot(&s.parse().unwrap(), &now).map(|z| z.strftime("%H:%M:%S").to_string())
        };
        assert_eq!(slot("*/15 * * * *").as_deref(), Some("10:00:00"));
        assert_eq!(slot("0 2 * * *").as_deref(), Some("02:00:00"));
        // A daily slot just passed: a backup from before it is overdue, one after it not.
        let daily: Schedule = "0 10 * * *".parse().unwrap();
        let at = latest_slot(&daily, &now).unwrap().timestamp();
        assert_eq!(at.to_string(), "2026-12-06T10:00:00Z");
    }
}
