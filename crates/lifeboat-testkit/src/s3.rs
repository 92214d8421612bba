//! Real S3-protocol servers for tests on a free port — `moto[server]` from PyPI (in memory;
//! create-only writes are atomic, but it accepts any credentials) and `s3s-fs` from
//! crates.io (objects in a folder; it checks request signatures) — and a fault-injecting
//! proxy to put between lifeboat and either.
//!
//! The proxy serves one request per connection (it answers `Connection: close`), so every
//! request can meet its own fault: a 500/503 reply, a dropped connection, or a delay. Faults
//! follow a [`Faults`] plan that a test changes while lifeboat runs.

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Read, Write},
    net::{Shutdown, TcpListener, TcpStream},
    path::Path,
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

pub const ACCESS_KEY: &str = "lifeboat-test-key";
pub const SECRET_KEY: &str = "lifeboat-test-secret";

/// A running S3 server; killed on drop.
pub struct S3Server {
    child: Child,
    port: u16,
    /// s3s-fs's storage: a bucket is a folder in it.
    folder: Option<tempfile::TempDir>,
}

impl S3Server {
    /// moto, in memory.
    pub fn start() -> Self {
        let port = lifeboat_postgres::cluster::free_port().expect("free port");
        let child = Command::new("python3")
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto (`python3 -m pip install 'moto[server]'`, or run scripts/install-deps.sh)");
        Self::listening(child, port, None)
    }

    /// s3s-fs, which refuses requests not signed with [`ACCESS_KEY`] and [`SECRET_KEY`].
    pub fn start_s3s_fs() -> Self {
        let port = lifeboat_postgres::cluster::free_port().expect("free port");
        let folder = tempfile::Builder::new()
            .prefix("lifeboat-s3s-")
            .tempdir()
            .expect("s3s-fs folder");
        let cargo_bin = std::env::var_os("CARGO_HOME")
            .map(std::path::PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))
            .map(|c| c.join("bin/s3s-fs"))
            .filter(|p| p.is_file());
        let child = Command::new(cargo_bin.as_deref().unwrap_or(Path::new("s3s-fs")))
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(folder.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start s3s-fs (`cargo install s3s-fs@0.14.1 --features binary --locked`, or run scripts/install-deps.sh)");
        Self::listening(child, port, Some(folder))
    }

    /// An S3 server started elsewhere (moto with IAM: `crate::iam`), once it listens.
    pub fn adopt(child: Child, port: u16) -> Self {
        Self::listening(child, port, None)
    }

    fn listening(child: Child, port: u16, folder: Option<tempfile::TempDir>) -> Self {
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the S3 server did not listen on {port}"
            );
            thread::sleep(Duration::from_millis(100));
        }
        Self {
            child,
            port,
            folder,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Create a bucket with a fresh name and return it.
    pub fn bucket(&self) -> String {
        static N: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "lb-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        if let Some(folder) = &self.folder {
            std::fs::create_dir(folder.path().join(&name)).expect("create bucket");
            return name;
        }
        let status = http(self.port, "PUT", &format!("/{name}"));
        assert_eq!(status, 200, "create bucket {name}");
        name
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A bodiless request to 127.0.0.1:`port`; the status code.
pub fn http(port: u16, method: &str, path: &str) -> u16 {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).expect("read status");
    line.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// What the proxy does to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward it.
    Pass,
    /// Reply with this status (500, 503, ...) without forwarding.
    Status(u16),
    /// Close the connection without a reply, after reading the request.
    Drop,
    /// Wait, then forward.
    Delay(Duration),
}

/// The plan: every request gets `always`, except that every `nth` request (the first is
/// number 1) gets `periodic` instead. With `only`, the plan applies to the requests whose
/// first line contains it (`"list-type=2"` picks listings), and the others pass.
#[derive(Debug, Clone, Copy)]
pub struct Faults {
    pub always: Fault,
    pub nth: u64,
    pub periodic: Fault,
    pub only: Option<&'static str>,
}

impl Faults {
    pub const NONE: Self = Self {
        always: Fault::Pass,
        nth: 0,
        periodic: Fault::Pass,
        only: None,
    };

    pub fn always(f: Fault) -> Self {
        Self {
            always: f,
            ..Self::NONE
        }
    }

    pub fn every(nth: u64, f: Fault) -> Self {
        Self {
            nth,
            periodic: f,
            ..Self::NONE
        }
    }

    /// The same plan, for the requests whose first line contains `part` only.
    pub fn only(self, part: &'static str) -> Self {
        Self {
            only: Some(part),
            ..self
        }
    }
}

