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

/// What a copy held after its last successful run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct CopyRecord {
    pub copy: String,
    pub started_at: jiff::Timestamp,
    pub finished_at: jiff::Timestamp,
    /// Ids (in this repository) of the snapshots the copy holds.
    pub present: Vec<String>,
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
    /// The copy's repository was created by this run.
    pub created: bool,
    pub dry_run: bool,
    /// On a dry run: what would be copied.
    pub pending: Vec<Pending>,
    pub snapshots: SnapshotsCopied,
    pub side: SideCopied,
    pub seconds: f64,
}

/// Copy into the copy `name`: the snapshots it lacks (each verified there, every file read
/// back with `read_data`), then the side area. The copy's repository is created on first
/// use. `dry_run` opens the copy (if it exists) and says what would be copied.
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
    let (dest, created) = match open_or_create(&cfg, name, !dry_run, bars).await? {
        Some(d) => d,
        None => {
            // A dry run of a copy never made: everything would go.
            let snaps = repo.list_snapshots(None).await?;
            return Ok(CopyReport {
                copy: name.into(),
                url,
                created: false,
                dry_run,
                pending: snaps.iter().map(pending).collect(),
                snapshots: SnapshotsCopied::default(),
                side: SideCopied::default(),
                seconds: started.elapsed().as_secs_f64(),
            });
        }
    };
    if dry_run {
        let d = dest.clone();
        let (missing, already) = repo.call(move |r| r.missing_in(&d)).await?;
        return Ok(CopyReport {
            copy: name.into(),
            url,
            created,
            dry_run,
            pending: missing.iter().map(pending).collect(),
            snapshots: SnapshotsCopied {
                already,
                ..Default::default()
            },
            side: SideCopied::default(),
            seconds: started.elapsed().as_secs_f64(),
        });
    }
    let command = format!("lifeboat copy {name}");
    // Read here beside backups, written there beside anything but a prune.
    let _mine = repo.lock_async(LockKind::Shared, &command).await?;
    let _theirs = dest.lock_async(LockKind::Shared, &command).await?;
    let d = dest.clone();
    let snapshots = repo
        .call(move |r| r.copy_snapshots(&d, read_data))
        .await
        .map_err(|e| in_copy(name, e))?;
    let d = dest.clone();
    let side = repo
        .call(move |r| r.copy_side(&d))
        .await
        .map_err(|e| in_copy(name, e))?;
    let record = CopyRecord {
        copy: name.into(),
        started_at,
        finished_at: jiff::Timestamp::now(),
        present: snapshots.present.clone(),
    };
    let path = format!("{RECORDS}/{name}.json");
    let bytes = serde_json::to_vec_pretty(&record).unwrap_or_default();
    repo.call(move |r| r.side().put(&path, &bytes)).await?;
    Ok(CopyReport {
        copy: name.into(),
        url,
        created,
        dry_run,
        pending: Vec::new(),
        snapshots,
        side,
        seconds: started.elapsed().as_secs_f64(),
    })
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

/// The copy's repository, opened, or created when `create` (then `true`); `None` when it
/// does not exist and may not be created.
async fn open_or_create(
    cfg: &Config,
    name: &str,
    create: bool,
    bars: Bars,
) -> EngineResult<Option<(Arc<Repo>, bool)>> {
    match Engine::open_repo(cfg, bars.clone()).await {
        Ok(r) => Ok(Some((r, false))),
        Err(e) if e.message.starts_with("no repository at") => {
            if !create {
                return Ok(None);
            }
            let password = cfg.repository_password()?;
            let location = cfg.repository_location()?;
            let repo = Repo::init_shared(location, password, bars)
                .await
                .map_err(|e| in_copy(name, e))?;
            Ok(Some((repo, true)))
        }
        Err(mut e) => {
            e.message = format!("copy `{name}`: {}", e.message);
            Err(e)
        }
    }
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

/// Every copy's lag, judged against its `max-lag`, from the records and this repository's
/// snapshots. None when the engine runs on a copy (`--repo NAME`): copies of copies are
/// not kept.
pub async fn lags(engine: &Engine) -> EngineResult<Vec<CopyLag>> {
    let now = jiff::Timestamp::now();
    let mut out = Vec::new();
    if engine.config.using_copy.is_some() || engine.config.copies.is_empty() {
        return Ok(out);
    }
    let snaps = engine.repo.list_snapshots(None).await?;
    for (name, copy) in &engine.config.copies {
        let path = format!("{RECORDS}/{name}.json");
        let record: Option<CopyRecord> = engine
            .repo
            .call(move |r| r.side().get(&path))
            .await?
            .and_then(|b| serde_json::from_slice(&b).ok());
        let present: HashSet<&str> = record
            .iter()
            .flat_map(|r| r.present.iter().map(String::as_str))
            .collect();
        let lacking: Vec<&SnapshotInfo> = snaps
            .iter()
            .filter(|s| !present.contains(s.id.as_str()))
            .collect();
        let lag = lacking
            .iter()
            .map(|s| {
                now.duration_since(s.time.timestamp())
                    .as_secs_f64()
                    .max(0.0)
            })
            .fold(0.0, f64::max);
        let max = copy.max_lag.map(|m| m.as_secs() as f64);
        let mut problems = Vec::new();
        if let Some(max) = max
            && lag > max
        {
            problems.push(format!(
                "copy `{name}` lacks {} snapshot(s), the oldest taken {} ago (max-lag {})",
                lacking.len(),
                lifeboat_drill::render::seconds(lag),
                lifeboat_drill::render::seconds(max),
            ));
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
