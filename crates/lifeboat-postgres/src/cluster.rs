//! Throwaway PostgreSQL clusters on free ports: for `lifeboat demo`, for drills (later) and
//! for tests. `initdb` refuses to run as root, so as root every server tool runs as the
//! `postgres` user, and the cluster's folder is handed to it.
//!
//! The cluster listens on 127.0.0.1 only, requires a password over TCP (a random one, so
//! that authentication is real), and is stopped and removed on drop.

use std::{
    io::Write,
    net::TcpListener,
    os::unix::{fs::MetadataExt, process::CommandExt},
    path::{Path, PathBuf},
    process::Command,
};

use crate::{PgError, PgTools};

pub struct Cluster {
    dir: Option<tempfile::TempDir>,
    root: PathBuf,
    pub port: u16,
    pub password: String,
    tools: PgTools,
    run_as: Option<(u32, u32)>,
    running: bool,
}

/// The `postgres` user's uid and gid when we are root and must not run server tools as
/// ourselves.
pub fn server_user() -> Result<Option<(u32, u32)>, PgError> {
    let euid = std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(u32::MAX);
    if euid != 0 {
        return Ok(None);
    }
    let passwd = std::fs::read_to_string("/etc/passwd")
        .map_err(|e| PgError::Io(format!("cannot read /etc/passwd: {e}")))?;
    for line in passwd.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() > 3 && f[0] == "postgres" {
            return match (f[2].parse(), f[3].parse()) {
                (Ok(uid), Ok(gid)) => Ok(Some((uid, gid))),
                _ => Err(PgError::Io(format!(
                    "the `postgres` user in /etc/passwd has no numeric uid and gid: `{line}`"
                ))),
            };
        }
    }
    Err(PgError::Io(
        "running as root, but there is no `postgres` user to run the server as".into(),
    ))
}

/// A command for a server tool (`pg_ctl`, `initdb`), run as the `postgres` user when we
/// are root.
pub fn server_tool(tools: &PgTools, tool: &str) -> Result<Command, PgError> {
    let mut cmd = tools.command(tool);
    cmd.env_remove("PGDATA");
    if let Some((uid, gid)) = server_user()? {
        cmd.uid(uid).gid(gid);
    }
    Ok(cmd)
}

/// A free TCP port on 127.0.0.1 (free now; the caller retries if it is taken meanwhile).
pub fn free_port() -> Result<u16, PgError> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| PgError::Io(format!("no free port: {e}")))
}

fn random_password() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(std::process::id().into());
    format!("lb{:016x}", h.finish())
}

