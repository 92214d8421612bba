//! Regression tests for rustic_core 0.13.0 pitfalls (notes/rustic_core.md), run through the
//! real archiver on a real local repository.

use std::{
    io::{self, Read},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use lifeboat_core::{Location, Redacted};
use lifeboat_repo::{Bars, Content, Repo, RepoError, SourceEntry};

fn repo() -> (tempfile::TempDir, Repo) {
    let dir = tempfile::tempdir().unwrap();
    let url = Location::Local(dir.path().join("repo"));
    let repo = Repo::init(&url, &Redacted::new("pw"), Bars::default()).unwrap();
    (dir, repo)
}

/// Deterministic pseudo-random bytes, handed out at most `chunk` bytes per read (a pipe).
struct PipeLike {
    left: u64,
    chunk: usize,
    state: u64,
    calls: Arc<AtomicU64>,
    fail_after: Option<u64>,
}

impl PipeLike {
    fn new(len: u64, chunk: usize) -> Self {
        Self {
            left: len,
            chunk,
            state: 0x9E37_79B9_7F4A_7C15,
            calls: Arc::new(AtomicU64::new(0)),
            fail_after: None,
        }
    }
}

impl Read for PipeLike {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.calls.fetch_add(1, Ordering::Relaxed);
        if self.fail_after.is_some_and(|f| n >= f) {
            return Err(io::Error::other("child process killed"));
        }
        // Like a real pipe, now and then a read returns a single byte.
        let chunk = if n % 100 == 99 { 1 } else { self.chunk };
        let len = buf.len().min(chunk).min(self.left as usize);
        for b in &mut buf[..len] {
            self.state ^= self.state << 13;
            self.state ^= self.state >> 7;
            self.state ^= self.state << 17;
            *b = self.state as u8;
        }
        self.left -= len as u64;
        Ok(len)
    }
}

fn stream_entries(target: &str, reader: impl Read + Send + 'static) -> Vec<SourceEntry> {
    let (dump, dump_stat) = SourceEntry::new(
        format!("{target}/db.dump"),
        Content::Stream(Box::new(reader)),
    );
    let waited = dump_stat.clone();
    let (manifest, _) = SourceEntry::new(
        format!("{target}/lifeboat.json"),
        Content::Deferred(Box::new(move || {
            let o = waited.wait()?;
            Ok(format!(
                r#"{{"format":1,"target":"t","kind":"postgres","method":"logical","lifeboat-version":"0","started-at":"","finished-at":"","complete":true,"stream-sha256":"{}","stream-bytes":{}}}"#,
                o.sha256, o.bytes
            )
            .into_bytes())
        })),
    );
    vec![dump, manifest]
}

/// Pitfall 1: the chunker shrinks its buffer to the size of a short read and never grows
/// it back, so after one 1-byte read a pipe is read one byte at a time (notes: 328 million
/// reads for 500 MB). With the full-read wrapper the number of reads stays near
/// size / pipe chunk.
#[test]
fn pipes_are_read_in_full_buffers() {
    let (_dir, repo) = repo();
    let len = 4 << 20;
    let pipe = PipeLike::new(len, 4096);
    let calls = pipe.calls.clone();
    let entries = stream_entries("t", pipe);
    repo.backup("t", "logical", &[], entries).unwrap();
    let reads = calls.load(Ordering::Relaxed);
    let ideal = len / 4096;
    assert!(
        reads <= ideal * 2 + 64,
        "{reads} reads for {ideal} pipe chunks"
    );
}

/// Pitfall 2: a read error is logged and swallowed by the archiver, which saves the
/// snapshot anyway. lifeboat must fail and leave no snapshot.
#[test]
fn a_failing_stream_leaves_no_snapshot() {
    let (_dir, repo) = repo();
    let mut pipe = PipeLike::new(8 << 20, 65536);
    pipe.fail_after = Some(10);
    let entries = stream_entries("t", pipe);
    let err = repo.backup("t", "logical", &[], entries).unwrap_err();
    assert!(matches!(err, RepoError::BackupFailed(_)), "{err}");
    assert!(err.to_string().contains("child process killed"), "{err}");
    assert!(repo.snapshots(None).unwrap().is_empty());
}

