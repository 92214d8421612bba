//! Objects fetched before a backup knows it will read them: while the repository opens
//! (deriving its key takes a few tenths of a second), or while the previous snapshot is read
//! where it is open already (`serve`, a second target), the objects a hint says probably
//! changed ([`likely_changed`], from [`crate::HintKey`]) are fetched as the read-ahead
//! would fetch them, and the read-ahead takes each over if it reads that object as listed.

use std::collections::HashMap;

use super::{AHEAD_REQUESTS, Bucket, Get, Head, Listed, PART, get};
use crate::store::runtime;

/// The early fetches, by key. [`super::entries`] hands those of objects the backup reads
/// (same key, size and ETag as listed) to the read-ahead as fetches already running; the
/// others are stopped when this is dropped.
#[derive(Default)]
pub struct Prefetched(HashMap<String, Early>);

/// One object's fetch: its listed size and ETag, and the task.
struct Early {
    size: u64,
    etag: String,
    task: Fetching,
}

/// A fetch running on the S3 runtime: the bytes and the reply's [`Head`].
pub(super) type Fetching = tokio::task::JoinHandle<opendal::Result<(Vec<u8>, Option<Head>)>>;

/// At most this many objects, and bytes, are fetched before the backup knows it needs
/// them: a wrong hint costs this much at most.
pub const PREFETCH_OBJECTS: usize = AHEAD_REQUESTS;
pub const PREFETCH_BYTES: u64 = 32 << 20;

/// The objects last modified after `since` (the newest last-modified the previous backup
/// listed: both are the server's clock) and small enough for one GET, in listed order,
/// within [`PREFETCH_OBJECTS`] and [`PREFETCH_BYTES`].
pub fn likely_changed(objects: &[Listed], since: jiff::Timestamp) -> Vec<&Listed> {
    let mut bytes = 0;
    let mut out = Vec::new();
    for o in objects {
        if out.len() == PREFETCH_OBJECTS {
            break;
        }
        let newer = o
            .last_modified
            .parse::<jiff::Timestamp>()
            .is_ok_and(|t| t > since);
        if newer && o.size <= PART && bytes + o.size <= PREFETCH_BYTES {
            bytes += o.size;
            out.push(o);
        }
    }
    out
}

impl Bucket {
    /// Start fetching `objects` (each whole, as listed: `If-Match` its ETag).
    pub fn prefetch(&self, objects: &[&Listed]) -> Prefetched {
        let fetches = objects
            .iter()
            .map(|o| {
                let (op, key, size, etag) =
                    (self.op.clone(), o.key.clone(), o.size, o.etag.clone());
                let task = runtime().spawn(async move {
                    let if_match = (!etag.is_empty()).then_some(etag.as_str());
                    get(&op, &key, Get::Whole(size), if_match).await
                });
                let early = Early {
                    size: o.size,
                    etag: o.etag.clone(),
                    task,
                };
                (o.key.clone(), early)
            })
            .collect();
        Prefetched(fetches)
    }
}

impl Prefetched {
    /// How many objects are being fetched (or were).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The fetch of `key`, if it is of the version `size` and `etag` say (else it is
    /// stopped).
    pub(super) fn take(&mut self, key: &str, size: u64, etag: &str) -> Option<Fetching> {
        let early = self.0.remove(key)?;
        if early.size == size && early.etag == etag {
            Some(early.task)
        } else {
            early.task.abort();
            None
        }
    }
}

impl Drop for Prefetched {
    fn drop(&mut self) {
        for (_, early) in self.0.drain() {
            early.task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn likely_changed_objects_are_those_listed_after_the_hint_within_the_limits() {
        let at = |s: u64| format!("2026-12-07T10:00:{s:02}.5Z");
        let o = |key: &str, size: u64, modified: String| Listed {
            key: key.into(),
            size,
            etag: String::new(),
            last_modified: modified,
        };
        let since: jiff::Timestamp = at(10).parse().unwrap();
        let objects = vec![
            o("old", 1, at(9)),
            o("same", 1, at(10)),
            o("new", 1, at(11)),
            o("large", PART + 1, at(11)),
            o("unparsed", 1, "yesterday".into()),
            o("part", PART, at(12)),
        ];
        let keys = |v: Vec<&Listed>| v.into_iter().map(|o| o.key.clone()).collect::<Vec<_>>();
        assert_eq!(keys(likely_changed(&objects, since)), ["new", "part"]);
        // At most so many objects, and bytes, in listed order.
        let many: Vec<Listed> = (0..PREFETCH_OBJECTS + 5)
            .map(|i| o(&format!("k{i:04}"), 1, at(11)))
            .collect();
        let got = keys(likely_changed(&many, since));
        assert_eq!(got.len(), PREFETCH_OBJECTS);
        assert_eq!(got[0], "k0000");
        let mut big: Vec<Listed> = (0..10)
            .map(|i| o(&format!("b{i}"), PART - 1, at(11)))
            .collect();
        big.push(o("small after", 1, at(11)));
        let got = keys(likely_changed(&big, since));
        let full = (PREFETCH_BYTES / PART) as usize;
        assert_eq!(got.len(), full + 1, "{got:?}");
        assert_eq!(got[full], "small after", "a small one still fits");
    }

    #[test]
    fn early_fetches_are_handed_over_only_as_listed_and_stopped_otherwise() {
        let mut running = Vec::new();
        let mut early = Prefetched::default();
        for (key, size, etag) in [("a", 1, "e1"), ("b", 2, "e2"), ("c", 3, "e3")] {
            let task = runtime().spawn(std::future::pending());
            running.push(task.abort_handle());
            let (size, etag) = (size, etag.to_string());
            early.0.insert(key.into(), Early { size, etag, task });
        }
        let a = early.take("a", 1, "e1").expect("as listed: handed over");
        assert!(early.take("b", 2, "another").is_none(), "another version");
        assert!(early.take("z", 1, "").is_none(), "never fetched");
        assert_eq!(early.len(), 1);
        drop(early);
        let stopped = |i: usize| running[i].is_finished();
        let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !(stopped(1) && stopped(2)) && std::time::Instant::now() < until {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(stopped(1), "the fetch of another version is stopped");
        assert!(stopped(2), "what was not taken is stopped with the rest");
        assert!(!stopped(0), "the one handed over runs on");
        a.abort();
    }
}
