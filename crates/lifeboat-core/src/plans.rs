//! `[plans.NAME]`: a recovery plan — the runbook's "bring everything back" as ordered steps
//! that `lifeboat recover NAME` runs and `lifeboat drill --plan NAME` rehearses.
//!
//! ```toml
//! [plans.everything]
//! description = "Full outage: database, then storage, then the queue"
//! objectives = { rto = "4h" }
//!
//! [[plans.everything.steps]]
//! run = "ssh app-1 'touch /srv/app/maintenance'"
//!
//! [[plans.everything.steps]]
//! restore = ["db"]
//!
//! [[plans.everything.steps]]
//! restore = ["uploads", "queue"]     # in parallel
//!
//! [[plans.everything.steps]]
//! http = "https://app.example.com/health"
//! retry-for = "5m"
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::HumanDuration;

/// One plan.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PlanConfig {
    pub description: Option<String>,
    #[serde(default)]
    pub objectives: PlanObjectives,
    #[serde(default)]
    pub steps: Vec<StepConfig>,
}

/// `objectives = { rto = "4h" }`: how long the whole plan may take.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PlanObjectives {
    pub rto: Option<HumanDuration>,
}

/// One step: exactly one of `restore`, `run`, `http`, `checks`, `probe`, `manual`, with
/// the keys that go with it.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct StepConfig {
    /// A name for reports; default: the action in words.
    pub name: Option<String>,
    /// Restore these targets, in parallel, as `restore --force` does (emergency backup
    /// first, each kind's verification, the target's `[[checks]]`).
    pub restore: Option<Vec<String>>,
    /// Run a command with `sh -c` (maintenance mode, stop writers, reindex).
    pub run: Option<String>,
    /// `run`, `http`: how long it may take (default 10 min for `run`).
    pub timeout: Option<HumanDuration>,
    /// `run`: extra environment.
    pub env: Option<BTreeMap<String, String>>,
    /// `run`: the working directory.
    pub workdir: Option<std::path::PathBuf>,
    /// Wait until this URL answers as expected.
    pub http: Option<String>,
    /// `http`: the status expected (default: any 2xx).
    pub expect_status: Option<u16>,
    /// `http`: text the body must contain.
    pub body_contains: Option<String>,
    /// `http`: keep trying this long (default 1 min).
    pub retry_for: Option<HumanDuration>,
    /// Run these targets' `[[checks]]` against the live (restored) targets.
    pub checks: Option<Vec<String>>,
    /// Wait until this `[[probes]]` probe passes (`retry-for`, default 1 min).
    pub probe: Option<String>,
    /// Wait for a person to confirm (at a terminal, or a line on stdin).
    pub manual: Option<String>,
    /// A failure of this step is recorded and the plan goes on.
    #[serde(default)]
    pub continue_on_error: bool,
}

/// What a step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind {
    Restore,
    Run,
    Http,
    Checks,
    Probe,
    Manual,
}