/// Pitfall 3: stream entries have size 0 and no mtime, so they "match" the same path in a
/// parent snapshot and are silently not read. The second backup must hold the new content.
#[test]
fn a_second_stream_backup_stores_new_content() {
    let (_dir, repo) = repo();
    for content in [b"first version".to_vec(), b"second version".to_vec()] {
        let entries = stream_entries("t", io::Cursor::new(content.clone()));
        let snap = repo.backup("t", "logical", &[], entries).unwrap();
        let mut out = Vec::new();
        repo.dump(&snap.id, "t/db.dump", &mut out).unwrap();
        assert_eq!(out, content);
    }
    assert_eq!(repo.snapshots(Some("t")).unwrap().len(), 2);
}

/// The manifest is produced after the stream ended and sees its final hash and size.
#[test]
fn the_manifest_sees_the_finished_stream() {
    let (_dir, repo) = repo();
    let entries = stream_entries("t", PipeLike::new(3 << 20, 8192));
    let snap = repo.backup("t", "logical", &[], entries).unwrap();
    let mut manifest = Vec::new();
    repo.dump(&snap.id, "t/lifeboat.json", &mut manifest)
        .unwrap();
    let m: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    assert_eq!(m["stream-bytes"], 3 << 20);
    let mut dump = Vec::new();
    repo.dump(&snap.id, "t/db.dump", &mut dump).unwrap();
    use sha2::Digest;
    assert_eq!(m["stream-sha256"], hex::encode(sha2::Sha256::digest(&dump)));
}

#[test]
fn wrong_password_and_existing_repository_are_refused() {
    let (dir, _repo) = repo();
    let url = Location::Local(dir.path().join("repo"));
    let err = Repo::open(&url, &Redacted::new("nope"), Bars::default())
        .err()
        .unwrap();
    assert!(matches!(err, RepoError::WrongPassword { .. }), "{err}");
    let err = Repo::init(&url, &Redacted::new("pw"), Bars::default())
        .err()
        .unwrap();
    assert!(matches!(err, RepoError::AlreadyExists { .. }), "{err}");
    let missing = Location::Local(dir.path().join("none"));
    let err = Repo::open(&missing, &Redacted::new("pw"), Bars::default())
        .err()
        .unwrap();
    assert!(matches!(err, RepoError::NotARepository { .. }), "{err}");
}

/// `check` reading a part of the packs (`[maintenance] check-read-data`): the parts
/// together read every pack once, so a damaged pack is found by exactly one of them, and
/// not by a check that reads no content.
#[test]
fn the_parts_of_a_check_together_read_every_pack_once() {
    use lifeboat_repo::ReadData;
    let (dir, repo) = repo();
    let entries = stream_entries("t", PipeLike::new(48 << 20, 65536));
    repo.backup("t", "logical", &[], entries).unwrap();
    // Packs are `data/<two hex digits>/<id>`.
    let mut packs: Vec<std::path::PathBuf> = std::fs::read_dir(dir.path().join("repo/data"))
        .unwrap()
        .flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap())
        .map(|e| e.unwrap().path())
        .collect();
    assert!(packs.len() >= 3, "only {} packs", packs.len());
    // Damage the content of one data pack (the largest; the check reads every tree pack
    // anyway), keeping its size.
    packs.sort_by_key(|p| std::fs::metadata(p).unwrap().len());
    let victim = packs.last().unwrap();
    let mut bytes = std::fs::read(victim).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(victim, bytes).unwrap();
    let finds = |read: ReadData| match repo.check(read) {
        Ok(errors) => !errors.is_empty(),
        Err(_) => true,
    };
    assert!(!finds(ReadData::None), "found without reading content");
    assert!(finds(ReadData::All));
    let found: Vec<u32> = (0..3)
        .filter(|&n| finds(ReadData::Part { n, of: 3 }))
        .collect();
    assert_eq!(found.len(), 1, "parts that found the damage: {found:?}");
}
