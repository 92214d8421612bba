//! Probes in `serve`: each `[[probes]]` probe runs on its interval (their starts spread over
//! the first interval), its runs become up/down ([`crate::probes::status`]), and a change
//! of state:
//! - runs its hook (`on-down`, `on-up`) unless the same hook ran within `cooldown`; the run,
//!   its output and exit status go into the job history (`jobs/probe:<name>/`);
//! - raises or resolves the alert `probe:<name>` (kind `probe-down`), saying what the hook
//!   did — unless a probe it `depends-on` is down or failing: then its alert is held back,
//!   one page per root cause, and raised if it is still down once the other is up. A probe
//!   that goes down waits for each probe it depends on to run once more before its alert
//!   is raised, so that which of the two failed first does not decide who pages;
//! - joins the open incident's timeline.

use std::{sync::Arc, time::Duration};

use lifeboat_core::probes::ProbeConfig;

use super::Shared;
use crate::{
    cancel::Cancel,
    jobs::{self, JobRecord, Outcome, Trigger},
    probes::{
        self, Finding, Memory,
        status::{State, Status},
    },
};

/// How long an alert waits for its hook to finish, to say what it did.
const HOOK_WAIT: Duration = Duration::from_secs(30);
/// How long a hook may run.
const HOOK_TIMEOUT: Duration = Duration::from_secs(600);

/// The statuses `serve` starts with: down where the last `serve` left the alert firing.
pub fn initial(shared: &Shared) -> std::collections::BTreeMap<String, Status> {
    let alerts = shared.alerts();
    let firing: Vec<String> = alerts.firing().into_iter().map(|a| a.key).collect();
    shared
        .engine
        .config
        .probes
        .iter()
        .map(|p| {
            let key = format!("probe:{}", p.name);
            (p.name.clone(), Status::new(firing.contains(&key)))
        })
        .collect()
}

/// Run `probe` on its interval until `shutdown`.
pub async fn watch(shared: Arc<Shared>, probe: ProbeConfig, shutdown: Cancel) {
    let every = probe.interval().as_duration();
    let offset = super::offset_within(&format!("probe:{}", probe.name), every.as_secs());
    if shutdown.guard(tokio::time::sleep(offset)).await.is_err() {
        return;
    }
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut memory = Memory::default();
    loop {
        if shutdown.guard(tick.tick()).await.is_err() {
            return;
        }
        let found = probes::run_once(&shared.engine.config, &probe, &mut memory).await;
        // The state and, for a change, the hook it calls for, decided under one lock: the
        // alert waits for the hook (`hook_pending`), whoever judges meanwhile.
        let (change, owed) = {
            let mut state = shared.state();
            let status = state
                .probes
                .entry(probe.name.clone())
                .or_insert_with(|| Status::new(false));
            let before = status.state;
            let change = status.record(&found, probe.fail_after(), probe.recover_after());
            let hook = change.and_then(|to| hook_for(&probe, before, to, status));
            if change.is_some() {
                status.hook = None;
                status.hook_pending = hook.is_some();
            }
            let owed = match (change, &status.owed) {
                (None, Some(which)) if Some(which.as_str()) == wanted(status.state) => {
                    Some(which.clone())
                }
                _ => None,
            };
            (
                change.map(|to| (before, to, status.failures.max(status.successes), hook)),
                owed,
            )
        };
        if let Some((before, to, runs, hook)) = change {
            changed(&shared, &probe, (before, to), runs, hook, &found).await;
        } else if let Some(which) = owed {
            // A hook the cooldown held back, and the state still calls for it: run it once
            // the cooldown is over.
            if shared
                .cooldown_left(&probe.name, &which, probe.cooldown().as_duration())
                .is_none()
            {
                let said = hook(&shared, &probe, &which, &found).await;
                log::info!(
                    "probe `{}`: {said} (held back by its cooldown until now)",
                    probe.name
                );
            }
        }
        judge(&shared);
    }
}

