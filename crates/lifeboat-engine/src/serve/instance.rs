//! One `serve` per repository and host: a marker in the side area
//! (`lifeboat/serve/<host>.json`, the process id and when it started), created only if
//! absent; a marker whose process is gone is taken over.

use std::sync::Arc;

use lifeboat_repo::Repo;
use serde::{Deserialize, Serialize};

use crate::{EngineError, EngineResult};

#[derive(Debug, Serialize, Deserialize)]
struct Marker {
    host: String,
    pid: u32,
    started_at: String,
}

/// Held while `serve` runs; [`Instance::release`] removes the marker.
pub struct Instance {
    repo: Arc<Repo>,
    path: String,
}

impl Instance {
    /// Take the marker, or refuse naming the `serve` that holds it.
    pub async fn take(repo: &Arc<Repo>) -> EngineResult<Self> {
        let host = lifeboat_repo::hostname();
        let path = format!("serve/{host}.json");
        let marker = Marker {
            host: host.clone(),
            pid: std::process::id(),
            started_at: jiff::Timestamp::now().to_string(),
        };
        let bytes = serde_json::to_vec(&marker).unwrap_or_default();
        let (p, b) = (path.clone(), bytes.clone());
        let taken = repo
            .call(
                move |r| -> Result<Option<Vec<u8>>, lifeboat_repo::SideError> {
                    if r.side().put_new(&p, &b)? {
                        return Ok(None);
                    }
                    r.side().get(&p)
                },
            )
            .await?;
        if let Some(held) = taken {
            let other: Option<Marker> = serde_json::from_slice(&held).ok();
            let alive = other.as_ref().is_some_and(|m| {
                m.host == host && std::path::Path::new(&format!("/proc/{}", m.pid)).exists()
            });
            if alive && let Some(m) = other {
                return Err(EngineError::failure(
                    format!(
                        "another `lifeboat serve` runs for this repository on {} (process {}, since {})",
                        m.host, m.pid, m.started_at
                    ),
                    Some("one `serve` per repository and host; stop the other one first".into()),
                ));
            }
            // Its process is gone: take the marker over.
            let p = path.clone();
            repo.call(move |r| r.side().put(&p, &bytes)).await?;
        }
        Ok(Self {
            repo: repo.clone(),
            path,
        })
    }

    /// Remove the marker.
    pub async fn release(self) {
        let path = self.path;
        if let Err(e) = self.repo.call(move |r| r.side().delete(&path)).await {
            log::warn!("cannot remove the serve marker: {e}");
        }
    }
}
