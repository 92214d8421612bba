//! PostgreSQL for lifeboat: finding the client tools of the right major version, the
//! exported-snapshot session of a logical backup, `pg_dump` / `pg_restore` as streamed child
//! processes, restore-target preparation and verification, and throwaway clusters (for the
//! demo, drills and tests).
//!
//! This crate does not know the repository: it produces and consumes byte streams, and the
//! binary wires them to the repository.

pub mod archive;
pub mod basebackup;
pub mod cdc;
pub mod child;
pub mod cluster;
pub mod conn;
pub mod integrity;
pub mod logical;
pub mod physical;
pub mod reframe;
pub mod restore;
pub mod tls;
pub mod tools;
pub mod wal;

pub use child::ChildStream;
pub use cluster::Cluster;
pub use conn::{PgError, Target};
pub use tools::PgTools;

/// Quote an SQL identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    #[test]
    fn quotes_identifiers() {
        assert_eq!(super::quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