/// The hook a state calls for.
fn wanted(state: State) -> Option<&'static str> {
    match state {
        State::Down => Some("on-down"),
        State::Up => Some("on-up"),
        State::Unknown => None,
    }
}

/// The hook a change from `before` to `to` runs: `on-down` going down, `on-up` coming back
/// from down (a probe first seen up has nothing to undo) — unless it was the last hook that
/// ran (going down again before `on-up` could run: still failed over).
fn hook_for(
    probe: &ProbeConfig,
    before: State,
    to: State,
    status: &mut Status,
) -> Option<&'static str> {
    let which = match (before, to) {
        (_, State::Down) if probe.on_down.is_some() => "on-down",
        (State::Down, State::Up) if probe.on_up.is_some() => "on-up",
        _ => {
            status.owed = None;
            return None;
        }
    };
    if status.last_hook.as_deref() == Some(which) {
        status.owed = None;
        return None;
    }
    Some(which)
}

/// `probe` went from one state to another after `runs` runs in a row, calling for `hook`.
async fn changed(
    shared: &Arc<Shared>,
    probe: &ProbeConfig,
    (before, to): (State, State),
    runs: u32,
    hook_name: Option<&'static str>,
    found: &Finding,
) {
    let _ = before;
    let name = &probe.name;
    let text = match to {
        State::Down => format!(
            "probe `{name}` is down ({runs} failed runs): {}",
            found.detail
        ),
        _ => format!("probe `{name}` is up: {}", found.detail),
    };
    log::info!("{text}");
    let entry = crate::incidents::Entry::new("probe", Some(name), text).with(serde_json::json!({
        "probe": name, "state": to.as_str(), "latency_seconds": found.latency_seconds,
    }));
    let engine = shared.engine.clone();
    tokio::spawn(async move { crate::incidents::record(&engine, vec![entry]).await });
    if let Some(which) = hook_name {
        hook(shared, probe, which, found).await;
    }
}

/// Run hook `which` of `probe` (on a task of its own, tracked for shutdown), waiting up to
/// [`HOOK_WAIT`] for what it did; then the probe's alert may go, saying so.
async fn hook(shared: &Arc<Shared>, probe: &ProbeConfig, which: &str, found: &Finding) -> String {
    let which: &'static str = if which == "on-down" {
        "on-down"
    } else {
        "on-up"
    };
    let command = match which {
        "on-down" => probe.on_down.clone(),
        _ => probe.on_up.clone(),
    }
    .unwrap_or_default();
    let (s, p, f) = (shared.clone(), probe.clone(), found.clone());
    let mut run = tokio::spawn(async move { run_hook(&s, &p, which, &command, &f).await });
    let said = match tokio::time::timeout(HOOK_WAIT, &mut run).await {
        Ok(Ok(said)) => said,
        _ => {
            shared.track_hook(run);
            format!("{which} is still running; its outcome goes to the job history")
        }
    };
    if let Some(status) = shared.state().probes.get_mut(&probe.name) {
        status.hook = Some(said.clone());
        status.hook_pending = false;
    }
    said
}

/// Raise or resolve every probe's alert from the states now (after every run: a held-back
/// alert is raised as soon as what held it is found up).
pub fn judge(shared: &Arc<Shared>) {
    let config = &shared.engine.config;
    let mut send = Vec::new();
    {
        let state = shared.state();
        let mut alerts = shared.alerts();
        for p in &config.probes {
            let Some(s) = state.probes.get(&p.name) else {
                continue;
            };
            // Its hook is running: the alert will say what it did.
            if s.hook_pending {
                continue;
            }
            let key = format!("probe:{}", p.name);
            let detail = s.last.as_ref().map_or("", |f| f.detail.as_str());
            let hook = s
                .hook
                .as_deref()
                .map_or(String::new(), |h| format!(" — {h}"));
            match s.state {
                State::Down if hold(config, &state.probes, &p.name) == Hold::No => {
                    send.extend(alerts.problem(
                        &key,
                        "probe-down",
                        &p.name,
                        &format!("probe `{}` is down: {detail}{hook}", p.name),
                    ));
                }
                State::Up => {
                    send.extend(alerts.cleared(&key, &format!("up again: {detail}{hook}")));
                }
                _ => {}
            }
        }
    }
    for a in send {
        shared.announce(&a);
    }
}

