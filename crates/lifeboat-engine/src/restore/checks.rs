//! A target's `[[checks]]` run against the live target after a real restore (and by a
//! recovery plan's `checks` step), as drills run them against a scratch copy: an SQL rule
//! against the database, a command rule with `$LIFEBOAT_DRILL_URL` or `$LIFEBOAT_DRILL_DIR`
//! pointing at the restored data, so one rule serves drills and real restores alike.

use lifeboat_core::config::CheckConfig;
use lifeboat_drill::CheckResult;

pub use super::live::Live;
use crate::{
    Engine, EngineError, EngineResult,
    drill::checks::{Findings, run_command},
    kinds::kind_of,
    restore::plan::RestoreRequest,
};

/// The target's `[[checks]]` rules that run on restored data (`on` includes `drill`).
pub fn rules_of<'c>(engine: &'c Engine, name: &str) -> Vec<&'c CheckConfig> {
    engine
        .config
        .checks
        .iter()
        .filter(|c| c.target == name && c.in_drills())
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
