//! One `serve` per repository and host: a marker in the side area
//! (`lifeboat/serve/<host>.json`: the process id, the process's start in clock ticks since
//! boot, the boot id), created only if absent; a marker whose process is gone is taken
//! over. Process ids are reused (a container's `serve` is always process 1), so a marker
//! counts as alive only if a process with its id exists *and* started at the same tick of
//! the same boot — and never if it names this very process.

use std::sync::Arc;

use lifeboat_repo::Repo;
use serde::{Deserialize, Serialize};

use crate::{EngineError, EngineResult};

#[derive(Debug, Serialize, Deserialize)]
struct Marker {
    host: String,
    pid: u32,
    started_at: String,
    #[serde(default)]
    boot_id: String,
    #[serde(default)]
    start_ticks: u64,
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`).
fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// When process `pid` started, in clock ticks since boot (`/proc/<pid>/stat`, field 22).
fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces: count from after its closing paren.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

impl Marker {
    /// Whether the process that wrote it still runs (and is not this one).
    fn alive(&self, host: &str) -> bool {
        self.host == host
            && self.pid != std::process::id()
            && self.boot_id == boot_id()
            && start_ticks(self.pid).is_some_and(|t| t == self.start_ticks)
    }
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
            boot_id: boot_id(),
            start_ticks: start_ticks(std::process::id()).unwrap_or(0),
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
            let alive = other.as_ref().is_some_and(|m| m.alive(&host));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_is_alive_only_for_the_process_that_wrote_it() {
        let me = std::process::id();
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let marker = |pid, ticks| Marker {
            host: "h".into(),
            pid,
            started_at: String::new(),
            boot_id: boot_id(),
            start_ticks: ticks,
        };
        let ticks = start_ticks(child.id()).unwrap();
        assert!(marker(child.id(), ticks).alive("h"));
        // Another host's, a reused id (another start), or this very process: not alive.
        assert!(!marker(child.id(), ticks).alive("other"));
        assert!(!marker(child.id(), ticks + 1).alive("h"));
        assert!(!marker(me, start_ticks(me).unwrap()).alive("h"));
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!marker(child.id(), ticks).alive("h"));
    }
}
