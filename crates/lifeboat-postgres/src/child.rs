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
    fn a_killed_child_is_a_read_error() {
        let mut s = ChildStream::spawn("dump", sh("printf part; kill -9 $$")).unwrap();
        let mut out = Vec::new();
        let err = s.read_to_end(&mut out).unwrap_err();
        assert!(err.to_string().contains("signal 9"), "{err}");
    }
}
