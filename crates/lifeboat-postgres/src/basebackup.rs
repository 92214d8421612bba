//! Streamed base backups, for a server whose files lifeboat cannot read (`data-dir`
//! absent): `pg_basebackup -D - -Ft -X none` sends the whole cluster as one tar stream over
//! the replication protocol, straight into the repository. WAL comes from the archive, as
//! for a base backup from files; the server waits until the WAL the backup needs is
//! archived before `pg_basebackup` exits.
//!
//! Where the backup starts and ends in WAL is read off the stream on the way:
//! `backup_label` (start point, timeline) and `backup_manifest` (its `WAL-Ranges`), both
//! inside the tar. [`TarWatch`] keeps those two entries and passes every byte on.

use std::{
    io::{self, Read},
    sync::{Arc, Mutex},
};

use lifeboat_core::Lsn;

use crate::{ChildStream, PgError, PgTools, Target};

/// Start `pg_basebackup` writing the cluster as a tar to its stdout (fast checkpoint, no
/// WAL: the archive has it). The server must allow a replication connection for the user.
pub fn stream(target: &Target, tools: &PgTools, label: &str) -> Result<ChildStream, PgError> {
    let mut cmd = target.command(&tools.path("pg_basebackup"));
    cmd.args([
        "-D", "-", "-F", "tar", "-X", "none", "-c", "fast", "-l", label,
    ]);
    ChildStream::spawn("pg_basebackup", cmd).map_err(|e| PgError::Io(e.to_string()))
}

/// The WAL a streamed base backup needs, as recorded inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalPoints {
    pub timeline: u32,
    pub start_lsn: Lsn,
    pub stop_lsn: Lsn,
}

/// The two tar entries [`TarWatch`] keeps.
#[derive(Debug, Default)]
pub struct Kept {
    pub backup_label: Vec<u8>,
    /// Its last [`MANIFEST_TAIL`] bytes: `WAL-Ranges` come last.
    pub manifest_tail: Vec<u8>,
}

const MANIFEST_TAIL: usize = 64 * 1024;

impl Kept {
    /// Start and end of the backup in WAL: start and timeline from `backup_label`, end from
    /// the manifest's `WAL-Ranges`.
    pub fn wal_points(&self) -> Result<WalPoints, String> {
        let label = String::from_utf8_lossy(&self.backup_label);
        let field = |name: &str| {
            label
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_string())
        };
        let start_lsn = field("START WAL LOCATION:")
            .and_then(|v| v.split_whitespace().next().map(str::to_string))
            .ok_or("the stream has no backup_label with a start point")?
            .parse::<Lsn>()
            .map_err(|e| format!("backup_label's start point: {e}"))?;
        let timeline = field("START TIMELINE:")
            .and_then(|v| v.parse().ok())
            .ok_or("backup_label has no start timeline")?;
        let manifest = String::from_utf8_lossy(&self.manifest_tail);
        let stop_lsn = manifest
            .rfind("\"End-LSN\"")
            .and_then(|i| manifest[i + 9..].split('"').nth(1))
            .map(str::to_string)
            .ok_or("the stream has no backup_manifest with an end point")?
            .parse::<Lsn>()
            .map_err(|e| format!("backup_manifest's end point: {e}"))?;
        Ok(WalPoints {
            timeline,
            start_lsn,
            stop_lsn,
        })
    }
}

/// Passes a tar stream through and keeps `backup_label` and the end of `backup_manifest`.
pub struct TarWatch<R> {
    inner: R,
    kept: Arc<Mutex<Kept>>,
    /// The header being collected (512 bytes), or empty while inside an entry's data.
    header: Vec<u8>,
    /// Bytes of the current entry's data (with padding) still to come.
    remaining: u64,
    /// Of those, the entry's own size (without padding) still to come.
    content_left: u64,
    keeping: Option<Entry>,
}

#[derive(Clone, Copy)]
enum Entry {
    Label,
    Manifest,
}

