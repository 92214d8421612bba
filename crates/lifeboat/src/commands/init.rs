//! `lifeboat init`: create the repository and its side area; refuse an existing one.

use lifeboat_repo::Repo;
use serde_json::json;

use super::Context;
use crate::{error::CliResult, output};

pub async fn run(ctx: &Context) -> CliResult<i32> {
    let config = ctx.load_config()?;
    let password = config.repository_password()?;
    let location = config.repository_location()?;
    let url = location.url();
    Repo::init_shared(location, password, Default::default()).await?;
    if ctx.json {
        output::json(&json!({ "repository": lifeboat_core::redact_url(&url), "created": true }));
    } else {
        outln!(
            "created repository `{}` (restic format v2, zstd, encrypted)",
            lifeboat_core::redact_url(&url)
        );
    }
    Ok(0)
}
