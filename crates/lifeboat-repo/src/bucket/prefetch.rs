//! Objects fetched before a backup knows it will read them: while the repository opens
//! (deriving its key takes a few tenths of a second), the objects a hint says probably
//! changed ([`likely_changed`], from [`crate::HintKey`]) are fetched as the read-ahead
//! would fetch them, and the read-ahead takes each over if it reads that object as listed.

use std::{
    collections::{HashMap, HashSet},
    sync::{Mutex, MutexGuard},
};

use super::{AHEAD_REQUESTS, Bucket, Get, Head, Listed, PART, get};
use crate::store::runtime;

/// The early fetches, by key. The read-ahead takes one over if it reads that object as
/// listed (same key, size and ETag); what is not taken is dropped with it (its fetches
/// stopped).
#[derive(Default)]
pub struct Prefetched(Mutex<HashMap<String, Early>>);

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
/// listed: both are the server's clock), in listed order, within [`PREFETCH_OBJECTS`] and
/// [`PREFETCH_BYTES`], small enough for one GET.
pub fn likely_changed(objects: &[Listed], since: jiff::Timestamp) -> Vec<&Listed> {
    let mut bytes = 0;
    objects
        .iter()
        .filter(|o| o.size <= PART)
        .filter(|o| {
            o.last_modified
                .parse::<jiff::Timestamp>()
                .is_ok_and(|t| t > since)
        })
        .take_while(|o| {
            bytes += o.size;
            bytes <= PREFETCH_BYTES
        })
        .take(PREFETCH_OBJECTS)
        .collect()
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
        Prefetched(Mutex::new(fetches))
    }
}

impl Prefetched {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Early>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many objects are being fetched or were.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The fetch of `key`, if it was of the version `size` and `etag` say.
    pub(super) fn take(&self, key: &str, size: u64, etag: &str) -> Option<Fetching> {
        let early = self.lock().remove(key)?;
        if early.size == size && early.etag == etag {
            Some(early.task)
        } else {
            early.task.abort();
            None
        }
    }

    /// Stop (and drop) the fetches of objects not in `keep`.
    pub(super) fn keep_only(&self, keep: &HashSet<&str>) {
        self.lock().retain(|key, early| {
            let kept = keep.contains(key.as_str());
            if !kept {
                early.task.abort();
            }
            kept
        });
    }
}

impl Drop for Prefetched {
    fn drop(&mut self) {
        for (_, early) in self.lock().drain() {
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
        let big: Vec<Listed> = (0..10).map(|i| o(&format!("b{i}"), PART, at(11))).collect();
        let got = likely_changed(&big, since);
        assert_eq!(got.len() as u64, PREFETCH_BYTES / PART);
        assert!(got.iter().map(|o| o.size).sum::<u64>() <= PREFETCH_BYTES);
    }
}
