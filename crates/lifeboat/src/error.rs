//! Errors as the person at 3 a.m. sees them: what failed, the value in backticks, a
//! `hint:` line when the fix is known, and the exit code.

use lifeboat_core::ConfigError;
use lifeboat_postgres::PgError;
use lifeboat_repo::RepoError;

#[derive(Debug)]
pub struct CliError {
    pub code: i32,
    pub message: String,
    pub hint: Option<String>,
}

impl CliError {
    pub fn failure(message: impl Into<String>, hint: Option<String>) -> Self {
        Self {
            code: 1,
            message: message.into(),
            hint,
        }
    }

    pub fn usage(message: impl Into<String>, hint: Option<String>) -> Self {
        Self {
            code: 2,
            message: message.into(),
            hint,
        }
    }

    /// Data read back does not match what was recorded (exit 3).
    pub fn verification(message: impl Into<String>) -> Self {
        Self {
            code: 3,
            message: message.into(),
            hint: Some(
                "run `lifeboat check --read-data`; choose another snapshot with `--snapshot`"
                    .into(),
            ),
        }
    }

    /// Add what was being done in front of the message.
    pub fn context(mut self, what: impl std::fmt::Display) -> Self {
        self.message = format!("{what}: {}", self.message);
        self
    }

    /// Add a hint unless the error already carries one.
    pub fn with_hint(mut self, hint: String) -> Self {
        if self.hint.is_none() {
            self.hint = Some(hint);
        }
        self
    }

    pub fn print(&self) {
        eprintln!("error: {}", self.message);
        if let Some(h) = &self.hint {
            eprintln!("hint: {h}");
        }
    }
}

impl From<ConfigError> for CliError {
    fn from(e: ConfigError) -> Self {
        Self::usage(e.to_string(), e.hint())
    }
}

impl From<RepoError> for CliError {
    fn from(e: RepoError) -> Self {
        Self::failure(e.to_string(), e.hint())
    }
}

impl From<lifeboat_repo::StoreError> for CliError {
    fn from(e: lifeboat_repo::StoreError) -> Self {
        RepoError::from(e).into()
    }
}

impl From<lifeboat_repo::SideError> for CliError {
    fn from(e: lifeboat_repo::SideError) -> Self {
        RepoError::from(e).into()
    }
}

impl From<lifeboat_redis::RedisError> for CliError {
    fn from(e: lifeboat_redis::RedisError) -> Self {
        Self::failure(e.to_string(), e.hint())
    }
}

impl From<lifeboat_engine::EngineError> for CliError {
    fn from(e: lifeboat_engine::EngineError) -> Self {
        use lifeboat_engine::Failure;
        let code = match e.failure {
            Failure::Failed => 1,
            Failure::Usage => 2,
            Failure::Verification => 3,
        };
        let mut message = e.message;
        // The cause, when it says more than the message.
        if let Some(source) = &e.source {
            message = format!("{message}: {source}");
        }
        Self {
            code,
            message,
            hint: e.hint,
        }
    }
}

impl From<PgError> for CliError {
    fn from(e: PgError) -> Self {
        Self::failure(e.to_string(), e.hint())
    }
}

/// A file-system call that failed: what was being done, to which path, the system's reason
/// and, where one helps, a hint. There is deliberately no blanket conversion from
/// `io::Error`: a bare "Permission denied (os error 13)" names nothing.
pub fn fs_error(doing: &str, path: &std::path::Path, e: &std::io::Error) -> CliError {
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
    CliError::failure(format!("cannot {doing} `{}`: {e}", path.display()), hint)
}

/// [`fs_error`] for a `Result`: `std::fs::create_dir_all(&dir).fs("create folder", &dir)?`.
pub trait FsContext<T> {
    fn fs(self, doing: &str, path: &std::path::Path) -> CliResult<T>;
}

impl<T> FsContext<T> for std::io::Result<T> {
    fn fs(self, doing: &str, path: &std::path::Path) -> CliResult<T> {
        self.map_err(|e| fs_error(doing, path, &e))
    }
}

/// An I/O error of something other than a path (a child process, a pipe): what was being
/// done, and the system's reason.
pub trait IoContext<T> {
    fn doing(self, what: &str) -> CliResult<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn doing(self, what: &str) -> CliResult<T> {
        self.map_err(|e| CliError::failure(format!("cannot {what}: {e}"), None))
    }
}

impl From<tokio::task::JoinError> for CliError {
    fn from(e: tokio::task::JoinError) -> Self {
        Self::failure(format!("internal task failed: {e}"), None)
    }
}

pub type CliResult<T> = Result<T, CliError>;
