//! Measure how fast a piped stream goes into a repository: reads stdin as one stream entry
//! (through the same wrappers as a `pg_dump` stream) into a fresh repository in a temporary
//! folder and prints `bytes seconds MB/s` on stdout. Used by `bench/stream.sh`.

use std::{io::Read, time::Instant};

use lifeboat_core::{Location, Redacted};
use lifeboat_repo::{Bars, Content, Repo, SourceEntry};

fn main() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let location = Location::Local(dir.path().join("repo"));
    let repo = Repo::init(&location, &Redacted::new("bench"), Bars::default()).expect("init");
    let stdin: Box<dyn Read + Send> = Box::new(std::io::stdin());
    let (entry, stat) = SourceEntry::new("bench/stream", Content::Stream(stdin));
    let started = Instant::now();
    repo.backup("bench", "stream", &[], vec![entry])
        .expect("backup");
    let secs = started.elapsed().as_secs_f64();
    let bytes = stat.outcome_now().expect("stream finished").bytes;
    println!("{bytes} {secs:.2} {:.1}", bytes as f64 / secs / 1e6);
}
