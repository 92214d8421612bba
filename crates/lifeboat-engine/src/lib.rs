//! lifeboat's engine: the workflows behind the commands, written so that the CLI and a
//! long-running process can both call them. It decides and reports; it never prints.
//!
//! - [`Engine`]: the config, the open repository and where events go, shared by every
//!   operation of one process;
//! - [`kinds`]: one folder per target kind behind the [`kinds::Kind`] trait, and the one
//!   registry that maps a target's config to its kind;
//! - [`backup`], [`restore`]: the kind-independent halves of backups (the manifest written
//!   last, a failed backup leaving no snapshot) and restores (a typed plan, refused without
//!   `--force` where it overwrites, an emergency backup first, then exactly that plan);
//! - [`wal`]: the archive of a physical target's WAL: push, fetch, the feed recovery reads,
//!   retention;
//! - [`objectives`]: whether a target meets its RPO and RTO objectives;
//! - [`memory`]: how the process asks glibc's malloc to keep and give back memory;
//! - [`events`]: what the engine reports while it works; [`cancel`]: the token long
//!   operations watch; [`EngineError`]: errors that keep their cause and carry a hint.

pub mod backup;
pub mod cancel;
pub mod copies;
pub mod drill;
mod engine;
mod error;
pub mod events;
pub mod format;
pub mod incidents;
pub mod jobs;
pub mod kinds;
pub mod maintenance;
pub mod memory;
pub mod notify;
pub mod objectives;
pub mod probes;
pub mod recovery;
pub mod restore;
pub mod serve;
pub mod snapshot_io;
pub mod status;

pub use engine::Engine;
/// WAL archiving lives with the physical PostgreSQL kind; `crate::wal` is a short name.
pub use kinds::postgres_physical::wal;
pub use lifeboat_core::time;

/// A boxed future: what the [`kinds::Kind`] trait's methods return, so that it can be used
/// as `dyn Kind`.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;
pub use error::{EngineError, EngineResult, Failure, FsContext, IoContext, fs_error};
