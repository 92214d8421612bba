//! What each kind's drill builds on: the [`Rehearsal`] trait a kind implements (provision,
//! restore, recover, check, teardown), the [`Drill`] under way that times its phases and
//! always tears down, and the default choice of the snapshot to drill.

use std::{future::Future, time::Instant};

use lifeboat_core::{Manifest, Redacted, TargetConfig, config::CheckConfig};
use lifeboat_drill::Phase;
use lifeboat_repo::SnapshotInfo;

use crate::{
    Engine,
    cancel::{Cancel, Cancelled},
    drill::checks::Findings,
    events::{Event, Op},
};

/// The snapshot a drill restores, with its manifest.
pub type Chosen = (SnapshotInfo, Manifest);

/// One kind of target's part in a drill. The runner times every phase, abandons the running
/// one on cancellation, and always calls [`Rehearsal::teardown`], whatever happened before.
pub trait Rehearsal: Send {
    /// What it will do, in steps, before anything is provisioned (`drill --dry-run`).
    fn describe(&self) -> Vec<String>;
    /// Create the scratch environment; returns what it is, for the report.
    fn provision(&mut self) -> impl Future<Output = Result<String, String>> + Send;
    /// Restore the snapshot into it; `Err`: the backup cannot be restored (a failed check).
    fn restore(&mut self) -> impl Future<Output = Result<String, String>> + Send;
    /// Bring what was restored to a consistent state (physical: start the server and
    /// replay the archived WAL); `None` for kinds without such a phase.
    fn recover(&mut self) -> impl Future<Output = Result<Option<String>, String>> + Send {
        async { Ok(None) }
    }
    /// The newest point the restored state holds, when only the drill can tell (the last
    /// commit a recovery replayed).
    fn restored_point(&self) -> Option<jiff::Timestamp> {
        None
    }
    /// What the recovery phase aims at, as the report's check names it.
    fn recovery_goal(&self) -> String {
        "recover to the end of the archive".into()
    }
    /// Where the restored state can be reached, for a whole-system drill's commands: `URL`
    /// (a database, a server) and/or `DIR` (a folder), as the target's checks get them in
    /// `$LIFEBOAT_DRILL_URL` / `$LIFEBOAT_DRILL_DIR`. Asked after the checks passed.
    fn env(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }
    /// Check the restored state; results go into `findings` as they come.
    fn check(&mut self, findings: &mut Findings) -> impl Future<Output = ()> + Send;
    /// Remove the scratch environment; works in any state, also after a failed provision.
    fn teardown(&mut self) -> impl Future<Output = Result<(), String>> + Send;
}

/// A drill of one target under way: what a kind's rehearsal reads (the engine, the target,
/// its rules, the scratch settings) and what the runner records.
pub struct Drill {
    pub engine: Engine,
    pub name: String,
    pub cfg: TargetConfig,
    /// The target's `[[checks]]` rules.
    pub rules: Vec<CheckConfig>,
    pub started_at: jiff::Timestamp,
    /// `[drill] scratch-url`, for logical PostgreSQL targets.
    pub scratch_url: Option<Redacted>,
    /// `[drill] scratch-bucket`, for bucket targets.
    pub scratch_bucket: Option<String>,
    pub jobs: u32,
    /// `--time`: the moment drilled.
    pub time: Option<jiff::Timestamp>,
    pub(crate) t0: Instant,
    pub(crate) cancel: Cancel,
    pub(crate) phases: Vec<Phase>,
    pub(crate) findings: Findings,
    pub(crate) chosen: Option<Chosen>,
    pub(crate) scratch: String,
    pub(crate) verified_at: Option<f64>,
    /// Set by kinds that learn it while restoring (physical recovery).
    pub(crate) restored_point: Option<jiff::Timestamp>,
    /// Only plan: a kind's rehearsal is described into `steps`, nothing is provisioned.
    pub(crate) dry_run: bool,
    pub(crate) steps: Vec<String>,
    /// A whole-system drill keeps the scratch environment until the plan is done.
    pub(crate) hold: Option<Hold>,
}

