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

impl From<PgError> for CliError {
    fn from(e: PgError) -> Self {
        Self::failure(e.to_string(), e.hint())
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        Self::failure(e.to_string(), None)
    }
}

impl From<tokio::task::JoinError> for CliError {
    fn from(e: tokio::task::JoinError) -> Self {
        Self::failure(format!("internal task failed: {e}"), None)
    }
}

pub type CliResult<T> = Result<T, CliError>;
