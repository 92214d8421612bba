//! Logical replication for `mode = "cdc"` (managed PostgreSQL): the preflight
//! ([`preflight`]), replication sessions ([`stream`]), decoding pgoutput ([`pgoutput`]) and
//! replaying captured changes as SQL ([`apply`]), by their net effect where it can
//! ([`net`]), or folded into the baseline's load ([`fold`]).

pub mod apply;
pub mod fold;
pub mod net;
pub mod pgoutput;
pub mod preflight;
pub mod stream;
