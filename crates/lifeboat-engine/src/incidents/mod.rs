//! Incidents: a record of what happened while something was down. `incident open` starts
//! one; while it is open every lifeboat action joins its timeline by itself (backups,
//! restores with their snapshots and emergency backups, plan steps, drills, `serve`'s
//! alerts), and `incident note` adds words; `incident close` ends it and `incident report`
//! writes the post-mortem ([`report`]).
//!
//! Kept in the repository's side area, sealed with the repository's key, so they outlive
//! the host that ran them: `incidents/<id>/incident.json` (title, severity, times),
//! `incidents/<id>/timeline/<time>-<n>.json` (one object per entry, so two processes adding
//! at once never lose one), and `incidents/open` (the open one's id).

pub mod report;
mod tap;

use std::sync::Arc;

use lifeboat_repo::Repo;
use serde::{Deserialize, Serialize};

pub use tap::Tap;

use crate::{Engine, EngineError, EngineResult};

const DIR: &str = "incidents";
const OPEN: &str = "incidents/open";

/// An incident's header.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Incident {
    pub id: String,
    pub title: String,
    /// 1 (everything down) to 4 (minor).
    pub severity: u8,
    #[serde(with = "lifeboat_core::time::moment")]
    pub opened_at: Option<jiff::Timestamp>,
    #[serde(default, with = "lifeboat_core::time::moment")]
    pub closed_at: Option<jiff::Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    pub host: String,
}

impl Incident {
    pub fn is_open(&self) -> bool {
        self.closed_at.is_none()
    }
}

/// One entry of a timeline.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Entry {
    #[serde(with = "lifeboat_core::time::moment")]
    pub time: Option<jiff::Timestamp>,
    /// `opened`, `note`, `closed`, `backup`, `restore`, `restore-planned`,
    /// `emergency-backup`, `checks`, `plan-step`, `plan`, `drill`, `alert`, `warning`.
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    pub text: String,
    /// The figures behind the words (snapshot, seconds, bytes, restored point…).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub data: serde_json::Value,
}

impl Entry {
    pub fn new(kind: &str, target: Option<&str>, text: impl Into<String>) -> Self {
        Self {
            time: Some(jiff::Timestamp::now()),
            kind: kind.to_string(),
            target: target.map(str::to_string),
            text: text.into(),
            data: serde_json::Value::Null,
        }
    }

    pub fn with(mut self, data: serde_json::Value) -> Self {
        self.data = data;
        self
    }
}

/// Read and open a sealed side object.
pub(crate) async fn get_sealed(repo: &Arc<Repo>, path: &str) -> EngineResult<Option<Vec<u8>>> {
    let p = path.to_string();
    let Some(bytes) = repo.call(move |r| r.side().get(&p)).await? else {
        return Ok(None);
    };
    let key = repo.side_key_async().await?;
    key.open(path, &bytes)
        .map(Some)
        .map_err(|e| EngineError::failure(e.to_string(), None))
}

/// Seal and write a side object.
pub(crate) async fn put_sealed(repo: &Arc<Repo>, path: &str, plain: &[u8]) -> EngineResult<()> {
    let key = repo.side_key_async().await?;
    let sealed = key
        .seal(path, plain)
        .map_err(|e| EngineError::failure(e.to_string(), None))?;
    let p = path.to_string();
    Ok(repo.call(move |r| r.side().put(&p, &sealed)).await?)
}

/// A name part no other object of this process or host takes: the process id and a
/// counter.
fn unique() -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{:x}{n:03x}", std::process::id())
}

fn header_path(id: &str) -> String {
    format!("{DIR}/{id}/incident.json")
}

async fn read_header(repo: &Arc<Repo>, id: &str) -> EngineResult<Option<Incident>> {
    match get_sealed(repo, &header_path(id)).await? {
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| EngineError::failure(format!("incident `{id}` is unreadable: {e}"), None)),
        None => Ok(None),
    }
}

async fn write_header(repo: &Arc<Repo>, incident: &Incident) -> EngineResult<()> {
    let bytes = serde_json::to_vec_pretty(incident).unwrap_or_default();
    put_sealed(repo, &header_path(&incident.id), &bytes).await
}

/// The open incident, if any.
pub async fn current(repo: &Arc<Repo>) -> EngineResult<Option<Incident>> {
    let Some(id) = get_sealed(repo, OPEN).await? else {
        return Ok(None);
    };
    let id = String::from_utf8_lossy(&id).trim().to_string();
    Ok(read_header(repo, &id).await?.filter(Incident::is_open))
}

/// Open an incident; refused while another is open.
pub async fn open(engine: &Engine, title: &str, severity: u8) -> EngineResult<Incident> {
    if !(1..=4).contains(&severity) {
        return Err(EngineError::usage(
            format!("severity {severity} is not one of 1 (everything down) to 4 (minor)"),
            None,
        ));
    }
    let repo = &engine.repo;
    if let Some(open) = current(repo).await? {
        return Err(EngineError::failure(
            format!("incident {} (\"{}\") is open", open.id, open.title),
            Some("add to it with `lifeboat incident note`, or close it first with `lifeboat incident close`".into()),
        ));
    }
    let now = jiff::Timestamp::now();
    let incident = Incident {
        id: format!("{}-{}", now.strftime("%Y%m%d-%H%M%S"), unique()),
        title: title.to_string(),
        severity,
        opened_at: Some(now),
        closed_at: None,
        summary: None,
        host: lifeboat_repo::hostname(),
    };
    write_header(repo, &incident).await?;
    put_sealed(repo, OPEN, incident.id.as_bytes()).await?;
    // The problems `serve` sees firing now began before the opening: the first of them is
    // when the trouble was detected.
    for alert in firing_alerts(repo).await {
        append(repo, &incident.id, alert).await?;
    }
    append(
        repo,
        &incident.id,
        Entry::new(
            "opened",
            None,
            format!("incident opened: {title} (severity {severity})"),
        ),
    )
    .await?;
    Ok(incident)
}

