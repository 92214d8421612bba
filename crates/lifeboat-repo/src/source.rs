//! What lifeboat feeds the archiver: a sorted list of entries (streams, small byte
//! buffers, local files, and a manifest produced last), each read through wrappers that
//! fix rustic_core's pitfalls and record what was read.
//!
//! - [`FullRead`] loops until the caller's buffer is full or EOF. rustic's chunker shrinks
//!   its buffer after every short read and never grows it back, so a pipe read without it
//!   collapses to ~4 MB/s (notes/rustic_core.md, pitfall 1).
//! - [`Recorded`] counts bytes and hashes them (SHA-256) into a shared [`StreamStat`], and
//!   keeps the first read error. The archiver logs and swallows read errors and still saves
//!   the snapshot (pitfall 2), so the stats are how lifeboat learns that an entry failed.
//! - A [`Deferred`] entry (the manifest) is produced only when it is opened, which the
//!   archiver does after it started the entries sorted before it; the producer waits for
//!   their stats. If it fails, the snapshot has no manifest and is deleted.

use std::{
    ffi::OsStr,
    io::{self, Read},
    path::PathBuf,
    sync::{Arc, Condvar, Mutex},
};

use rustic_core::{
    ErrorKind, ReadSource, ReadSourceEntry, ReadSourceOpen, RusticError, RusticResult,
    repofile::{Metadata, Node, NodeType},
};
use sha2::{Digest, Sha256};

/// What was read from one entry. Shared between the reader (in an archiver thread) and
/// whoever decides afterwards whether the backup is good.
#[derive(Debug, Default)]
pub struct StreamStat {
    state: Mutex<StatState>,
    done: Condvar,
}

#[derive(Debug, Default, Clone)]
struct StatState {
    bytes: u64,
    sha256: Option<String>,
    error: Option<String>,
    finished: bool,
    /// The archiver opened the entry (rather than linking it from a parent snapshot).
    opened: bool,
    /// The read failed with [`LeftOut`]: the entry must not be in the snapshot.
    left_out: bool,
}

/// The outcome of one entry once it is finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamOutcome {
    pub bytes: u64,
    pub sha256: String,
}

impl StreamStat {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn finish(&self, bytes: u64, result: Result<String, String>) {
        self.finish_as(bytes, result, false);
    }

    /// Record the end once; `left_out` with it, so whoever sees the end sees that too.
    fn finish_as(&self, bytes: u64, result: Result<String, String>, left_out: bool) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.finished {
            return;
        }
        s.bytes = bytes;
        match result {
            Ok(hash) => s.sha256 = Some(hash),
            Err(e) => s.error = Some(e),
        }
        s.left_out = left_out;
        s.finished = true;
        self.done.notify_all();
    }

    /// Whether the entry's read failed with [`LeftOut`].
    pub fn was_left_out(&self) -> bool {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .left_out
    }

    fn mark_opened(&self) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).opened = true;
    }

    /// Whether the archiver ever opened the entry.
    pub fn was_opened(&self) -> bool {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).opened
    }

    /// Mark an entry as failed before it was ever read (e.g. it could not be opened).
    pub fn fail(&self, error: impl Into<String>) {
        self.finish(0, Err(error.into()));
    }

    /// Wait until the entry was read to the end or failed.
    pub fn wait(&self) -> Result<StreamOutcome, String> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        while !s.finished {
            s = self.done.wait(s).unwrap_or_else(|p| p.into_inner());
        }
        Self::outcome(&s)
    }

    /// The outcome if finished; `Err` if it failed or was never read to the end.
    pub fn outcome_now(&self) -> Result<StreamOutcome, String> {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if !s.finished {
            return Err("was not read to the end".into());
        }
        Self::outcome(&s)
    }

    fn outcome(s: &StatState) -> Result<StreamOutcome, String> {
        match (&s.error, &s.sha256) {
            (Some(e), _) => Err(e.clone()),
            (None, Some(h)) => Ok(StreamOutcome {
                bytes: s.bytes,
                sha256: h.clone(),
            }),
            (None, None) => Err("was not read to the end".into()),
        }
    }
}

/// Ends the message of a [`LeftOut`] error.
pub const LEFT_OUT: &str = "left out of this snapshot";

/// The error of a read that leaves its entry out of the snapshot on purpose (an object
/// deleted or replaced while a bucket backup read it). rustic's archiver drops an entry
/// whose read fails, warning of it; the backup then checks that the snapshot has no node
/// for it, where for any other read error it fails.
#[derive(Debug)]
pub struct LeftOut(pub String);

impl std::fmt::Display for LeftOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {LEFT_OUT}", self.0)
    }
}

impl std::error::Error for LeftOut {}

/// Reads until the buffer is full or the inner reader reports EOF.
pub struct FullRead<R>(pub R);

