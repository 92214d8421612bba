//! `sql`: the target's `[[checks]]` rules marked `on = ["production"]` (or those named in
//! `checks`), run against the live database, as drills run them against a restored copy:
//! an SQL rule's first value judged by `expect`/`expect-min`/`expect-max`, a command rule
//! with the database's URL in `$LIFEBOAT_URL` (and `$LIFEBOAT_DRILL_URL`, as in drills).
//! Every failed rule is a problem.

use lifeboat_core::{Redacted, probes::ProbeConfig};

use super::Seen;
use lifeboat_core::Config;

pub async fn run(config: &Config, probe: &ProbeConfig, url: &Redacted) -> Result<Seen, String> {
    let target = probe.target.as_deref().unwrap_or_default();
    let rules: Vec<_> = config
        .checks
        .iter()
        .filter(|c| c.target == target)
        .filter(|c| match &probe.checks {
            Some(names) => names.contains(&c.name),
            None => c.in_production(),
        })
        .collect();
    if rules.is_empty() {
        return Err(format!(
            "target `{target}` has no `[[checks]]` with `on = [\"production\"]` to run"
        ));
    }
    let db = lifeboat_postgres::Target::parse(url).map_err(|e| e.to_string())?;
    let secrets: Vec<String> = crate::restore::checks::password_in(url.expose())
        .into_iter()
        .collect();
    let mut seen = Seen::default();
    let mut passed = Vec::new();
    for rule in rules {
        let result = match &rule.sql {
            Some(_) => {
                crate::kinds::postgres_logical::drill::database_rule(
                    rule,
                    &db,
                    url.expose(),
                    &secrets,
                )
                .await
            }
            None => {
                crate::drill::checks::run_command(
                    rule.command.as_deref().unwrap_or_default(),
                    &[
                        ("LIFEBOAT_URL", url.expose()),
                        ("LIFEBOAT_DRILL_URL", url.expose()),
                        ("LIFEBOAT_TARGET", target),
                    ],
                    &secrets,
                )
                .await
            }
        };
        match result {
            Ok(detail) => passed.push(format!("`{}` passed ({detail})", rule.name)),
            Err(detail) => seen
                .problems
                .push(format!("check `{}` failed: {detail}", rule.name)),
        }
    }
    seen.detail = passed.join(", ");
    Ok(seen)
}
