//! A child process's stdout as a stream that fails if the child fails.
//!
//! A `pg_dump` that dies mid-stream produces a clean EOF on its pipe; only its exit status
//! tells that the dump is truncated. [`ChildStream`] waits for the child at EOF and turns a
//! non-zero status into a read error carrying the last lines of its stderr. Dropped before
//! EOF, it kills the child (and always reaps it).
//!
//! The child's pipe is widened to 1 MiB where the system allows it, and a read that found
//! it drained waits up to 1 ms before the next ([`widen_pipe`]): every child streamed so
//! (pg_dump, pg_basebackup, a command target's command) writes whole pages with fewer
//! wake-ups on both sides.

use std::{
    io::{self, Read},
    process::{Child, ChildStdout, Command, Stdio},
    sync::{Arc, Mutex},
    thread,
};

pub struct ChildStream {
    name: String,
    child: Child,
    stdout: ChildStdout,
    stderr: Arc<Mutex<Vec<u8>>>,
    stderr_thread: Option<thread::JoinHandle<()>>,
    done: bool,
    /// The pipe's size if it was widened (reads may then pause), else `None`.
    widened: Option<usize>,
    /// When a read last found the pipe drained; the next waits until [`DRAINED_PAUSE`]
    /// after it.
    drained_at: Option<std::time::Instant>,
}

const STDERR_KEEP: usize = 16 * 1024;

impl ChildStream {
    /// Spawn `cmd` with stdout piped to this stream and stderr collected.
    pub fn spawn(name: &str, mut cmd: Command) -> io::Result<Self> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot start `{name}`: {e}")))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| io::Error::other("no stdout"))?;
        let widened = widen_pipe(&stdout);
        let mut err_pipe = child
            .stderr
            .take()
            .ok_or_else(|| io::Error::other("no stderr"))?;
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let sink = stderr.clone();
        let stderr_thread = thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err_pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let mut s = sink.lock().unwrap_or_else(|p| p.into_inner());
                s.extend_from_slice(&buf[..n]);
                if s.len() > STDERR_KEEP {
                    let cut = s.len() - STDERR_KEEP;
                    s.drain(..cut);
                }
            }
        });
        Ok(Self {
            name: name.to_string(),
            child,
            stdout,
            stderr,
            stderr_thread: Some(stderr_thread),
            done: false,
            widened,
            drained_at: None,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stderr_text(&mut self) -> String {
        if let Some(t) = self.stderr_thread.take() {
            let _ = t.join();
        }
        let s = self.stderr.lock().unwrap_or_else(|p| p.into_inner());
        String::from_utf8_lossy(&s).trim().to_string()
    }

    fn finish(&mut self) -> io::Result<()> {
        self.done = true;
        let status = self.child.wait()?;
        let stderr = self.stderr_text();
        if status.success() {
            if !stderr.is_empty() {
                log::info!("{}: {stderr}", self.name);
            }
            return Ok(());
        }
        let how = match std::os::unix::process::ExitStatusExt::signal(&status) {
            Some(sig) => format!("was killed by signal {sig}"),
            None => format!("exited with status {}", status.code().unwrap_or(-1)),
        };
        let detail = if stderr.is_empty() {
            String::new()
        } else {
            format!(": {}", last_lines(&stderr, 3))
        };
        Err(io::Error::other(format!("`{}` {how}{detail}", self.name)))
    }
}

/// The pipe's buffer, asked for (Linux: 64 KiB by default).
const PIPE_BYTES: usize = 1 << 20;

/// How long a read that found the widened pipe drained lets the child write before the
/// next read: 1 MiB takes a writer of 1 GB/s about that long to fill.
const DRAINED_PAUSE: std::time::Duration = std::time::Duration::from_millis(1);

/// Widen the pipe the child writes to to [`PIPE_BYTES`], where the system allows it (an
/// unprivileged process may go up to `/proc/sys/fs/pipe-max-size`, 1 MiB by default);
/// whether it was. With 64 KiB the child stops whenever the reader spends more than a few
/// hundred microseconds on a chunk (hashing 1 MiB takes longer). And a reader that reads
/// again as soon as it drained the pipe is woken for every write: pg_dump writes 4 KiB at a
/// time, so both sides switched for nearly every 4 KiB of dump — 100,000 context switches
/// on a 0.9 GB dump beyond pg_dump's own with the server (issue 24). So a read that drained
/// the widened pipe waits until [`DRAINED_PAUSE`] after it before the next. Refused, the
/// pipe keeps its size and reads never wait (64 KiB would cap the stream at 64 MB/s).
///
/// Each widened pipe counts 256 pages against the user's `pipe-user-pages-soft` (16,384
/// by default): past about 60 streams at once, Linux refuses (and gives new pipes of that
/// user a smaller buffer); those keep their size.
fn widen_pipe(stdout: &ChildStdout) -> Option<usize> {
    #[cfg(target_os = "linux")]
    match rustix::pipe::fcntl_setpipe_size(stdout, PIPE_BYTES) {
        Ok(size) => (size >= PIPE_BYTES).then_some(size),
        Err(e) => {
            log::debug!("the pipe keeps its size: {e}");
            None
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = stdout;
        None
    }
}

/// Whether a read of `n` bytes into a buffer of `asked` found a pipe of `pipe` bytes
/// drained: it returned less than the buffer or the pipe could hold.
fn drained(n: usize, asked: usize, pipe: usize) -> bool {
    n < asked.min(pipe)
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join(" / ")
}

impl Read for ChildStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done {
            return Ok(0);
        }
        if let Some(at) = self.drained_at.take() {
            thread::sleep(DRAINED_PAUSE.saturating_sub(at.elapsed()));
        }
        match self.stdout.read(buf) {
            Ok(0) if !buf.is_empty() => self.finish().map(|()| 0),
            Ok(n) => {
                if let Some(pipe) = self.widened
                    && drained(n, buf.len(), pipe)
                {
                    self.drained_at = Some(std::time::Instant::now());
                }
                Ok(n)
            }
            Err(e) => {
                let _ = self.child.kill();
                let _ = self.finish();
                Err(e)
            }
        }
    }
}