impl StepConfig {
    /// The step's one action, or why it has none or several.
    pub fn kind(&self) -> Result<StepKind, String> {
        let set: Vec<(StepKind, &str)> = [
            (self.restore.is_some(), StepKind::Restore, "restore"),
            (self.run.is_some(), StepKind::Run, "run"),
            (self.http.is_some(), StepKind::Http, "http"),
            (self.checks.is_some(), StepKind::Checks, "checks"),
            (self.probe.is_some(), StepKind::Probe, "probe"),
            (self.manual.is_some(), StepKind::Manual, "manual"),
        ]
        .into_iter()
        .filter(|(on, _, _)| *on)
        .map(|(_, k, name)| (k, name))
        .collect();
        match set.as_slice() {
            [(k, _)] => Ok(*k),
            [] => Err(
                "has no action: give one of `restore`, `run`, `http`, `checks`, `probe`, `manual`"
                    .into(),
            ),
            several => Err(format!(
                "has several actions ({}): give one per step",
                several
                    .iter()
                    .map(|(_, n)| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }

    /// The keys given that do not go with the step's action.
    fn stray_keys(&self, kind: StepKind) -> Vec<&'static str> {
        let mut stray = Vec::new();
        let mut check = |set: bool, key: &'static str, allowed: &[StepKind]| {
            if set && !allowed.contains(&kind) {
                stray.push(key);
            }
        };
        check(
            self.timeout.is_some(),
            "timeout",
            &[StepKind::Run, StepKind::Http],
        );
        check(self.env.is_some(), "env", &[StepKind::Run]);
        check(self.workdir.is_some(), "workdir", &[StepKind::Run]);
        check(
            self.expect_status.is_some(),
            "expect-status",
            &[StepKind::Http],
        );
        check(
            self.body_contains.is_some(),
            "body-contains",
            &[StepKind::Http],
        );
        check(
            self.retry_for.is_some(),
            "retry-for",
            &[StepKind::Http, StepKind::Probe],
        );
        stray
    }

    /// The step in words, for plans and reports.
    pub fn title(&self) -> String {
        if let Some(n) = &self.name {
            return n.clone();
        }
        match self.kind() {
            Ok(StepKind::Restore) => format!(
                "restore {}",
                names(self.restore.as_deref().unwrap_or_default())
            ),
            Ok(StepKind::Run) => format!("run `{}`", self.run.as_deref().unwrap_or_default()),
            Ok(StepKind::Http) => format!(
                "wait for {} to answer",
                crate::redact_url(self.http.as_deref().unwrap_or_default())
            ),
            Ok(StepKind::Checks) => format!(
                "check {}",
                names(self.checks.as_deref().unwrap_or_default())
            ),
            Ok(StepKind::Probe) => format!(
                "wait for probe `{}`",
                self.probe.as_deref().unwrap_or_default()
            ),
            Ok(StepKind::Manual) => {
                format!("confirm: {}", self.manual.as_deref().unwrap_or_default())
            }
            Err(_) => "(invalid step)".into(),
        }
    }
}

fn names(targets: &[String]) -> String {
    targets
        .iter()
        .map(|t| format!("`{t}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Check every plan against the targets: each step has one action with its own keys, and
/// names targets that exist. The first problem, naming the plan and the step.
pub fn validate(
    plans: &BTreeMap<String, PlanConfig>,
    targets: &dyn Fn(&str) -> bool,
    probes: &dyn Fn(&str) -> bool,
) -> Result<(), String> {
    for (name, plan) in plans {
        crate::config::validate_target_name(name)
            .map_err(|e| format!("plan: {}", e.replace("target name", "plan name")))?;
        if plan.steps.is_empty() {
            return Err(format!(
                "`plans.{name}` has no steps: add `[[plans.{name}.steps]]` tables"
            ));
        }
        for (i, step) in plan.steps.iter().enumerate() {
            let at = format!("`plans.{name}` step {}", i + 1);
            let kind = step.kind().map_err(|e| format!("{at} {e}"))?;
            if let Some(key) = step.stray_keys(kind).first() {
                return Err(format!("{at}: `{key}` does not apply to this kind of step"));
            }
            let listed = match kind {
                StepKind::Restore => step.restore.as_deref(),
                StepKind::Checks => step.checks.as_deref(),
                _ => None,
            };
            if let Some(list) = listed {
                if list.is_empty() {
                    return Err(format!("{at}: the list of targets is empty"));
                }
                if let Some(unknown) = list.iter().find(|t| !targets(t)) {
                    return Err(format!(
                        "{at} names target `{unknown}`, which is not configured"
                    ));
                }
            }
            if let Some(p) = &step.probe
                && !probes(p)
            {
                return Err(format!(
                    "{at} waits for probe `{p}`, which is not configured in `[[probes]]`"
                ));
            }
            if let Some(url) = &step.http
                && !(url.starts_with("http://") || url.starts_with("https://"))
            {
                return Err(format!("{at}: `http` must be an http:// or https:// URL"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plans(text: &str) -> BTreeMap<String, PlanConfig> {
        #[derive(Deserialize)]
        struct File {
            plans: BTreeMap<String, PlanConfig>,
        }
        toml::from_str::<File>(text).unwrap().plans
    }

    #[test]
    fn steps_have_one_action_with_its_keys_and_known_targets() {
        let known = |t: &str| ["db", "media"].contains(&t);
        let ok = plans(
            "[plans.all]\nobjectives = { rto = \"4h\" }\n[[plans.all.steps]]\nrun = \"true\"\ntimeout = \"1m\"\n[[plans.all.steps]]\nrestore = [\"db\", \"media\"]\n[[plans.all.steps]]\nhttp = \"http://127.0.0.1/health\"\nretry-for = \"5m\"\n[[plans.all.steps]]\nmanual = \"Switch DNS\"\n",
        );
        validate(&ok, &known, &|p| p == "db").unwrap();
        let titles: Vec<String> = ok["all"].steps.iter().map(StepConfig::title).collect();
        assert_eq!(
            titles,
            [
                "run `true`",
                "restore `db`, `media`",
                "wait for http://127.0.0.1/health to answer",
                "confirm: Switch DNS"
            ]
        );
        for (text, wanted) in [
            (
                "[[plans.p.steps]]\nrun = \"x\"\nrestore = [\"db\"]\n",
                "step 1 has several actions (`restore`, `run`)",
            ),
            (
                "[[plans.p.steps]]\nname = \"nothing\"\n",
                "step 1 has no action",
            ),
            (
                "[[plans.p.steps]]\nrestore = [\"nope\"]\n",
                "names target `nope`",
            ),
            (
                "[[plans.p.steps]]\nrestore = [\"db\"]\nretry-for = \"1m\"\n",
                "`retry-for` does not apply",
            ),
            (
                "[[plans.p.steps]]\nprobe = \"api\"\n",
                "waits for probe `api`, which is not configured",
            ),
            (
                "[[plans.p.steps]]\nhttp = \"ftp://x\"\n",
                "http:// or https://",
            ),
            (
                "[plans.p]\ndescription = \"empty\"\n",
                "`plans.p` has no steps",
            ),
        ] {
            let e = validate(&plans(text), &known, &|p| p == "db").unwrap_err();
            assert!(e.contains(wanted), "{text}: {e}");
        }
    }
}