/// Whether a down probe's alert waits for the probes it depends on.
#[derive(Debug, PartialEq, Eq)]
pub enum Hold {
    /// Raise it: every probe it depends on ran since it went down and passed.
    No,
    /// One of them has not run since, or came back after this one's last run: wait.
    Pending,
    /// Held back: this one (directly or not) is down, or its last run failed.
    By(String),
}

/// Whether the alert of `name` (down) is held back by a probe it depends on.
pub fn hold(
    config: &lifeboat_core::Config,
    probes: &std::collections::BTreeMap<String, Status>,
    name: &str,
) -> Hold {
    let since = probes.get(name).and_then(|s| s.since);
    let ran = probes
        .get(name)
        .and_then(|s| s.last.as_ref())
        .and_then(|l| l.at);
    let mut pending = false;
    let mut stack = vec![name.to_string()];
    let mut seen = std::collections::BTreeSet::new();
    while let Some(n) = stack.pop() {
        let deps = config
            .probes
            .iter()
            .find(|p| p.name == n)
            .and_then(|p| p.depends_on.clone())
            .unwrap_or_default();
        for d in deps {
            if let Some(ds) = probes.get(&d) {
                let failed = ds.last.as_ref().is_some_and(|l| !l.ok);
                if ds.state == State::Down || failed {
                    return Hold::By(d);
                }
                // It has run since this one went down, and this one has run since it
                // came back (else this one's failure may be from its time down).
                let ran_since = match (ds.last.as_ref().and_then(|l| l.at), since) {
                    (Some(at), Some(since)) => at >= since,
                    _ => false,
                };
                let back_after = matches!((ds.since, ran), (Some(back), Some(ran)) if back > ran);
                pending |= !ran_since || back_after;
            }
            if seen.insert(d.clone()) {
                stack.push(d);
            }
        }
    }
    if pending { Hold::Pending } else { Hold::No }
}

