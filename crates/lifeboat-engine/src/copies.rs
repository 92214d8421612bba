//! Second copies of the repository (`[copies.NAME]`, `lifeboat copy`): every snapshot the
//! copy lacks, verified there, then the side area; and how far behind each copy is (the
//! `max-lag` objective).
//!
//! After a copy, a record of what the copy holds is kept in this repository's side area
//! (`copies/<name>.json`): `status` and `serve` judge the lag from it without opening the
//! copy (which needs its password and, on S3, a round trip per look). `lifeboat snapshots
//! --repo NAME` and `check --repo NAME` look at the copy itself.

use std::{collections::HashSet, sync::Arc};

use lifeboat_core::{Config, redact::redact_url};
use lifeboat_repo::{
    Bars, LockKind, Repo, RepoError, SnapshotInfo,
    copy::{SideCopied, SnapshotsCopied},
};
use serde::{Deserialize, Serialize};

use crate::{Engine, EngineError, EngineResult};

/// Where the records of copies live in the side area.
pub const RECORDS: &str = "copies";

/// What a copy held after its last run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct CopyRecord {
    pub copy: String,
    /// The copy's repository id: another repository at the same place is noticed.
    pub repository_id: String,
    pub started_at: jiff::Timestamp,
    pub finished_at: jiff::Timestamp,
    /// Ids (in this repository) of the snapshots the copy holds, each verified there.
    pub present: Vec<String>,
    /// The start of the last run that copied the whole side area: everything written to
    /// it before then is in the copy.
    pub side_copied_at: Option<jiff::Timestamp>,
}

/// A snapshot a dry run would copy.
#[derive(Debug, Clone, Serialize)]
pub struct Pending {
    pub id: String,
    pub target: String,
    pub time: jiff::Timestamp,
}

/// What `lifeboat copy` did for one copy.
#[derive(Debug, Clone, Serialize)]
pub struct CopyReport {
    pub copy: String,
    /// The copy's URL, any password in it redacted.
    pub url: String,
    pub dry_run: bool,
    /// On a dry run: what would be copied.
    pub pending: Vec<Pending>,
    pub snapshots: SnapshotsCopied,
    pub side: SideCopied,
    pub seconds: f64,
}

