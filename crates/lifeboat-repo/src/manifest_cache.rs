//! The newest manifest of a target, kept on this machine: the next backup of the target
//! reads it here instead of from the repository. A bucket's manifest holds a record of every
//! object (a few MB for 10,000 objects); reading it back meant the repository's index first,
//! then a read of each of its blobs from the server, before the backup could tell what
//! changed. Here it is one local file, read while the index is read.
//!
//! `<cache>/lifeboat/<repository id>/manifests/<target>/<snapshot id>`, sealed with the side
//! area's key ([`crate::SideKey`]: compressed, encrypted, authenticated, bound to the
//! snapshot id), so the file says nothing without the repository's key and cannot stand in
//! for another snapshot's manifest. Only a snapshot the repository lists is looked up; a
//! file that does not open is ignored (the manifest is read from the repository). One file
//! per target: writing one removes the others.

use std::path::{Path, PathBuf};

use lifeboat_core::Manifest;

use crate::{Repo, SideKey};

/// Where cached manifests of one repository are, and the key that seals them.
pub(crate) struct ManifestCache {
    dir: PathBuf,
    key: SideKey,
}

/// The sealed object's name: the snapshot it belongs to.
fn name(target: &str, snapshot: &str) -> String {
    format!("manifest {target} {snapshot}")
}

/// A target name as a folder name (target names are plain words; anything else is
/// hex-escaped).
fn folder(target: &str) -> String {
    if !target.is_empty()
        && target
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        target.to_string()
    } else {
        format!("~{}", hex::encode(target))
    }
}

impl ManifestCache {
    /// `base`/lifeboat/`repo_id`/manifests.
    pub(crate) fn new(base: &Path, repo_id: &str, key: SideKey) -> Self {
        Self {
            dir: base.join("lifeboat").join(repo_id).join("manifests"),
            key,
        }
    }

    fn file(&self, target: &str, snapshot: &str) -> PathBuf {
        self.dir.join(folder(target)).join(snapshot)
    }

    /// The manifest of `snapshot` of `target`, if cached and it opens.
    pub(crate) fn get(&self, target: &str, snapshot: &str) -> Option<Manifest> {
        let sealed = std::fs::read(self.file(target, snapshot)).ok()?;
        let plain = match self.key.open(&name(target, snapshot), &sealed) {
            Ok(plain) => plain,
            Err(e) => {
                log::debug!("cached manifest of {snapshot} ignored: {e}");
                return None;
            }
        };
        Manifest::from_json(&plain).ok()
    }

    /// Keep `bytes`, the manifest of `snapshot` of `target`, instead of any other of the
    /// target's. Written to a temporary file, then renamed.
    pub(crate) fn put(&self, target: &str, snapshot: &str, bytes: &[u8]) -> std::io::Result<()> {
        let sealed = self
            .key
            .seal(&name(target, snapshot), bytes)
            .map_err(std::io::Error::other)?;
        let dir = self.dir.join(folder(target));
        std::fs::create_dir_all(&dir)?;
        let tmp = dir.join(format!(".{snapshot}.{}.tmp", std::process::id()));
        write_private(&tmp, &sealed)?;
        if let Err(e) = std::fs::rename(&tmp, dir.join(snapshot)) {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        for entry in std::fs::read_dir(&dir)?.flatten() {
            let file = entry.file_name();
            if file.to_str() != Some(snapshot) && !file.to_string_lossy().starts_with('.') {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(())
    }
}

/// Write a file only its owner can read.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(bytes)
}

impl Repo {
    /// This repository's manifest cache; `None` without a cache folder for this user.
    pub(crate) fn manifest_cache(&self) -> Option<ManifestCache> {
        let base = dirs::cache_dir()?;
        let key = self.side_key().ok()?;
        Some(ManifestCache::new(&base, &self.repo_id, key))
    }

    /// Keep the manifest of a snapshot just made for the next backup of `target` (see the
    /// module). A failure only costs the next backup a read from the repository.
    pub fn cache_manifest(&self, target: &str, snapshot: &str, bytes: &[u8]) {
        let Some(cache) = self.manifest_cache() else {
            return;
        };
        if let Err(e) = cache.put(target, snapshot, bytes) {
            log::debug!(
                "cannot keep the manifest of {snapshot} in {}: {e}",
                cache.dir.display()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(target: &str) -> Vec<u8> {
        let m = Manifest {
            format: lifeboat_core::manifest::FORMAT_VERSION,
            target: target.into(),
            kind: lifeboat_core::TargetKind::Bucket,
            method: "objects".into(),
            lifeboat_version: "0.1.0".into(),
            started_at: None,
            finished_at: None,
            complete: true,
            emergency: false,
            postgres: None,
            files: None,
            physical: None,
            command: None,
            redis: None,
            bucket: None,
        };
        m.to_json()
    }

    #[test]
    fn a_cached_manifest_opens_only_for_its_snapshot_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let key = SideKey::derive(b"one repository's master key material");
        let cache = ManifestCache::new(dir.path(), "repo", key.clone());
        assert!(cache.get("media", "s1").is_none());
        cache.put("media", "s1", &manifest("media")).unwrap();
        assert_eq!(cache.get("media", "s1").unwrap().target, "media");
        // Sealed: no plain JSON on disk; only its owner reads it.
        let file = cache.file("media", "s1");
        let raw = std::fs::read(&file).unwrap();
        assert!(!raw.windows(7).any(|w| w == b"objects"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // Copied in place of another snapshot's, or another target's: it does not open.
        std::fs::copy(&file, cache.file("media", "s0")).unwrap();
        assert!(cache.get("media", "s0").is_none());
        std::fs::create_dir_all(cache.file("other", "s1").parent().unwrap()).unwrap();
        std::fs::copy(&file, cache.file("other", "s1")).unwrap();
        assert!(cache.get("other", "s1").is_none());
        // Another repository's key: it does not open.
        let foreign = ManifestCache::new(dir.path(), "repo", SideKey::derive(b"another key"));
        assert!(foreign.get("media", "s1").is_none());
        // Damaged: ignored.
        let mut bad = raw.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        std::fs::write(&file, &bad).unwrap();
        assert!(cache.get("media", "s1").is_none());
        // A newer one replaces the target's others, not other targets'.
        cache.put("media", "s2", &manifest("media")).unwrap();
        let left: Vec<String> = std::fs::read_dir(file.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, vec!["s2".to_string()]);
        assert!(cache.file("other", "s1").exists());
        assert_eq!(cache.get("media", "s2").unwrap().target, "media");
    }

    #[test]
    fn odd_target_names_get_folders_of_their_own() {
        assert_eq!(folder("media"), "media");
        assert_eq!(folder("app_db-2"), "app_db-2");
        assert_eq!(folder("../x"), format!("~{}", hex::encode("../x")));
        assert_eq!(folder(""), "~");
        assert_ne!(folder("a/b"), folder("a_b"));
    }
}
