//! Local files as snapshot entries: walks the configured paths depth-first in path order
//! (what the archiver needs), applies exclude globs, and keeps each file's [`StreamStat`]
//! so that a file that could not be read fails the backup instead of being left out
//! silently, as rustic's own local source would do.
//!
//! Sockets, FIFOs and devices are skipped and reported; this module stores no ownership
//! beyond the numeric ids and mode.

use std::{
    os::unix::fs::MetadataExt,
    path::{Component, Path, PathBuf},
    sync::Arc,
};

use rustic_core::repofile::Metadata;

use crate::source::{Content, SourceEntry, StreamStat};

/// A file that will be read, with where its stats land.
pub struct WalkedFile {
    pub source: PathBuf,
    pub stat: Arc<StreamStat>,
}

/// The entries of a files backup, plus what the manifest needs.
pub struct Walk {
    pub entries: Vec<SourceEntry>,
    pub files: Vec<WalkedFile>,
    pub total_bytes: u64,
    pub symlinks: u64,
    pub skipped: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    #[error("cannot read `{path}`: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("path `{0}` must be absolute")]
    NotAbsolute(PathBuf),
    #[error("invalid exclude pattern `{0}`")]
    Pattern(String),
}

/// Walk `roots`, placing them under `prefix` inside the snapshot (`/srv/x` → `prefix/srv/x`).
pub fn walk(roots: &[PathBuf], excludes: &[String], prefix: &Path) -> Result<Walk, WalkError> {
    let patterns: Vec<Glob> = excludes
        .iter()
        .map(|p| Glob::new(p).ok_or_else(|| WalkError::Pattern(p.clone())))
        .collect::<Result<_, _>>()?;
    let mut roots: Vec<PathBuf> = roots.to_vec();
    for r in &roots {
        if !r.is_absolute() {
            return Err(WalkError::NotAbsolute(r.clone()));
        }
    }
    roots.sort_by(|a, b| a.components().cmp(b.components()));
    roots.dedup();
    // A root inside another root is walked with its parent.
    let roots: Vec<PathBuf> = roots
        .iter()
        .filter(|r| !roots.iter().any(|o| o != *r && r.starts_with(o)))
        .cloned()
        .collect();
    let mut walk = Walk {
        entries: Vec::new(),
        files: Vec::new(),
        total_bytes: 0,
        symlinks: 0,
        skipped: Vec::new(),
    };
    for root in &roots {
        visit(root, &patterns, prefix, &mut walk)?;
    }
    Ok(walk)
}

fn inside(prefix: &Path, path: &Path) -> PathBuf {
    let rel: PathBuf = path
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect();
    prefix.join(rel)
}

fn metadata_of(m: &std::fs::Metadata) -> Metadata {
    Metadata {
        mode: Some(m.mode()),
        mtime: jiff::Timestamp::new(m.mtime(), m.mtime_nsec() as i32).ok(),
        atime: jiff::Timestamp::new(m.atime(), m.atime_nsec() as i32).ok(),
        ctime: jiff::Timestamp::new(m.ctime(), m.ctime_nsec() as i32).ok(),
        uid: Some(m.uid()),
        gid: Some(m.gid()),
        inode: m.ino(),
        device_id: m.dev(),
        size: if m.is_file() { m.len() } else { 0 },
        links: if m.is_dir() { 0 } else { m.nlink() },
        ..Default::default()
    }
}

