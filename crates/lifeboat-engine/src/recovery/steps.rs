//! The steps of a plan that are not restores: a command (`run`), and waiting for a service
//! to answer (`http`). Both stop at once on cancellation.

use std::{process::Stdio, time::Duration};

use lifeboat_core::{plans::StepConfig, redact_url};

use crate::{EngineError, EngineResult, cancel::Cancel};

/// How long a `run` step may take unless it says (`timeout`).
const RUN_TIMEOUT: Duration = Duration::from_secs(600);
/// How long an `http` step keeps trying unless it says (`retry-for`).
const HTTP_RETRY_FOR: Duration = Duration::from_secs(60);

/// The last lines of what a command printed, for reports.
fn tail(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(3)..].join(" / ")
}

/// `run`: `sh -c` in its own process group (killed with it on timeout or cancellation),
/// with the step's `env` and `workdir`; exit 0 is success.
pub async fn run_command(step: &StepConfig, cancel: &Cancel) -> EngineResult<String> {
    let command = step.run.as_deref().unwrap_or_default();
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c")
        .arg(command)
        .envs(step.env.iter().flatten())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(dir) = &step.workdir {
        cmd.current_dir(dir);
    }
    let child = cmd.spawn().map_err(|e| {
        EngineError::failure(
            format!("cannot run `{command}`: {e}"),
            Some("check the step's `workdir`".into()),
        )
    })?;
    let _group = child.id().map(crate::cancel::GroupKill);
    let limit = step.timeout.map_or(RUN_TIMEOUT, |t| t.as_duration());
    let out = match cancel
        .guard(tokio::time::timeout(limit, child.wait_with_output()))
        .await
    {
        Err(_) => return Err(EngineError::interrupted(format!("`{command}` was stopped"))),
        Ok(Err(_)) => {
            return Err(EngineError::failure(
                format!(
                    "`{command}` ran longer than {}; it was killed",
                    lifeboat_drill::render::seconds(limit.as_secs_f64())
                ),
                Some("raise the step's `timeout`".into()),
            ));
        }
        Ok(Ok(out)) => out.map_err(|e| EngineError::failure(format!("`{command}`: {e}"), None))?,
    };
    let said = [tail(&out.stdout), tail(&out.stderr)]
        .into_iter()
        .filter(|t| !t.is_empty())
        .collect::<Vec<_>>()
        .join(" / ");
    let status = match out.status.code() {
        Some(c) => format!("exit {c}"),
        None => "killed by a signal".into(),
    };
    let mut detail = if said.is_empty() {
        status
    } else {
        format!("{status}: {said}")
    };
    // What it printed goes into records and reports: the passwords in its environment
    // (a drill's `LIFEBOAT_DRILL_*_URL`, a URL in `env`) are masked.
    for secret in step
        .env
        .iter()
        .flatten()
        .filter_map(|(_, v)| crate::restore::checks::password_in(v))
    {
        detail = detail.replace(&secret, "[redacted]");
    }
    if out.status.success() {
        Ok(detail)
    } else {
        Err(EngineError::failure(
            format!("`{command}` failed ({detail})"),
            None,
        ))
    }
}

/// `http`: GET the URL until it answers with the expected status (any 2xx by default) and
/// a body containing `body-contains`, for up to `retry-for`, every 2 s.
pub async fn wait_http(step: &StepConfig, cancel: &Cancel) -> EngineResult<String> {
    let url = step.http.as_deref().unwrap_or_default();
    let shown = redact_url(url);
    let client = reqwest::Client::builder()
        .timeout(
            step.timeout
                .map_or(Duration::from_secs(10), |t| t.as_duration()),
        )
        .build()
        .map_err(|e| EngineError::failure(e.to_string(), None))?;
    let until =
        std::time::Instant::now() + step.retry_for.map_or(HTTP_RETRY_FOR, |t| t.as_duration());
    let mut attempts = 0;
    loop {
        attempts += 1;
        let last = match client.get(url).send().await {
            Ok(reply) => {
                let status = reply.status();
                let body = reply.text().await.unwrap_or_default();
                let status_ok = match step.expect_status {
                    Some(want) => status.as_u16() == want,
                    None => status.is_success(),
                };
                let body_ok = step
                    .body_contains
                    .as_deref()
                    .is_none_or(|b| body.contains(b));
                if status_ok && body_ok {
                    return Ok(format!("{shown} answered {status} (attempt {attempts})"));
                }
                if status_ok {
                    format!(
                        "answered {status} without {:?} in the body",
                        step.body_contains.as_deref().unwrap_or_default()
                    )
                } else {
                    format!("answered {status}")
                }
            }
            Err(e) => format!("no answer: {}", e.without_url()),
        };
        if std::time::Instant::now() >= until {
            return Err(EngineError::failure(
                format!("{shown} {last} (after {attempts} attempts)"),
                Some("raise the step's `retry-for`, or check the service".into()),
            ));
        }
        if cancel
            .guard(tokio::time::sleep(Duration::from_secs(2)))
            .await
            .is_err()
        {
            return Err(EngineError::interrupted(format!(
                "waiting for {shown} was stopped"
            )));
        }
    }
}
