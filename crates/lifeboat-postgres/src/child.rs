//! A child process's stdout as a stream that fails if the child fails.
//!
//! A `pg_dump` that dies mid-stream produces a clean EOF on its pipe; only its exit status
//! tells that the dump is truncated. [`ChildStream`] waits for the child at EOF and turns a
//! non-zero status into a read error carrying the last lines of its stderr. Dropped before
//! EOF, it kills the child (and always reaps it).

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

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join(" / ")
}

impl Read for ChildStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done {
            return Ok(0);
        }
        match self.stdout.read(buf) {
            Ok(0) if !buf.is_empty() => self.finish().map(|()| 0),
            Ok(n) => Ok(n),
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
/// on while the consumer is not yet reading. Errors come in their place in the stream.
/// Dropped early, the thread stops (and drops `inner`) at its next piece.
pub struct ReadAhead {
    /// Pieces of the stream; an empty one is its end.
    pieces: std::sync::mpsc::Receiver<io::Result<Vec<u8>>>,
    piece: Vec<u8>,
    at: usize,
    ended: bool,
}

/// Bytes read ahead per piece.
const PIECE: usize = 256 << 10;

impl ReadAhead {
    pub fn new<R: Read + Send + 'static>(mut inner: R, limit: usize) -> Self {
        let (tx, pieces) = std::sync::mpsc::sync_channel(limit.div_ceil(PIECE).max(1));
        thread::spawn(move || {
            loop {
                let mut piece = vec![0u8; PIECE];
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
                if len > 0 && tx.send(Ok(piece)).is_err() {
                    return;
                }
                match end {
                    Ok(false) => {}
                    Ok(true) => {
                        let _ = tx.send(Ok(Vec::new()));
                        return;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                }
            }
        });
        Self {
            pieces,
            piece: Vec::new(),
            at: 0,
            ended: false,
        }
    }
}

impl Read for ReadAhead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.piece.len() {
            if self.ended || buf.is_empty() {
                return Ok(0);
            }
            let next = self.pieces.recv();
            self.ended = !matches!(&next, Ok(Ok(p)) if !p.is_empty());
            match next {
                Ok(Ok(piece)) if piece.is_empty() => return Ok(0),
                Ok(Ok(piece)) => (self.piece, self.at) = (piece, 0),
                Ok(Err(e)) => return Err(e),
                // The thread is gone without saying the stream ended: never taken for an
                // end (a cut dump would look whole).
                Err(_) => return Err(io::Error::other("the read-ahead thread stopped")),
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
        let mut out = Vec::new();
        let mut buf = [0u8; 1000];
        loop {
            let n = ahead.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        assert_eq!(out, (0..=255u8).cycle().take(700_000).collect::<Vec<u8>>());
        assert_eq!(ahead.read(&mut buf).unwrap(), 0);
    }

    #[test]
    fn read_ahead_whose_thread_dies_is_an_error_not_an_end() {
        struct Breaks(u32);
        impl Read for Breaks {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                self.0 += 1;
                assert!(self.0 < 3, "the source broke");
                buf[0] = b'x';
                Ok(1)
            }
        }
        let mut ahead = ReadAhead::new(Breaks(0), 1 << 20);
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