impl<R: Read> TarWatch<R> {
    pub fn new(inner: R) -> (Self, Arc<Mutex<Kept>>) {
        let kept = Arc::new(Mutex::new(Kept::default()));
        let watch = Self {
            inner,
            kept: kept.clone(),
            header: Vec::with_capacity(512),
            remaining: 0,
            content_left: 0,
            keeping: None,
        };
        (watch, kept)
    }

    fn observe(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.remaining == 0 {
                let take = (512 - self.header.len()).min(bytes.len());
                self.header.extend_from_slice(&bytes[..take]);
                bytes = &bytes[take..];
                if self.header.len() == 512 {
                    self.start_entry();
                }
                continue;
            }
            let take = (self.remaining.min(bytes.len() as u64)) as usize;
            let content = (self.content_left.min(take as u64)) as usize;
            if let Some(entry) = self.keeping {
                let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
                match entry {
                    Entry::Label => kept.backup_label.extend_from_slice(&bytes[..content]),
                    Entry::Manifest => {
                        let tail = &mut kept.manifest_tail;
                        tail.extend_from_slice(&bytes[..content]);
                        if tail.len() > MANIFEST_TAIL {
                            let cut = tail.len() - MANIFEST_TAIL;
                            tail.drain(..cut);
                        }
                    }
                }
            }
            self.content_left -= content as u64;
            self.remaining -= take as u64;
            bytes = &bytes[take..];
        }
    }

    /// A full header is in: where its data ends, and whether to keep it.
    fn start_entry(&mut self) {
        let h = std::mem::take(&mut self.header);
        let name_end = h[..100].iter().position(|&b| b == 0).unwrap_or(100);
        let name = String::from_utf8_lossy(&h[..name_end]);
        let size = std::str::from_utf8(&h[124..136])
            .ok()
            .map(|s| s.trim_matches(|c: char| c == '\0' || c.is_whitespace()))
            .and_then(|s| u64::from_str_radix(s, 8).ok())
            .unwrap_or(0);
        self.keeping = match name.trim_start_matches("./") {
            "backup_label" => Some(Entry::Label),
            "backup_manifest" => Some(Entry::Manifest),
            _ => None,
        };
        self.content_left = size;
        self.remaining = size.div_ceil(512) * 512;
    }
}

impl<R: Read> Read for TarWatch<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.observe(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, body: &[u8]) -> Vec<u8> {
        let mut h = vec![0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        let size = format!("{:011o}\0", body.len());
        h[124..136].copy_from_slice(size.as_bytes());
        h[156] = b'0';
        let mut out = h;
        out.extend_from_slice(body);
        out.resize(out.len().div_ceil(512) * 512, 0);
        out
    }

    #[test]
    fn keeps_the_label_and_the_manifest_end_whatever_the_read_sizes() {
        let label =
            b"START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\nSTART TIMELINE: 1\n";
        let manifest = format!(
            "{{ \"Files\": [{}],\n\"WAL-Ranges\": [\n{{ \"Timeline\": 1, \"Start-LSN\": \"0/2000028\", \"End-LSN\": \"0/2000100\" }}\n] }}\n",
            "{\"Path\": \"x\"},".repeat(10_000)
        );
        let mut tar = entry("PG_VERSION", b"15\n");
        tar.extend(entry("backup_label", label));
        tar.extend(entry("base/1/1234", &vec![7u8; 9000]));
        tar.extend(entry("backup_manifest", manifest.as_bytes()));
        tar.extend(vec![0u8; 1024]);
        for chunk in [1, 511, 4096, 100_000] {
            let (mut watch, kept) = TarWatch::new(&tar[..]);
            let mut out = Vec::new();
            let mut buf = vec![0u8; chunk];
            loop {
                let n = watch.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                out.extend_from_slice(&buf[..n]);
            }
            assert_eq!(out, tar, "bytes pass unchanged");
            let kept = kept.lock().unwrap();
            assert_eq!(kept.backup_label, label);
            assert_eq!(
                kept.wal_points().unwrap(),
                WalPoints {
                    timeline: 1,
                    start_lsn: Lsn(0x2000028),
                    stop_lsn: Lsn(0x2000100),
                }
            );
        }
    }

    #[test]
    fn a_stream_without_the_entries_is_an_error() {
        assert!(Kept::default().wal_points().is_err());
    }
}
