//! The alert lifecycle: one alert when a problem begins, one when it ends; never one per
//! failed attempt. Problems are keyed (`backup:app`, `objective:app`). The firing ones are
//! kept in the side area (`lifeboat/serve/alerts.json`), so that a restarted `serve` still
//! resolves what fired before.

use std::{collections::BTreeMap, sync::Arc};

use lifeboat_repo::Repo;

use crate::notify::{Alert, AlertState};

/// Where the firing alerts are kept.
const FIRING: &str = "serve/alerts.json";

#[derive(Debug, Default)]
pub struct Alerts {
    firing: BTreeMap<String, Alert>,
}

impl Alerts {
    /// The alerts firing when the last `serve` stopped (none if unreadable).
    pub async fn load(repo: &Arc<Repo>) -> Self {
        let read = repo.call(|r| r.side().get(FIRING)).await;
        let firing = match read {
            Ok(Some(bytes)) => serde_json::from_slice(&bytes).unwrap_or_default(),
            Ok(None) => BTreeMap::new(),
            Err(e) => {
                log::warn!("cannot read the firing alerts: {e}");
                BTreeMap::new()
            }
        };
        Self { firing }
    }

    /// The firing alerts, to keep: call after a change.
    pub fn snapshot(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(&self.firing).unwrap_or_default()
    }

    /// Keep `bytes` (from [`Alerts::snapshot`]) in the side area.
    pub async fn keep(repo: &Arc<Repo>, bytes: Vec<u8>) {
        if let Err(e) = repo.call(move |r| r.side().put(FIRING, &bytes)).await {
            log::warn!("cannot keep the firing alerts: {e}");
        }
    }

    /// The problem `key` holds now: the alert to send if it just began.
    pub fn problem(
        &mut self,
        key: &str,
        kind: &str,
        subject: &str,
        message: &str,
    ) -> Option<Alert> {
        if self.firing.contains_key(key) {
            return None;
        }
        let alert = Alert::new(key, AlertState::Firing, kind, subject, message);
        self.firing.insert(key.to_string(), alert.clone());
        Some(alert)
    }

    /// The problems firing now, as they began.
    pub fn firing(&self) -> Vec<Alert> {
        self.firing.values().cloned().collect()
    }

    /// Whether a problem whose key starts with `prefix` (`backup:`) is firing.
    pub fn firing_with_prefix(&self, prefix: &str) -> bool {
        self.firing.keys().any(|k| k.starts_with(prefix))
    }

    /// The problem `key` does not hold now: the alert to send if it just ended.
    pub fn cleared(&mut self, key: &str, message: &str) -> Option<Alert> {
        let was = self.firing.remove(key)?;
        Some(Alert::new(
            key,
            AlertState::Resolved,
            &was.kind,
            &was.subject,
            message,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_problem_alerts_once_when_it_begins_and_once_when_it_ends() {
        let mut a = Alerts::default();
        assert!(a.cleared("backup:db", "ok").is_none());
        let first = a
            .problem("backup:db", "backup-failed", "db", "refused")
            .unwrap();
        assert_eq!(first.state, AlertState::Firing);
        assert!(
            a.problem("backup:db", "backup-failed", "db", "refused")
                .is_none()
        );
        let other = a.problem("backup:media", "backup-failed", "media", "x");
        assert!(other.is_some());
        let end = a.cleared("backup:db", "snapshot 1234").unwrap();
        assert_eq!(
            (end.state, end.kind.as_str()),
            (AlertState::Resolved, "backup-failed")
        );
        assert!(a.cleared("backup:db", "again").is_none());
        assert!(
            a.problem("backup:db", "backup-failed", "db", "again")
                .is_some()
        );
    }
}
