//! The handle every operation starts from: the config, the open repository (one, shared by
//! concurrent operations) and where events go. Cheap to clone.

use std::{path::PathBuf, sync::Arc};

use lifeboat_core::Config;
use lifeboat_repo::{Bars, Repo};

use crate::{
    EngineError, EngineResult,
    events::{Event, Events, Op},
    incidents::Tap,
    kinds::Prestarted,
};

#[derive(Clone)]
pub struct Engine {
    pub config: Arc<Config>,
    /// Where the config was read from: written into `restore_command` of recovered servers.
    pub config_path: PathBuf,
    pub repo: Arc<Repo>,
    /// Where events go: the caller's reporter, through the incident [`Tap`].
    pub events: Events,
    tap: Arc<Tap>,
    /// Backups started before the repository was open, by target (`give_prestarted`).
    prestarted: Arc<std::sync::Mutex<std::collections::HashMap<String, Prestarted>>>,
}

impl Engine {
    pub fn new(config: Config, config_path: PathBuf, repo: Arc<Repo>, events: Events) -> Self {
        let tap = Arc::new(Tap::new(events));
        Self {
            config: Arc::new(config),
            config_path,
            repo,
            events: tap.clone(),
            tap,
            prestarted: Default::default(),
        }
    }

    /// Hand over what [`crate::backup::prestart`] started for `name`'s backup: the next
    /// backup of `name` goes on from it. Dropped unused with the engine.
    pub fn give_prestarted(&self, name: &str, early: Prestarted) {
        self.lock_prestarted().insert(name.to_string(), early);
    }

    pub(crate) fn take_prestarted(&self, name: &str) -> Option<Prestarted> {
        self.lock_prestarted().remove(name)
    }

    fn lock_prestarted(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Prestarted>> {
        self.prestarted.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Add what happened since the last call (work finished or failed, restore plans,
    /// emergency backups) to the open incident's timeline, if an incident is open. Callers
    /// call it when a command or a job is done.
    pub async fn keep_timeline(&self) {
        crate::incidents::record(self, self.tap.take()).await;
    }

    /// Open the repository named in `config` (off the async threads), with a hint naming
    /// where the password came from when it is wrong.
    pub async fn open_repo(config: &Config, bars: Bars) -> EngineResult<Arc<Repo>> {
        let password = config.repository_password()?;
        let location = config.repository_location()?;
        Repo::open_shared(location, password, bars)
            .await
            .map_err(|e| {
                let wrong = matches!(e, lifeboat_repo::RepoError::WrongPassword { .. });
                let mut err = EngineError::from(e);
                if wrong {
                    err.hint = Some(format!(
                        "the password comes from {}",
                        config.password_origin()
                    ));
                }
                err
            })
    }

    /// Report a phase of `op` on `target` in words.
    pub fn step(&self, op: Op, target: &str, text: impl Into<String>) {
        self.events.event(Event::Step {
            op,
            target: target.into(),
            text: text.into(),
        });
    }
}
