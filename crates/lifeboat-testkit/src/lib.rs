//! Test harness: real PostgreSQL clusters on free ports (stopped and removed on drop) and a
//! scratch workspace with a repository, a password file and a config, plus a runner for the
//! `lifeboat` binary. No mocks: every test talks to real servers and real tools.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

pub use lifeboat_postgres::Cluster;
use lifeboat_postgres::PgTools;

/// Start a throwaway PostgreSQL cluster of the newest installed version.
pub fn postgres() -> Cluster {
    let tools = PgTools::newest_installed()
        .expect("PostgreSQL server binaries are needed: run `bash scripts/install-deps.sh`");
    Cluster::start(&tools, &[]).expect("start a throwaway PostgreSQL cluster")
}

/// Start a cluster that archives WAL with `archive_command` (quoted here).
pub fn postgres_archiving(archive_command: &str) -> Cluster {
    let tools = PgTools::newest_installed()
        .expect("PostgreSQL server binaries are needed: run `bash scripts/install-deps.sh`");
    let quoted = format!("'{}'", archive_command.replace('\'', "''"));
    Cluster::start(
        &tools,
        &[
            ("wal_level", "replica"),
            ("archive_mode", "on"),
            ("archive_command", &quoted),
            ("max_wal_senders", "5"),
        ],
    )
    .expect("start an archiving PostgreSQL cluster")
}

/// A scratch folder holding a repository, its password and a config.
pub struct Workspace {
    dir: tempfile::TempDir,
    bin: PathBuf,
}

/// What a `lifeboat` run printed and returned.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(out: Output) -> Self {
        Self {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Parse stdout as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    /// Panic with the whole output unless the exit code is `code`.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "expected exit {code}, got {}\nstdout:\n{}\nstderr:\n{}",
            self.code, self.stdout, self.stderr
        );
        self
    }
}

impl Workspace {
    /// `bin` is the lifeboat binary (`env!("CARGO_BIN_EXE_lifeboat")` in the binary's tests).
    pub fn new(bin: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("lifeboat-test-")
            .tempdir()
            .expect("create workspace");
        std::fs::write(
            dir.path().join("password"),
            "correct horse battery staple\n",
        )
        .expect("write password");
        Self {
            dir,
            bin: PathBuf::from(bin),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Hand the workspace to the server's user (when we are root), so that the server's
    /// `archive_command` / `restore_command` can read the config and write the archive.
    pub fn share_with_server(&self) {
        lifeboat_postgres::physical::hand_over(self.path()).expect("hand the workspace over");
    }

    pub fn repo(&self) -> PathBuf {
        self.path().join("repo")
    }

    pub fn config_path(&self) -> PathBuf {
        self.path().join("lifeboat.toml")
    }

    /// Write the config: the repository section plus `rest` (targets, retention).
    pub fn write_config(&self, rest: &str) {
        let text = format!(
            "[repository]\nurl = \"{}\"\npassword-file = \"{}\"\n\n{rest}\n",
            self.repo().display(),
            self.path().join("password").display()
        );
        std::fs::write(self.config_path(), text).expect("write config");
    }

    /// A `lifeboat` command with this workspace's config and a clean environment.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("-c").arg(self.config_path()).args(args);
        for (k, _) in std::env::vars() {
            if k.starts_with("LIFEBOAT_") {
                cmd.env_remove(k);
            }
        }
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Run {
        Run::from(self.command(args).output().expect("run lifeboat"))
    }

    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut cmd = self.command(args);
        cmd.envs(env.iter().copied());
        Run::from(cmd.output().expect("run lifeboat"))
    }
}

/// A postgres target section for `url`.
pub fn postgres_target(name: &str, url: &str) -> String {
    format!(
        "[targets.{name}]\nkind = \"postgres\"\nurl = \"{url}\"\nobjectives = {{ rpo = \"1h\", rto = \"1h\" }}\n"
    )
}
