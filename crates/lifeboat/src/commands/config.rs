//! `lifeboat config check`: validate the config, resolve every secret (to prove it resolves)
//! and print it with every secret, URL password and command `env` value redacted.

use serde_json::json;

use super::Context;
use crate::{error::CliResult, output};

pub fn check(ctx: &Context) -> CliResult<i32> {
    let config = ctx.load_config()?;
    // Resolve every secret now, so a missing variable shows here rather than at 3 a.m.
    config.check_secrets()?;
    let resolved = config.redacted();
    if ctx.json {
        output::json(&json!({ "valid": true, "config": resolved }));
    } else {
        outln!("config `{}` is valid", config.source.display());
        outln!(
            "{}",
            toml::to_string_pretty(&resolved).unwrap_or_else(|_| resolved.to_string())
        );
    }
    Ok(0)
}