/// Run a hook of `probe` (or record why not: its cooldown), as a job of `probe:<name>`;
/// what it did, in a few words for the alert. The hooks of one probe run one at a time.
async fn run_hook(
    shared: &Arc<Shared>,
    probe: &ProbeConfig,
    which: &'static str,
    command: &str,
    found: &Finding,
) -> String {
    let lock = shared.hook_lock(&probe.name);
    let _one_at_a_time = lock.lock().await;
    let subject = format!("probe:{}", probe.name);
    let now = jiff::Timestamp::now();
    let mut record = JobRecord::new(which, &subject, Trigger::Probe, now);
    let cooldown = probe.cooldown();
    let set_owed = |owed: Option<&str>, ran: bool| {
        if let Some(status) = shared.state().probes.get_mut(&probe.name) {
            status.owed = owed.map(str::to_string);
            if ran {
                status.last_hook = Some(which.to_string());
            }
        }
    };
    let said = if let Some(left) = shared.cooldown_left(&probe.name, which, cooldown.as_duration())
    {
        record.outcome = Outcome::Skipped;
        record.finished_at = Some(now);
        let why = format!(
            "{which} not run: it ran within `cooldown` {cooldown}; it runs in {} if the probe is still {}",
            lifeboat_drill::render::seconds(left.as_secs_f64()),
            if which == "on-down" { "down" } else { "up" }
        );
        record.error = Some(why.clone());
        set_owed(Some(which), false);
        why
    } else {
        shared.hook_started(&probe.name, which);
        set_owed(None, true);
        let began = std::time::Instant::now();
        let state = if which == "on-down" { "down" } else { "up" };
        let ran = tokio::time::timeout(
            HOOK_TIMEOUT,
            crate::drill::checks::run_command(
                command,
                &[
                    ("LIFEBOAT_PROBE", probe.name.as_str()),
                    ("LIFEBOAT_PROBE_STATE", state),
                    ("LIFEBOAT_PROBE_DETAIL", found.detail.as_str()),
                ],
                &[],
            ),
        )
        .await;
        record.seconds = began.elapsed().as_secs_f64();
        record.finished_at = Some(jiff::Timestamp::now());
        match ran {
            Ok(Ok(out)) => {
                record.outcome = Outcome::Succeeded;
                record.detail = Some(out.clone());
                format!("{which} ran: {out}")
            }
            Ok(Err(out)) => {
                record.outcome = Outcome::Failed;
                record.error = Some(out.clone());
                format!("{which} FAILED: {out}")
            }
            Err(_) => {
                record.outcome = Outcome::Failed;
                let e = format!(
                    "{which} did not finish within {} and was stopped",
                    lifeboat_drill::render::seconds(HOOK_TIMEOUT.as_secs_f64())
                );
                record.error = Some(e.clone());
                e
            }
        }
    };
    log::info!("probe `{}`: {said}", probe.name);
    shared.state().record(&record);
    // The record is written meanwhile: the alert need not wait for the repository.
    let (s, keep) = (shared.clone(), shared.kept_jobs);
    tokio::spawn(async move {
        jobs::store(&s.engine, &record).await;
        jobs::prune(&s.engine.repo, &subject, keep).await;
    });
    said
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn at(s: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    fn run(probes: &mut BTreeMap<String, Status>, name: &str, ok: bool, t: i64) {
        let s = probes.get_mut(name).unwrap();
        let f = Finding {
            probe: String::new(),
            kind: "tcp",
            ok,
            at: Some(at(t)),
            latency_seconds: 0.0,
            detail: String::new(),
            problems: Vec::new(),
            queues: Vec::new(),
        };
        s.record(&f, 1, 1);
    }

    #[test]
    fn a_dependent_alert_waits_for_its_dependency_and_is_held_while_it_fails() {
        let config = lifeboat_core::Config::parse(
            "[repository]\nurl = \"/tmp/r\"\n\
             [[probes]]\nname = \"db\"\nkind = \"tcp\"\nurl = \"x:1\"\n\
             [[probes]]\nname = \"api\"\nkind = \"tcp\"\nurl = \"x:2\"\ndepends-on = [\"db\"]\n\
             [[probes]]\nname = \"web\"\nkind = \"tcp\"\nurl = \"x:3\"\ndepends-on = [\"api\"]\n",
            std::path::Path::new("t.toml"),
        )
        .unwrap();
        let mut probes: BTreeMap<String, Status> = ["db", "api", "web"]
            .into_iter()
            .map(|n| (n.to_string(), Status::new(false)))
            .collect();
        run(&mut probes, "db", true, 0);
        run(&mut probes, "api", true, 0);
        run(&mut probes, "api", false, 5);
        // `db` has not run since `api` went down: wait.
        assert_eq!(hold(&config, &probes, "api"), Hold::Pending);
        run(&mut probes, "db", false, 6);
        assert_eq!(hold(&config, &probes, "api"), Hold::By("db".into()));
        // Through `api`, `web` is held by `db` too.
        run(&mut probes, "web", false, 7);
        assert_eq!(hold(&config, &probes, "web"), Hold::By("api".into()));
        // `db` is back after `api`'s last run: `api` must run again first.
        run(&mut probes, "db", true, 8);
        assert_eq!(hold(&config, &probes, "api"), Hold::Pending);
        // `api` still fails with `db` up: its own problem, raised.
        run(&mut probes, "api", false, 9);
        assert_eq!(hold(&config, &probes, "api"), Hold::No);
    }
}
