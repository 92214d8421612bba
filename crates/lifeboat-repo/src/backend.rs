//! The backend rustic_core reads and writes the repository through.
//!
//! Two reasons it is lifeboat's own rather than rustic_backend's:
//! - rustic_backend lists a repository's files and *skips* every entry it could not read
//!   (it logs the error and returns the rest as if complete). On S3, a listing page that
//!   still fails after the retries makes `snapshots/` look empty, and `prune` then deletes
//!   every pack as unused. Here any error fails the listing, and so the command.
//! - rustic_backend's S3 operator has retries but no timeouts: a server that accepts a
//!   connection and never answers hangs a backup for ever. On S3 every call here goes
//!   through lifeboat's [`Store`], with its timeouts and retries.
//!
//! On disk, reads, writes and removals stay with rustic_backend's local backend (its
//! temp-file and fsync handling); only listings go through the [`Store`].

use std::sync::Arc;

use bytes::Bytes;
use rustic_core::{
    BytesList, ErrorKind, FileType, Id, ReadBackend, RusticError, RusticResult, WriteBackend,
};

use crate::store::{S3Problem, Store, StoreError};

pub(crate) struct Backend {
    store: Store,
    /// With Object Lock: the version read for a file found hidden or overwritten, so that
    /// the reads of its other blobs go straight to it.
    healed: std::sync::Mutex<std::collections::HashMap<String, String>>,
    /// rustic_backend's local backend, for a repository on disk.
    local: Option<Arc<dyn WriteBackend>>,
}

impl Backend {
    pub(crate) fn local(local: Arc<dyn WriteBackend>, store: Store) -> Arc<dyn WriteBackend> {
        Arc::new(Self {
            store,
            healed: Default::default(),
            local: Some(local),
        })
    }

    pub(crate) fn s3(store: Store) -> Arc<dyn WriteBackend> {
        Arc::new(Self {
            store,
            healed: Default::default(),
            local: None,
        })
    }
}

/// Where a file of the repository lives, as restic lays it out.
fn path(tpe: FileType, id: &Id) -> String {
    let hex = id.to_hex();
    let hex: &str = &hex;
    match tpe {
        FileType::Config => "config".into(),
        FileType::Pack => format!("data/{}/{hex}", &hex[..2]),
        _ => format!("{}/{hex}", tpe.dirname()),
    }
}

fn failed(what: &'static str, tpe: FileType) -> impl Fn(StoreError) -> Box<RusticError> {
    move |e| {
        RusticError::with_source(ErrorKind::Backend, what, e)
            .attach_context("type", tpe.to_string())
    }
}

/// Whether `bytes` is the file `id` names: restic names every file but `config` by the
/// SHA-256 of its content.
fn names(id: &Id, bytes: &[u8]) -> bool {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes)) == *id.to_hex()
}

impl Backend {
    /// Whether a read of `tpe` checks the content against the name, and looks among the
    /// object's versions when it does not match: in a bucket with Object Lock, where an
    /// overwritten or deleted file's earlier version is kept and cannot be removed.
    fn heals(&self, tpe: FileType) -> bool {
        self.store.locked().is_some() && tpe != FileType::Config
    }

    fn healed_version(&self, rel: &str) -> Option<String> {
        self.healed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(rel)
            .cloned()
    }

    /// The oldest version of `rel` whose content `id` names.
    /// `hidden`: the file is hidden (else its current version is the newest listed, and
    /// finding that one is no sign of tampering: a read gone wrong in transit).
    fn in_versions(
        &self,
        tpe: FileType,
        id: &Id,
        rel: &str,
        hidden: bool,
    ) -> RusticResult<Option<Vec<u8>>> {
        let versions = self
            .store
            .versions(rel)
            .map_err(failed("Listing the versions of `{type}` failed.", tpe))?;
        let current = (!hidden).then(|| versions.first().cloned()).flatten();
        // The original of a file named by its content is its oldest version: an attacker's
        // come after it.
        for v in versions.into_iter().rev() {
            let bytes = self
                .store
                .get_version(rel, &v)
                .map_err(failed("Reading a version of `{type}` failed.", tpe))?;
            if names(id, &bytes) {
                self.healed
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(rel.to_string(), v.clone());
                if let Some(lock) = self.store.locked()
                    && current.as_ref() != Some(&v)
                {
                    lock.note_tampered(format!(
                        "`{}` was overwritten or deleted, not by lifeboat: its version `{v}`, which has the content its name promises, is read instead (copy it over the current one to put it back)",
                        self.store.display(rel)
                    ));
                }
                return Ok(Some(bytes));
            }
        }
        Ok(None)
    }
}

impl ReadBackend for Backend {
    fn location(&self) -> String {
        self.store.display("")
    }

