//! The repository's keys (restic's `keys/` files): several passwords open one repository,
//! each a key file holding the master key encrypted under it. Adding a key and removing
//! another changes no data and no other key; the master key — and so the side area's key,
//! derived from it — stays the same, so everything written before reads with the new
//! password.

use lifeboat_core::Redacted;
use rustic_core::{KeyOptions, repofile::KeyFile};
use serde::Serialize;

use crate::{Repo, RepoError, rustic};

/// One key file, as `key list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct KeyInfo {
    pub id: String,
    pub host: Option<String>,
    pub user: Option<String>,
    pub created: Option<String>,
    /// The key the running process opened the repository with.
    pub current: bool,
}

impl Repo {
    /// Every key file, oldest first.
    pub fn keys(&self) -> Result<Vec<KeyInfo>, RepoError> {
        let mut out = Vec::new();
        for id in self.store.list("keys")? {
            let Some(bytes) = self.store.get(&format!("keys/{id}"))? else {
                continue;
            };
            let file: KeyFile = serde_json::from_slice(&bytes).map_err(|e| RepoError::Rustic {
                context: format!("cannot read key `{}`", short(&id)),
                message: e.to_string(),
            })?;
            out.push(KeyInfo {
                current: self.key_id.as_deref() == Some(id.as_str()),
                host: file.hostname,
                user: file.username,
                created: file.created.map(|t| t.timestamp().to_string()),
                id,
            });
        }
        out.sort_by(|a, b| a.created.cmp(&b.created).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// Add a key opening the repository with `password`; its id.
    pub fn add_key(&self, password: &Redacted, host: Option<&str>) -> Result<String, RepoError> {
        let opts = key_options(host);
        let repo = self.handle()?;
        let id = repo
            .add_key(password.expose(), &opts)
            .map_err(rustic("cannot add a key"));
        self.put_back(repo);
        Ok(id?.to_hex().to_string())
    }

    /// The key whose id is `wanted` or starts with it (unique).
    pub fn find_key(&self, wanted: &str) -> Result<KeyInfo, RepoError> {
        let keys = self.keys()?;
        let found: Vec<&KeyInfo> = keys.iter().filter(|k| k.id.starts_with(wanted)).collect();
        match found.as_slice() {
            [one] if !wanted.is_empty() => Ok((*one).clone()),
            [] => Err(RepoError::Rustic {
                context: format!("no key `{wanted}`"),
                message: format!(
                    "the keys are {}",
                    keys.iter()
                        .map(|k| short(&k.id))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }),
            _ => Err(RepoError::Rustic {
                context: format!("key `{wanted}` is ambiguous"),
                message: "give more of its id".into(),
            }),
        }
    }

    /// Remove the key `id` (a full id): refused for the key in use and for the last one.
    pub fn remove_key(&self, id: &str) -> Result<(), RepoError> {
        let keys = self.keys()?;
        if self.key_id.as_deref() == Some(id) {
            return Err(RepoError::Rustic {
                context: format!("cannot remove key `{}`", short(id)),
                message: "it is the key this password opens; open the repository with another key's password to remove it (or use `key passwd`)".into(),
            });
        }
        if !keys.iter().any(|k| k.id == id) {
            return Err(RepoError::Rustic {
                context: format!("no key `{}`", short(id)),
                message: "list them with `lifeboat key list`".into(),
            });
        }
        if keys.len() < 2 {
            return Err(RepoError::Rustic {
                context: format!("cannot remove key `{}`", short(id)),
                message: "it is the last key: without it nothing could open the repository".into(),
            });
        }
        Ok(self.store.delete(&format!("keys/{id}"))?)
    }

    /// Change the password: a key for `password` is added, then the key in use removed; the
    /// new key's id.
    pub fn change_password(
        &self,
        password: &Redacted,
        host: Option<&str>,
    ) -> Result<String, RepoError> {
        let Some(old) = self.key_id.clone() else {
            return Err(RepoError::Rustic {
                context: "cannot change the password".into(),
                message: "the repository was not opened with a password".into(),
            });
        };
        let new = self.add_key(password, host)?;
        // The new key must open the repository before the old one goes.
        let opens = self
            .unopened
            .clone()
            .open(&rustic_core::Credentials::password(password.expose()))
            .is_ok();
        if !opens {
            let _ = self.store.delete(&format!("keys/{new}"));
            return Err(RepoError::Rustic {
                context: "cannot change the password".into(),
                message: "the new key did not open the repository; it was removed again and the old one kept".into(),
            });
        }
        self.store
            .delete(&format!("keys/{old}"))
            .map_err(|e| RepoError::Rustic {
                context: format!(
                    "key {} was added, but the old key {} could not be removed",
                    short(&new),
                    short(&old)
                ),
                message: format!(
                    "{e}; remove it with `lifeboat key remove {}` using the new password",
                    short(&old)
                ),
            })?;
        Ok(new)
    }
}

/// Who makes a key and when, as restic records it: `key list` tells the keys apart.
pub(crate) fn key_options(host: Option<&str>) -> KeyOptions {
    let mut opts = KeyOptions::default()
        .hostname(host.map_or_else(crate::side::hostname, str::to_string))
        .with_created(true);
    if let Ok(user) = std::env::var("USER") {
        opts = opts.username(user);
    }
    opts
}

/// A key id as people see it: its first 8 hex digits.
pub fn short(id: &str) -> &str {
    &id[..id.len().min(8)]
}