/// Copy into the copy `name`: the snapshots it lacks (each verified there, every file read
/// back with `read_data`), then the side area — also when a snapshot failed, so that WAL
/// keeps flowing. The copy's repository must exist (`lifeboat init --repo NAME`): a copy
/// is never created where a disk is not mounted. `dry_run` says what would be copied.
pub async fn copy(
    engine: &Engine,
    name: &str,
    read_data: bool,
    dry_run: bool,
    bars: Bars,
) -> EngineResult<CopyReport> {
    let started = std::time::Instant::now();
    let started_at = jiff::Timestamp::now();
    let cfg = engine.config.with_copy(name)?;
    let url = redact_url(cfg.repository_url());
    let repo = engine.repo.clone();
    let dest = open(&cfg, name, bars).await?;
    let report = |pending: Vec<Pending>, snapshots, side| CopyReport {
        copy: name.into(),
        url: url.clone(),
        dry_run,
        pending,
        snapshots,
        side,
        seconds: started.elapsed().as_secs_f64(),
    };
    // Never a copy of itself, nor two copies in one place.
    let ids = {
        let d = dest.clone();
        repo.call(move |r| Ok::<_, RepoError>((r.repository_id()?, d.repository_id()?)))
            .await
            .map_err(|e| in_copy(name, e))?
    };
    let (mine, theirs) = ids;
    if mine == theirs {
        return Err(EngineError::usage(
            format!("copy `{name}` ({url}) is the repository itself"),
            Some("point `url` of the copy at another place".into()),
        ));
    }
    let records = read_records(engine).await?;
    if let Some(other) = records.iter().find(|r| {
        r.copy != name && r.repository_id == theirs && engine.config.copies.contains_key(&r.copy)
    }) {
        return Err(EngineError::usage(
            format!(
                "copies `{name}` and `{}` are the same repository ({url})",
                other.copy
            ),
            Some("give each copy a place of its own".into()),
        ));
    }
    let before = records.into_iter().find(|r| r.copy == name);
    let verified: HashSet<String> = match &before {
        Some(r) if r.repository_id == theirs => r.present.iter().cloned().collect(),
        Some(r) => {
            engine.events.event(crate::events::Event::Warning {
                target: None,
                text: format!(
                    "copy `{name}` at {url} is not the repository copied to before (id {}, now {}): every snapshot in it is verified again",
                    &r.repository_id[..8.min(r.repository_id.len())],
                    &theirs[..8.min(theirs.len())]
                ),
            });
            HashSet::new()
        }
        None => HashSet::new(),
    };
    if dry_run {
        let d = dest.clone();
        let (missing, already) = repo.call(move |r| r.missing_in(&d)).await?;
        return Ok(report(
            missing.iter().map(pending).collect(),
            SnapshotsCopied {
                already,
                ..Default::default()
            },
            SideCopied::default(),
        ));
    }
    let command = format!("lifeboat copy {name}");
    // Read here beside backups; the copy is written by this copy alone.
    let _mine = repo.lock_async(LockKind::Shared, &command).await?;
    let _theirs = dest.lock_async(LockKind::Exclusive, &command).await?;
    let d = dest.clone();
    let known = verified.clone();
    let snapshots = repo
        .call(move |r| r.copy_snapshots(&d, read_data, &known))
        .await
        .map_err(|e| in_copy(name, e));
    let d = dest.clone();
    let side = repo
        .call(move |r| r.copy_side(&d))
        .await
        .map_err(|e| in_copy(name, e));
    let record = CopyRecord {
        copy: name.into(),
        repository_id: theirs,
        started_at,
        finished_at: jiff::Timestamp::now(),
        // A failed snapshot copy keeps what was known verified before.
        present: match &snapshots {
            Ok(s) => s.present.clone(),
            Err(_) => before
                .as_ref()
                .map(|_| verified.iter().cloned().collect())
                .unwrap_or_default(),
        },
        side_copied_at: match &side {
            Ok(_) => Some(started_at),
            Err(_) => before.as_ref().and_then(|r| r.side_copied_at),
        },
    };
    let path = format!("{RECORDS}/{name}.json");
    let bytes = serde_json::to_vec_pretty(&record).unwrap_or_default();
    repo.call(move |r| r.side().put(&path, &bytes)).await?;
    // Snapshots that failed verification fail the copy, once the others are recorded.
    let snapshots = snapshots.and_then(|s| {
        if s.failed.is_empty() {
            Ok(s)
        } else {
            Err(EngineError::failure(
                format!(
                    "copy `{name}`: {} snapshot(s) failed verification in {url}: {}",
                    s.failed.len(),
                    s.failed.join("; ")
                ),
                Some(format!(
                    "`lifeboat check --read-data --repo {name}` shows what is damaged in the copy; the next copy sends what it lacks again"
                )),
            ))
        }
    });
    match (snapshots, side) {
        (Ok(snapshots), Ok(side)) => Ok(report(Vec::new(), snapshots, side)),
        (Err(e), Ok(_)) | (Ok(_), Err(e)) => Err(e),
        (Err(mut a), Err(b)) => {
            a.message = format!("{}; and {}", a.message, b.message);
            Err(a)
        }
    }
}

fn pending(s: &SnapshotInfo) -> Pending {
    Pending {
        id: s.id.to_string(),
        target: s.target.to_string(),
        time: s.time.timestamp(),
    }
}

/// An error of the copy `name`, saying which copy.
fn in_copy(name: &str, e: RepoError) -> EngineError {
    let mut err = EngineError::from(e);
    err.message = format!("copy `{name}`: {}", err.message);
    err
}

/// The copy's repository, opened; a missing one is an error saying how to create it.
async fn open(cfg: &Config, name: &str, bars: Bars) -> EngineResult<Arc<Repo>> {
    match Engine::open_repo(cfg, bars).await {
        Ok(r) => Ok(r),
        Err(mut e) => {
            if e.message.starts_with("no repository at") {
                e.hint = Some(format!(
                    "create it once with `lifeboat init --repo {name}` (a copy is never created by itself: an unmounted disk would get one)"
                ));
            }
            e.message = format!("copy `{name}`: {}", e.message);
            Err(e)
        }
    }
}

