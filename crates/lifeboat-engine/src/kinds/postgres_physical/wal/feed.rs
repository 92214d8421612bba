//! The WAL feed: while `lifeboat restore --start` (or a drill) waits for a recovery, the
//! restoring process serves the server's `restore_command` itself.
//!
//! Without it every `wal fetch` is a process that opens the repository (the key derivation
//! alone takes ~0.3 s), and recovery waits for that at each file the prefetcher has not
//! fetched yet, at the timeline-history probes when recovery starts and when it promotes.
//! The restoring process has the repository open already: it fetches the segments from
//! the base backup's start on while the files are still being restored, keeps a bounded
//! window of them ahead of what recovery asked for last, and answers `wal fetch` over a
//! Unix socket in the data directory (`lifeboat-prefetch/feed.sock`, reachable by the
//! server's user only). A `wal fetch` that finds no feed does the work itself.
//!
//! Reply format: `+` and a big-endian u64 length then the file; `-` not archived; `!` and
//! a message on an error.

use std::{
    collections::{HashMap, HashSet},
    io::{BufRead, BufReader, Read, Write},
    os::unix::net::{UnixListener, UnixStream},
    path::{Path, PathBuf},
    sync::{Arc, Condvar, Mutex, MutexGuard},
    thread::JoinHandle,
    time::Duration,
};

use lifeboat_postgres::wal::{self, WalKind, WalName};
use lifeboat_repo::{Repo, SideKey};

use super::{PREFETCH_DIR, get};

/// The feed's socket, in [`PREFETCH_DIR`] of the data directory.
pub const FEED_SOCKET: &str = "feed.sock";
/// At most this many bytes of segments are held ahead of recovery.
const WINDOW_BYTES: u64 = 256 << 20;
/// Segments fetched before the server starts: the files being restored need the cores.
const FIRST_WINDOW: u64 = 2;
/// Threads fetching ahead.
const WORKERS: usize = 2;

/// Segments fetched ahead, and what recovery asked for last.
#[derive(Default)]
struct Ahead {
    /// Timeline and segment number of the segment recovery asked for last.
    at: (u32, u64),
    /// How many segments after `at` are fetched ahead.
    window: u64,
    ready: HashMap<String, Vec<u8>>,
    fetching: HashSet<String>,
    /// Could not be fetched ahead; a request fetches it itself (and reports the error).
    failed: HashSet<String>,
    stopping: bool,
}

struct Shared {
    repo: Arc<Repo>,
    key: SideKey,
    cluster: u64,
    /// Segment names the archive listed when the restore was planned.
    archived: HashSet<String>,
    segment_size: u64,
    ahead: Mutex<Ahead>,
    changed: Condvar,
}

/// A running feed; stops (and removes its socket) when dropped.
pub struct WalFeed {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    socket: Option<PathBuf>,
}

impl WalFeed {
    /// Start fetching the segments from `start` on (those in `archived`) in the background:
    /// the first few now, a full window once the server can ask for them.
    pub fn start(
        repo: Arc<Repo>,
        key: SideKey,
        cluster: u64,
        archived: impl IntoIterator<Item = String>,
        start: &WalName,
        segment_size: u64,
    ) -> Self {
        let at = (
            start.timeline,
            start.segno(segment_size).unwrap_or(0).saturating_sub(1),
        );
        let shared = Arc::new(Shared {
            repo,
            key,
            cluster,
            archived: archived.into_iter().collect(),
            segment_size,
            ahead: Mutex::new(Ahead {
                at,
                window: FIRST_WINDOW,
                ..Ahead::default()
            }),
            changed: Condvar::new(),
        });
        let threads = (0..WORKERS)
            .map(|_| {
                let s = shared.clone();
                std::thread::spawn(move || s.fetch_ahead())
            })
            .collect();
        Self {
            shared,
            threads,
            socket: None,
        }
    }

    /// Answer `wal fetch` calls of a server recovering `data_dir` (after its files are
    /// restored and handed over: the socket is given to the server's user).
    pub fn listen(&mut self, data_dir: &Path) -> std::io::Result<()> {
        let dir = data_dir.join(PREFETCH_DIR);
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(FEED_SOCKET);
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path)?;
        lifeboat_postgres::physical::hand_over(&dir)?;
        let s = self.shared.clone();
        self.threads
            .push(std::thread::spawn(move || s.accept(&listener)));
        self.socket = Some(path);
        let s = &self.shared;
        s.lock().window = (WINDOW_BYTES / s.segment_size).max(FIRST_WINDOW);
        s.changed.notify_all();
        Ok(())
    }
}

