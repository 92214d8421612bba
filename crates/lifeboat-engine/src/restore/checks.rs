//! A target's `[[checks]]` run against the live target after a real restore (and by a
//! recovery plan's `checks` step), as drills run them against a scratch copy: an SQL rule
//! against the database, a command rule with `$LIFEBOAT_DRILL_URL` or `$LIFEBOAT_DRILL_DIR`
//! pointing at the restored data, so one rule serves drills and real restores alike.

use std::path::PathBuf;

use lifeboat_core::{Redacted, TargetConfig, config::CheckConfig};
use lifeboat_drill::CheckResult;

use crate::{
    Engine, EngineError, EngineResult,
    drill::checks::{Findings, run_command},
    kinds::kind_of,
    restore::plan::RestoreRequest,
};

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

/// The target's `[[checks]]` rules.
pub fn rules_of<'c>(engine: &'c Engine, name: &str) -> Vec<&'c CheckConfig> {
    engine
        .config
        .checks
        .iter()
        .filter(|c| c.target == name)
        .collect()
}

/// Run `request.target`'s checks against where `request` restored it; one result per rule.
pub async fn live_checks(
    engine: &Engine,
    request: &RestoreRequest,
) -> EngineResult<Vec<CheckResult>> {
    let name = &request.target;
    let target = engine
        .config
        .target(name)
        .ok_or_else(|| crate::backup::unknown_target(&engine.config, name))?;
    let live = kind_of(target).live(name, target, request)?;
    let mut findings = Findings::default();
    // Restored where no rule can look (a command target's restore command): the rules
    // run in drills, which restore its output into a folder.
    if !live.reachable() {
        return Ok(Vec::new());
    }
    // A password in the URL is masked in what a command prints.
    let secrets: Vec<String> = live
        .url
        .as_ref()
        .and_then(|u| password_in(u.expose()))
        .into_iter()
        .collect();
    for rule in rules_of(engine, name) {
        let result = match (&rule.sql, &live.url) {
            (Some(sql), Some(url)) if live.sql => match lifeboat_postgres::Target::parse(url) {
                Ok(db) => match lifeboat_postgres::integrity::first_value(&db, sql).await {
                    Ok(value) => lifeboat_drill::expect::judge(rule, value.as_deref()),
                    Err(e) => Err(e.to_string()),
                },
                Err(e) => Err(e.to_string()),
            },
            (Some(_), _) => Err(format!(
                "an SQL rule needs a PostgreSQL database to run in, and `{name}` was not restored into one"
            )),
            (None, _) => {
                let mut env: Vec<(&str, &str)> = vec![("LIFEBOAT_TARGET", name.as_str())];
                if let Some(u) = &live.url {
                    env.push(("LIFEBOAT_DRILL_URL", u.expose()));
                }
                let dir = live.dir.as_ref().map(|d| d.display().to_string());
                if let Some(d) = &dir {
                    env.push(("LIFEBOAT_DRILL_DIR", d));
                }
                run_command(rule.command.as_deref().unwrap_or_default(), &env, &secrets).await
            }
        };
        findings.rule(
            if rule.sql.is_some() { "sql" } else { "command" },
            rule,
            result,
        );
    }
    Ok(findings.0)
}

/// The failed ones among `results`, as one error naming each, or `None`.
pub fn failed(name: &str, results: &[CheckResult]) -> Option<EngineError> {
    let failed: Vec<String> = results
        .iter()
        .filter(|c| !c.passed)
        .map(|c| format!("`{}`: {}", c.name, c.detail))
        .collect();
    (!failed.is_empty()).then(|| {
        EngineError::verification(format!(
            "{} of {} check(s) of `{name}` failed after the restore: {}",
            failed.len(),
            results.len(),
            failed.join("; ")
        ))
    })
}

/// The password of `scheme://user:password@host…`, if there is one.
pub(crate) fn password_in(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let userinfo = rest.rsplit_once('@')?.0;
    userinfo
        .split_once(':')
        .map(|(_, p)| p.to_string())
        .filter(|p| !p.is_empty())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_password_of_a_url_is_found_to_be_masked() {
        assert_eq!(
            super::password_in("redis://:s3cret@cache:6379/0").as_deref(),
            Some("s3cret")
        );
        assert_eq!(
            super::password_in("postgres://app:pw@db/app").as_deref(),
            Some("pw")
        );
        assert_eq!(super::password_in("postgres://app@db/app"), None);
        assert_eq!(super::password_in("s3://bucket/prefix"), None);
    }
}
