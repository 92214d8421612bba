//! Restoring a folder in batches (how a bucket restore stages its objects): every wanted
//! file arrives once, whole, in a batch folder that has its parent folders; batches are
//! handed over while the next one restores.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use lifeboat_core::{Location, Redacted};
use lifeboat_repo::{Bars, Content, Repo, SourceEntry};

/// A new repository in a temporary folder.
fn repo() -> (tempfile::TempDir, Repo) {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repo::init(
        &Location::Local(dir.path().join("repo")),
        &Redacted::new("pw"),
        Bars::default(),
    )
    .unwrap();
    (dir, repo)
}

#[test]
fn every_wanted_file_arrives_once_in_a_batch_with_its_folders() {
    let (dir, repo) = repo();
    // 60 files of 10 KiB over nested folders, each with its own content.
    let mut files: BTreeMap<PathBuf, Vec<u8>> = BTreeMap::new();
    for i in 0..60u32 {
        let path = match i % 3 {
            0 => format!("a/b/{i}.bin"),
            1 => format!("a/{i}.bin"),
            _ => format!("c/d/e/{i}.bin"),
        };
        let body = (0..10_240u32)
            .map(|j| (j.wrapping_mul(31) ^ i.wrapping_mul(2_654_435_761)) as u8)
            .collect();
        files.insert(path.into(), body);
    }
    let mut entries: Vec<SourceEntry> = files
        .iter()
        .map(|(p, b)| SourceEntry::new(Path::new("t").join(p), Content::Bytes(b.clone())).0)
        .collect();
    entries.push(SourceEntry::new("t/lifeboat.json", Content::Bytes(b"{}".to_vec())).0);
    let snap = repo.backup("t", "files", &[], entries).unwrap();

    let dest = dir.path().join("stage");
    let unwanted =
        |p: &Path| p.to_string_lossy().ends_with("7.bin") || p.ends_with("lifeboat.json");
    let mut seen: Vec<(PathBuf, PathBuf)> = Vec::new();
    repo.restore_dir_in_batches(
        &snap.id,
        "t",
        &dest,
        50 << 10,
        |p| !unwanted(p),
        |folder, batch| {
            for f in batch {
                let got = std::fs::read(folder.join(&f)).unwrap();
                assert!(got == files[&f], "`{}` differs", f.display());
                seen.push((folder.clone(), f));
            }
            std::fs::remove_dir_all(&folder).unwrap();
            true
        },
    )
    .unwrap();

    let folders: std::collections::BTreeSet<_> = seen.iter().map(|(d, _)| d.clone()).collect();
    assert!(folders.len() >= 8, "{} batches", folders.len());
    let mut delivered: Vec<PathBuf> = seen.into_iter().map(|(_, f)| f).collect();
    delivered.sort();
    let wanted: Vec<PathBuf> = files.keys().filter(|p| !unwanted(p)).cloned().collect();
    assert_eq!(wanted.len(), 54);
    assert_eq!(delivered, wanted, "each wanted file once");
}

/// `done` returning false stops the restore (a bucket restore that got a signal): no batch
/// is handed over after it, and at most the batches already under way are restored.
#[test]
fn a_batch_consumer_that_says_stop_stops_the_restore() {
    let (dir, repo) = repo();
    let entries: Vec<SourceEntry> = (0..40u32)
        .map(|i| {
            let body = (0..10_240u32)
                .map(|j| (j ^ i.wrapping_mul(7919)) as u8)
                .collect();
            SourceEntry::new(format!("t/{i}.bin"), Content::Bytes(body)).0
        })
        .collect();
    let snap = repo.backup("t", "files", &[], entries).unwrap();
    let dest = dir.path().join("stage");
    let mut handed = 0;
    repo.restore_dir_in_batches(
        &snap.id,
        "t",
        &dest,
        20 << 10,
        |_| true,
        |_, _| {
            handed += 1;
            false
        },
    )
    .unwrap();
    assert_eq!(handed, 1);
    let restored = std::fs::read_dir(&dest).unwrap().count();
    // 20 batches of two files; the one handed over, one waiting, one restoring.
    assert!(restored <= 3, "{restored} batches restored after the stop");
}