impl Drop for ChildStream {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A reader that reads `inner` ahead on a thread of its own, up to `limit` bytes beyond
/// what was taken: the producer (a `pg_dump` started before the repository was open) goes
/// on while the consumer is not yet reading. Once the consumer has caught up (nothing
/// left waiting), the thread hands `inner` over and the reader reads it directly (no copy,
/// no thread between). Errors come in their place in the stream. Dropped early, the
/// thread stops (and drops `inner`) at its next piece.
pub struct ReadAhead {
    pieces: std::sync::mpsc::Receiver<Ahead>,
    /// Pieces read, given back to be filled again (no zeroing, no new pages).
    used: std::sync::mpsc::SyncSender<Vec<u8>>,
    /// Pieces sent and not yet received; whether the consumer has begun.
    waiting: Arc<std::sync::atomic::AtomicUsize>,
    reading: Arc<std::sync::atomic::AtomicBool>,
    piece: Vec<u8>,
    at: usize,
    ended: bool,
    direct: Option<Box<dyn Read + Send>>,
}

enum Ahead {
    Piece(Vec<u8>),
    End,
    Failed(io::Error),
    Handover(Box<dyn Read + Send>),
}

/// Bytes read ahead per piece.
const PIECE: usize = 256 << 10;

impl ReadAhead {
    pub fn new<R: Read + Send + 'static>(mut inner: R, limit: usize) -> Self {
        use std::sync::atomic::Ordering::SeqCst;
        let slots = limit.div_ceil(PIECE).max(1);
        let (tx, pieces) = std::sync::mpsc::sync_channel(slots);
        let (used, free) = std::sync::mpsc::sync_channel::<Vec<u8>>(slots);
        let waiting = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let reading = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (w, r) = (waiting.clone(), reading.clone());
        thread::spawn(move || {
            loop {
                if r.load(SeqCst) && w.load(SeqCst) == 0 {
                    let _ = tx.send(Ahead::Handover(Box::new(inner)));
                    return;
                }
                let mut piece = free.try_recv().unwrap_or_else(|_| vec![0; PIECE]);
                piece.resize(PIECE, 0);
                let mut len = 0;
                let end = loop {
                    match inner.read(&mut piece[len..]) {
                        Ok(0) => break Ok(true),
                        Ok(n) => {
                            len += n;
                            if len == PIECE {
                                break Ok(false);
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => break Err(e),
                    }
                };
                piece.truncate(len);
                if len > 0 {
                    w.fetch_add(1, SeqCst);
                    if tx.send(Ahead::Piece(piece)).is_err() {
                        return;
                    }
                }
                let last = match end {
                    Ok(false) => continue,
                    Ok(true) => Ahead::End,
                    Err(e) => Ahead::Failed(e),
                };
                let _ = tx.send(last);
                return;
            }
        });
        Self {
            pieces,
            used,
            waiting,
            reading,
            piece: Vec::new(),
            at: 0,
            ended: false,
            direct: None,
        }
    }
}

impl Read for ReadAhead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use std::sync::atomic::Ordering::SeqCst;
        if buf.is_empty() {
            return Ok(0);
        }
        self.reading.store(true, SeqCst);
        while self.at == self.piece.len() {
            if let Some(inner) = &mut self.direct {
                return inner.read(buf);
            }
            if self.ended {
                return Ok(0);
            }
            match self.pieces.recv() {
                Ok(Ahead::Piece(piece)) => {
                    self.waiting.fetch_sub(1, SeqCst);
                    let done = std::mem::replace(&mut self.piece, piece);
                    let _ = self.used.try_send(done);
                    self.at = 0;
                }
                Ok(Ahead::Handover(inner)) => self.direct = Some(inner),
                Ok(Ahead::End) => {
                    self.ended = true;
                    return Ok(0);
                }
                Ok(Ahead::Failed(e)) => {
                    self.ended = true;
                    return Err(e);
                }
                // The thread is gone without saying the stream ended: never taken for an
                // end (a cut dump would look whole).
                Err(_) => {
                    self.ended = true;
                    return Err(io::Error::other("the read-ahead thread stopped"));
                }
            }
        }
        let n = buf.len().min(self.piece.len() - self.at);
        buf[..n].copy_from_slice(&self.piece[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut c = Command::new("sh");
        c.arg("-c").arg(script);
        c
    }

    /// Everything `r` gives until its end, read `piece` bytes at a time at most.
    fn read_in_pieces(r: &mut impl Read, piece: usize) -> Vec<u8> {
        let (mut out, mut buf) = (Vec::new(), vec![0u8; piece]);
        loop {
            let n = r.read(&mut buf).unwrap();
            if n == 0 {
                return out;
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_childs_pipe_is_widened() {
        let max: usize = std::fs::read_to_string("/proc/sys/fs/pipe-max-size")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let s = ChildStream::spawn("sleep", sh("sleep 5")).unwrap();
        let size = rustix::pipe::fcntl_getpipe_size(&s.stdout).unwrap();
        // `/proc/self` belongs to the effective user (root may go past the maximum).
        let root =
            std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap()) == 0;
        if max < PIPE_BYTES && !root {
            // The system allows less: the pipe keeps its size, reads never wait.
            assert!(s.widened.is_none(), "{size}");
            return;
        }
        assert_eq!(
            size, PIPE_BYTES,
            "the child's stdout pipe holds {size} bytes"
        );
        assert_eq!(s.widened, Some(PIPE_BYTES));
    }

    #[test]
    fn a_read_short_of_the_buffer_or_the_pipe_found_it_drained() {
        let pipe = 1 << 20;
        // Less than asked, the buffer smaller than the pipe: drained.
        assert!(drained(4096, 65536, pipe));
        // As much as asked: more may be waiting.
        assert!(!drained(65536, 65536, pipe));
        // A buffer larger than the pipe, filled with the whole pipe: not drained.
        assert!(!drained(pipe, 8 << 20, pipe));
        assert!(drained(pipe - 1, 8 << 20, pipe));
    }

    #[test]
    fn a_stream_of_small_writes_arrives_whole_and_in_order() {
        // Many small writes with pauses between (the reader drains the pipe often and
        // waits): every byte arrives once, in order, and the stream ends.
        let script = "i=0; while [ $i -lt 300 ]; do printf '%05d\\n' $i; i=$((i+1)); \
                      [ $((i % 50)) -eq 0 ] && sleep 0.01; done; true";
        let mut s = ChildStream::spawn("writer", sh(script)).unwrap();
        let out = String::from_utf8(read_in_pieces(&mut s, 700)).unwrap();
        let expected: String = (0..300).map(|i| format!("{i:05}\n")).collect();
        assert_eq!(out, expected);
    }

    #[test]
    fn a_successful_child_reads_to_eof() {
        let mut s = ChildStream::spawn("echo", sh("printf hello")).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        assert_eq!(out, "hello");
    }

    #[test]
    fn a_failing_child_is_a_read_error_with_its_stderr() {
        let mut s = ChildStream::spawn("dump", sh("printf part; echo boom >&2; exit 3")).unwrap();
        let mut out = Vec::new();
        let err = s.read_to_end(&mut out).unwrap_err();
        assert!(err.to_string().contains("exited with status 3"), "{err}");
        assert!(err.to_string().contains("boom"), "{err}");
    }

    #[test]
    fn read_ahead_passes_every_byte_in_order_and_the_childs_error_last() {
        // More than a piece and the limit, so the producer runs ahead and then waits.
        let script = "head -c 3000000 /dev/urandom | od -An -tx1 -v; echo boom >&2; exit 4";
        let mut direct = ChildStream::spawn("dump", sh(script)).unwrap();
        let mut plain = Vec::new();
        assert!(direct.read_to_end(&mut plain).is_err());
        let mut ahead = ReadAhead::new(ChildStream::spawn("dump", sh(script)).unwrap(), 1 << 20);
        std::thread::sleep(std::time::Duration::from_millis(200));
        let mut out = Vec::new();
        let err = ahead.read_to_end(&mut out).unwrap_err();
        assert!(err.to_string().contains("exited with status 4"), "{err}");
        assert!(err.to_string().contains("boom"), "{err}");
        // Random each run: compare shapes (od's lines), and that nothing was lost.
        assert_eq!(out.len(), plain.len());
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 3_000_000 / 16);

        let mut ahead = ReadAhead::new(
            std::io::Cursor::new((0..=255u8).cycle().take(700_000).collect::<Vec<u8>>()),
            300_000,
        );
        let out = read_in_pieces(&mut ahead, 1000);
        assert_eq!(out, (0..=255u8).cycle().take(700_000).collect::<Vec<u8>>());
        assert_eq!(ahead.read(&mut [0u8; 1000]).unwrap(), 0);
    }

    #[test]
    fn read_ahead_hands_a_slow_source_over_once_caught_up() {
        // A source slower than its reader: after the first pieces the reader reads it
        // directly; every byte still comes once, in order.
        struct Slow(usize);
        const TOTAL: usize = 2_400_000;
        impl Read for Slow {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0 == TOTAL {
                    return Ok(0);
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
                let n = buf.len().min(4000).min(TOTAL - self.0);
                for (k, b) in buf[..n].iter_mut().enumerate() {
                    *b = ((self.0 + k) % 251) as u8;
                }
                self.0 += n;
                Ok(n)
            }
        }
        let mut ahead = ReadAhead::new(Slow(0), 1 << 20);
        let mut out = Vec::new();
        ahead.read_to_end(&mut out).unwrap();
        let expected: Vec<u8> = (0..TOTAL).map(|p| (p % 251) as u8).collect();
        assert!(out == expected, "bytes lost or out of order");
        assert!(ahead.direct.is_some(), "never handed over");
    }

    #[test]
    fn read_ahead_whose_thread_dies_is_an_error_not_an_end() {
        static BROKE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        struct Breaks(u32);
        impl Read for Breaks {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                self.0 += 1;
                if self.0 == 3 {
                    BROKE.store(true, std::sync::atomic::Ordering::SeqCst);
                    panic!("the source broke");
                }
                buf[0] = b'x';
                Ok(1)
            }
        }
        let mut ahead = ReadAhead::new(Breaks(0), 1 << 20);
        // Not reading yet: the thread reads ahead (and breaks) instead of handing over.
        while !BROKE.load(std::sync::atomic::Ordering::SeqCst) {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        let mut out = Vec::new();
        let err = ahead.read_to_end(&mut out).unwrap_err();
        assert!(
            err.to_string().contains("read-ahead thread stopped"),
            "{err}"
        );
    }

    #[test]
    fn a_killed_child_is_a_read_error() {
        let mut s = ChildStream::spawn("dump", sh("printf part; kill -9 $$")).unwrap();
        let mut out = Vec::new();
        let err = s.read_to_end(&mut out).unwrap_err();
        assert!(err.to_string().contains("signal 9"), "{err}");
    }
}