/// The records of every copy made from this repository.
async fn read_records(engine: &Engine) -> EngineResult<Vec<CopyRecord>> {
    let records = engine
        .repo
        .call(|r| -> Result<Vec<CopyRecord>, lifeboat_repo::SideError> {
            let mut out = Vec::new();
            for n in r.side().list(RECORDS)? {
                if let Some(b) = r.side().get(&format!("{RECORDS}/{n}"))?
                    && let Ok(rec) = serde_json::from_slice(&b)
                {
                    out.push(rec);
                }
            }
            Ok(out)
        })
        .await?;
    Ok(records)
}

/// How far one copy is behind.
#[derive(Debug, Clone, Serialize)]
pub struct CopyLag {
    pub copy: String,
    pub url: String,
    /// When the last successful copy finished; `None` if none did.
    pub last_copy: Option<jiff::Timestamp>,
    /// Snapshots of the repository the copy lacks.
    pub missing: usize,
    /// Age of the oldest snapshot the copy lacks (0 when it holds them all).
    pub lag_seconds: f64,
    pub max_lag_seconds: Option<f64>,
    pub problems: Vec<String>,
}

/// Every copy's lag, judged against its `max-lag`, from the records, this repository's
/// snapshots and the targets' continuous archives (`rows`: WAL or change segments written
/// after the last complete copy of the side area). None when the engine runs on a copy
/// (`--repo NAME`): copies of copies are not kept.
pub async fn lags(
    engine: &Engine,
    rows: &[crate::status::TargetStatus],
) -> EngineResult<Vec<CopyLag>> {
    let now = jiff::Timestamp::now();
    let mut out = Vec::new();
    if engine.config.using_copy.is_some() || engine.config.copies.is_empty() {
        return Ok(out);
    }
    let snaps = engine.repo.list_snapshots(None).await?;
    let records = read_records(engine).await?;
    for (name, copy) in &engine.config.copies {
        let record = records.iter().find(|r| &r.copy == name);
        let present: HashSet<&str> = record
            .iter()
            .flat_map(|r| r.present.iter().map(String::as_str))
            .collect();
        let lacking: Vec<&SnapshotInfo> = snaps
            .iter()
            .filter(|s| !present.contains(s.id.as_str()))
            .collect();
        let age = |t: jiff::Timestamp| now.duration_since(t).as_secs_f64().max(0.0);
        let snapshot_lag = lacking
            .iter()
            .map(|s| age(s.time.timestamp()))
            .fold(0.0, f64::max);
        // Archived since the side area was last copied whole: at most that old. Never
        // copied whole: the copy restores no further than the target's newest snapshot
        // it holds (or, holding none, than nothing: the snapshot lag says so).
        let side_lag = rows
            .iter()
            .filter_map(|r| {
                let written = r.wal.as_ref()?.last_archived_at.as_deref()?;
                let written = written.parse::<jiff::Timestamp>().ok()?;
                match record.and_then(|r| r.side_copied_at) {
                    Some(copied) if written <= copied => None,
                    Some(copied) => Some(age(copied)),
                    None => snaps
                        .iter()
                        .rev()
                        .find(|s| s.target == r.target && present.contains(s.id.as_str()))
                        .map(|s| age(s.time.timestamp())),
                }
            })
            .fold(0.0, f64::max);
        let lag = snapshot_lag.max(side_lag);
        let max = copy.max_lag.map(|m| m.as_secs() as f64);
        let mut problems = Vec::new();
        if let Some(max) = max
            && lag > max
        {
            problems.push(if snapshot_lag >= side_lag {
                format!(
                    "copy `{name}` lacks {} snapshot(s), the oldest taken {} ago (max-lag {})",
                    lacking.len(),
                    lifeboat_drill::render::seconds(lag),
                    lifeboat_drill::render::seconds(max),
                )
            } else {
                format!(
                    "copy `{name}` lacks archived WAL or changes of the last {} (max-lag {})",
                    lifeboat_drill::render::seconds(lag),
                    lifeboat_drill::render::seconds(max),
                )
            });
        }
        out.push(CopyLag {
            copy: name.clone(),
            url: redact_url(copy.url.as_deref().unwrap_or_default()),
            last_copy: record.map(|r| r.finished_at),
            missing: lacking.len(),
            lag_seconds: lag,
            max_lag_seconds: max,
            problems,
        });
    }
    Ok(out)
}