fn visit(path: &Path, patterns: &[Glob], prefix: &Path, walk: &mut Walk) -> Result<(), WalkError> {
    if patterns.iter().any(|g| g.matches(path)) {
        return Ok(());
    }
    let io = |source| WalkError::Io {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::symlink_metadata(path).map_err(io)?;
    let target = inside(prefix, path);
    let ft = meta.file_type();
    if ft.is_dir() {
        walk.entries.push(SourceEntry {
            path: target,
            meta: metadata_of(&meta),
            content: Content::Dir,
            stat: None,
        });
        let mut children: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(io)?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()
            .map_err(io)?;
        children.sort();
        for child in children {
            visit(&child, patterns, prefix, walk)?;
        }
    } else if ft.is_file() {
        let stat = StreamStat::new();
        walk.total_bytes += meta.len();
        walk.files.push(WalkedFile {
            source: path.to_path_buf(),
            stat: stat.clone(),
        });
        walk.entries.push(SourceEntry {
            path: target,
            meta: metadata_of(&meta),
            content: Content::File(path.to_path_buf()),
            stat: Some(stat),
        });
    } else if ft.is_symlink() {
        let link = std::fs::read_link(path).map_err(io)?;
        walk.symlinks += 1;
        walk.entries.push(SourceEntry {
            path: target,
            meta: metadata_of(&meta),
            content: Content::Symlink(link.to_string_lossy().into_owned()),
            stat: None,
        });
    } else {
        walk.skipped.push(path.display().to_string());
    }
    Ok(())
}

/// A small glob: `*` (within a name), `**` (any depth), `?`. A pattern without `/`
/// matches a file or directory name anywhere; one with `/` matches the whole path.
struct Glob {
    pattern: Vec<char>,
    name_only: bool,
}

impl Glob {
    fn new(pattern: &str) -> Option<Self> {
        if pattern.is_empty() {
            return None;
        }
        Some(Self {
            name_only: !pattern.contains('/'),
            pattern: pattern.chars().collect(),
        })
    }

    fn matches(&self, path: &Path) -> bool {
        let text: Vec<char> = if self.name_only {
            match path.file_name() {
                Some(n) => n.to_string_lossy().chars().collect(),
                None => return false,
            }
        } else {
            path.to_string_lossy().chars().collect()
        };
        glob_match(&self.pattern, &text)
    }
}

fn glob_match(p: &[char], t: &[char]) -> bool {
    match p.first() {
        None => t.is_empty(),
        Some('*') if p.get(1) == Some(&'*') => {
            let rest = &p[2..];
            (0..=t.len()).any(|i| glob_match(rest, &t[i..]))
        }
        Some('*') => {
            let rest = &p[1..];
            (0..=t.len())
                .take_while(|&i| i == 0 || t[i - 1] != '/')
                .any(|i| glob_match(rest, &t[i..]))
        }
        Some('?') => !t.is_empty() && t[0] != '/' && glob_match(&p[1..], &t[1..]),
        Some(c) => t.first() == Some(c) && glob_match(&p[1..], &t[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        let g = |p: &str, path: &str| Glob::new(p).unwrap().matches(Path::new(path));
        assert!(g("*.tmp", "/srv/app/x.tmp"));
        assert!(!g("*.tmp", "/srv/app/x.tmpl"));
        assert!(g("/srv/**/cache", "/srv/a/b/cache"));
        assert!(!g("/srv/*/cache", "/srv/a/b/cache"));
        assert!(g("node_modules", "/srv/app/node_modules"));
    }

    #[test]
    fn walks_in_path_order_with_excludes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("app");
        std::fs::create_dir_all(root.join("b")).unwrap();
        std::fs::write(root.join("a.txt"), "a").unwrap();
        std::fs::write(root.join("b/c.txt"), "cc").unwrap();
        std::fs::write(root.join("b/skip.tmp"), "x").unwrap();
        std::os::unix::fs::symlink("a.txt", root.join("link")).unwrap();
        let w = walk(
            std::slice::from_ref(&root),
            &["*.tmp".into()],
            Path::new("t/files"),
        )
        .unwrap();
        let paths: Vec<String> = w
            .entries
            .iter()
            .map(|e| {
                e.path
                    .strip_prefix("t/files")
                    .unwrap()
                    .display()
                    .to_string()
            })
            .collect();
        let base = root.strip_prefix("/").unwrap().display().to_string();
        assert_eq!(
            paths,
            vec![
                base.clone(),
                format!("{base}/a.txt"),
                format!("{base}/b"),
                format!("{base}/b/c.txt"),
                format!("{base}/link"),
            ]
        );
        assert_eq!(w.total_bytes, 3);
        assert_eq!(w.files.len(), 2);
        assert_eq!(w.symlinks, 1);
    }

    #[test]
    fn a_missing_path_is_an_error() {
        let err = walk(
            &[PathBuf::from("/nonexistent/lifeboat")],
            &[],
            Path::new("t"),
        )
        .err();
        assert!(matches!(err, Some(WalkError::Io { .. })));
    }
}
