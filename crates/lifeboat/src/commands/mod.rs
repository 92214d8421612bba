//! One module per command. Each command takes the parsed arguments and a [`Context`]
//! (config, output mode), calls the engine, renders what it returns and returns an exit
//! code.

mod backup;
mod cdc;
mod check;
mod config;
mod demo;
mod drill;
mod drills;
mod forget;
mod incident;
mod init;
mod jobs;
mod key;
mod notify;
mod probe;
mod recover;
mod restore;
mod serve;
mod snapshots;
mod status;
mod wal;

use std::{path::PathBuf, sync::Arc};

use lifeboat_core::Config;
use lifeboat_engine::Engine;
use lifeboat_repo::Repo;

use crate::{
    cli::{Cli, Command, ConfigCommand, NotifyCommand},
    error::CliResult,
};

pub struct Context {
    pub config_path: PathBuf,
    pub json: bool,
    pub quiet: bool,
    /// The engines made for the command: what they did joins the open incident.
    engines: std::sync::Mutex<Vec<Engine>>,
}

impl Context {
    pub fn new(config_path: PathBuf, json: bool, quiet: bool) -> Self {
        Self {
            config_path,
            json,
            quiet,
            engines: std::sync::Mutex::new(Vec::new()),
        }
    }

    pub fn load_config(&self) -> CliResult<Config> {
        Ok(Config::load(&self.config_path)?)
    }

    /// Open the repository named in the config, with a hint on a wrong password.
    pub async fn open_repo(&self, config: &Config) -> CliResult<Arc<Repo>> {
        Ok(Engine::open_repo(config, self.bars()).await?)
    }

    /// Progress bars on the terminal, unless `--json` or `--quiet`.
    pub fn bars(&self) -> lifeboat_repo::Bars {
        crate::progress::bars(!self.json && !self.quiet)
    }

    /// The engine on the config and its repository, reporting to this terminal.
    pub async fn engine(&self) -> CliResult<Engine> {
        self.engine_on(self.load_config()?).await
    }

    /// [`Context::engine`] on a config already read.
    pub async fn engine_on(&self, config: Config) -> CliResult<Engine> {
        let repo = self.open_repo(&config).await?;
        let engine = Engine::new(
            config,
            self.config_path.clone(),
            repo,
            Arc::new(crate::report::Terminal {
                json: self.json,
                quiet: self.quiet,
            }),
        );
        self.engines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(engine.clone());
        Ok(engine)
    }
}

pub async fn dispatch(cli: Cli) -> CliResult<i32> {
    let ctx = Context::new(
        cli.global
            .config
            .clone()
            .unwrap_or_else(|| PathBuf::from("lifeboat.toml")),
        cli.global.json,
        cli.global.quiet,
    );
    let result = match cli.command {
        Command::Init => init::run(&ctx).await,
        Command::Config(ConfigCommand::Check) => config::check(&ctx),
        Command::Backup(args) => backup::run(&ctx, args).await,
        Command::Snapshots(args) => snapshots::run(&ctx, args).await,
        Command::Restore(args) => restore::run(&ctx, args).await,
        Command::Forget(args) => forget::run(&ctx, args).await,
        Command::Check(args) => check::run(&ctx, args).await,
        Command::Unlock => check::unlock(&ctx).await,
        Command::Wal(cmd) => wal::run(&ctx, cmd).await,
        Command::Drill(args) => drill::run(&ctx, args).await,
        Command::Drills(args) => drills::run(&ctx, args).await,
        Command::Status => status::run(&ctx).await,
        Command::Jobs(args) => jobs::run(&ctx, args).await,
        Command::Probe(args) => probe::run(&ctx, args).await,
        Command::Cdc(cmd) => cdc::run(&ctx, cmd).await,
        Command::Key(cmd) => key::run(&ctx, cmd).await,
        Command::Serve(args) => serve::run(&ctx, args).await,
        Command::Notify(NotifyCommand::Test(args)) => notify::test(&ctx, args).await,
        Command::Recover(args) => recover::run(&ctx, args).await,
        Command::Incident(cmd) => incident::run(&ctx, cmd).await,
        Command::Demo(args) => demo::run(&ctx, args).await,
    };
    // What the command did joins the open incident's timeline, if one is open.
    let engines: Vec<Engine> =
        std::mem::take(&mut *ctx.engines.lock().unwrap_or_else(|p| p.into_inner()));
    for engine in engines {
        engine.keep_timeline().await;
    }
    result
}
