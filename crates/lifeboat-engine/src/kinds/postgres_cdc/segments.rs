//! Captured transactions in the side area: `cdc/<target>/<first>-<last>.seg`, where
//! `<first>` and `<last>` are the end LSNs of the first and last transaction in it (16 hex
//! digits, so names sort in commit order). A segment is JSON lines of
//! [`Txn`](lifeboat_postgres::cdc::apply::Txn), each table's description before its first
//! change so that it stands alone; sealed (compressed, encrypted, authenticated, its name
//! bound in) and written create-only and durably before the slot is told it is flushed.
//! A transaction too large for memory is a segment of its own whose one transaction says
//! how many parts follow: `cdc/<target>/parts/<end>-<n>.part`, JSON lines of its changes,
//! written (the same way) before the segment, so a segment is there only once all of it is.

use std::sync::Arc;

use lifeboat_postgres::cdc::apply::{Op, Txn};
use lifeboat_repo::Repo;

use crate::{EngineError, EngineResult};

/// Where captured changes live in the side area.
pub const DIR: &str = "cdc";

/// One stored segment, by its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub first: u64,
    pub last: u64,
    pub name: String,
}

fn dir(target: &str) -> String {
    format!("{DIR}/{target}")
}

/// The segments of `target`, in commit order.
pub async fn list(repo: &Arc<Repo>, target: &str) -> EngineResult<Vec<Segment>> {
    let d = dir(target);
    let names = repo.call(move |r| r.side().list(&d)).await?;
    let mut segs: Vec<Segment> = names
        .into_iter()
        .filter_map(|name| {
            let stem = name.strip_suffix(".seg")?;
            let (a, b) = stem.split_once('-')?;
            Some(Segment {
                first: u64::from_str_radix(a, 16).ok()?,
                last: u64::from_str_radix(b, 16).ok()?,
                name,
            })
        })
        .collect();
    segs.sort_by_key(|s| (s.first, s.last));
    Ok(segs)
}

/// The end LSN of the newest stored transaction, if any.
pub async fn durable(repo: &Arc<Repo>, target: &str) -> EngineResult<Option<u64>> {
    Ok(list(repo, target).await?.iter().map(|s| s.last).max())
}

/// Store `txns` (in commit order, not empty) as one segment, create-only and durable. A
/// segment of the same range already there (stored before a crash, then redelivered) is
/// left as it is.
pub async fn write(repo: &Arc<Repo>, target: &str, txns: &[Txn]) -> EngineResult<Segment> {
    let (Some(first), Some(last)) = (txns.first(), txns.last()) else {
        return Err(EngineError::failure("an empty segment", None));
    };
    let name = format!("{:016x}-{:016x}.seg", first.end, last.end);
    let path = format!("{}/{name}", dir(target));
    put_lines(repo, &path, txns).await?;
    Ok(Segment {
        first: first.end,
        last: last.end,
        name,
    })
}

/// The transactions of a stored segment.
pub async fn read(repo: &Arc<Repo>, target: &str, seg: &Segment) -> EngineResult<Vec<Txn>> {
    get_lines(repo, &format!("{}/{}", dir(target), seg.name)).await
}

/// Part `n` of the large transaction ending at `end`: `cdc/<target>/parts/<end>-<n>.part`.
fn part_path(target: &str, end: u64, n: u32) -> String {
    format!("{}/parts/{end:016x}-{n:06}.part", dir(target))
}

/// Store part `n` of the large transaction ending at `end` (its segment, written after
/// every part, says how many there are). Create-only, as segments.
pub async fn write_part(
    repo: &Arc<Repo>,
    target: &str,
    end: u64,
    n: u32,
    ops: &[Op],
) -> EngineResult<()> {
    put_lines(repo, &part_path(target, end, n), ops).await
}

/// Part `n` of the large transaction `txn`.
pub async fn read_part(repo: &Arc<Repo>, target: &str, txn: &Txn, n: u32) -> EngineResult<Vec<Op>> {
    get_lines(repo, &part_path(target, txn.end, n)).await
}

/// Store `items` as sealed JSON lines at `path`, create-only and durable. Already there
/// (stored before a crash, then redelivered): fine if it holds exactly these; anything else
/// is another stream claiming the same positions (another cluster, a restored server).
async fn put_lines<T>(repo: &Arc<Repo>, path: &str, items: &[T]) -> EngineResult<()>
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq,
{
    let mut plain = Vec::new();
    for t in items {
        serde_json::to_writer(&mut plain, t)
            .map_err(|e| EngineError::failure(format!("encode `{path}`: {e}"), None))?;
        plain.push(b'\n');
    }
    let key = repo.side_key_async().await?;
    let sealed = key
        .seal(path, &plain)
        .map_err(|e| EngineError::failure(e.to_string(), None))?;
    let p = path.to_string();
    let new = repo.call(move |r| r.side().put_new(&p, &sealed)).await?;
    if !new && get_lines::<T>(repo, path).await? != items {
        return Err(EngineError::failure(
            format!("`{path}` exists with other transactions: the source is not the stream it was captured from"),
            Some("a restored or replaced server reuses WAL positions: move the target's `cdc/` folder in the repository aside and take a new baseline".into()),
        ));
    }
    Ok(())
}

