//! Logical replication for `mode = "cdc"` (managed PostgreSQL): the preflight
//! ([`preflight`]), replication sessions ([`stream`]), decoding pgoutput ([`pgoutput`]) and
//! replaying captured changes as SQL ([`apply`]).

pub mod apply;
pub mod pgoutput;
pub mod preflight;
pub mod stream;
