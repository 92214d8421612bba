//! Alerts and the channels they go to (`[[notify]]`): a webhook gets the alert as JSON,
//! Slack and Discord their own message formats, a command the JSON on stdin. Delivery is
//! retried with backoff and logged; it never fails or delays the job that raised it.

use std::{process::Stdio, time::Duration};

use lifeboat_core::config::{NotifyConfig, NotifyKind};
use serde::Serialize;
use tokio::io::AsyncWriteExt;

/// Whether a problem began or ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AlertState {
    Firing,
    Resolved,
}

/// One alert: a problem that began, or its end. `key` is stable per problem
/// (`backup:app`, `objective:app`), so a receiver can pair the two.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Alert {
    pub key: String,
    pub state: AlertState,
    /// `backup-failed`, `objective-missed`, `test`.
    pub kind: String,
    /// The target (later: the probe) it is about.
    pub subject: String,
    pub message: String,
    pub time: String,
    pub host: String,
    /// A reminder that a problem still lasts (`remind-every`); it began at `since`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reminder: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
}

impl Alert {
    pub fn new(key: &str, state: AlertState, kind: &str, subject: &str, message: &str) -> Self {
        Self {
            key: key.to_string(),
            state,
            kind: kind.to_string(),
            subject: subject.to_string(),
            message: message.to_string(),
            time: jiff::Timestamp::now().to_string(),
            host: lifeboat_repo::hostname(),
            reminder: false,
            since: None,
        }
    }

    /// This firing alert, sent again because the problem that began at `began` lasts.
    pub fn reminder(&self, began: jiff::Timestamp) -> Self {
        let lasted = lifeboat_drill::render::seconds(
            began
                .duration_until(jiff::Timestamp::now())
                .as_secs_f64()
                .max(0.0),
        );
        Self {
            message: format!("still failing after {lasted}: {}", self.message),
            time: jiff::Timestamp::now().to_string(),
            reminder: true,
            since: Some(began.to_string()),
            ..self.clone()
        }
    }

    /// One line a person reads on a phone.
    pub fn headline(&self) -> String {
        match self.state {
            AlertState::Firing => format!("🔴 lifeboat: {} — {}", self.subject, self.message),
            AlertState::Resolved => {
                format!("✅ lifeboat: {} — resolved: {}", self.subject, self.message)
            }
        }
    }
}

/// Send `alert` to every channel that wants its kind, each on a task of its own.
pub fn deliver(channels: &[NotifyConfig], alert: &Alert) {
    for channel in channels.iter().filter(|c| {
        c.wants(&alert.kind)
            // `probe-up` is how channels ask for a probe's recovery alone.
            || (alert.state == AlertState::Resolved
                && alert.kind == "probe-down"
                && c.wants("probe-up"))
    }) {
        deliver_to(channel, alert);
    }
}

/// Send `alert` to `channel` on a task of its own, retried with backoff.
pub fn deliver_to(channel: &NotifyConfig, alert: &Alert) {
    {
        let (channel, alert) = (channel.clone(), alert.clone());
        tokio::spawn(async move {
            let mut delay = Duration::from_secs(1);
            for attempt in 1..=3 {
                match send(&channel, &alert).await {
                    Ok(()) => return,
                    Err(e) if attempt < 3 => {
                        log::warn!("notify `{}`: {e}; retrying in {delay:?}", channel.name);
                        tokio::time::sleep(delay).await;
                        delay *= 4;
                    }
                    Err(e) => {
                        log::error!("notify `{}`: {e}; giving up on this alert", channel.name)
                    }
                }
            }
        });
    }
}

/// Send `alert` through `channel` once.
pub async fn send(channel: &NotifyConfig, alert: &Alert) -> Result<(), String> {
    let json = serde_json::to_vec(alert).map_err(|e| e.to_string())?;
    let body = match channel.kind {
        NotifyKind::Command => return run_command(channel, &json).await,
        NotifyKind::Webhook => json,
        NotifyKind::Slack => serde_json::to_vec(&serde_json::json!({ "text": alert.headline() }))
            .map_err(|e| e.to_string())?,
        NotifyKind::Discord => {
            // Discord refuses a message over 2,000 characters.
            serde_json::to_vec(
                &serde_json::json!({ "content": alert.headline().chars().take(2000).collect::<String>() }),
            )
                .map_err(|e| e.to_string())?
        }
        NotifyKind::Pagerduty => pagerduty_event(channel, alert)?,
        NotifyKind::Email => return send_email(channel, alert).await,
    };
    let url = match (channel.kind, channel.address().map_err(|e| e.to_string())?) {
        (_, Some(url)) => url,
        (NotifyKind::Pagerduty, None) => {
            lifeboat_core::Redacted::new("https://events.pagerduty.com/v2/enqueue".to_string())
        }
        (_, None) => return Err("no `url`, `url-env` or `url-file`".into()),
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())?;
    let reply = client
        .post(url.expose())
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        // The URL may hold a token (Slack's do): never in the message.
        .map_err(|e| format!("cannot reach the webhook: {}", e.without_url()))?;
    if reply.status().is_success() {
        Ok(())
    } else {
        Err(format!("the webhook answered {}", reply.status()))
    }
}