/// How a whole-system drill holds a target's scratch environment: once checked, the drill
/// sends whether it passed and where it is (`Rehearsal::env`), then waits for `release`
/// (or cancellation) before its teardown.
pub struct Hold {
    pub ready: tokio::sync::oneshot::Sender<(bool, Vec<(&'static str, String)>)>,
    pub release: tokio::sync::oneshot::Receiver<()>,
}

/// How a drill stopped early: a failed check (the backup cannot be restored), an error of
/// the environment, or cancellation.
pub enum Stop {
    Failed,
    Error(String),
    Interrupted,
}

impl From<Cancelled> for Stop {
    fn from(_: Cancelled) -> Self {
        Self::Interrupted
    }
}

impl Drill {
    pub(crate) fn say(&self, text: String) {
        self.engine.step(Op::Drill, &self.name, text);
    }

    pub(crate) fn phase(&mut self, name: &str, start: Instant, ok: bool) {
        self.phases.push(Phase {
            name: name.to_string(),
            start: start.duration_since(self.t0).as_secs_f64(),
            seconds: start.elapsed().as_secs_f64(),
            ok,
        });
    }

    /// The snapshot's manifest has no section for its kind: a failed check.
    pub fn missing_section(&mut self) -> Stop {
        self.findings.add(
            "restore",
            "a readable manifest",
            false,
            "the manifest has no section for its kind".into(),
        );
        Stop::Failed
    }

    /// Provision, restore, recover, check — each timed, each abandoned on cancellation —
    /// then teardown, whatever happened.
    pub async fn rehearse(&mut self, r: &mut impl Rehearsal) -> Result<(), Stop> {
        if self.dry_run {
            self.steps = r.describe();
            return Ok(());
        }
        let outcome = self.provision_restore_check(r).await;
        if let Some(hold) = self.hold.take() {
            let env = if outcome.is_ok() { r.env() } else { Vec::new() };
            let _ = hold.ready.send((outcome.is_ok(), env));
            if outcome.is_ok() {
                let _ = self.cancel.guard(hold.release).await;
            }
        }
        let start = Instant::now();
        let torn = r.teardown().await;
        if let Err(e) = &torn {
            self.engine.events.event(Event::Warning {
                target: Some(self.name.clone().into()),
                text: format!("teardown of the scratch environment: {e}"),
            });
        }
        self.phase("teardown", start, torn.is_ok());
        outcome
    }

    async fn provision_restore_check(&mut self, r: &mut impl Rehearsal) -> Result<(), Stop> {
        let start = Instant::now();
        let provisioned = self.cancel.guard(r.provision()).await?;
        self.phase("provision", start, provisioned.is_ok());
        self.scratch = provisioned.map_err(|e| Stop::Error(format!("cannot provision: {e}")))?;
        self.say(format!("  scratch: {}", self.scratch));

        let start = Instant::now();
        self.say("  restoring".into());
        let restored = self.cancel.guard(r.restore()).await?;
        self.phase("restore", start, restored.is_ok());
        let passed = restored.is_ok();
        let detail = restored.unwrap_or_else(|e| e);
        self.findings
            .add("restore", "restore the backup", passed, detail);
        if !passed {
            return Err(Stop::Failed);
        }

        let start = Instant::now();
        let recovered = self.cancel.guard(r.recover()).await?;
        match recovered {
            Ok(None) => {}
            Ok(Some(detail)) => {
                self.phase("recovery", start, true);
                self.findings
                    .add("recovery", r.recovery_goal(), true, detail);
                self.restored_point = r.restored_point();
            }
            Err(e) => {
                self.phase("recovery", start, false);
                self.findings.add("recovery", r.recovery_goal(), false, e);
                return Err(Stop::Failed);
            }
        }

        let start = Instant::now();
        self.say("  checking".into());
        let checked = self.cancel.guard(r.check(&mut self.findings)).await;
        let ok = self.findings.0.iter().all(|c| c.passed);
        self.phase("checks", start, ok);
        checked?;
        self.verified_at = Some(self.t0.elapsed().as_secs_f64());
        Ok(())
    }
}

/// The snapshot a drill (or `status`) takes as the target's newest restorable state: the
/// newest non-emergency one (taken at or before `time`) that is not an incomplete backup.
/// An unreadable one is chosen too: it is a finding, not a reason to quietly drill an older
/// one.
pub fn newest_restorable<'s>(
    name: &str,
    snaps: &'s [SnapshotInfo],
    time: Option<jiff::Timestamp>,
) -> Result<&'s SnapshotInfo, String> {
    snaps
        .iter()
        .rev()
        .filter(|s| !s.emergency && time.is_none_or(|t| s.time.timestamp() <= t))
        .find(|s| !matches!(&s.manifest, Ok(m) if !m.complete))
        .ok_or_else(|| match time {
            Some(t) => format!("no complete snapshot of `{name}` at or before {t}"),
            None => format!("no complete snapshot of `{name}`"),
        })
}
