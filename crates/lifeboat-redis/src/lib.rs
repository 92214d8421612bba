//! Redis for lifeboat: a small synchronous RESP client ([`Conn`]), an RDB snapshot taken over
//! the replication protocol ([`RdbStream`]), copying every key of one server into another
//! with `DUMP`/`RESTORE` (TTLs kept), and scratch `redis-server`s ([`Scratch`]) for restores
//! and drills.
//!
//! The snapshot is what `redis-cli --rdb` takes, without its delay: lifeboat asks for a full
//! sync (`SYNC`) without announcing the `eof` capability, so the server writes the RDB with a
//! fork (`BGSAVE`) and sends it with its length at once, instead of waiting
//! `repl-diskless-sync-delay` (5 s by default) for more replicas to join a diskless transfer.
//! No server setting is changed.

use std::{
    collections::BTreeMap,
    io::{self, BufRead, BufReader, Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use lifeboat_core::Redacted;
pub use tls::Stream;

mod tls;

#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("cannot connect to Redis at {addr}: {source}")]
    Connect { addr: String, source: io::Error },
    #[error("Redis: {0}")]
    Io(#[from] io::Error),
    #[error("Redis replied with an error: {0}")]
    Server(String),
    #[error("Redis URL: {0}")]
    Url(String),
    #[error("Redis: {0}")]
    Protocol(String),
}

impl RedisError {
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::Connect { .. } => Some("is the server running, and is `url` right?".into()),
            Self::Server(m) if m.starts_with("NOAUTH") || m.starts_with("WRONGPASS") => {
                Some("put the password in the URL (`redis://:password@host:6379`), via `url-env` or `url-file`".into())
            }
            Self::Url(_) => {
                Some("`redis://[user:password@]host[:port][/db]`, or `rediss://` for TLS".into())
            }
            _ => None,
        }
    }
}

/// A parsed `redis://[user[:password]@]host[:port][/db]` (`rediss://`: over TLS).
#[derive(Debug, Clone)]
pub struct RedisUrl {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    pub user: Option<String>,
    pub password: Option<Redacted>,
    pub db: u32,
}

impl RedisUrl {
    pub fn parse(url: &Redacted) -> Result<Self, RedisError> {
        let text = url.expose();
        let rest = match text.split_once("://") {
            Some(("redis", rest)) => (rest, false),
            Some(("rediss", rest)) => (rest, true),
            _ => {
                return Err(RedisError::Url(
                    "expected `redis://...` or `rediss://...`".into(),
                ));
            }
        };
        let (rest, tls) = rest;
        let (auth, hostpart) = match rest.rsplit_once('@') {
            Some((a, h)) => (Some(a), h),
            None => (None, rest),
        };
        let (hostport, db) = match hostpart.split_once('/') {
            Some((h, d)) if !d.is_empty() => (
                h,
                d.parse()
                    .map_err(|_| RedisError::Url(format!("`{d}` is not a database number")))?,
            ),
            Some((h, _)) => (h, 0),
            None => (hostpart, 0),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => (
                h.to_string(),
                p.parse()
                    .map_err(|_| RedisError::Url(format!("`{p}` is not a port")))?,
            ),
            None => (hostport.to_string(), 6379),
        };
        let (user, password) = match auth {
            None => (None, None),
            Some(a) => match a.split_once(':') {
                Some(("", p)) => (None, Some(Redacted::new(p))),
                Some((u, p)) => (Some(u.to_string()), Some(Redacted::new(p))),
                None => (None, Some(Redacted::new(a))),
            },
        };
        Ok(Self {
            tls,
            host: if host.is_empty() {
                "localhost".into()
            } else {
                host
            },
            port,
            user,
            password,
            db,
        })
    }

    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    pub fn local(port: u16) -> Self {
        Self {
            tls: false,
            host: "127.0.0.1".into(),
            port,
            user: None,
            password: None,
            db: 0,
        }
    }
}

/// A RESP reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Nil,
    Int(i64),
    Text(String),
    Bytes(Vec<u8>),
    Array(Vec<Value>),
}

impl Value {
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Self::Int(i) => Some(*i),
            _ => None,
        }
    }

    pub fn as_text(&self) -> String {
        match self {
            Self::Text(t) => t.clone(),
            Self::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
            Self::Int(i) => i.to_string(),
            _ => String::new(),
        }
    }
}

/// One connection, authenticated.
pub struct Conn {
    stream: BufReader<Stream>,
}

impl Conn {
    pub fn connect(url: &RedisUrl) -> Result<Self, RedisError> {
        Self::connect_within(url, None)
    }

