//! The snapshot a restore request names (`latest`, an id, or the newest at `--time`) with
//! its complete manifest: what most kinds' planners start from.

use lifeboat_core::Manifest;
use lifeboat_repo::SnapshotInfo;

use crate::{Engine, EngineError, EngineResult, restore::plan::RestoreRequest};

/// The snapshot `request` names and its complete manifest: what most kinds restore from.
pub async fn chosen_snapshot(
    engine: &Engine,
    request: &RestoreRequest,
) -> EngineResult<(SnapshotInfo, Manifest)> {
    // `--time T`: the newest backup taken at or before T.
    let at = match &request.time {
        Some(_) if request.snapshot != "latest" => {
            return Err(EngineError::usage(
                "give `--snapshot` or `--time`, not both",
                None,
            ));
        }
        Some(t) => Some(crate::time::parse_time(t).map_err(|e| {
            EngineError::usage(e, Some("RFC 3339, or `2026-11-22 10:01:00+00`".into()))
        })?),
        None => None,
    };
    let (r, name, wanted) = (
        engine.repo.clone(),
        request.target.clone(),
        request.snapshot.clone(),
    );
    let snapshot = r
        .call(move |r| r.find_snapshot_at(&name, &wanted, at))
        .await
        .map_err(|e| {
            EngineError::from(e)
                .context("cannot choose a snapshot")
                .with_hint(format!(
                    "list them with `lifeboat snapshots {}`",
                    request.target
                ))
        })?;
    let manifest = match &snapshot.manifest {
        Ok(m) if m.complete => m.clone(),
        Ok(_) => {
            return Err(EngineError::failure(
                format!("snapshot `{}` is an incomplete backup", snapshot.short_id()),
                Some("choose another with `--snapshot`".into()),
            ));
        }
        Err(e) => {
            return Err(EngineError::failure(
                format!(
                    "snapshot `{}` has no readable manifest: {e}",
                    snapshot.short_id()
                ),
                None,
            ));
        }
    };
    Ok((snapshot, manifest))
}

/// [`chosen_snapshot`] and its manifest's section for the kind (`part`), or an error naming
/// the snapshot when it holds another kind's.
pub async fn chosen_section<T: Clone>(
    engine: &Engine,
    request: &RestoreRequest,
    part: fn(&Manifest) -> &Option<T>,
    what: &str,
) -> EngineResult<(SnapshotInfo, T)> {
    let (snapshot, manifest) = chosen_snapshot(engine, request).await?;
    let section = crate::snapshot_io::section(part(&manifest), &snapshot, what)?;
    Ok((snapshot, section))
}
