//! `lifeboat cdc check TARGET [--fix]` and `lifeboat cdc run TARGET`: the preflight of a
//! `mode = "cdc"` target, and its change capture in the foreground (until SIGTERM or
//! Ctrl-C, exit 0 once what was gathered is stored).

use lifeboat_core::config::PostgresMode;
use lifeboat_postgres::{Target, cdc::preflight};
use serde_json::json;

use super::Context;
use crate::{
    cli::CdcCommand,
    error::{CliError, CliResult},
    output,
};

pub async fn run(ctx: &Context, cmd: CdcCommand) -> CliResult<i32> {
    match cmd {
        CdcCommand::Check(args) => check(ctx, &args.target, args.fix).await,
        CdcCommand::Run(args) => capture(ctx, &args.target).await,
    }
}

/// The target's config, refused unless it is a cdc target.
fn cdc_target(
    config: &lifeboat_core::Config,
    name: &str,
) -> CliResult<lifeboat_core::TargetConfig> {
    lifeboat_engine::backup::select_targets(config, &[name.to_string()])?;
    let target = config.target(name).cloned().unwrap_or_default();
    if target.mode != Some(PostgresMode::Cdc) {
        return Err(CliError::usage(
            format!("target `{name}` is not a cdc target"),
            Some(format!(
                "set `mode = \"cdc\"` in `[targets.{name}]` (a PostgreSQL target with `wal_level = logical`)"
            )),
        ));
    }
    Ok(target)
}

async fn check(ctx: &Context, name: &str, fix: bool) -> CliResult<i32> {
    let config = ctx.load_config()?;
    let cfg = cdc_target(&config, name)?;
    let target = Target::parse(&cfg.connection_url(name)?)?;
    let (slot, _) = cfg.cdc_names(name);
    let mut fixed = Vec::new();
    if fix {
        fixed = preflight::fix(&target).await?;
    }
    let checks = preflight::run(&target, &slot).await?;
    let blocked = checks.iter().any(|c| c.blocking && !c.ok);
    if ctx.json {
        output::json(&json!({ "target": name, "checks": checks, "fixed": fixed, "ok": !blocked }));
    } else {
        for f in &fixed {
            outln!("fixed: {f}");
        }
        for c in &checks {
            let mark = match (c.ok, c.blocking) {
                (true, _) => "ok     ",
                (false, true) => "PROBLEM",
                (false, false) => "warning",
            };
            outln!("{mark} {}: {}", c.name, c.detail);
            if let Some(f) = &c.fix {
                outln!("        fix: {f}");
            }
        }
        if blocked {
            outln!("capture cannot start until each PROBLEM is fixed");
        } else {
            outln!("ready: `lifeboat cdc run {name}` (or `serve`) can capture");
        }
    }
    Ok(if blocked { 3 } else { 0 })
}

async fn capture(ctx: &Context, name: &str) -> CliResult<i32> {
    let config = ctx.load_config()?;
    cdc_target(&config, name)?;
    let engine = ctx.engine_on(config).await?;
    let cancel = crate::interrupt::on_signal("storing what was captured, then stopping");
    let done =
        lifeboat_engine::kinds::postgres_cdc::capture::run(&engine, name, &cancel, &|_| {}).await?;
    if ctx.json {
        output::json(&json!({
            "target": name,
            "segments": done.segments,
            "transactions": done.transactions,
            "changes": done.changes,
            "durable_lsn": lifeboat_postgres::cdc::stream::lsn_text(done.durable),
        }));
    } else {
        outln!(
            "stopped: {} transaction(s), {} change(s) stored in {} segment(s), up to LSN {}",
            done.transactions,
            done.changes,
            done.segments,
            lifeboat_postgres::cdc::stream::lsn_text(done.durable)
        );
    }
    Ok(0)
}
