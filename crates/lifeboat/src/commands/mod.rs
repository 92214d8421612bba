//! One module per command. Each command takes the parsed arguments and a [`Context`]
//! (config, output mode), calls the engine, renders what it returns and returns an exit
//! code.

mod backup;
mod cdc;
mod check;
mod config;
mod copy;
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
    cli::{CdcCommand, Cli, Command, ConfigCommand, NotifyCommand, WalCommand},
    error::CliResult,
};

pub struct Context {
    pub config_path: PathBuf,
    pub json: bool,
    pub quiet: bool,
    /// `--repo NAME`: the copy used in place of `[repository]`.
    pub copy: Option<String>,
    /// The engines made for the command: what they did joins the open incident.
    engines: std::sync::Mutex<Vec<Engine>>,
}

impl Context {
    pub fn new(config_path: PathBuf, json: bool, quiet: bool) -> Self {
        Self {
            config_path,
            json,
            quiet,
            copy: None,
            engines: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// The config; with `--repo NAME`, the copy in place of `[repository]`.
    pub fn load_config(&self) -> CliResult<Config> {
        let mut config = Config::load(&self.config_path)?;
        if let Some(name) = &self.copy {
            config.use_copy(name)?;
        }
        Ok(config)
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

/// `--repo NAME` is for reading a copy (and keeping it: forget, check, keys); what feeds a
/// repository with new backups writes the repository, and `copy` writes the copies.
fn refuse_on_copy(command: &Command, name: &str) -> CliResult<()> {
    let writes = match command {
        Command::Backup(_) => Some("backup"),
        Command::Wal(WalCommand::Push(_)) => Some("wal push"),
        Command::Cdc(CdcCommand::Run(_)) => Some("cdc run"),
        Command::Serve(_) => Some("serve"),
        Command::Copy(_) => Some("copy"),
        Command::Demo(_) => Some("demo"),
        _ => None,
    };
    match writes {
        Some(what) => Err(crate::error::CliError::usage(
            format!("`{what}` does not run against a copy (`--repo {name}`)"),
            Some(
                "backups go to `[repository]` and reach the copies through `lifeboat copy`; drop `--repo`"
                    .into(),
            ),
        )),
        None => Ok(()),
    }
}

pub async fn dispatch(cli: Cli) -> CliResult<i32> {
    let mut ctx = Context::new(
        cli.global
            .config
            .clone()
            .unwrap_or_else(|| PathBuf::from("lifeboat.toml")),
        cli.global.json,
        cli.global.quiet,
    );
    if let Some(name) = cli.global.repo {
        refuse_on_copy(&cli.command, &name)?;
        ctx.copy = Some(name);
    }
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
        Command::Copy(args) => copy::run(&ctx, args).await,
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
