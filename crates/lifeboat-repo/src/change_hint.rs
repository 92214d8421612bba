//! What this machine remembers of a bucket's last backup, to guess before the repository
//! is open what changed since: the newest last-modified time that backup listed. Objects
//! last modified after it probably changed, and are fetched while the key is derived (or
//! the previous snapshot read) ([`crate::bucket::likely_changed`],
//! [`crate::bucket::Bucket::prefetch`]).
//!
//! Only a hint: a wrong one costs a bounded number of fetches for nothing, or none are
//! fetched early; what the backup reads is decided from the previous manifest as always.
//! Both times are the server's (last-modified as listed), so the two clocks never meet.
//! `<cache>/lifeboat/listed/<fingerprint>`, the fingerprint a hash of the repository, the
//! target and the bucket (the file name says none of them); the file holds one RFC 3339
//! time: when the bucket was last written before that backup.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Which backups share a hint: of one target, of one bucket, into one repository.
pub struct HintKey<'a> {
    pub repository: &'a str,
    pub target: &'a str,
    pub bucket: &'a str,
}

impl HintKey<'_> {
    fn file(&self, base: &Path) -> PathBuf {
        let mut h = Sha256::new();
        for part in [self.repository, self.target, self.bucket] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        let digest = hex::encode(h.finalize());
        base.join("lifeboat").join("listed").join(&digest[..32])
    }

    /// The newest last-modified the last backup made here listed, if known.
    pub fn read(&self) -> Option<jiff::Timestamp> {
        self.read_in(&dirs::cache_dir()?)
    }

    fn read_in(&self, base: &Path) -> Option<jiff::Timestamp> {
        std::fs::read_to_string(self.file(base))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Remember `newest` for the next backup (a failure only costs it the early fetches).
    pub fn write(&self, newest: jiff::Timestamp) {
        let Some(base) = dirs::cache_dir() else {
            return;
        };
        if let Err(e) = self.write_in(&base, newest) {
            log::debug!("cannot keep the listing's newest time: {e}");
        }
    }

    fn write_in(&self, base: &Path, newest: jiff::Timestamp) -> std::io::Result<()> {
        let file = self.file(base);
        let dir = file.parent().expect("a folder");
        crate::manifest_cache::private_folder(dir)?;
        let tmp = dir.join(format!(
            ".{}.{}.tmp",
            file.file_name().expect("a name").to_string_lossy(),
            std::process::id()
        ));
        let written = crate::manifest_cache::write_private(&tmp, format!("{newest}\n").as_bytes())
            .and_then(|()| std::fs::rename(&tmp, &file));
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hint_is_kept_per_repository_target_and_bucket() {
        let dir = tempfile::tempdir().unwrap();
        let key = |repository, target, bucket| HintKey {
            repository,
            target,
            bucket,
        };
        let mine = key("s3://r/a", "media", "s3://media");
        assert_eq!(mine.read_in(dir.path()), None);
        let t: jiff::Timestamp = "2026-12-07T10:00:01.5Z".parse().unwrap();
        mine.write_in(dir.path(), t).unwrap();
        assert_eq!(mine.read_in(dir.path()), Some(t));
        let later = t + jiff::SignedDuration::from_secs(60);
        mine.write_in(dir.path(), later).unwrap();
        assert_eq!(mine.read_in(dir.path()), Some(later));
        for other in [
            key("s3://r/b", "media", "s3://media"),
            key("s3://r/a", "assets", "s3://media"),
            key("s3://r/a", "media", "s3://other"),
            // Parts do not run into each other.
            key("s3://r/amedia", "", "s3://media"),
        ] {
            assert_eq!(other.read_in(dir.path()), None);
        }
        // The file names none of them, holds only the time, and only its owner reads it.
        let file = mine.file(dir.path());
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        assert!(!name.contains("media") && name.len() == 32);
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            format!("{later}\n")
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&file), 0o600);
            assert_eq!(mode(file.parent().unwrap()), 0o700);
        }
        // Damaged: no hint.
        std::fs::write(&file, b"yesterday").unwrap();
        assert_eq!(mine.read_in(dir.path()), None);
    }
}