impl Drop for WalFeed {
    fn drop(&mut self) {
        self.shared.lock().stopping = true;
        self.shared.changed.notify_all();
        if let Some(path) = &self.socket {
            let _ = UnixStream::connect(path); // wakes the accepting thread
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        if let Some(path) = &self.socket {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Ahead> {
        self.ahead.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn name(&self, timeline: u32, segno: u64) -> String {
        wal::segment_name(timeline, segno, self.segment_size)
    }

    /// The next segment to fetch ahead: archived, within the window after `at`, not
    /// fetched or being fetched.
    fn wanted(&self, a: &Ahead) -> Option<WalName> {
        let (timeline, at) = a.at;
        (at + 1..=at + a.window)
            .map(|n| self.name(timeline, n))
            .find(|n| {
                self.archived.contains(n)
                    && !a.ready.contains_key(n)
                    && !a.fetching.contains(n)
                    && !a.failed.contains(n)
            })
            .and_then(|n| WalName::parse(&n))
    }

    fn fetch_ahead(&self) {
        let mut a = self.lock();
        while !a.stopping {
            let Some(w) = self.wanted(&a) else {
                a = self.changed.wait(a).unwrap_or_else(|e| e.into_inner());
                continue;
            };
            a.fetching.insert(w.name.clone());
            drop(a);
            let got = get(&self.repo, &self.key, self.cluster, &w);
            a = self.lock();
            a.fetching.remove(&w.name);
            let behind = w.segno(self.segment_size) <= Some(a.at.1);
            match got {
                Ok(Some(bytes)) if !behind => {
                    a.ready.insert(w.name, bytes);
                }
                Ok(Some(_)) => {} // recovery moved past it meanwhile
                Ok(None) | Err(_) => {
                    a.failed.insert(w.name);
                }
            }
            self.changed.notify_all();
        }
    }

    /// The file `name`: fetched ahead, being fetched (waited for), or fetched now.
    fn serve(&self, name: &str) -> Result<Option<Vec<u8>>, String> {
        let Some(w) = WalName::parse(name) else {
            return Ok(None);
        };
        if let (WalKind::Segment, Some(n)) = (w.kind, w.segno(self.segment_size)) {
            let mut a = self.lock();
            a.at = (w.timeline, n);
            let ahead = |k: &String| WalName::parse(k).and_then(|k| k.segno(self.segment_size));
            a.failed.retain(|k| ahead(k) > Some(n));
            self.changed.notify_all();
            loop {
                if let Some(bytes) = a.ready.remove(name) {
                    a.ready.retain(|k, _| ahead(k) > Some(n));
                    return Ok(Some(bytes));
                }
                if !a.fetching.contains(name) {
                    break;
                }
                a = self.changed.wait(a).unwrap_or_else(|e| e.into_inner());
            }
            a.ready.retain(|k, _| ahead(k) > Some(n));
        }
        get(&self.repo, &self.key, self.cluster, &w).map_err(|e| e.message)
    }

    fn accept(self: Arc<Self>, listener: &UnixListener) {
        for conn in listener.incoming() {
            if self.lock().stopping {
                return;
            }
            let Ok(conn) = conn else { continue };
            let s = self.clone();
            std::thread::spawn(move || {
                if let Err(e) = s.answer(conn) {
                    log::debug!("wal feed: {e}");
                }
            });
        }
    }

    fn answer(&self, conn: UnixStream) -> std::io::Result<()> {
        let mut name = String::new();
        BufReader::new((&conn).take(256)).read_line(&mut name)?;
        let mut out = std::io::BufWriter::new(&conn);
        match self.serve(name.trim()) {
            Ok(Some(bytes)) => {
                out.write_all(b"+")?;
                out.write_all(&(bytes.len() as u64).to_be_bytes())?;
                out.write_all(&bytes)?;
            }
            Ok(None) => out.write_all(b"-")?,
            Err(message) => {
                out.write_all(b"!")?;
                out.write_all(message.as_bytes())?;
            }
        }
        out.flush()
    }
}

/// Ask the feed at `socket` for the WAL file `name`: `Ok(None)` when it is not archived.
/// An error (no feed, or the feed failed) means: fetch it without the feed.
pub fn request(socket: &Path, name: &str) -> std::io::Result<Option<Vec<u8>>> {
    let mut conn = UnixStream::connect(socket)?;
    conn.set_read_timeout(Some(Duration::from_secs(600)))?;
    conn.write_all(format!("{name}\n").as_bytes())?;
    let mut kind = [0u8; 1];
    conn.read_exact(&mut kind)?;
    match kind[0] {
        b'+' => {
            let mut len = [0u8; 8];
            conn.read_exact(&mut len)?;
            let len = u64::from_be_bytes(len);
            let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
            (&mut conn).take(len).read_to_end(&mut bytes)?;
            if bytes.len() as u64 != len {
                return Err(std::io::Error::other(format!(
                    "the feed sent {} of {len} bytes",
                    bytes.len()
                )));
            }
            Ok(Some(bytes))
        }
        b'-' => Ok(None),
        _ => {
            let mut message = String::new();
            let _ = conn.read_to_string(&mut message);
            Err(std::io::Error::other(message))
        }
    }
}