    /// Connect, and answer, within `limit` (a probe): connecting, and each read and write,
    /// give up after it. Without a limit: no connect timeout, reads wait up to 120 s.
    pub fn connect_within(url: &RedisUrl, limit: Option<Duration>) -> Result<Self, RedisError> {
        let addr = url.addr();
        let connected = match limit {
            None => TcpStream::connect(&addr),
            // Each address in turn (`localhost` may be `::1` first), as `connect` does.
            Some(limit) => std::net::ToSocketAddrs::to_socket_addrs(&addr).and_then(|addrs| {
                let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
                for a in addrs {
                    match TcpStream::connect_timeout(&a, limit) {
                        Ok(s) => return Ok(s),
                        Err(e) => last = e,
                    }
                }
                Err(last)
            }),
        };
        let stream = connected.map_err(|source| RedisError::Connect {
            addr: addr.clone(),
            source,
        })?;
        stream.set_read_timeout(Some(limit.unwrap_or(Duration::from_secs(120))))?;
        stream.set_write_timeout(limit)?;
        let stream = if url.tls {
            tls::wrap(stream, &url.host).map_err(|source| RedisError::Connect {
                addr: addr.clone(),
                source,
            })?
        } else {
            Stream::Plain(stream)
        };
        let mut conn = Self {
            stream: BufReader::new(stream),
        };
        if let Some(pw) = &url.password {
            match &url.user {
                Some(u) => conn.cmd(&[b"AUTH", u.as_bytes(), pw.expose().as_bytes()])?,
                None => conn.cmd(&[b"AUTH", pw.expose().as_bytes()])?,
            };
        }
        Ok(conn)
    }

    pub fn send(&mut self, args: &[&[u8]]) -> Result<(), RedisError> {
        let mut buf = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            buf.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            buf.extend_from_slice(a);
            buf.extend_from_slice(b"\r\n");
        }
        self.stream.get_mut().write_all(&buf)?;
        Ok(())
    }

    /// Send a command and read its reply; an error reply is an `Err`.
    pub fn cmd(&mut self, args: &[&[u8]]) -> Result<Value, RedisError> {
        self.send(args)?;
        self.read()
    }

    pub fn read(&mut self) -> Result<Value, RedisError> {
        let line = self.line()?;
        let (kind, rest) = line.split_at(1);
        match kind {
            "+" => Ok(Value::Text(rest.to_string())),
            "-" => Err(RedisError::Server(rest.to_string())),
            ":" => rest
                .parse()
                .map(Value::Int)
                .map_err(|_| RedisError::Protocol(format!("bad integer `{rest}`"))),
            "$" => {
                let n: i64 = rest
                    .parse()
                    .map_err(|_| RedisError::Protocol(format!("bad length `{rest}`")))?;
                if n < 0 {
                    return Ok(Value::Nil);
                }
                let mut b = vec![0; n as usize + 2];
                self.stream.read_exact(&mut b)?;
                b.truncate(n as usize);
                Ok(Value::Bytes(b))
            }
            "*" => {
                let n: i64 = rest
                    .parse()
                    .map_err(|_| RedisError::Protocol(format!("bad length `{rest}`")))?;
                if n < 0 {
                    return Ok(Value::Nil);
                }
                (0..n)
                    .map(|_| self.read())
                    .collect::<Result<_, _>>()
                    .map(Value::Array)
            }
            _ => Err(RedisError::Protocol(format!("unexpected reply `{line}`"))),
        }
    }

    fn line(&mut self) -> Result<String, RedisError> {
        let mut line = String::new();
        if self.stream.read_line(&mut line)? == 0 {
            return Err(RedisError::Protocol(
                "the server closed the connection".into(),
            ));
        }
        Ok(line.trim_end_matches(['\r', '\n']).to_string())
    }

    /// `INFO section` as key → value.
    pub fn info(&mut self, section: &str) -> Result<BTreeMap<String, String>, RedisError> {
        let text = self.cmd(&[b"INFO", section.as_bytes()])?.as_text();
        Ok(text
            .lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.to_string(), v.trim().to_string()))
            .collect())
    }

    /// Keys per database (`INFO keyspace`), e.g. `{0: 120, 3: 7}`.
    pub fn key_counts(&mut self) -> Result<BTreeMap<u32, u64>, RedisError> {
        Ok(self
            .info("keyspace")?
            .into_iter()
            .filter_map(|(k, v)| {
                let db = k.strip_prefix("db")?.parse().ok()?;
                let keys = v
                    .split(',')
                    .find_map(|p| p.strip_prefix("keys="))?
                    .parse()
                    .ok()?;
                Some((db, keys))
            })
            .collect())
    }

    pub fn version(&mut self) -> Result<String, RedisError> {
        Ok(self
            .info("server")?
            .remove("redis_version")
            .unwrap_or_default())
    }
}

