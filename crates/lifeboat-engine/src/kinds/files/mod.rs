//! `kind = "files"`: the configured paths, each file hashed as it is stored; restored
//! below a folder (`--to-dir`), every file's size and SHA-256 checked.

mod backup;
pub(crate) mod drill;
mod restore;

pub use restore::{FileCheck, restore_files_to, verify_files};

use lifeboat_core::Manifest;

kind!(
    Files,
    "files",
    backup::backup,
    restore::plan,
    content,
    drill::rehearse
);

/// What a snapshot holds, in words.
fn content(m: &Manifest) -> String {
    m.files
        .as_ref()
        .map_or_else(String::new, |f| format!("{} files", f.files.len()))
}
