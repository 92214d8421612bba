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

    /// Add what was being done in front of the message.
    pub fn context(mut self, what: impl std::fmt::Display) -> Self {
        self.message = format!("{what}: {}", self.message);
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
            Failure::Interrupted => crate::interrupt::EXIT_INTERRUPTED,
        };
        Self {
            code,
            message: e.full_message(),
            hint: e.hint,
        }
    }
}

impl From<PgError> for CliError {
    fn from(e: PgError) -> Self {
        Self::failure(e.to_string(), e.hint())
    }
}

/// A file-system call that failed, as the engine words it ([`lifeboat_engine::fs_error`]).
pub fn fs_error(doing: &str, path: &std::path::Path, e: std::io::Error) -> CliError {
    lifeboat_engine::fs_error(doing, path, e).into()
}

/// [`fs_error`] for a `Result`: `std::fs::create_dir_all(&dir).fs("create folder", &dir)?`.
pub trait FsContext<T> {
    fn fs(self, doing: &str, path: &std::path::Path) -> CliResult<T>;
}

impl<T> FsContext<T> for std::io::Result<T> {
    fn fs(self, doing: &str, path: &std::path::Path) -> CliResult<T> {
        self.map_err(|e| fs_error(doing, path, e))
    }
}

pub type CliResult<T> = Result<T, CliError>;