    fn list_with_size(&self, tpe: FileType) -> RusticResult<Vec<(Id, u32)>> {
        let listing_failed = failed("Listing `{type}` failed.", tpe);
        if tpe == FileType::Config {
            let stat = self.store.stat("config").map_err(listing_failed)?;
            return Ok(stat
                .map(|s| (Id::default(), u32::try_from(s.size).unwrap_or(u32::MAX)))
                .into_iter()
                .collect());
        }
        let files = self
            .store
            .list_files(tpe.dirname())
            .map_err(&listing_failed)?;
        let mut listed = Vec::with_capacity(files.len());
        for (name, size) in files {
            // Other names (a temp file, a stray upload) are not part of the repository.
            let Ok(id) = name.parse::<Id>() else { continue };
            let Ok(size) = u32::try_from(size) else {
                return Err(RusticError::new(
                    ErrorKind::Backend,
                    "`{name}` is {size} bytes: too big for a `{type}` file.",
                )
                .attach_context("name", name)
                .attach_context("size", size.to_string())
                .attach_context("type", tpe.to_string()));
            };
            listed.push((id, size));
        }
        Ok(listed)
    }

    fn read_full(&self, tpe: FileType, id: &Id) -> RusticResult<Bytes> {
        if let Some(local) = &self.local {
            return local.read_full(tpe, id);
        }
        let rel = path(tpe, id);
        let current = match self.store.get(&rel) {
            Ok(current) => current,
            Err(e) => return Err(failed("Reading `{type}` failed.", tpe)(e)),
        };
        let missing = || {
            RusticError::new(
                ErrorKind::Backend,
                "`{path}` does not exist (or, in a versioned bucket, no version of it has the content its name promises).",
            )
            .attach_context("path", self.store.display(&rel))
        };
        // A hidden file was already looked for among its versions by the store (which
        // leaves hidden what lifeboat removed itself); here, one whose content does not
        // match its name.
        match current {
            Some(bytes) if !self.heals(tpe) || names(id, &bytes) => Ok(bytes.into()),
            Some(_) => match self.in_versions(tpe, id, &rel, false)? {
                Some(bytes) => Ok(bytes.into()),
                None => Err(missing()),
            },
            None => Err(missing()),
        }
    }

    fn read_partial(
        &self,
        tpe: FileType,
        id: &Id,
        cacheable: bool,
        offset: u32,
        length: u32,
    ) -> RusticResult<Bytes> {
        if let Some(local) = &self.local {
            return local.read_partial(tpe, id, cacheable, offset, length);
        }
        let rel = path(tpe, id);
        let known = self.healed_version(&rel);
        let read = match &known {
            Some(v) => self
                .store
                .get_version_range(&rel, v, offset.into(), length.into()),
            None => self.store.get_range(&rel, offset.into(), length.into()),
        };
        let bytes = match read {
            Ok(bytes) => bytes,
            // Hidden by a delete marker: the version with this content, if the bucket has
            // it (then remembered for the file's other blobs). Only when missing: a
            // transient failure is no reason to look elsewhere.
            Err(
                e @ StoreError::S3 {
                    problem: S3Problem::NotFound,
                    ..
                },
            ) if self.heals(tpe) && known.is_none() => {
                let Some(full) = self.in_versions(tpe, id, &rel, true)? else {
                    return Err(failed("Reading `{type}` failed.", tpe)(e));
                };
                let start = (offset as usize).min(full.len());
                let end = (start + length as usize).min(full.len());
                full[start..end].to_vec()
            }
            Err(e) => return Err(failed("Reading `{type}` failed.", tpe)(e)),
        };
        if bytes.len() != length as usize {
            return Err(RusticError::new(
                ErrorKind::Backend,
                "`{path}` ended early: {got} of {length} bytes from offset {offset}.",
            )
            .attach_context("path", self.store.display(&rel))
            .attach_context("got", bytes.len().to_string())
            .attach_context("length", length.to_string())
            .attach_context("offset", offset.to_string()));
        }
        Ok(bytes.into())
    }

    fn warmup_path(&self, tpe: FileType, id: &Id) -> String {
        match &self.local {
            Some(local) => local.warmup_path(tpe, id),
            None => path(tpe, id),
        }
    }
}

impl WriteBackend for Backend {
    /// On disk, the folders restic expects; S3 has none to create.
    fn create(&self) -> RusticResult<()> {
        match &self.local {
            Some(local) => local.create(),
            None => Ok(()),
        }
    }

    fn write_bytes(
        &self,
        tpe: FileType,
        id: &Id,
        cacheable: bool,
        content: BytesList,
    ) -> RusticResult<()> {
        if let Some(local) = &self.local {
            return local.write_bytes(tpe, id, cacheable, content);
        }
        self.store
            .put_parts(&path(tpe, id), content.into_vec())
            .map_err(failed("Writing `{type}` failed.", tpe))
    }

    fn remove(&self, tpe: FileType, id: &Id, cacheable: bool) -> RusticResult<()> {
        if let Some(local) = &self.local {
            return local.remove(tpe, id, cacheable);
        }
        let rel = path(tpe, id);
        let removed = match (tpe, self.store.locked()) {
            // With Object Lock, removals of packs (only prune removes them) and of
            // snapshots by `forget` are retention's: one still under retention stays.
            (FileType::Pack, Some(_)) => self.store.delete_unless_retained(&rel, true),
            (FileType::Snapshot, Some(lock)) if lock.is_forgetting() => {
                self.store.delete_unless_retained(&rel, true)
            }
            // Others (a failed backup's snapshot, an index prune replaced, a key) must
            // take effect.
            _ => self.store.delete(&rel).map(|()| true),
        };
        removed
            .map(|_| ())
            .map_err(failed("Removing `{type}` failed.", tpe))
    }
}
