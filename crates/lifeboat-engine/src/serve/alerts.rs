//! The alert lifecycle: one alert when a problem begins, one when it ends; never one per
//! failed attempt. Problems are keyed (`backup:app`, `objective:app`).

use std::collections::HashMap;

use crate::notify::{Alert, AlertState};

#[derive(Debug, Default)]
pub struct Alerts {
    firing: HashMap<String, Alert>,
}

impl Alerts {
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