impl Cluster {
    /// initdb and start a cluster with `settings` appended to postgresql.conf.
    pub fn start(tools: &PgTools, settings: &[(&str, &str)]) -> Result<Self, PgError> {
        let io = |what: &str| {
            let what = what.to_string();
            move |e: std::io::Error| PgError::Io(format!("{what}: {e}"))
        };
        let dir = tempfile::Builder::new()
            .prefix("lifeboat-pg-")
            .tempdir()
            .map_err(io("create cluster folder"))?;
        let root = dir.path().to_path_buf();
        let run_as = server_user()?;
        let password = random_password();
        let pwfile = root.join("pwfile");
        std::fs::write(&pwfile, format!("{password}\n")).map_err(io("write password file"))?;
        std::fs::create_dir(root.join("sock")).map_err(io("create socket folder"))?;
        if let Some((uid, gid)) = run_as {
            for p in [root.as_path(), &pwfile, &root.join("sock")] {
                std::os::unix::fs::chown(p, Some(uid), Some(gid))
                    .map_err(io("chown cluster folder"))?;
            }
        }
        let mut cluster = Self {
            dir: Some(dir),
            root,
            port: 0,
            password,
            tools: tools.clone(),
            run_as,
            running: false,
        };
        cluster.run(
            "initdb",
            &[
                "-D",
                &cluster.data().display().to_string(),
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                &format!("--pwfile={}", pwfile.display()),
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ],
        )?;
        let _ = std::fs::remove_file(&pwfile);
        for attempt in 0..5 {
            cluster.port = free_port()?;
            let mut conf = std::fs::OpenOptions::new()
                .append(true)
                .open(cluster.data().join("postgresql.conf"))
                .map_err(io("open postgresql.conf"))?;
            let mut text = format!(
                "\n# lifeboat throwaway cluster\nport = {}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\nfsync = off\nfull_page_writes = off\nsynchronous_commit = off\nmax_connections = 40\n",
                cluster.port,
                cluster.root.join("sock").display()
            );
            for (k, v) in settings {
                text.push_str(&format!("{k} = {v}\n"));
            }
            conf.write_all(text.as_bytes())
                .map_err(io("write postgresql.conf"))?;
            let log = cluster.root.join("server.log").display().to_string();
            match cluster.run(
                "pg_ctl",
                &[
                    "-D",
                    &cluster.data().display().to_string(),
                    "-l",
                    &log,
                    "-w",
                    "-t",
                    "60",
                    "start",
                ],
            ) {
                Ok(()) => {
                    cluster.running = true;
                    return Ok(cluster);
                }
                Err(e) if attempt < 4 => log::debug!("cluster start failed, retrying: {e}"),
                Err(e) => {
                    let tail = std::fs::read_to_string(&log).unwrap_or_default();
                    return Err(PgError::Io(format!("{e}; server log: {}", tail.trim())));
                }
            }
        }
        Err(PgError::Io("cluster did not start".into()))
    }

    pub fn data(&self) -> PathBuf {
        self.root.join("data")
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn tools(&self) -> &PgTools {
        &self.tools
    }

    /// A URL for database `db` as the `postgres` superuser.
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://postgres:{}@127.0.0.1:{}/{db}",
            self.password, self.port
        )
    }

    /// Run a server tool (as the `postgres` user when we are root).
    pub fn run(&self, tool: &str, args: &[&str]) -> Result<(), PgError> {
        let mut cmd = self.server_command(tool);
        cmd.args(args);
        let out = cmd
            .output()
            .map_err(|e| PgError::Io(format!("cannot run {tool}: {e}")))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(PgError::Io(format!(
                "{tool} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )))
        }
    }

    /// A command for a server tool, as the server's user.
    pub fn server_command(&self, tool: &str) -> Command {
        let mut cmd = self.tools.command(tool);
        cmd.current_dir(&self.root).env_remove("PGDATA");
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid).gid(gid);
        }
        cmd
    }

    /// Run SQL through psql as the superuser (for setup; stops at the first error).
    pub fn psql(&self, db: &str, sql: &str) -> Result<String, PgError> {
        let out = self
            .tools
            .command("psql")
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(self.root.join("sock"))
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                db,
                "-c",
                sql,
            ])
            .output()
            .map_err(|e| PgError::Io(format!("cannot run psql: {e}")))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(PgError::Io(format!(
                "psql failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )))
        }
    }

    /// Stop the server now (`immediate`: a throwaway cluster needs no clean shutdown).
    pub fn stop(&mut self) {
        if self.running {
            let data = self.data().display().to_string();
            let _ = self.run("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"]);
            self.running = false;
        }
    }

    /// Start a stopped cluster again, on the same port with the same data.
    pub fn start_again(&mut self) -> Result<(), PgError> {
        if !self.running {
            let data = self.data().display().to_string();
            let log = self.root.join("server.log").display().to_string();
            self.run(
                "pg_ctl",
                &["-D", &data, "-l", &log, "-w", "-t", "60", "start"],
            )?;
            self.running = true;
        }
        Ok(())
    }

    /// Keep the folder after drop (for debugging a failed test).
    pub fn keep(&mut self) -> PathBuf {
        if let Some(d) = self.dir.take() {
            return d.keep();
        }
        self.root.clone()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}
