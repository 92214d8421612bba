//! One folder per target kind. So far only the pure planning of physical PostgreSQL has
//! moved here; the rest of each kind follows (issue 18).

pub mod postgres_physical;
