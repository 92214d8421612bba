//! `lifeboat notify test [NAME...]`: a test alert through each `[[notify]]` channel (or the
//! named ones), one line per channel; exit 1 if any failed. Needs no repository.

use lifeboat_engine::notify::{Alert, AlertState, send};
use serde_json::json;

use super::Context;
use crate::{
    cli::NotifyTestArgs,
    error::{CliError, CliResult},
    output,
};

pub async fn test(ctx: &Context, args: NotifyTestArgs) -> CliResult<i32> {
    let config = ctx.load_config()?;
    for name in &args.names {
        if !config.notify.iter().any(|n| &n.name == name) {
            return Err(CliError::usage(
                format!("no `[[notify]]` channel `{name}` in the config"),
                Some("`lifeboat config check` shows the channels".into()),
            ));
        }
    }
    let channels: Vec<_> = config
        .notify
        .iter()
        .filter(|n| args.names.is_empty() || args.names.contains(&n.name))
        .collect();
    if channels.is_empty() {
        return Err(CliError::usage(
            "no `[[notify]]` channel is configured",
            Some(
                "add one, e.g. `[[notify]]` with `name`, `kind = \"webhook\"` and `url-env`".into(),
            ),
        ));
    }
    let alert = Alert::new(
        "test",
        AlertState::Firing,
        "test",
        "lifeboat",
        "a test alert from `lifeboat notify test`; nothing is wrong",
    );
    let mut results = Vec::new();
    for channel in channels {
        let sent = send(channel, &alert).await;
        if !ctx.json {
            match &sent {
                Ok(()) => outln!("{}: sent", channel.name),
                Err(e) => outln!("{}: FAILED: {e}", channel.name),
            }
        }
        results.push(json!({ "name": channel.name, "sent": sent.is_ok(), "error": sent.err() }));
    }
    let failed = results.iter().any(|r| r["sent"] == false);
    if ctx.json {
        output::json(&json!({ "channels": results }));
    }
    Ok(if failed { 1 } else { 0 })
}
