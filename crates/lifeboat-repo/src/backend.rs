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

use crate::store::{Store, StoreError};

pub(crate) struct Backend {
    store: Store,
    /// rustic_backend's local backend, for a repository on disk.
    local: Option<Arc<dyn WriteBackend>>,
}

impl Backend {
    pub(crate) fn local(local: Arc<dyn WriteBackend>, store: Store) -> Arc<dyn WriteBackend> {
        Arc::new(Self {
            store,
            local: Some(local),
        })
    }

    pub(crate) fn s3(store: Store) -> Arc<dyn WriteBackend> {
        Arc::new(Self { store, local: None })
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
        match self.store.get(&rel) {
            Ok(Some(bytes)) => Ok(bytes.into()),
            Ok(None) => Err(
                RusticError::new(ErrorKind::Backend, "`{path}` does not exist.")
                    .attach_context("path", self.store.display(&rel)),
            ),
            Err(e) => Err(failed("Reading `{type}` failed.", tpe)(e)),
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
        let bytes = self
            .store
            .get_range(&rel, offset.into(), length.into())
            .map_err(failed("Reading `{type}` failed.", tpe))?;
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
        self.store
            .delete(&path(tpe, id))
            .map_err(failed("Removing `{type}` failed.", tpe))
    }
}