/// An Events API v2 event: a firing alert triggers an incident keyed by the alert's key,
/// its end resolves the same one.
fn pagerduty_event(channel: &NotifyConfig, alert: &Alert) -> Result<Vec<u8>, String> {
    let key = channel.routing_key().map_err(|e| e.to_string())?;
    let event = match alert.state {
        AlertState::Firing => serde_json::json!({
            "routing_key": key.expose(),
            "event_action": "trigger",
            "dedup_key": alert.key,
            "payload": {
                "summary": alert.headline().chars().take(1024).collect::<String>(),
                "source": alert.host,
                "severity": "error",
                "component": alert.subject,
                "class": alert.kind,
                "timestamp": alert.time,
            },
        }),
        AlertState::Resolved => serde_json::json!({
            "routing_key": key.expose(),
            "event_action": "resolve",
            "dedup_key": alert.key,
        }),
    };
    serde_json::to_vec(&event).map_err(|e| e.to_string())
}

/// The alert as an email through the channel's SMTP server.
async fn send_email(channel: &NotifyConfig, alert: &Alert) -> Result<(), String> {
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor, message::MultiPart};
    let url = channel
        .address()
        .map_err(|e| e.to_string())?
        .ok_or("no `url`, `url-env` or `url-file` (the SMTP server)")?;
    let from = channel.from.as_deref().ok_or("no `from` address")?;
    let to = channel.to.as_deref().unwrap_or_default();
    if to.is_empty() {
        return Err("no `to` address".into());
    }
    let state = match alert.state {
        AlertState::Firing => "FIRING",
        AlertState::Resolved => "resolved",
    };
    let subject = format!("[lifeboat] {state} {}: {}", alert.kind, alert.subject);
    let text = format!(
        "{}\n\nkey:     {}\nkind:    {}\nsubject: {}\ntime:    {}\nhost:    {}\n",
        alert.message, alert.key, alert.kind, alert.subject, alert.time, alert.host
    );
    let escape = lifeboat_drill::render::esc;
    let html = format!(
        "<p><strong>{}</strong></p><p>{}</p><table><tr><td>key</td><td><code>{}</code></td></tr><tr><td>time</td><td>{}</td></tr><tr><td>host</td><td>{}</td></tr></table>",
        escape(&alert.headline()),
        escape(&alert.message),
        escape(&alert.key),
        escape(&alert.time),
        escape(&alert.host)
    );
    let mut message = Message::builder()
        .from(
            from.parse()
                .map_err(|e| format!("`from = {from:?}`: {e}"))?,
        )
        .subject(subject);
    for t in to {
        message = message.to(t.parse().map_err(|e| format!("`to` address {t:?}: {e}"))?);
    }
    let message = message
        .multipart(MultiPart::alternative_plain_html(text, html))
        .map_err(|e| e.to_string())?;
    let mailer = AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose())
        // The URL holds the password: never in the message.
        .map_err(|_| "the SMTP `url` is not a valid smtp:// or smtps:// URL".to_string())?
        .timeout(Some(Duration::from_secs(20)))
        .build();
    mailer
        .send(message)
        .await
        .map(|_| ())
        .map_err(|e| format!("the SMTP server did not take the message: {e}"))
}

async fn run_command(channel: &NotifyConfig, json: &[u8]) -> Result<(), String> {
    let command = channel.command.as_deref().ok_or("no `command`")?;
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run `sh`: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(json).await;
    }
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .map_err(|_| "the command ran longer than 60 s".to_string())?
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "the command failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Ping the heartbeat `url` with `suffix` (`/start`, ``, `/fail`); a failure is logged.
pub fn heartbeat(url: &lifeboat_core::Redacted, suffix: &str) {
    let url = format!("{}{suffix}", url.expose());
    tokio::spawn(async move {
        let client = match reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
        {
            Ok(c) => c,
            Err(e) => return log::warn!("heartbeat: {e}"),
        };
        match client.get(&url).send().await {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => log::warn!("heartbeat: the ping answered {}", r.status()),
            Err(e) => log::warn!("heartbeat: {}", e.without_url()),
        }
    });
}