/// The alerts `serve` keeps as firing (`serve/alerts.json`), as timeline entries at the
/// time each began; none if there are none or they cannot be read.
async fn firing_alerts(repo: &Arc<Repo>) -> Vec<Entry> {
    let Ok(Some(bytes)) = repo.call(|r| r.side().get("serve/alerts.json")).await else {
        return Vec::new();
    };
    let firing: std::collections::BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(&bytes).unwrap_or_default();
    firing
        .into_values()
        .map(|a| {
            let text = |k: &str| {
                a.get(k)
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_string()
            };
            let mut e = Entry::new(
                "alert",
                Some(&text("subject")),
                format!("firing since before the incident: {}", text("message")),
            )
            .with(
                serde_json::json!({ "key": text("key"), "kind": text("kind"), "state": "firing" }),
            );
            e.time = text("time").parse().ok().or(e.time);
            e
        })
        .collect()
}

/// Add `entry` to incident `id`'s timeline.
async fn append(repo: &Arc<Repo>, id: &str, entry: Entry) -> EngineResult<()> {
    let at = entry.time.unwrap_or_else(jiff::Timestamp::now);
    let path = format!(
        "{DIR}/{id}/timeline/{}-{}.json",
        at.strftime("%Y%m%dT%H%M%S%.6fZ")
            .to_string()
            .replace('.', ""),
        unique()
    );
    let bytes = serde_json::to_vec(&entry).unwrap_or_default();
    put_sealed(repo, &path, &bytes).await
}

/// Add `entries` to the open incident's timeline, if one is open; a failure is a warning
/// (the action it records has happened either way).
pub async fn record(engine: &Engine, entries: Vec<Entry>) {
    if entries.is_empty() {
        return;
    }
    let result = async {
        if let Some(open) = current(&engine.repo).await? {
            // What happened before the incident was opened is not part of it.
            for e in entries.into_iter().filter(|e| e.time >= open.opened_at) {
                append(&engine.repo, &open.id, e).await?;
            }
        }
        Ok::<_, EngineError>(())
    }
    .await;
    if let Err(e) = result {
        engine.events.event(crate::events::Event::Warning {
            target: None,
            text: format!(
                "cannot add to the open incident's timeline: {}",
                e.full_message()
            ),
        });
    }
}

fn no_open_incident() -> EngineError {
    EngineError::usage(
        "no incident is open",
        Some("open one with `lifeboat incident open \"what happened\"`".into()),
    )
}

/// A note on the open incident's timeline.
pub async fn note(engine: &Engine, text: &str) -> EngineResult<Incident> {
    let open = current(&engine.repo).await?.ok_or_else(no_open_incident)?;
    append(&engine.repo, &open.id, Entry::new("note", None, text)).await?;
    Ok(open)
}

/// Close the open incident.
pub async fn close(engine: &Engine, summary: Option<&str>) -> EngineResult<Incident> {
    let repo = &engine.repo;
    let mut open = current(repo).await?.ok_or_else(no_open_incident)?;
    append(
        repo,
        &open.id,
        Entry::new("closed", None, summary.unwrap_or("incident closed")),
    )
    .await?;
    open.closed_at = Some(jiff::Timestamp::now());
    open.summary = summary.map(str::to_string);
    write_header(repo, &open).await?;
    repo.call(|r| r.side().delete(OPEN)).await?;
    Ok(open)
}

/// Every incident, oldest first.
pub async fn list(repo: &Arc<Repo>) -> EngineResult<Vec<Incident>> {
    let ids = repo.call(|r| r.side().list(DIR)).await?;
    let mut all = Vec::new();
    for id in ids.iter().filter(|i| *i != "open") {
        if let Some(i) = read_header(repo, id).await? {
            all.push(i);
        }
    }
    all.sort_by_key(|i| i.opened_at);
    Ok(all)
}

/// The incident whose id starts with `wanted` (`open`: the open one), with its timeline in
/// time order.
pub async fn show(repo: &Arc<Repo>, wanted: &str) -> EngineResult<(Incident, Vec<Entry>)> {
    let incident = if wanted == "open" {
        current(repo).await?.ok_or_else(no_open_incident)?
    } else {
        let all = list(repo).await?;
        let matching: Vec<&Incident> = all.iter().filter(|i| i.id.starts_with(wanted)).collect();
        match matching.as_slice() {
            [one] => (*one).clone(),
            [] => {
                return Err(EngineError::usage(
                    format!("no incident `{wanted}`"),
                    Some("`lifeboat incident list` shows them".into()),
                ));
            }
            _ => {
                return Err(EngineError::usage(
                    format!("`{wanted}` matches several incidents; give more of the id"),
                    None,
                ));
            }
        }
    };
    let dir = format!("{DIR}/{}/timeline", incident.id);
    let d = dir.clone();
    let mut names = repo.call(move |r| r.side().list(&d)).await?;
    names.sort();
    let mut entries = Vec::new();
    for n in names {
        if let Some(bytes) = get_sealed(repo, &format!("{dir}/{n}")).await? {
            match serde_json::from_slice::<Entry>(&bytes) {
                Ok(e) => entries.push(e),
                Err(e) => log::warn!("unreadable timeline entry `{dir}/{n}`: {e}"),
            }
        }
    }
    entries.sort_by_key(|e| e.time);
    Ok((incident, entries))
}
