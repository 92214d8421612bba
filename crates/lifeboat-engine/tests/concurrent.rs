//! One engine, one open repository, several operations at once (issue 18, point 6): the
//! daemon runs backups of different targets side by side and answers listings meanwhile.
//! Backup `slow` waits, mid-stream, until the test lets it go; while it waits, backup
//! `quick` runs to its end and the snapshots are listed through the same repository.

use std::{path::Path, sync::Arc, time::Duration};

use lifeboat_core::Config;
use lifeboat_engine::{
    Engine,
    backup::backup,
    cancel::Cancel,
    events::{Event, Op, Recorded},
};
use lifeboat_repo::Repo;

fn setup(dir: &Path) -> Config {
    std::fs::write(dir.join("password"), "pw\n").unwrap();
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    for i in 0..8u8 {
        let bytes: Vec<u8> = (0..(1 << 20)).map(|j: u32| (j as u8) ^ i).collect();
        std::fs::write(data.join(format!("f{i}")), bytes).unwrap();
    }
    let go = dir.join("go");
    let text = format!(
        "[repository]\nurl = \"{repo}\"\npassword-file = \"{pw}\"\n\n\
         [targets.quick]\nkind = \"files\"\npaths = [\"{data}\"]\n\n\
         [targets.slow]\nkind = \"command\"\n\
         backup = \"head -c 1000000 /dev/zero; while [ ! -e {go} ]; do sleep 0.05; done; head -c 1000000 /dev/zero\"\n",
        repo = dir.join("repo").display(),
        pw = dir.join("password").display(),
        data = data.display(),
        go = go.display(),
    );
    let path = dir.join("lifeboat.toml");
    std::fs::write(&path, text).unwrap();
    Config::load(&path).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_backups_and_a_listing_share_one_open_repository() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path());
    let (location, password) = (
        config.repository_location().unwrap(),
        config.repository_password().unwrap(),
    );
    Repo::init(&location, &password, Default::default()).unwrap();
    let repo = Repo::open(&location, &password, Default::default()).unwrap();
    let events = Arc::new(Recorded::default());
    let engine = Engine::new(
        config,
        dir.path().join("lifeboat.toml"),
        Arc::new(repo),
        events.clone(),
    );
    let cancel = Cancel::new();

    let (e, c) = (engine.clone(), cancel.clone());
    let slow = tokio::spawn(async move { backup(&e, "slow", &c).await });
    // `slow` is reading its command's output (it waits for `go` half-way).
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!slow.is_finished(), "the slow backup should be waiting");

    let quick = backup(&engine, "quick", &cancel)
        .await
        .expect("quick backup");
    assert_eq!(quick.files, 8);
    let r = engine.repo.clone();
    let listed = tokio::task::spawn_blocking(move || r.snapshots(None))
        .await
        .unwrap()
        .expect("listing while a backup runs");
    let targets: Vec<&str> = listed.iter().map(|s| s.target.as_str()).collect();
    assert_eq!(targets, ["quick"], "only the finished backup is listed");
    assert!(
        !slow.is_finished(),
        "the slow backup should still be waiting"
    );

    std::fs::write(dir.path().join("go"), "").unwrap();
    let slow = slow.await.unwrap().expect("slow backup");
    assert_eq!(slow.bytes, 2_000_000);
    let r = engine.repo.clone();
    let listed = tokio::task::spawn_blocking(move || r.snapshots(None))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(listed.len(), 2);

    // Each backup reported its start and its end, `quick` ending before `slow`.
    let finished: Vec<String> = events
        .0
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            Event::Finished {
                op: Op::Backup,
                target,
                ..
            } => Some(target.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(finished, ["quick", "slow"]);
}