async fn get_lines<T: serde::de::DeserializeOwned>(
    repo: &Arc<Repo>,
    path: &str,
) -> EngineResult<Vec<T>> {
    let p = path.to_string();
    let sealed = repo
        .call(move |r| r.side().get(&p))
        .await?
        .ok_or_else(|| EngineError::failure(format!("`{path}` is gone"), None))?;
    let key = repo.side_key_async().await?;
    let plain = key
        .open(path, &sealed)
        .map_err(|e| EngineError::failure(format!("`{path}`: {e}"), None))?;
    plain
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            serde_json::from_slice(l)
                .map_err(|e| EngineError::failure(format!("`{path}` is unreadable: {e}"), None))
        })
        .collect()
}

/// Delete the segments of `target` whose every transaction is inside each kept baseline
/// (its last end LSN at or below the oldest kept baseline's consistent point); how many.
/// Nothing is deleted while a kept baseline's manifest cannot be read.
pub async fn prune(
    repo: &Arc<Repo>,
    target: &str,
    snaps: &[lifeboat_repo::SnapshotInfo],
    decisions: &[lifeboat_repo::ForgetDecision],
    dry_run: bool,
) -> EngineResult<usize> {
    let kept: Vec<&lifeboat_repo::SnapshotInfo> = snaps
        .iter()
        .filter(|s| s.target == target && s.kind == "cdc")
        .filter(|s| decisions.iter().any(|d| d.keep && d.id == s.id))
        .collect();
    let mut oldest: Option<u64> = None;
    for s in &kept {
        let lsn = s
            .manifest
            .as_ref()
            .ok()
            .and_then(|m| m.postgres.as_ref())
            .and_then(|p| lifeboat_postgres::cdc::stream::lsn(&p.snapshot_lsn));
        match lsn {
            Some(l) => oldest = Some(oldest.map_or(l, |o| o.min(l))),
            None => return Ok(0),
        }
    }
    let Some(oldest) = oldest else {
        return Ok(0);
    };
    let mut all = list(repo, target).await?;
    // The newest stays, whatever: it says how far the history went.
    all.pop();
    let mut old: Vec<Segment> = all.into_iter().filter(|s| s.last <= oldest).collect();
    if !dry_run {
        // With Object Lock, a segment still under retention stays, and so does every one
        // after it: what is pruned (and `pruned-through`) stays contiguous from the oldest.
        let mut removable = 0;
        for s in &old {
            let path = format!("{}/{}", dir(target), s.name);
            if repo.call(move |r| r.side().retained(&path)).await? {
                break;
            }
            removable += 1;
        }
        old.truncate(removable);
    }
    if !dry_run && let Some(newest) = old.iter().map(|s| s.last).max() {
        // How far pruning went, before anything goes: a copy holding less than this has
        // a hole where the pruned segments it never received were (`lifeboat copy`
        // refuses to extend it).
        let path = format!("{}/{PRUNED_THROUGH}", dir(target));
        let p = path.clone();
        let before = repo
            .call(move |r| r.side().get(&p))
            .await?
            .and_then(|b| u64::from_str_radix(String::from_utf8_lossy(&b).trim(), 16).ok());
        let through = before.map_or(newest, |b| b.max(newest));
        let text = format!("{through:016x}\n");
        repo.call(move |r| r.side().put(&path, text.as_bytes()))
            .await?;
    }
    if !dry_run {
        // The parts of large transactions go with their segments.
        let parts_dir = format!("{}/parts", dir(target));
        let parts = repo.call(move |r| r.side().list(&parts_dir)).await?;
        for s in &old {
            let stem = format!("{:016x}-", s.last);
            for p in parts
                .iter()
                .filter(|p| s.first == s.last && p.starts_with(&stem))
            {
                let path = format!("{}/parts/{p}", dir(target));
                repo.call(move |r| r.side().delete_unless_retained(&path, true))
                    .await?;
            }
            let path = format!("{}/{}", dir(target), s.name);
            repo.call(move |r| r.side().delete_unless_retained(&path, true))
                .await?;
        }
    }
    Ok(old.len())
}

/// The end LSN (hex) of the newest segment retention deleted, in `cdc/<target>/`.
pub const PRUNED_THROUGH: &str = "pruned-through";

