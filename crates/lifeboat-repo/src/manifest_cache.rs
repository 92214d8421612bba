//! The newest manifest of a target, kept on this machine: the next backup of the target
//! reads it here instead of from the repository. A bucket's manifest holds a record of every
//! object (a few MB for 10,000 objects); reading it back meant the repository's index first,
//! then a read of each of its blobs from the server, before the backup could tell what
//! changed. Here it is one local file, read while the index is read.
//!
//! `<cache>/lifeboat/<repository id>/manifests/<target>/<snapshot id>` (`<cache>` as rustic
//! finds its own: `$XDG_CACHE_HOME` or `~/.cache` on Linux), sealed with the side area's key
//! ([`crate::SideKey`]: compressed, encrypted, authenticated, bound to the target and the
//! snapshot id), so the file says nothing without the repository's key and cannot stand in
//! for another snapshot's manifest. Only a snapshot the repository lists is looked up; a
//! file that does not open is ignored (the manifest is read from the repository). One file
//! per target, the last this machine wrote: writing one removes the others (only files
//! named like snapshot ids; folders made only its owner can enter).

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
        let file = self.file(target, snapshot);
        let sealed = std::fs::read(&file).ok()?;
        let plain = match self.key.open(&name(target, snapshot), &sealed) {
            Ok(plain) => plain,
            Err(e) => {
                log::info!("{} ignored: {e}", file.display());
                return None;
            }
        };
        let manifest = Manifest::from_json(&plain).ok()?;
        log::info!(
            "the manifest of snapshot {} read from {}",
            crate::keys::short(snapshot),
            file.display()
        );
        Some(manifest)
    }

    /// Keep `bytes`, the manifest of `snapshot` of `target`, instead of any other of the
    /// target's. Written to a temporary file, then renamed.
    pub(crate) fn put(&self, target: &str, snapshot: &str, bytes: &[u8]) -> std::io::Result<()> {
        let sealed = self
            .key
            .seal(&name(target, snapshot), bytes)
            .map_err(std::io::Error::other)?;
        let dir = self.dir.join(folder(target));
        private_folder(&dir)?;
        let tmp = dir.join(format!(".{snapshot}.{}.tmp", std::process::id()));
        let written =
            write_private(&tmp, &sealed).and_then(|()| std::fs::rename(&tmp, dir.join(snapshot)));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        // The target's other manifests, and temporary files left by a process that died
        // (an hour old).
        for entry in std::fs::read_dir(&dir)?.flatten() {
            let file = entry.file_name().to_string_lossy().into_owned();
            let other = file != snapshot && is_snapshot_id(&file);
            let stale = file.starts_with('.')
                && file.ends_with(".tmp")
                && entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t.elapsed().is_ok_and(|age| age.as_secs() > 3600));
            if other || stale {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(())
    }
}

/// A snapshot id: 64 hex digits.
fn is_snapshot_id(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Make `dir` (and its parents) only its owner can enter, and refuse one that is a
/// symbolic link: nothing is written through a link someone else could have put there.
pub(crate) fn private_folder(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)?;
    if std::fs::symlink_metadata(dir)?.file_type().is_symlink() {
        return Err(std::io::Error::other(format!(
            "{} is a symbolic link",
            dir.display()
        )));
    }
    Ok(())
}

/// Write a file only its owner can read.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
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
        let id = |c: char| c.to_string().repeat(64);
        let (s0, s1, s2) = (id('0'), id('1'), id('2'));
        assert!(cache.get("media", &s1).is_none());
        cache.put("media", &s1, &manifest("media")).unwrap();
        assert_eq!(cache.get("media", &s1).unwrap().target, "media");
        // Sealed: no plain JSON on disk; only its owner reads it.
        let file = cache.file("media", &s1);
        let raw = std::fs::read(&file).unwrap();
        assert!(crate::seal::is_sealed(&raw));
        assert!(!raw.windows(7).any(|w| w == b"objects"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&file), 0o600);
            assert_eq!(mode(file.parent().unwrap()), 0o700);
        }
        // Copied in place of another snapshot's, or another target's: it does not open.
        std::fs::copy(&file, cache.file("media", &s0)).unwrap();
        assert!(cache.get("media", &s0).is_none());
        std::fs::create_dir_all(cache.file("other", &s1).parent().unwrap()).unwrap();
        std::fs::copy(&file, cache.file("other", &s1)).unwrap();
        assert!(cache.get("other", &s1).is_none());
        // Another repository's key: it does not open.
        let foreign = ManifestCache::new(dir.path(), "repo", SideKey::derive(b"another key"));
        assert!(foreign.get("media", &s1).is_none());
        // Damaged: ignored.
        let mut bad = raw.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        std::fs::write(&file, &bad).unwrap();
        assert!(cache.get("media", &s1).is_none());
        // A newer one replaces the target's others (files named like snapshots only), not
        // other targets'.
        let folder = file.parent().unwrap().to_path_buf();
        std::fs::write(folder.join("notes.txt"), b"mine").unwrap();
        cache.put("media", &s2, &manifest("media")).unwrap();
        let mut left: Vec<String> = std::fs::read_dir(&folder)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, vec![s2.clone(), "notes.txt".to_string()]);
        assert!(cache.file("other", &s1).exists());
        assert_eq!(cache.get("media", &s2).unwrap().target, "media");
    }

    #[cfg(unix)]
    #[test]
    fn a_target_folder_that_is_a_link_is_not_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        std::fs::write(elsewhere.path().join("a".repeat(64)), b"keep").unwrap();
        let cache = ManifestCache::new(dir.path(), "repo", SideKey::derive(b"k"));
        let target = cache.file("media", "x");
        std::fs::create_dir_all(target.parent().unwrap().parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), target.parent().unwrap()).unwrap();
        assert!(
            cache
                .put("media", &"b".repeat(64), &manifest("media"))
                .is_err()
        );
        assert!(elsewhere.path().join("a".repeat(64)).exists());
        assert_eq!(std::fs::read_dir(elsewhere.path()).unwrap().count(), 1);
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
