//! Test harness: real PostgreSQL clusters and S3 servers on free ports (stopped and removed
//! on drop), a fault-injecting proxy, and a scratch workspace with a repository (a folder
//! or a bucket), a password file and a config, plus a runner for the `lifeboat` binary. No
//! mocks: every test talks to real servers and real tools.

pub mod iam;
pub mod redis;
pub mod s3;
pub mod tls;

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

/// Where `scripts/install-deps.sh` puts PostgreSQL 17's binaries (a second server version,
/// beside Debian's).
pub const PG17_BIN: &str = "/opt/lifeboat-test/postgresql-17/bin";

/// Start a throwaway PostgreSQL 17 cluster (from [`PG17_BIN`]).
pub fn postgres17() -> Cluster {
    let tools = PgTools::find(17, Some(Path::new(PG17_BIN)))
        .expect("PostgreSQL 17's binaries are needed: run `bash scripts/install-deps.sh`");
    Cluster::start(&tools, &[]).expect("start a throwaway PostgreSQL 17 cluster")
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
    /// `Some((endpoint, bucket))`: the repository is `s3://bucket/repo` there.
    s3: Option<(String, String)>,
}

/// What a `lifeboat` run printed and returned.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(out: Output) -> Self {
        Self {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl Run {
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

    /// Panic with stdout unless it contains every one of `parts` and none of `absent`.
    #[track_caller]
    pub fn expect_stdout(&self, parts: &[&str], absent: &[&str]) -> &Self {
        for p in parts {
            assert!(
                self.stdout.contains(p),
                "no {p:?} in stdout:\n{}",
                self.stdout
            );
        }
        for a in absent {
            assert!(
                !self.stdout.contains(a),
                "{a:?} in stdout:\n{}",
                self.stdout
            );
        }
        self
    }

    /// Panic with stderr unless it contains every one of `parts` and none of `absent`.
    #[track_caller]
    pub fn expect_stderr(&self, parts: &[&str], absent: &[&str]) -> &Self {
        for p in parts {
            assert!(
                self.stderr.contains(p),
                "no {p:?} in stderr:\n{}",
                self.stderr
            );
        }
        for a in absent {
            assert!(
                !self.stderr.contains(a),
                "{a:?} in stderr:\n{}",
                self.stderr
            );
        }
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
            s3: None,
        }
    }

    /// A workspace whose repository is `s3://bucket/repo` at `endpoint` (an S3 server or
    /// a fault proxy in front of one); lifeboat gets the test credentials.
    pub fn s3(bin: &str, endpoint: &str, bucket: &str) -> Self {
        let mut ws = Self::new(bin);
        ws.s3 = Some((endpoint.to_string(), bucket.to_string()));
        ws
    }

    /// The repository URL in the config.
    pub fn repo_url(&self) -> String {
        match &self.s3 {
            Some((_, bucket)) => format!("s3://{bucket}/repo"),
            None => self.repo().display().to_string(),
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
        let s3 = match &self.s3 {
            Some((endpoint, _)) => format!("endpoint = \"{endpoint}\"\npath-style = true\n"),
            None => String::new(),
        };
        let text = format!(
            "[repository]\nurl = \"{}\"\npassword-file = \"{}\"\n{s3}\n{rest}\n",
            self.repo_url(),
            self.path().join("password").display()
        );
        std::fs::write(self.config_path(), text).expect("write config");
    }

    /// A files target `d` of the folder `data` in the config, the repository created, and
    /// one backup of it taken.
    pub fn files_target_backed_up(&self, data: &Path) {
        self.write_config(&format!(
            "[targets.d]\nkind = \"files\"\npaths = [\"{}\"]\n",
            data.display()
        ));
        self.run(&["init"]).expect_code(0);
        self.run(&["backup", "d"]).expect_code(0);
    }

    /// Every snapshot, as `lifeboat snapshots --json` lists them.
    pub fn snapshots(&self) -> Vec<serde_json::Value> {
        self.run(&["snapshots", "--json"]).json()["snapshots"]
            .as_array()
            .expect("a list of snapshots")
            .clone()
    }

    /// `lifeboat ARGS` started in the background, its output captured (for [`terminate`]).
    pub fn spawn(&self, args: &[&str]) -> std::process::Child {
        self.spawn_env(args, &[])
    }

    /// [`Workspace::spawn`] with more environment variables.
    pub fn spawn_env(
        &self,
        args: &[&str],
        env: &[(&str, &dyn AsRef<std::ffi::OsStr>)],
    ) -> std::process::Child {
        self.command(args)
            .envs(env.iter().map(|(k, v)| (k, v.as_ref())))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start lifeboat")
    }

    /// A `lifeboat` command with this workspace's config and a clean environment; its
    /// local caches (rustic's, lifeboat's manifests and hints) in the workspace's `cache`.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("-c").arg(self.config_path()).args(args);
        cmd.env("XDG_CACHE_HOME", self.path().join("cache"));
        for (k, _) in std::env::vars() {
            if k.starts_with("LIFEBOAT_") || k.starts_with("AWS_") {
                cmd.env_remove(k);
            }
        }
        if self.s3.is_some() {
            cmd.env("AWS_ACCESS_KEY_ID", s3::ACCESS_KEY)
                .env("AWS_SECRET_ACCESS_KEY", s3::SECRET_KEY);
        }
        cmd
    }

    /// Run `restic` (the peer) on this workspace's repository; panics unless it succeeds.
    pub fn restic(&self, args: &[&str]) -> Vec<u8> {
        let repo = match &self.s3 {
            Some((endpoint, bucket)) => format!("s3:{endpoint}/{bucket}/repo"),
            None => self.repo().display().to_string(),
        };
        let out = Command::new("restic")
            .args(["--no-cache", "-r", &repo])
            .args(args)
            .env("RESTIC_PASSWORD_FILE", self.path().join("password"))
            .env("AWS_ACCESS_KEY_ID", s3::ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", s3::SECRET_KEY)
            .output()
            .expect("restic is installed (scripts/install-deps.sh)");
        assert!(
            out.status.success(),
            "restic {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
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

/// Send SIGTERM to a running `lifeboat` (what a service manager or Ctrl-C does) and wait
/// for it.
pub fn terminate(child: std::process::Child) -> Run {
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(sent.success(), "kill -TERM {}", child.id());
    Run::from(child.wait_with_output().expect("wait for lifeboat"))
}

/// Stop a server `pg`'s tools started on data directory `dir` (a restored one), at once.
pub fn stop_server(pg: &Cluster, dir: &Path) {
    let _ = pg
        .server_command("pg_ctl")
        .args([
            "-D",
            &dir.to_string_lossy(),
            "-m",
            "immediate",
            "-w",
            "stop",
        ])
        .output();
}

/// Run `q` with psql on database `db` of the server `pg`'s tools reach at `port` (the
/// cluster's own, or a restored copy's); its output, unaligned and trimmed. Panics on an
/// error.
pub fn sql_at(pg: &Cluster, port: u16, db: &str, q: &str) -> String {
    let out = Command::new(pg.tools().path("psql"))
        .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
        .args(["-p", &port.to_string(), "-U", "postgres", "-d", db, "-c", q])
        .env("PGPASSWORD", &pg.password)
        .output()
        .expect("run psql");
    assert!(out.status.success(), "{q}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A postgres target section for `url`.
pub fn postgres_target(name: &str, url: &str) -> String {
    format!(
        "[targets.{name}]\nkind = \"postgres\"\nurl = \"{url}\"\nobjectives = {{ rpo = \"1h\", rto = \"1h\" }}\n"
    )
}

/// A small tmpfs mounted at a folder (`size=4m`, `size=64m,nr_inodes=10`, …): a disk that
/// fills up. Unmounted when dropped. Mounting needs root, as installing the test
/// dependencies does.
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    pub fn mount(at: &Path, options: &str) -> Self {
        std::fs::create_dir_all(at).expect("create the mount point");
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(at)
            .status()
            .expect("run mount");
        assert!(
            ok.success(),
            "mounting a tmpfs at {} needs root",
            at.display()
        );
        Self(at.to_path_buf())
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// `len` bytes that do not compress (xorshift from `seed`): the same every time.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// What an HTTP server answered: the status code, the head (status line and headers) and
/// the body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Answer {
    /// The value of header `name` (case-insensitive), if present.
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }
}

/// One HTTP/1.1 request to 127.0.0.1:`port` with extra `headers` and `body`; the server
/// closes the connection after answering.
pub fn http_request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Answer {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).expect("send");
    let mut reply = String::new();
    s.read_to_string(&mut reply).expect("read the answer");
    let (head, body) = reply.split_once("\r\n\r\n").unwrap_or((&reply, ""));
    Answer {
        status: head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0),
        head: head.to_string(),
        body: body.to_string(),
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Poll `ok` every 200 ms until it holds; fail the test naming `what` after `limit`.
pub fn wait_for(what: &str, limit: std::time::Duration, mut ok: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + limit;
    while !ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// Open `html` in headless Chromium: no console errors, the charts `ids` are in the DOM and
/// drawn, and a screenshot (`shot`, kept under the target's tmp dir) is a real picture.
pub fn render_in_chromium(html: &Path, ids: &[&str], shot: &str) {
    let dom = open_in_chromium(&format!("file://{}", html.display()), shot, (1200, 1800));
    for id in ids {
        assert!(dom.contains(&format!("id=\"{id}\"")), "chart {id} missing");
    }
    assert!(
        dom.contains("<rect") && dom.contains("<circle"),
        "charts are empty"
    );
}

/// Load `url` in headless Chromium at `window` (width, height): no console errors (a
/// Content-Security-Policy violation is one), a screenshot (`shot`, kept under the target's
/// `target/artifacts`) that is a real picture; the DOM as Chromium built it.
pub fn open_in_chromium(url: &str, shot: &str, (width, height): (u32, u32)) -> String {
    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = artifacts.join(shot);
    let _ = std::fs::remove_file(&shot);
    let chromium = |extra: &[&str]| {
        let profile = tempfile::tempdir().unwrap();
        let out = std::process::Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--enable-logging=stderr",
                "--v=0",
            ])
            .arg(format!("--window-size={width},{height}"))
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(extra)
            .arg(url)
            .output()
            .expect("chromium is needed: run `bash scripts/install-deps.sh`");
        assert!(out.status.success(), "chromium failed: {out:?}");
        out
    };
    let dom = chromium(&["--dump-dom"]);
    let stderr = String::from_utf8_lossy(&dom.stderr);
    // Console lines read `INFO:CONSOLE:1] "…"` (`:CONSOLE(1)` in older builds); a blocked
    // inline style under the page's Content-Security-Policy is one of them.
    assert!(
        !stderr.contains(":CONSOLE") && !stderr.contains("Uncaught"),
        "console errors: {stderr}"
    );
    chromium(&[&format!("--screenshot={}", shot.display())]);
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
    String::from_utf8_lossy(&dom.stdout).into_owned()
}
