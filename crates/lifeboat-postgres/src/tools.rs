//! Finding PostgreSQL client tools (`pg_dump`, `pg_restore`, `initdb`, ...) of a given
//! major version: the configured `pg-bin-dir`, then Debian's `/usr/lib/postgresql/<major>/bin`,
//! then `PATH` if the version there matches. A `pg_dump` older than the server cannot dump
//! it, so the match is by major version.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use crate::PgError;

#[derive(Debug, Clone)]
pub struct PgTools {
    pub bin_dir: PathBuf,
    pub major: u32,
}

impl PgTools {
    /// Tools for a server of `major` version (e.g. 15).
    pub fn find(major: u32, configured: Option<&Path>) -> Result<Self, PgError> {
        if let Some(dir) = configured {
            if !dir.join("pg_dump").exists() {
                return Err(PgError::Tools(format!(
                    "`pg-bin-dir` `{}` has no pg_dump",
                    dir.display()
                )));
            }
            return Ok(Self {
                bin_dir: dir.to_path_buf(),
                major,
            });
        }
        let mut candidates = vec![PathBuf::from(format!("/usr/lib/postgresql/{major}/bin"))];
        candidates.push(PathBuf::from(format!("/usr/pgsql-{major}/bin")));
        if let Some(path) = std::env::var_os("PATH") {
            candidates.extend(std::env::split_paths(&path));
        }
        for dir in candidates {
            let pg_dump = dir.join("pg_dump");
            if pg_dump.exists() && version_major(&pg_dump) == Some(major) {
                return Ok(Self {
                    bin_dir: dir,
                    major,
                });
            }
        }
        Err(PgError::Tools(format!(
            "no pg_dump of PostgreSQL {major} found (looked in /usr/lib/postgresql/{major}/bin and PATH)"
        )))
    }

    /// The newest installed major version (for throwaway clusters).
    pub fn newest_installed() -> Result<Self, PgError> {
        let mut majors: Vec<u32> = std::fs::read_dir("/usr/lib/postgresql")
            .map(|rd| {
                rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        majors.sort_unstable();
        for major in majors.into_iter().rev() {
            let dir = PathBuf::from(format!("/usr/lib/postgresql/{major}/bin"));
            if dir.join("initdb").exists() {
                return Ok(Self {
                    bin_dir: dir,
                    major,
                });
            }
        }
        Err(PgError::Tools(
            "no PostgreSQL server installed (no /usr/lib/postgresql/*/bin/initdb)".into(),
        ))
    }

    pub fn path(&self, tool: &str) -> PathBuf {
        self.bin_dir.join(tool)
    }

    pub fn command(&self, tool: &str) -> Command {
        Command::new(self.path(tool))
    }

    /// `pg_dump --version`'s number, e.g. `15.8`.
    pub fn version(&self, tool: &str) -> String {
        Command::new(self.path(tool))
            .arg("--version")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.split_whitespace().nth(2).map(str::to_string))
            .unwrap_or_else(|| "unknown".into())
    }
}

fn version_major(tool: &Path) -> Option<u32> {
    let out = Command::new(tool).arg("--version").output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let version = text.split_whitespace().nth(2)?;
    version.split('.').next()?.parse().ok()
}
