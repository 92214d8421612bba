pub mod hotcold;
pub mod index;
pub mod snapshots;
