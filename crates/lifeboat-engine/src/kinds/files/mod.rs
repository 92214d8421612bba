//! `kind = "files"`: the configured paths, each file hashed as it is stored; restored
//! below a folder (`--to-dir`), every file's size and SHA-256 checked.

mod backup;
pub(crate) mod drill;
mod restore;

pub use restore::{FileCheck, restore_files_to, verify_files};

use super::Summary;
use lifeboat_core::Manifest;

kind!(
    Files,
    "files",
    backup::backup,
    restore::plan,
    summary,
    drill::rehearse,
    crate::restore::live::files
);

/// What a snapshot holds: its files.
fn summary(m: &Manifest) -> Summary {
    m.files.as_ref().map_or_else(Summary::default, |f| Summary {
        words: format!("{} files", f.files.len()),
        files: f.files.len(),
        ..Summary::default()
    })
}
