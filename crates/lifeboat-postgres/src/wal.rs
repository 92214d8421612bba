//! WAL file names and headers: which timeline and position a file holds, which cluster
//! wrote it (the system identifier in a segment's first page header, or `pg_control`).
//!
//! Names: a segment is 24 hex digits `TTTTTTTTLLLLLLLLSSSSSSSS` (timeline, log, segment);
//! `TTTTTTTT.history` lists a timeline's parents; `<segment>.<offset>.backup` marks a base
//! backup; `<segment>.partial` is the last, incomplete segment of a timeline at promotion.

use std::path::Path;

use lifeboat_core::Lsn;

/// What kind of WAL file a name is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalKind {
    Segment,
    Partial,
    Backup,
    History,
}

/// A parsed WAL file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalName {
    pub name: String,
    pub kind: WalKind,
    pub timeline: u32,
    /// `(log, seg)` of a segment-like name; `None` for `.history`.
    pub position: Option<(u32, u32)>,
}

fn hex8(s: &str) -> Option<u32> {
    (s.len() == 8 && s.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| u32::from_str_radix(s, 16).ok())
        .flatten()
}

impl WalName {
    /// Parse a file name (no directories); `None` for anything PostgreSQL would not archive.
    pub fn parse(name: &str) -> Option<Self> {
        let make = |kind, timeline, position| {
            Some(Self {
                name: name.to_string(),
                kind,
                timeline,
                position,
            })
        };
        if let Some(tli) = name.strip_suffix(".history") {
            return make(WalKind::History, hex8(tli)?, None);
        }
        let seg = name.get(..24)?;
        let (t, l, s) = (hex8(&seg[..8])?, hex8(&seg[8..16])?, hex8(&seg[16..24])?);
        match &name[24..] {
            "" => make(WalKind::Segment, t, Some((l, s))),
            ".partial" => make(WalKind::Partial, t, Some((l, s))),
            rest if rest.ends_with(".backup")
                && rest.len() == 1 + 8 + 7
                && hex8(&rest[1..9]).is_some() =>
            {
                make(WalKind::Backup, t, Some((l, s)))
            }
            _ => None,
        }
    }

    /// The segment's number counted from the start of WAL (`segments_per_log` = 4 GiB /
    /// segment size).
    pub fn segno(&self, segment_size: u64) -> Option<u64> {
        let (log, seg) = self.position?;
        Some(u64::from(log) * (0x1_0000_0000 / segment_size) + u64::from(seg))
    }
}

/// The name of the segment holding `lsn` (`X/Y`) on `timeline`.
pub fn segment_of(lsn: Lsn, timeline: u32, segment_size: u64) -> String {
    segment_name(timeline, lsn.0 / segment_size, segment_size)
}

/// The name of segment number `segno` (see [`WalName::segno`]) on `timeline`.
pub fn segment_name(timeline: u32, segno: u64, segment_size: u64) -> String {
    let per_log = 0x1_0000_0000 / segment_size;
    format!(
        "{timeline:08X}{:08X}{:08X}",
        segno / per_log,
        segno % per_log
    )
}

/// Magic numbers of WAL page headers PostgreSQL 12–17 write.
const XLP_LONG_HEADER: u16 = 0x0002;

/// The system identifier in a segment's first (long) page header, if it has one.
pub fn segment_system_id(first_page: &[u8]) -> Option<u64> {
    if first_page.len() < 40 {
        return None;
    }
    let info = u16::from_le_bytes([first_page[2], first_page[3]]);
    if info & XLP_LONG_HEADER == 0 {
        return None;
    }
    Some(u64::from_le_bytes(first_page[24..32].try_into().ok()?))
}

/// The system identifier in `<data-dir>/global/pg_control`.
pub fn control_system_id(data_dir: &Path) -> std::io::Result<u64> {
    let bytes = std::fs::read(data_dir.join("global/pg_control"))?;
    bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_le_bytes)
        .ok_or_else(|| std::io::Error::other("pg_control is too short"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let s = WalName::parse("00000002000000010000003F").unwrap();
        assert_eq!(s.kind, WalKind::Segment);
        assert_eq!(s.timeline, 2);
        assert_eq!(s.position, Some((1, 0x3f)));
        assert_eq!(s.segno(16 << 20), Some(256 + 63));
        assert_eq!(
            WalName::parse("00000003.history").unwrap().kind,
            WalKind::History
        );
        assert_eq!(
            WalName::parse("000000010000000000000002.00000028.backup")
                .unwrap()
                .kind,
            WalKind::Backup
        );
        assert_eq!(
            WalName::parse("000000010000000000000002.partial")
                .unwrap()
                .kind,
            WalKind::Partial
        );
        for bad in [
            "",
            "x.history",
            "00000001000000000000000",
            "0000000100000000000000ZZ",
            "000000010000000000000002.tmp",
        ] {
            assert!(WalName::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn lsns_and_segments() {
        let lsn: Lsn = "1/3F000028".parse().unwrap();
        assert_eq!(segment_of(lsn, 1, 16 << 20), "00000001000000010000003F");
        assert_eq!(segment_of(lsn, 2, 64 << 20), "00000002000000010000000F");
    }
}
