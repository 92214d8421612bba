//! `kind = "bucket"` targets: an S3-compatible bucket (or a prefix of one).
//!
//! backup: the objects are listed (key, size, ETag, last-modified); objects that changed
//! since the previous snapshot of the same bucket (or are new) are read (small ones ahead
//! of the archiver, large ones in ranged GETs), their content type and user metadata taken
//! from the GET replies (a HEAD only for empty objects); unchanged ones are linked from the
//! previous snapshot without a request (their records are carried over). An object deleted
//! since the listing, or whose reply came from another version than the one listed, is left
//! out: named in a warning and in the manifest's `left-out`, read again next time. Objects
//! are stored as `<target>/bucket/<key>`; the manifest holds every key with its size,
//! SHA-256, ETag, last-modified, content type and metadata.
//!
//! restore: all objects, those under `--prefix`, or one `--key`, into `--to s3://bucket[/p]`
//! (default: the target's own bucket), with content type and metadata, each hashed on the
//! way and compared with the manifest. Existing objects are refused without `--force`; with
//! it, an emergency backup of the destination comes first.

mod backup;
mod drill;
mod restore;

pub use restore::{as_files, parallel, write_objects};

use super::Summary;
use lifeboat_core::Manifest;

use crate::EngineError;

kind!(
    BucketKind,
    "bucket",
    backup::backup,
    restore::plan,
    summary,
    drill::rehearse,
    crate::restore::live::server;
    prestart = backup::prestart
);

/// What a snapshot holds: its objects.
fn summary(m: &Manifest) -> Summary {
    m.bucket.as_ref().map_or_else(Summary::default, |b| {
        let mut d = format!("{} objects ({} downloaded", b.objects.len(), b.downloaded);
        if !b.left_out.is_empty() {
            d.push_str(&format!(", {} left out", b.left_out.len()));
        }
        Summary {
            words: d + ")",
            files: b.objects.len(),
            ..Summary::default()
        }
    })
}

/// How many objects are asked for their metadata, or written back, at once (an S3 PUT
/// waits tens of milliseconds for the server: many run at once).
const PARALLEL: usize = 16;

/// An error of the bucket backed up or restored into (not of the repository).
pub(crate) fn bucket_err(e: lifeboat_repo::StoreError) -> EngineError {
    EngineError::failure(format!("bucket {e}"), e.hint())
}