/// A fault-injecting HTTP proxy in front of an S3 server; stopped on drop.
pub struct FaultProxy {
    port: u16,
    plan: Arc<Mutex<Faults>>,
    requests: Arc<AtomicU64>,
    faulted: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl FaultProxy {
    pub fn start(upstream_port: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().expect("proxy addr").port();
        let plan = Arc::new(Mutex::new(Faults::NONE));
        let requests = Arc::new(AtomicU64::new(0));
        let faulted = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let judge = Judge {
            plan: plan.clone(),
            requests: requests.clone(),
            faulted: faulted.clone(),
        };
        thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let judge = judge.clone();
                thread::spawn(move || {
                    let _ = serve(conn, upstream_port, &judge);
                });
            }
        });
        Self {
            port,
            plan,
            requests,
            faulted,
            stop,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn set(&self, faults: Faults) {
        *self.plan.lock().unwrap() = faults;
    }

    /// Requests the plan applied to, and how many of them met a fault.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.requests.load(Ordering::SeqCst),
            self.faulted.load(Ordering::SeqCst),
        )
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Decides what happens to each request, by the current plan, and counts.
#[derive(Clone)]
struct Judge {
    plan: Arc<Mutex<Faults>>,
    requests: Arc<AtomicU64>,
    faulted: Arc<AtomicU64>,
}

impl Judge {
    fn fault_for(&self, request_line: &str) -> Fault {
        let plan = *self.plan.lock().unwrap();
        if plan.only.is_some_and(|part| !request_line.contains(part)) {
            return Fault::Pass;
        }
        let n = self.requests.fetch_add(1, Ordering::SeqCst) + 1;
        let fault = if plan.nth > 0 && n.is_multiple_of(plan.nth) {
            plan.periodic
        } else {
            plan.always
        };
        if fault != Fault::Pass {
            self.faulted.fetch_add(1, Ordering::SeqCst);
        }
        fault
    }
}

/// One request: read it whole, then apply the fault the plan gives it.
fn serve(client: TcpStream, upstream_port: u16, judge: &Judge) -> std::io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(client.try_clone()?);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line)? == 0 {
        return Ok(());
    }
    let mut head = request_line.clone().into_bytes();
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        if lower.starts_with("transfer-encoding:") {
            panic!("the fault proxy does not handle chunked requests: {line}");
        }
        if line == "\r\n" {
            head.extend_from_slice(b"Connection: close\r\n\r\n");
            break;
        }
        if !lower.starts_with("connection:") {
            head.extend_from_slice(line.as_bytes());
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    let mut client = client;
    match judge.fault_for(&request_line) {
        Fault::Status(code) => {
            let s3_code = match code {
                403 => "AccessDenied",
                404 => "NoSuchKey",
                412 => "PreconditionFailed",
                503 => "ServiceUnavailable",
                _ => "InternalError",
            };
            let text = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{s3_code}</Code><Message>injected {code}</Message></Error>"
            );
            write!(
                client,
                "HTTP/1.1 {code} Injected\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                text.len()
            )?;
            return client.shutdown(Shutdown::Both);
        }
        Fault::Drop => return client.shutdown(Shutdown::Both),
        Fault::Delay(d) => thread::sleep(d),
        Fault::Pass => {}
    }
    let mut upstream = TcpStream::connect(("127.0.0.1", upstream_port))?;
    upstream.write_all(&head)?;
    upstream.write_all(&body)?;
    std::io::copy(&mut upstream, &mut client)?;
    client.shutdown(Shutdown::Both)
}

/// An object to put: key, content, content type, user metadata.
pub type TestObject<'a> = (String, Vec<u8>, &'a str, BTreeMap<String, String>);

/// Put objects into `bucket` at `endpoint` through lifeboat's own S3 client (multipart
/// for large ones), with a content type and user metadata, 8 at a time.
pub fn put_objects(endpoint: &str, bucket: &str, objects: &[TestObject<'_>]) {
    let b = test_bucket(endpoint, bucket);
    let next = AtomicU64::new(0);
    thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst) as usize;
                    let Some((key, bytes, ct, meta)) = objects.get(i) else {
                        break;
                    };
                    let mut w = b.writer(key, Some(ct), meta).expect("writer");
                    w.write_all(bytes).expect("write");
                    w.finish().expect("finish");
                }
            });
        }
    });
}

/// lifeboat's client for `bucket` at `endpoint` with the test credentials.
pub fn test_bucket(endpoint: &str, bucket: &str) -> lifeboat_repo::bucket::Bucket {
    lifeboat_repo::bucket::Bucket::open(&test_bucket_location(endpoint, bucket))
        .expect("bucket client")
}

/// `bucket` at `endpoint` with the test credentials, no prefix.
pub fn test_bucket_location(endpoint: &str, bucket: &str) -> lifeboat_core::S3Location {
    lifeboat_core::S3Location {
        bucket: bucket.to_string(),
        prefix: String::new(),
        endpoint: Some(endpoint.to_string()),
        region: "us-east-1".into(),
        path_style: true,
        access_key_id: Some(lifeboat_core::Redacted::new(ACCESS_KEY)),
        secret_access_key: Some(lifeboat_core::Redacted::new(SECRET_KEY)),
        object_lock: None,
    }
}
