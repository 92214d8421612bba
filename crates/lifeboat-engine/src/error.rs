//! The engine's error: what went wrong (with the object named in backticks), what kind of
//! failure it is (the CLI maps that to an exit code, the daemon to an alert), the cause
//! kept as a source, and a hint when the fix is known.
//!
//! Errors of the adapter crates convert with their own hint (`RepoError::hint`,
//! `PgError::hint`, …), chosen by their variants, never by the text. File-system errors
//! have no blanket conversion: [`FsContext::fs`] names the path and what was being done.

use lifeboat_core::ConfigError;
use lifeboat_postgres::PgError;
use lifeboat_repo::RepoError;

/// What kind of failure: decides the CLI's exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The operation failed (exit 1).
    Failed,
    /// The request itself is wrong: bad input, a config that cannot be (exit 2).
    Usage,
    /// Data read back does not match what was recorded (exit 3).
    Verification,
    /// Stopped by its cancellation token (Ctrl-C, SIGTERM, the daemon); what it started
    /// was put back, as the message says (exit 130).
    Interrupted,
}

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct EngineError {
    pub failure: Failure,
    pub message: String,
    pub hint: Option<String>,
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

pub type EngineResult<T> = Result<T, EngineError>;

impl EngineError {
    pub fn failed(message: impl Into<String>) -> Self {
        Self {
            failure: Failure::Failed,
            message: message.into(),
            hint: None,
            source: None,
        }
    }

    /// A failure with an optional hint.
    pub fn failure(message: impl Into<String>, hint: Option<String>) -> Self {
        Self {
            hint,
            ..Self::failed(message)
        }
    }

    /// The request is wrong (exit 2), with an optional hint.
    pub fn usage(message: impl Into<String>, hint: Option<String>) -> Self {
        Self {
            failure: Failure::Usage,
            hint,
            ..Self::failed(message)
        }
    }

    /// Data read back does not match what was recorded (exit 3).
    pub fn verification(message: impl Into<String>) -> Self {
        Self {
            failure: Failure::Verification,
            hint: Some(
                "run `lifeboat check --read-data`; choose another snapshot with `--snapshot`"
                    .into(),
            ),
            ..Self::failed(message)
        }
    }

    /// Stopped by a cancellation; `what` says what was put back.
    pub fn interrupted(message: impl Into<String>) -> Self {
        Self {
            failure: Failure::Interrupted,
            ..Self::failed(message)
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Add a hint unless the error already carries one.
    pub fn with_hint(mut self, hint: String) -> Self {
        if self.hint.is_none() {
            self.hint = Some(hint);
        }
        self
    }

    /// Add what was being done in front of the message.
    pub fn context(mut self, what: impl std::fmt::Display) -> Self {
        self.message = format!("{what}: {}", self.message);
        self
    }

    /// Keep `source` as the cause; its text is not repeated in the message.
    pub fn caused_by(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// The message with its cause, when the cause says more: what the CLI prints.
    pub fn full_message(&self) -> String {
        match &self.source {
            Some(s) if !self.message.contains(&s.to_string()) => {
                format!("{}: {s}", self.message)
            }
            _ => self.message.clone(),
        }
    }
}

/// An adapter's error as the engine's: its text, its own hint, and itself as the cause;
/// the failure as the function after `=>` decides from the error.
macro_rules! from_adapter {
    ($($t:ty => $failure:expr),* $(,)?) => {$(
        impl From<$t> for EngineError {
            fn from(e: $t) -> Self {
                Self {
                    failure: ($failure)(&e),
                    message: e.to_string(),
                    hint: e.hint(),
                    source: Some(Box::new(e)),
                }
            }
        }
    )*};
}

from_adapter! {
    ConfigError => |_: &ConfigError| Failure::Usage,
    // A restore its caller stopped (the cancellation token) is an interruption.
    RepoError => |e: &RepoError| if matches!(e, RepoError::Stopped { .. }) {
        Failure::Interrupted
    } else {
        Failure::Failed
    },
    PgError => |_: &PgError| Failure::Failed,
    lifeboat_redis::RedisError => |_: &lifeboat_redis::RedisError| Failure::Failed,
}

impl From<lifeboat_repo::StoreError> for EngineError {
    fn from(e: lifeboat_repo::StoreError) -> Self {
        RepoError::from(e).into()
    }
}

impl From<lifeboat_repo::SideError> for EngineError {
    fn from(e: lifeboat_repo::SideError) -> Self {
        RepoError::from(e).into()
    }
}

impl From<tokio::task::JoinError> for EngineError {
    fn from(e: tokio::task::JoinError) -> Self {
        Self::failed(format!("internal task failed: {e}"))
    }
}

/// A file-system call that failed: what was being done, to which path, the system's reason
/// and, where one helps, a hint. There is deliberately no blanket conversion from
/// `io::Error`: a bare "Permission denied (os error 13)" names nothing.
pub fn fs_error(doing: &str, path: &std::path::Path, e: std::io::Error) -> EngineError {
    use std::io::ErrorKind;
    let hint = match e.kind() {
        ErrorKind::PermissionDenied => Some(
            "run lifeboat as a user that may do this there (for a PostgreSQL data directory: root or the server's user), or choose another folder".to_string(),
        ),
        ErrorKind::StorageFull | ErrorKind::QuotaExceeded => {
            Some("free some space there, or choose another folder".to_string())
        }
        ErrorKind::ReadOnlyFilesystem => Some("choose a folder on a writable file system".to_string()),
        _ => None,
    };
    EngineError::failure(format!("cannot {doing} `{}`: {e}", path.display()), hint)
}

/// [`fs_error`] for a `Result`: `std::fs::create_dir_all(&dir).fs("create folder", &dir)?`.
pub trait FsContext<T> {
    fn fs(self, doing: &str, path: &std::path::Path) -> EngineResult<T>;
}

impl<T> FsContext<T> for std::io::Result<T> {
    fn fs(self, doing: &str, path: &std::path::Path) -> EngineResult<T> {
        self.map_err(|e| fs_error(doing, path, e))
    }
}

/// An I/O error of something other than a path (a child process, a pipe): what was being
/// done, and the system's reason.
pub trait IoContext<T> {
    fn doing(self, what: &str) -> EngineResult<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn doing(self, what: &str) -> EngineResult<T> {
        self.map_err(|e| EngineError::failed(format!("cannot {what}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_system_error_names_the_path_and_keeps_a_hint() {
        let denied = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let e = fs_error("write", std::path::Path::new("/data/x"), denied);
        assert!(
            e.message.contains("cannot write `/data/x`"),
            "{}",
            e.message
        );
        assert!(e.hint.is_some());
        assert_eq!(e.failure, Failure::Failed);
    }

    #[test]
    fn an_adapter_error_keeps_its_hint_and_cause_without_repeating_it() {
        let e = EngineError::from(ConfigError::Secret {
            what: "password of `db`".into(),
            message: "`$PGPASS` is not set".into(),
        });
        assert_eq!(e.failure, Failure::Usage);
        assert!(e.source.is_some());
        assert_eq!(e.full_message(), e.message);
        let e = EngineError::failed("backup of `db` failed")
            .caused_by(std::io::Error::other("disk on fire"));
        assert_eq!(e.full_message(), "backup of `db` failed: disk on fire");
    }
}
