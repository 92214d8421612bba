//! `sql`: the target's `[[checks]]` rules marked `on = ["production"]` (or those named in
//! `checks`), run against the live database, as drills run them against a restored copy:
//! an SQL rule's first value judged by `expect`/`expect-min`/`expect-max` — on a read-only
//! session whose `statement_timeout` is the probe's timeout, so a rule never writes to
//! production nor outlives its run there — and a command rule with the database's URL in
//! `$LIFEBOAT_URL` (not `$LIFEBOAT_DRILL_URL`: a rule written for drills does not run here by
//! mistake). Every failed rule is a problem.

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
    // Production: read only, and no statement outlives the probe's timeout on the server.
    let client = db.connect().await.map_err(|e| e.to_string())?;
    client
        .batch_execute(&format!(
            "SET default_transaction_read_only = on; SET statement_timeout = {}; \
             SET application_name = 'lifeboat-probe'",
            probe.timeout().as_duration().as_millis().max(1)
        ))
        .await
        .map_err(|e| lifeboat_postgres::conn::describe_pg_error(&e))?;
    let mut seen = Seen::default();
    let mut passed = Vec::new();
    for rule in rules {
        let result = match &rule.sql {
            Some(sql) => match first_value(&client, sql).await {
                Ok(value) => lifeboat_drill::expect::judge(rule, value.as_deref()),
                Err(e) => Err(e),
            },
            None => {
                crate::drill::checks::run_command(
                    rule.command.as_deref().unwrap_or_default(),
                    &[("LIFEBOAT_URL", url.expose()), ("LIFEBOAT_TARGET", target)],
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

/// The first column of the first row `sql` returns, as text.
async fn first_value(client: &tokio_postgres::Client, sql: &str) -> Result<Option<String>, String> {
    Ok(super::postgres::rows(client, sql)
        .await?
        .into_iter()
        .next()
        .and_then(|row| row.into_iter().next().flatten()))
}
