//! Reading files out of snapshots, shared by the restores and drills of several kinds:
//! a writer that counts and hashes, a file written from a snapshot, and a manifest's
//! section for the kind of target.

use std::{
    io::Write,
    path::{Path, PathBuf},
    sync::Arc,
};

use lifeboat_repo::{Repo, SnapshotInfo};
use sha2::Digest;

use crate::{EngineError, EngineResult, FsContext};

/// Counts and hashes what goes through it.
pub struct Measured<W> {
    pub inner: W,
    pub bytes: u64,
    pub hash: sha2::Sha256,
}

impl<W> Measured<W> {
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            bytes: 0,
            hash: sha2::Sha256::new(),
        }
    }
}

/// The manifest's section for the target's kind, or a clear error.
pub fn section<T: Clone>(part: &Option<T>, snapshot: &SnapshotInfo, what: &str) -> EngineResult<T> {
    part.clone().ok_or_else(|| {
        EngineError::failure(
            format!("snapshot `{}` holds no {what}", snapshot.short_id()),
            Some("is it a snapshot of another kind of target?".into()),
        )
    })
}

impl<W: Write> Write for Measured<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        self.hash.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Write `path` of snapshot `snapshot` to the new file `file` (never over an existing
/// one), synced; its size and SHA-256.
pub async fn write_file(
    repo: &Arc<Repo>,
    snapshot: &str,
    path: &str,
    file: &Path,
) -> EngineResult<(u64, String)> {
    let (r, id, p, f): (_, _, _, PathBuf) = (
        repo.clone(),
        snapshot.to_string(),
        path.to_string(),
        file.to_path_buf(),
    );
    r.call(move |r| -> EngineResult<(u64, String)> {
        if let Some(dir) = f.parent() {
            std::fs::create_dir_all(dir).fs("create the folder", dir)?;
        }
        let out = std::fs::File::create_new(&f).fs("create", &f)?;
        let mut w = Measured::new(std::io::BufWriter::new(out));
        r.dump(&id, &p, &mut w)?;
        w.flush().fs("write", &f)?;
        w.inner.get_ref().sync_all().fs("write", &f)?;
        Ok((w.bytes, hex::encode(w.hash.finalize())))
    })
    .await
}
