//! PostgreSQL, physical: base backups with archived WAL, recovered to a moment.

pub mod plan;