/// A full RDB snapshot as it arrives from the server (`SYNC`): exactly the announced
/// number of bytes; a connection that ends early is a read error, never a short EOF.
pub struct RdbStream {
    reader: BufReader<Stream>,
    left: u64,
    pub len: u64,
}

impl RdbStream {
    pub fn open(url: &RedisUrl) -> Result<Self, RedisError> {
        let mut conn = Conn::connect(url)?;
        // Only the snapshot, not the replication stream after it (Redis ≥ 7.0; older
        // servers answer with an error, which changes nothing).
        let _ = conn.cmd(&[b"REPLCONF", b"rdb-only", b"1"]);
        conn.send(&[b"SYNC"])?;
        // While the fork writes the RDB, the server sends newlines to keep us waiting.
        let header = loop {
            let line = conn.line()?;
            if !line.is_empty() {
                break line;
            }
        };
        if let Some(e) = header.strip_prefix('-') {
            return Err(RedisError::Server(e.to_string()));
        }
        let len = header
            .strip_prefix('$')
            .and_then(|n| n.parse::<u64>().ok())
            .ok_or_else(|| RedisError::Protocol(format!("unexpected reply to SYNC: `{header}`")))?;
        conn.stream
            .get_ref()
            .tcp()
            .set_read_timeout(Some(Duration::from_secs(60)))?;
        Ok(Self {
            reader: conn.stream,
            left: len,
            len,
        })
    }
}

impl Read for RdbStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let want = buf.len().min(self.left as usize);
        let n = self.reader.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "the Redis server closed the connection with {} of {} RDB bytes left",
                    self.left, self.len
                ),
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// A throwaway `redis-server` on a copy of an RDB file, on a free port, no persistence;
/// killed on drop.
pub struct Scratch {
    child: Child,
    pub port: u16,
    _dir: Option<tempfile::TempDir>,
}