impl<R: Read> Read for FullRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.0.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(filled)
    }
}

/// Counts and hashes everything read; records EOF or the first error in a [`StreamStat`].
pub struct Recorded<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
    stat: Arc<StreamStat>,
}

impl<R: Read> Recorded<R> {
    pub fn new(inner: R, stat: Arc<StreamStat>) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
            stat,
        }
    }
}

impl<R: Read> Read for Recorded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(0) if !buf.is_empty() => {
                let hash = hex::encode(std::mem::take(&mut self.hasher).finalize());
                self.stat.finish(self.bytes, Ok(hash));
                Ok(0)
            }
            Ok(n) => {
                self.hasher.update(&buf[..n]);
                self.bytes += n as u64;
                Ok(n)
            }
            Err(e) if e.get_ref().is_some_and(|x| x.is::<LeftOut>()) => {
                self.stat.finish_as(self.bytes, Err(e.to_string()), true);
                Err(e)
            }
            Err(e) => {
                self.stat.finish(self.bytes, Err(e.to_string()));
                Err(e)
            }
        }
    }
}

impl<R> Drop for Recorded<R> {
    fn drop(&mut self) {
        // Dropped before EOF (the archiver gave up on it): never counts as complete.
        self.stat
            .finish(self.bytes, Err("reading stopped before the end".into()));
    }
}

type Producer = Box<dyn FnOnce() -> Result<Vec<u8>, String> + Send>;
type BoxRead = Box<dyn Read + Send>;

/// How an entry's content is obtained.
pub enum Content {
    /// A stream read once (a child's stdout, ...).
    Stream(BoxRead),
    /// A small buffer known up front.
    Bytes(Vec<u8>),
    /// A local file, opened only when the archiver gets to it.
    File(PathBuf),
    /// Produced when opened (the manifest): the producer may wait for other entries.
    Deferred(Producer),
    /// A directory with the given metadata (no content).
    Dir,
    /// A symbolic link.
    Symlink(String),
}

/// One entry of a snapshot: its path inside the snapshot, metadata, and content.
pub struct SourceEntry {
    pub path: PathBuf,
    pub meta: Metadata,
    pub content: Content,
    /// Where what was read is recorded (not for directories and links).
    pub stat: Option<Arc<StreamStat>>,
}

impl SourceEntry {
    /// A stream or buffer entry with default metadata (mode 0644, owned by the backup user).
    pub fn new(path: impl Into<PathBuf>, content: Content) -> (Self, Arc<StreamStat>) {
        let stat = StreamStat::new();
        let meta = Metadata {
            mode: Some(0o100_644),
            mtime: Some(jiff::Timestamp::now()),
            size: match &content {
                Content::Bytes(b) => b.len() as u64,
                _ => 0,
            },
            ..Default::default()
        };
        let entry = Self {
            path: path.into(),
            meta,
            content,
            stat: Some(stat.clone()),
        };
        (entry, stat)
    }
}

/// The archiver's view of an entry's content; opening it applies the wrappers.
pub struct Opener {
    content: Content,
    stat: Arc<StreamStat>,
}

impl ReadSourceOpen for Opener {
    type Reader = FullRead<BoxRead>;

    fn open(self) -> RusticResult<Self::Reader> {
        self.stat.mark_opened();
        let reader: BoxRead = match self.content {
            // Read, counted and hashed on a thread of its own, so that hashing the whole
            // stream runs beside the archiver's chunking instead of in front of it.
            Content::Stream(r) => return Ok(FullRead(Box::new(Pipelined::spawn(r, self.stat)))),
            Content::Bytes(b) => Box::new(io::Cursor::new(b)),
            Content::File(path) => match std::fs::File::open(&path) {
                Ok(f) => Box::new(f),
                Err(e) => {
                    let msg = format!("cannot open `{}`: {e}", path.display());
                    self.stat.fail(msg.clone());
                    return Err(RusticError::new(ErrorKind::InputOutput, msg));
                }
            },
            Content::Deferred(produce) => match produce() {
                Ok(b) => Box::new(io::Cursor::new(b)),
                Err(e) => {
                    self.stat.fail(e.clone());
                    return Err(RusticError::new(ErrorKind::InputOutput, e));
                }
            },
            Content::Dir | Content::Symlink(_) => {
                return Err(RusticError::new(
                    ErrorKind::Internal,
                    "a directory or link has no content",
                ));
            }
        };
        Ok(FullRead(Box::new(Recorded::new(reader, self.stat))))
    }
}

/// Blocks handed from the reading thread to the archiver.
const BLOCK: usize = 1 << 20;
const BLOCKS_IN_FLIGHT: usize = 8;

/// A stream read on its own thread through [`Recorded`], handed over in blocks. Dropped
/// early, it stops the thread, which drops (and so stops) the inner stream.
pub struct Pipelined {
    rx: std::sync::mpsc::Receiver<io::Result<Vec<u8>>>,
    block: io::Cursor<Vec<u8>>,
}

