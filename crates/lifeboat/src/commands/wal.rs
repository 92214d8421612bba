//! `lifeboat wal push` / `fetch` / `prefetch`: PostgreSQL's `archive_command` and
//! `restore_command` for physical targets, and the helper `fetch` starts beside a
//! recovering server. The engine's [`wal`](lifeboat_engine::wal) does the work; here: exit
//! 0 when pushed or written, 1 when a file is not archived (quietly: that is how recovery
//! learns it reached the end), and the prefetcher started as a process of its own.

use std::os::unix::process::CommandExt;

use lifeboat_engine::wal::{
    fetch::{self, Fetched},
    physical_target,
    push::push,
};

use super::Context;
use crate::{
    cli::{WalCommand, WalFetchArgs, WalPrefetchArgs, WalPushArgs},
    error::CliResult,
};

pub async fn run(ctx: &Context, cmd: WalCommand) -> CliResult<i32> {
    match cmd {
        WalCommand::Push(args) => push_command(ctx, args).await,
        WalCommand::Fetch(args) => fetch_command(ctx, args).await,
        WalCommand::Prefetch(args) => prefetch_command(ctx, args).await,
    }
}

async fn push_command(ctx: &Context, args: WalPushArgs) -> CliResult<i32> {
    let config = ctx.load_config()?;
    let (name, target) = physical_target(&config, args.target.as_deref())?;
    push(&config, &name, target, &args.path, ctx.bars()).await?;
    Ok(0)
}

async fn fetch_command(ctx: &Context, args: WalFetchArgs) -> CliResult<i32> {
    let config = ctx.load_config()?;
    let (name, target) = physical_target(&config, args.target.as_deref())?;
    let fetched = fetch::fetch(
        &config,
        &name,
        target,
        &args.name,
        &args.path,
        args.system_id,
        ctx.bars(),
    )
    .await?;
    let prefetch = match fetched {
        Fetched::NotArchived => return Ok(1),
        Fetched::Written { prefetch } => prefetch,
    };
    if let Some((cluster, segment_size)) = prefetch {
        // Fetch the next segments in a process of its own while the server replays this one.
        // Best effort: without a prefetcher the server asks for each segment in turn.
        let spawned = std::env::current_exe()
            .and_then(|exe| Ok((exe, std::fs::canonicalize(&ctx.config_path)?)))
            .and_then(|(exe, config)| {
                let mut cmd = std::process::Command::new(exe);
                cmd.arg("-q").arg("-c").arg(config);
                // Fetching from a copy (`--repo NAME`): the next segments come from it too.
                if let Some(copy) = &ctx.copy {
                    cmd.args(["--repo", copy]);
                }
                cmd.args(["wal", "prefetch", &args.name, "--target", &name])
                    .arg(format!("--system-id={cluster}"))
                    .arg(format!("--segment-size={segment_size}"))
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .process_group(0)
                    .spawn()
            });
        if let Err(e) = spawned {
            log::debug!("cannot start the prefetcher: {e}");
        }
    }
    Ok(0)
}

async fn prefetch_command(ctx: &Context, args: WalPrefetchArgs) -> CliResult<i32> {
    let config = ctx.load_config()?;
    if lifeboat_postgres::wal::WalName::parse(&args.name).is_none() {
        return Ok(1);
    }
    fetch::prefetch(
        &config,
        &args.name,
        args.system_id,
        args.segment_size,
        ctx.bars(),
    )
    .await?;
    Ok(0)
}
