//! What a drill finds, and the `command` checks it runs: [`Findings`] collects check
//! results as they come; [`run_command`] runs a `[[checks]]` command in its own process
//! group, killed with it if the drill is cancelled.

use std::process::Stdio;

use lifeboat_core::config::CheckConfig;
use lifeboat_drill::CheckResult;

/// Check results as a drill collects them.
#[derive(Default)]
pub struct Findings(pub Vec<CheckResult>);

impl Findings {
    pub fn add(&mut self, kind: &str, name: impl Into<String>, passed: bool, detail: String) {
        self.0.push(CheckResult {
            name: name.into(),
            kind: kind.to_string(),
            passed,
            detail,
        });
    }

    /// A `[[checks]]` rule's outcome.
    pub fn rule(&mut self, kind: &str, rule: &CheckConfig, result: Result<String, String>) {
        let passed = result.is_ok();
        self.add(
            kind,
            rule.name.clone(),
            passed,
            result.unwrap_or_else(|e| e),
        );
    }
}

/// Run a `command` check with `sh -c` in its own process group (killed with the group if
/// the drill is interrupted): exit 0 passes. `secret` is masked in what is reported.
pub async fn run_command(
    command: &str,
    env: &[(&str, &str)],
    secrets: &[String],
) -> Result<String, String> {
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c")
        .arg(command)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let child = cmd.spawn().map_err(|e| format!("cannot run `sh`: {e}"))?;
    let _group = child.id().map(crate::cancel::GroupKill);
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| format!("command check: {e}"))?;
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut tail = lines[lines.len().saturating_sub(3)..].join(" / ");
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        tail = tail.replace(secret.as_str(), "[redacted]");
    }
    let status = match out.status.code() {
        Some(c) => format!("exit {c}"),
        None => "killed by a signal".into(),
    };
    if out.status.success() {
        Ok(if tail.is_empty() {
            status
        } else {
            format!("{status}: {tail}")
        })
    } else {
        Err(if tail.is_empty() {
            status
        } else {
            format!("{status}: {tail}")
        })
    }
}

/// The target's `[[checks]]` rules for kinds without SQL: each `command` run with `env`
/// (where the restored state is); an SQL rule is a failed check naming `what` cannot run it.
pub async fn command_rules(
    rules: &[CheckConfig],
    env: &[(&str, &str)],
    what: &str,
    findings: &mut Findings,
) {
    for rule in rules {
        let result = match &rule.command {
            Some(command) => run_command(command, env, &[]).await,
            None => Err(format!("an SQL check cannot run against {what}")),
        };
        findings.rule("command", rule, result);
    }
}

/// A temporary folder for a drill's scratch environment, `lifeboat-drill-<what>-…`; removed
/// at teardown (or when dropped).
pub fn scratch_dir(what: &str) -> Result<tempfile::TempDir, String> {
    tempfile::Builder::new()
        .prefix(&format!("lifeboat-drill-{what}-"))
        .tempdir()
        .map_err(|e| format!("cannot create a scratch folder: {e}"))
}

/// Remove a drill's scratch folder, if it was made.
pub fn remove_scratch_dir(dir: Option<tempfile::TempDir>) -> Result<(), String> {
    match dir {
        Some(d) => d.close().map_err(|e| e.to_string()),
        None => Ok(()),
    }
}
