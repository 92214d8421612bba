//! lifeboat's engine: the workflows behind the commands, written so that the CLI and a
//! long-running process can both call them. It decides and reports; it never prints.
//!
//! Being moved here from the binary's `commands/` step by step (issue 18); so far:
//! - [`objectives`]: whether a target meets its RPO and RTO objectives, from the evidence
//!   (last backup, WAL archiving, last drill);
//! - [`kinds::postgres_physical::plan`]: the base backup a point-in-time recovery starts
//!   from, and the WAL it needs;
//! - [`time`]: moments as people and PostgreSQL write them;
//! - [`cancel`]: the token long operations watch (set by a signal, or by the daemon);
//! - [`EngineError`]: errors that keep their cause and carry a hint, mapped to exit codes
//!   only by the CLI.

pub mod cancel;
mod error;
pub mod kinds;
pub mod objectives;
pub mod time;

pub use error::{EngineError, EngineResult, Failure};
