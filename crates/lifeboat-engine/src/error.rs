//! The engine's error: what went wrong (with the object named in backticks), what kind of
//! failure it is (the CLI maps that to an exit code, the daemon to an alert), the cause
//! kept as a source, and a hint when the fix is known.

/// What kind of failure: decides the CLI's exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The operation failed (exit 1).
    Failed,
    /// The request itself is wrong: bad input, a config that cannot be (exit 2).
    Usage,
    /// Data read back does not match what was recorded (exit 3).
    Verification,
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

    pub fn usage(message: impl Into<String>) -> Self {
        Self {
            failure: Failure::Usage,
            ..Self::failed(message)
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Keep `source` as the cause; its text is not repeated in the message.
    pub fn caused_by(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }
}
