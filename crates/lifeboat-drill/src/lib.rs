//! Drills: restore into a throwaway environment, verify, measure RTO and RPO, report.
//!
//! This crate is the pure part: the report model ([`report`]), how a `[[checks]]` rule's
//! expectation is judged ([`expect`]), and the three renderings of a report — JSON (the
//! stored source of truth), Markdown and a self-contained HTML page with inline SVG charts
//! ([`render`]). Provisioning, restoring and running checks against real servers is done by
//! the binary's `drill` command with the PostgreSQL and repository adapters.

pub mod expect;
pub mod render;
pub mod report;

pub use report::{CheckResult, DrillReport, HistoryPoint, Objective, Phase, Verdict};
