//! One open repository serves several operations at once: what a long-running process needs
//! (issue 18, point 6). It used to hand its one rustic handle to one operation at a time, and
//! a second operation failed with "unavailable after an earlier index error".

use std::{
    io::Read,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use lifeboat_core::{Location, Redacted};
use lifeboat_repo::{Bars, Content, Repo, SourceEntry};

/// Both backups are reading their streams at the same moment.
struct Gate {
    reading: AtomicUsize,
    released: AtomicBool,
}

impl Gate {
    /// Wait (at most 30 s) until `cond` holds; whether it did.
    fn until(cond: impl Fn() -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !cond() {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }
}

/// 4 MiB of a target's own bytes; the first read waits until the test releases it.
struct Held {
    gate: Arc<Gate>,
    seed: u8,
    left: usize,
    started: bool,
}

impl Read for Held {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if !self.started {
            self.started = true;
            self.gate.reading.fetch_add(1, Ordering::SeqCst);
            Gate::until(|| self.gate.released.load(Ordering::SeqCst));
        }
        let n = buf.len().min(self.left).min(64 << 10);
        for (i, b) in buf[..n].iter_mut().enumerate() {
            *b = self.seed.wrapping_add((self.left - i) as u8).rotate_left(3);
        }
        self.left -= n;
        Ok(n)
    }
}

#[test]
fn one_repository_serves_two_backups_and_a_listing_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let location = Location::Local(dir.path().join("repo"));
    let repo = Arc::new(Repo::init(&location, &Redacted::new("pw"), Bars::default()).unwrap());
    let gate = Arc::new(Gate {
        reading: AtomicUsize::new(0),
        released: AtomicBool::new(false),
    });
    let backups: Vec<_> = [("db", 1u8), ("media", 2u8)]
        .into_iter()
        .map(|(target, seed)| {
            let (repo, gate) = (repo.clone(), gate.clone());
            std::thread::spawn(move || {
                let held = Held {
                    gate,
                    seed,
                    left: 4 << 20,
                    started: false,
                };
                let (entry, _) =
                    SourceEntry::new(format!("{target}/data"), Content::Stream(Box::new(held)));
                repo.backup(target, "files", &[], vec![entry])
            })
        })
        .collect();
    // Both backups hold the repository open and are reading; a listing runs meanwhile.
    let both = Gate::until(|| gate.reading.load(Ordering::SeqCst) == 2);
    let during = repo.snapshots(None);
    gate.released.store(true, Ordering::SeqCst);
    let done: Vec<_> = backups.into_iter().map(|b| b.join().unwrap()).collect();
    assert!(
        both,
        "the two backups never read at the same time: {done:?}"
    );
    assert!(during.unwrap().is_empty());
    let ids: Vec<String> = done
        .into_iter()
        .map(|d| d.unwrap().id.to_string())
        .collect();
    let after = repo.snapshots(None).unwrap();
    let mut listed: Vec<(String, String)> = after
        .iter()
        .map(|s| (s.target.to_string(), s.id.to_string()))
        .collect();
    listed.sort();
    assert_eq!(
        listed,
        [
            ("db".to_string(), ids[0].clone()),
            ("media".to_string(), ids[1].clone())
        ]
    );
}