impl Pipelined {
    pub fn spawn(inner: BoxRead, stat: Arc<StreamStat>) -> Self {
        let (tx, rx) = std::sync::mpsc::sync_channel(BLOCKS_IN_FLIGHT);
        std::thread::spawn(move || {
            let mut reader = FullRead(Recorded::new(inner, stat));
            loop {
                let mut block = vec![0u8; BLOCK];
                match reader.read(&mut block) {
                    // Recorded has seen the end and recorded it.
                    Ok(0) => return,
                    Ok(n) => {
                        block.truncate(n);
                        if tx.send(Ok(block)).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                }
            }
        });
        Self {
            rx,
            block: io::Cursor::new(Vec::new()),
        }
    }
}

impl Read for Pipelined {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let n = self.block.read(buf)?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            match self.rx.recv() {
                Ok(Ok(block)) => self.block = io::Cursor::new(block),
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(0),
            }
        }
    }
}

/// A [`ReadSource`] over a prepared list of entries, handed out once.
pub struct EntrySource {
    entries: Mutex<Option<Vec<SourceEntry>>>,
    size: Option<u64>,
}

impl EntrySource {
    /// `entries` must be sorted by path, directories before what they contain.
    pub fn new(entries: Vec<SourceEntry>, size: Option<u64>) -> Self {
        Self {
            entries: Mutex::new(Some(entries)),
            size,
        }
    }
}

impl ReadSource for EntrySource {
    type Open = Opener;
    type Iter = std::vec::IntoIter<RusticResult<ReadSourceEntry<Opener>>>;

    fn size(&self) -> RusticResult<Option<u64>> {
        Ok(self.size)
    }

    fn entries(&self) -> Self::Iter {
        let entries = self
            .entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .unwrap_or_default();
        entries
            .into_iter()
            .map(|e| {
                let name = e
                    .path
                    .file_name()
                    .unwrap_or_else(|| OsStr::new(""))
                    .to_os_string();
                let (node_type, open) = match e.content {
                    Content::Dir => (NodeType::Dir, None),
                    Content::Symlink(target) => (
                        NodeType::Symlink {
                            linktarget: target,
                            linktarget_raw: None,
                        },
                        None,
                    ),
                    content => (NodeType::File, e.stat.map(|stat| Opener { content, stat })),
                };
                Ok(ReadSourceEntry {
                    path: e.path,
                    node: Node::new_node(&name, node_type, e.meta),
                    open,
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hands out at most `chunk` bytes per read, like a pipe.
    struct Trickle(io::Cursor<Vec<u8>>, usize);
    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.1);
            self.0.read(&mut buf[..n])
        }
    }

    #[test]
    fn full_read_fills_the_buffer_from_short_reads() {
        let data: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        let mut r = FullRead(Trickle(io::Cursor::new(data.clone()), 7));
        let mut buf = vec![0; 4096];
        assert_eq!(r.read(&mut buf).unwrap(), 4096);
        assert_eq!(&buf[..], &data[..4096]);
        let mut rest = Vec::new();
        r.read_to_end(&mut rest).unwrap();
        assert_eq!(rest.len(), 10_000 - 4096);
    }

    #[test]
    fn recorded_hashes_and_counts_at_eof() {
        let stat = StreamStat::new();
        let mut r = Recorded::new(&b"hello"[..], stat.clone());
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        let o = stat.outcome_now().unwrap();
        assert_eq!(o.bytes, 5);
        assert_eq!(
            o.sha256,
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
    }

    #[test]
    fn pipelined_hands_over_everything_and_records_it() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let stat = StreamStat::new();
        let mut p = Pipelined::spawn(
            Box::new(Trickle(io::Cursor::new(data.clone()), 5000)),
            stat.clone(),
        );
        let mut out = Vec::new();
        p.read_to_end(&mut out).unwrap();
        assert_eq!(out, data);
        assert_eq!(stat.wait().unwrap().bytes, 3_000_000);
    }

    #[test]
    fn pipelined_passes_errors_on() {
        struct Fails;
        impl Read for Fails {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("boom"))
            }
        }
        let stat = StreamStat::new();
        let mut p = Pipelined::spawn(Box::new(Fails), stat.clone());
        assert!(p.read_to_end(&mut Vec::new()).is_err());
        assert!(stat.wait().is_err());
    }

    #[test]
    fn recorded_dropped_early_is_a_failure() {
        let stat = StreamStat::new();
        {
            let mut r = Recorded::new(&b"hello"[..], stat.clone());
            let mut one = [0u8; 1];
            r.read_exact(&mut one).unwrap();
        }
        assert!(stat.outcome_now().is_err());
    }
}