/// A stretch of changes the capture lost (its slot was invalidated, or dropped): no moment
/// after `from` and before `to` can be restored. `to` is the consistent point of the
/// baseline that started the next chain.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Gap {
    /// The end LSN of the last transaction stored before it.
    pub from_lsn: u64,
    /// When that transaction committed (if one was stored).
    pub from_time: Option<jiff::Timestamp>,
    pub to_lsn: u64,
    pub to_time: Option<jiff::Timestamp>,
    /// Why: the slot's state as it was found.
    pub why: String,
    /// The schema changed where no event trigger captured it: the changes are stored, but
    /// cannot replay onto the old baseline (nothing was lost on the server's side).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub schema: bool,
}

impl Gap {
    /// Recorded before its end is known (the baseline that ends it not stored yet).
    pub fn pending(&self) -> bool {
        self.to_lsn == 0
    }

    /// Whether moment `t` is inside it.
    pub fn holds(&self, t: jiff::Timestamp) -> bool {
        self.from_time.is_none_or(|f| t > f) && self.to_time.is_none_or(|e| t < e)
    }
}

fn gaps_path(target: &str) -> String {
    format!("{}/gaps.json", dir(target))
}

/// The recorded gaps of `target`, oldest first.
pub async fn gaps(repo: &Arc<Repo>, target: &str) -> EngineResult<Vec<Gap>> {
    let path = gaps_path(target);
    match repo.call(move |r| r.side().get(&path)).await? {
        Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            EngineError::failure(format!("the gaps of `{target}` are unreadable: {e}"), None)
        }),
        None => Ok(Vec::new()),
    }
}

/// Record `gap` (written durably before the new chain starts). A gap still pending is the
/// same stretch, not a second one: it starts at the earlier of the two.
pub async fn record_gap(repo: &Arc<Repo>, target: &str, gap: Gap) -> EngineResult<()> {
    let mut all = gaps(repo, target).await?;
    match all.last_mut().filter(|g| g.pending()) {
        Some(open) => {
            if gap.from_lsn < open.from_lsn {
                open.from_lsn = gap.from_lsn;
                open.from_time = gap.from_time;
            }
            // A real loss is not hidden behind a schema change's gap.
            open.schema &= gap.schema;
            if !open.why.contains(&gap.why) {
                open.why = format!("{}; then {}", open.why, gap.why);
            }
        }
        None => all.push(gap),
    }
    let bytes = serde_json::to_vec_pretty(&all).unwrap_or_default();
    let path = gaps_path(target);
    repo.call(move |r| r.side().put(&path, &bytes)).await?;
    Ok(())
}

/// Complete the pending gap with the baseline that ends it; the gap as completed.
pub async fn complete_gap(
    repo: &Arc<Repo>,
    target: &str,
    to_lsn: u64,
    to_time: Option<jiff::Timestamp>,
) -> EngineResult<Gap> {
    let mut all = gaps(repo, target).await?;
    // Every pending one (a history written before pending gaps were merged may hold more).
    let mut done: Option<Gap> = None;
    for g in all.iter_mut().filter(|g| g.pending()) {
        g.to_lsn = to_lsn;
        g.to_time = to_time;
        if done.as_ref().is_none_or(|d| g.from_lsn < d.from_lsn) {
            done = Some(g.clone());
        }
    }
    let Some(done) = done else {
        return Err(EngineError::failure("no pending gap to complete", None));
    };
    let bytes = serde_json::to_vec_pretty(&all).unwrap_or_default();
    let path = gaps_path(target);
    repo.call(move |r| r.side().put(&path, &bytes)).await?;
    Ok(done)
}

/// The commit time of the newest stored transaction, if any.
pub async fn last_commit(repo: &Arc<Repo>, target: &str) -> EngineResult<Option<jiff::Timestamp>> {
    let Some(seg) = list(repo, target).await?.pop() else {
        return Ok(None);
    };
    Ok(read(repo, target, &seg)
        .await?
        .last()
        .and_then(Txn::committed_at))
}

/// Where a capture that stopped cleanly had everything stored: the WAL position the slot was
/// last told, and when (a quiet database writes no segments, so the newest segment alone
/// would date a later loss too early).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Stopped {
    pub lsn: u64,
    pub at: jiff::Timestamp,
}

fn stopped_path(target: &str) -> String {
    format!("{}/stopped.json", dir(target))
}

pub async fn write_stopped(repo: &Arc<Repo>, target: &str, stopped: &Stopped) -> EngineResult<()> {
    let bytes = serde_json::to_vec(stopped).unwrap_or_default();
    let path = stopped_path(target);
    repo.call(move |r| r.side().put(&path, &bytes)).await?;
    Ok(())
}

pub async fn read_stopped(repo: &Arc<Repo>, target: &str) -> EngineResult<Option<Stopped>> {
    let path = stopped_path(target);
    Ok(repo
        .call(move |r| r.side().get(&path))
        .await?
        .and_then(|b| serde_json::from_slice(&b).ok()))
}
