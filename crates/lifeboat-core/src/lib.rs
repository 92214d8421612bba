//! The pure domain of lifeboat: the config schema and its loading, objectives and durations,
//! retention rules, schedules, the `lifeboat.json` manifest, target names and secret redaction.
//!
//! Deliberately no I/O beyond reading the config file and resolving secrets, no async, no
//! terminal code: adapters (repository, PostgreSQL, sources) and the binary build on this.

pub mod cause;
pub mod config;
pub mod duration;
pub mod location;
pub mod manifest;
pub mod names;
pub mod plans;
pub mod postgres_ids;
pub mod probes;
pub mod redact;
pub mod schedule;
pub mod size;
pub mod time;

pub use config::{Config, ConfigError, TargetConfig, TargetKind};
pub use duration::HumanDuration;
pub use location::{Location, LockMode, ObjectLock, S3Location};
pub use manifest::Manifest;
pub use names::{SnapshotId, TargetName};
pub use postgres_ids::{Lsn, SystemId};
pub use redact::{Redacted, redact_url};
pub use schedule::Schedule;
pub use size::ByteSize;