impl Scratch {
    /// Start a server that loads `dir/dump.rdb`.
    pub fn start(dir: &Path) -> Result<Self, RedisError> {
        let port = free_port()?;
        let bin = which("redis-server").ok_or_else(|| {
            RedisError::Protocol(
                "`redis-server` is not installed (it runs the scratch server)".into(),
            )
        })?;
        let child = Command::new(bin)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(dir)
            .args([
                "--dbfilename",
                "dump.rdb",
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let mut s = Self {
            child,
            port,
            _dir: None,
        };
        s.wait_loaded()?;
        Ok(s)
    }

    /// Start an empty server in a temporary folder of its own.
    pub fn empty() -> Result<Self, RedisError> {
        let dir = tempfile::Builder::new()
            .prefix("lifeboat-redis-")
            .tempdir()?;
        let mut s = Self::start(dir.path())?;
        s._dir = Some(dir);
        Ok(s)
    }

    fn wait_loaded(&mut self) -> Result<(), RedisError> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Err(RedisError::Protocol(format!(
                    "the scratch redis-server exited ({status}): is the RDB readable by this Redis version?"
                )));
            }
            if let Ok(mut c) = Conn::connect(&self.url())
                && c.info("persistence")
                    .is_ok_and(|i| i.get("loading").map(String::as_str) == Some("0"))
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(RedisError::Protocol(
                    "the scratch redis-server did not finish loading in 60 s".into(),
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn url(&self) -> RedisUrl {
        RedisUrl::local(self.port)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Copy every key of every database of `from` into `to` with `DUMP`/`RESTORE`, keeping
/// TTLs; `replace` overwrites keys that exist. Returns the keys copied per database.
pub fn copy_keys(
    from: &RedisUrl,
    to: &RedisUrl,
    replace: bool,
) -> Result<BTreeMap<u32, u64>, RedisError> {
    copy_keys_until(from, to, replace, &|| false, &mut Vec::new())
}

/// [`copy_keys`], stopping between keys once `stop()` says so; every key written goes into
/// `written` (database, key), so that the copy can be taken back ([`put_back`]).
pub fn copy_keys_until(
    from: &RedisUrl,
    to: &RedisUrl,
    replace: bool,
    stop: &dyn Fn() -> bool,
    written: &mut Vec<(u32, Vec<u8>)>,
) -> Result<BTreeMap<u32, u64>, RedisError> {
    let mut src = Conn::connect(from)?;
    let mut dst = Conn::connect(to)?;
    let mut copied = BTreeMap::new();
    for db in src.key_counts()?.into_keys() {
        let d = db.to_string();
        src.cmd(&[b"SELECT", d.as_bytes()])?;
        dst.cmd(&[b"SELECT", d.as_bytes()])?;
        let mut cursor = b"0".to_vec();
        let mut n = 0u64;
        loop {
            let reply = src.cmd(&[b"SCAN", &cursor, b"COUNT", b"1000"])?;
            let Value::Array(parts) = reply else {
                return Err(RedisError::Protocol("unexpected SCAN reply".into()));
            };
            let (Some(Value::Bytes(next)), Some(Value::Array(keys))) =
                (parts.first(), parts.get(1))
            else {
                return Err(RedisError::Protocol("unexpected SCAN reply".into()));
            };
            for key in keys {
                let Value::Bytes(key) = key else { continue };
                if stop() {
                    copied.insert(db, n);
                    return Ok(copied);
                }
                let Some((ttl, payload)) = dump_with_ttl(&mut src, key)? else {
                    continue; // expired or deleted meanwhile
                };
                let mut args: Vec<&[u8]> = vec![b"RESTORE", key, ttl.as_bytes(), &payload];
                if replace {
                    args.push(b"REPLACE");
                }
                match dst.cmd(&args) {
                    Ok(_) => written.push((db, key.clone())),
                    // Refused: nothing was written.
                    Err(e @ RedisError::Server(_)) => return Err(e),
                    // Lost on the way: it may have been written; taken back with the rest.
                    Err(e) => {
                        written.push((db, key.clone()));
                        return Err(e);
                    }
                }
                n += 1;
            }
            cursor = next.clone();
            if cursor == b"0" {
                break;
            }
        }
        copied.insert(db, n);
    }
    Ok(copied)
}

/// `key`'s `DUMP` payload and its TTL in ms for `RESTORE` (`0`: none), pipelined in one
/// round trip; `None` when the key is not there.
fn dump_with_ttl(conn: &mut Conn, key: &[u8]) -> Result<Option<(String, Vec<u8>)>, RedisError> {
    conn.send(&[b"PTTL", key])?;
    conn.send(&[b"DUMP", key])?;
    let ttl = conn.read()?.as_int().unwrap_or(-2);
    Ok(match (conn.read()?, ttl != -2) {
        (Value::Bytes(payload), true) => Some((ttl.max(0).to_string(), payload)),
        _ => None,
    })
}

/// Put `keys` of `to` back as `saved` holds them: each copied from `saved` (value and TTL)
/// where it has it, deleted where it does not (or where there is no `saved`: `to` held
/// nothing before). Returns (copied, deleted).
pub fn put_back(
    saved: Option<&RedisUrl>,
    to: &RedisUrl,
    keys: &[(u32, Vec<u8>)],
) -> Result<(u64, u64), RedisError> {
    let mut src = saved.map(Conn::connect).transpose()?;
    let mut dst = Conn::connect(to)?;
    let (mut copied, mut deleted) = (0, 0);
    let mut selected = None;
    for (db, key) in keys {
        if selected != Some(*db) {
            let d = db.to_string();
            if let Some(src) = src.as_mut() {
                src.cmd(&[b"SELECT", d.as_bytes()])?;
            }
            dst.cmd(&[b"SELECT", d.as_bytes()])?;
            selected = Some(*db);
        }
        let old = match src.as_mut() {
            Some(src) => dump_with_ttl(src, key)?,
            None => None,
        };
        match old {
            Some((ttl, payload)) => {
                dst.cmd(&[b"RESTORE", key, ttl.as_bytes(), &payload, b"REPLACE"])?;
                copied += 1;
            }
            None => {
                dst.cmd(&[b"DEL", key])?;
                deleted += 1;
            }
        }
    }
    Ok((copied, deleted))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = RedisUrl::parse(&Redacted::new("redis://:s3cret@cache:6380/2")).unwrap();
        assert_eq!((u.host.as_str(), u.port, u.db), ("cache", 6380, 2));
        assert_eq!(u.password.unwrap().expose(), "s3cret");
        assert!(u.user.is_none());
        let u = RedisUrl::parse(&Redacted::new("redis://app:pw@10.0.0.1")).unwrap();
        assert_eq!(u.user.as_deref(), Some("app"));
        assert_eq!(u.port, 6379);
        assert!(RedisUrl::parse(&Redacted::new("rediss://h")).unwrap().tls);
        assert!(!RedisUrl::parse(&Redacted::new("redis://h")).unwrap().tls);
        assert!(RedisUrl::parse(&Redacted::new("http://h")).is_err());
        assert!(RedisUrl::parse(&Redacted::new("http://h")).is_err());
    }
}
