//! `lifeboat serve [--listen ADDR]`: run the schedules in the foreground until SIGTERM or
//! SIGINT, with the HTTP endpoint, then stop in order and exit 0. The engine's
//! [`serve`](lifeboat_engine::serve) does the work; here: the address, the token, one
//! `serve` per repository and host, the log and the signal.

use std::{net::SocketAddr, sync::Arc};

use lifeboat_engine::{
    Engine,
    serve::{self, instance::Instance},
};

use super::Context;
use crate::{
    cli::ServeArgs,
    error::{CliError, CliResult},
};

pub async fn run(ctx: &Context, args: ServeArgs) -> CliResult<i32> {
    let config = ctx.load_config()?;
    let listen = args.listen.unwrap_or_else(|| config.serve.listen.clone());
    let addr: SocketAddr = listen.parse().map_err(|e| {
        CliError::usage(
            format!("`{listen}` is not an address to listen on: {e}"),
            Some("write it as host:port, like 127.0.0.1:9300".into()),
        )
    })?;
    let token = config.serve.token()?;
    if !addr.ip().is_loopback() && token.is_none() {
        return Err(CliError::usage(
            format!("`serve` would listen on {addr}, beyond this host, without a token"),
            Some("set `[serve] token-env` to a variable holding a bearer token, or listen on 127.0.0.1".into()),
        ));
    }
    config
        .serve
        .time_zone()
        .map_err(|e| CliError::usage(e, None))?;
    let repo = ctx.open_repo(&config).await?;
    let engine = Engine::new(
        config,
        ctx.config_path.clone(),
        repo,
        Arc::new(crate::report::Log {
            json: args.log_format == crate::cli::LogFormat::Json,
        }),
    );
    let instance = Instance::take(&engine.repo).await?;
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            instance.release().await;
            return Err(CliError::failure(
                format!("cannot listen on {addr}: {e}"),
                Some("choose another address with `--listen` or `[serve] listen`".into()),
            ));
        }
    };
    let scheduled = engine
        .config
        .targets
        .values()
        .filter(|t| t.schedule.is_some())
        .count();
    if args.log_format == crate::cli::LogFormat::Json {
        eprintln!(
            "{}",
            serde_json::json!({
                "event": "serving", "listen": addr.to_string(), "scheduled": scheduled,
                "time": jiff::Timestamp::now().to_string(),
            })
        );
    } else {
        eprintln!(
            "{} serving on http://{addr}; {scheduled} scheduled target(s)",
            jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ")
        );
    }
    let shutdown = crate::interrupt::on_signal("stopping serve; running jobs are cancelled");
    // systemd (`Type=notify`): ready now; stopping once the signal comes.
    crate::systemd::notify("READY=1");
    let stopping = shutdown.clone();
    tokio::spawn(async move {
        let _ = stopping.guard(std::future::pending::<()>()).await;
        crate::systemd::notify("STOPPING=1");
    });
    let result = serve::run(engine, listener, token, shutdown).await;
    instance.release().await;
    result?;
    Ok(0)
}
