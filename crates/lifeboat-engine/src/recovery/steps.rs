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
    let expect = crate::probes::http::Expect {
        method: "GET",
        status: step.expect_status,
        body_contains: step.body_contains.as_deref(),
    };
    let limit = step
        .timeout
        .map_or(Duration::from_secs(10), |t| t.as_duration());
    retry(step, cancel, &shown, || async {
        crate::probes::http::ask(url, &expect, limit)
            .await
            .map(|answer| format!("{shown} {answer}"))
    })
    .await
}

/// `probe`: run the `[[probes]]` probe until it passes, for up to `retry-for`, every 2 s.
pub async fn wait_probe(
    config: &lifeboat_core::Config,
    step: &StepConfig,
    cancel: &Cancel,
) -> EngineResult<String> {
    let name = step.probe.as_deref().unwrap_or_default();
    let probe = config
        .probes
        .iter()
        .find(|p| p.name == name)
        .ok_or_else(|| EngineError::usage(format!("no probe `{name}` is configured"), None))?;
    let what = format!("probe `{name}`");
    retry(step, cancel, &what, || async move {
        let mut memory = crate::probes::Memory::default();
        let found = crate::probes::run_once(config, probe, &mut memory).await;
        if found.ok {
            Ok(format!("probe `{name}` passed: {}", found.detail))
        } else {
            Err(found.detail)
        }
    })
    .await
}

/// Try `attempt` every 2 s until it succeeds or the step's `retry-for` (default 1 min)
/// has passed; the last failure names `what`.
async fn retry<F, Fut>(
    step: &StepConfig,
    cancel: &Cancel,
    what: &str,
    mut attempt: F,
) -> EngineResult<String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<String, String>>,
{
    let until =
        std::time::Instant::now() + step.retry_for.map_or(HTTP_RETRY_FOR, |t| t.as_duration());
    let mut attempts = 0;
    loop {
        attempts += 1;
        let last = match attempt().await {
            Ok(done) => return Ok(format!("{done} (attempt {attempts})")),
            Err(e) => e,
        };
        if std::time::Instant::now() >= until {
            return Err(EngineError::failure(
                format!("{what}: {last} (after {attempts} attempts)"),
                Some("raise the step's `retry-for`, or check the service".into()),
            ));
        }
        if cancel
            .guard(tokio::time::sleep(Duration::from_secs(2)))
            .await
            .is_err()
        {
            return Err(EngineError::interrupted(format!(
                "waiting for {what} was stopped"
            )));
        }
    }
}
