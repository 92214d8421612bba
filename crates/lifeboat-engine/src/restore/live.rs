//! Where a restore into the live target puts the data, as the target's `[[checks]]` reach
//! it after a real restore: each kind names one of these in its `kind!` line. Built on the
//! restore request only (no kind, no dispatch), so kinds build on it.

use std::path::PathBuf;

use lifeboat_core::{Redacted, TargetConfig};

use crate::{EngineResult, restore::plan::RestoreRequest};

/// Where a restore into the live target put the data, as its checks reach it.
#[derive(Debug, Clone, Default)]
pub struct Live {
    /// The database, server or bucket (`$LIFEBOAT_DRILL_URL`).
    pub url: Option<Redacted>,
    /// SQL rules run against `url` (PostgreSQL).
    pub sql: bool,
    /// The folder the data is in (`$LIFEBOAT_DRILL_DIR`).
    pub dir: Option<PathBuf>,
}

impl Live {
    /// Whether the checks can reach what was restored (else they run in drills only).
    pub fn reachable(&self) -> bool {
        self.url.is_some() || self.dir.is_some()
    }
}

/// [`crate::kinds::Kind::live`] for a kind restored into a database: SQL and command rules
/// against `--to` or the target's own database.
pub fn database(name: &str, target: &TargetConfig, request: &RestoreRequest) -> EngineResult<Live> {
    at_url(name, target, request, true)
}

/// For a kind restored into a server or bucket (`--to`, or the target's own): command
/// rules get its URL.
pub fn server(name: &str, target: &TargetConfig, request: &RestoreRequest) -> EngineResult<Live> {
    at_url(name, target, request, false)
}

fn at_url(
    name: &str,
    target: &TargetConfig,
    request: &RestoreRequest,
    sql: bool,
) -> EngineResult<Live> {
    Ok(Live {
        url: Some(match &request.to {
            Some(to) => to.clone(),
            None => target.connection_url(name)?,
        }),
        sql,
        dir: None,
    })
}

/// For files: the folder they went to — `--to-dir`, or `/` in place.
pub fn files(_: &str, _: &TargetConfig, request: &RestoreRequest) -> EngineResult<Live> {
    Ok(Live {
        dir: Some(request.to_dir.clone().unwrap_or_else(|| "/".into())),
        ..Live::default()
    })
}

/// For output written to `--to-dir` (a command target's `<target>.out`); restored through
/// the target's own command, nothing a rule could look at.
pub fn output(_: &str, _: &TargetConfig, request: &RestoreRequest) -> EngineResult<Live> {
    Ok(Live {
        dir: request.to_dir.clone(),
        ..Live::default()
    })
}

/// For kinds whose restore lands nowhere a rule could look (a physical recovery into a new
/// data directory): the rules run in drills.
pub fn nowhere(_: &str, _: &TargetConfig, _: &RestoreRequest) -> EngineResult<Live> {
    Ok(Live::default())
}
