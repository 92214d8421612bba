//! The layout of a `pg_dump --format=custom` archive: its table of contents and where each
//! data block lies, so a dump stored as one stream can be restored by several `pg_restore`
//! processes at once, each fed the table of contents and only its own blocks.
//!
//! The format (PostgreSQL's `pg_backup_archiver.c` and `pg_backup_custom.c`): a header,
//! the table of contents (TOC), then one block per data entry in TOC order — a block type
//! byte, the entry's dump id, and its data in length-prefixed chunks ended by a zero length
//! (large objects: an OID before each object's chunks, ended by OID 0). An integer is a sign
//! byte and `int size` bytes, little-endian; a string is its length (−1: none) and bytes.
//!
//! [`LayoutWatch`] maps the blocks while the dump streams into the repository at backup;
//! [`parse_toc`] reads the TOC again at restore. Only archive versions 1.12 to 1.14
//! (`pg_dump` 11 to 15) are read; any other version gets no layout, and its restore stages
//! the dump in a file as before.

use std::collections::{HashMap, HashSet};

use lifeboat_core::manifest::{DataBlock, DumpLayout};

/// Sections of the TOC (`teSection`).
pub const SECTION_NONE: i64 = 1;
pub const SECTION_PRE_DATA: i64 = 2;
pub const SECTION_DATA: i64 = 3;
pub const SECTION_POST_DATA: i64 = 4;

const BLOCK_DATA: u8 = 1;
const BLOCK_BLOBS: u8 = 3;
/// A TOC larger than this is not read (a real one is kilobytes to a few megabytes).
const MAX_TOC_BYTES: usize = 256 << 20;
/// A row boundary is noted every this many bytes of a table's data, and a block keeps at
/// most `MAX_CUTS` of them (evenly thinned), so the manifest stays small for any table.
const CUT_EVERY: u64 = 16 << 20;
const MAX_CUTS: usize = 256;

/// One entry of the table of contents.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TocEntry {
    pub id: i64,
    /// The entry has a data block (`TABLE DATA`, `BLOBS`).
    pub has_data: bool,
    pub desc: String,
    pub section: i64,
    /// Dump ids of the entries this one depends on.
    pub deps: Vec<i64>,
    /// The object's schema and name (a `TABLE DATA` entry's table).
    pub namespace: String,
    pub tag: String,
    /// A `TABLE DATA` entry's `COPY … FROM stdin;` (its columns in the rows' order).
    pub copy_stmt: String,
    /// The definition of an `ENCODING` entry (`SET client_encoding = '…';`); empty for
    /// others.
    pub defn: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Toc {
    pub entries: Vec<TocEntry>,
    /// Bytes of the header and TOC: the first data block starts here.
    pub end: u64,
    pub(crate) int_size: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TocError {
    /// The bytes end before the TOC does.
    Short,
    Invalid(String),
}

impl std::fmt::Display for TocError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Short => f.write_str("the archive ends inside its table of contents"),
            Self::Invalid(why) => write!(f, "not a readable custom-format archive: {why}"),
        }
    }
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    int_size: usize,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], TocError> {
        let end = self.pos.checked_add(n).ok_or(TocError::Short)?;
        let slice = self.bytes.get(self.pos..end).ok_or(TocError::Short)?;
        self.pos = end;
        Ok(slice)
    }

    fn byte(&mut self) -> Result<u8, TocError> {
        Ok(self.take(1)?[0])
    }

    fn int(&mut self) -> Result<i64, TocError> {
        let size = self.int_size;
        let b = self.take(1 + size)?;
        Ok(decode_int(b))
    }

    /// A string's bytes are skipped: only its presence matters, except where read by `text`.
    fn skip_str(&mut self) -> Result<bool, TocError> {
        let n = self.int()?;
        if n < 0 {
            return Ok(false);
        }
        self.take(usize::try_from(n).map_err(|_| TocError::Short)?)?;
        Ok(true)
    }

    /// A dependency (a dump id written as a decimal string), or `None` at the list's end.
    fn dep(&mut self) -> Result<Option<i64>, TocError> {
        let n = self.int()?;
        if n < 0 {
            return Ok(None);
        }
        let b = self.take(usize::try_from(n).map_err(|_| TocError::Short)?)?;
        std::str::from_utf8(b)
            .ok()
            .and_then(|d| d.parse().ok())
            .map(Some)
            .ok_or_else(|| TocError::Invalid("a dependency that is not a dump id".into()))
    }

    fn text(&mut self) -> Result<String, TocError> {
        let n = self.int()?;
        if n < 0 {
            return Ok(String::new());
        }
        let b = self.take(usize::try_from(n).map_err(|_| TocError::Short)?)?;
        Ok(String::from_utf8_lossy(b).into_owned())
    }
}

/// A sign byte, then the magnitude little-endian.
pub(crate) fn decode_int(b: &[u8]) -> i64 {
    let magnitude = b[1..]
        .iter()
        .rev()
        .fold(0i64, |acc, &x| (acc << 8) | i64::from(x));
    if b[0] != 0 { -magnitude } else { magnitude }
}

/// A small field of the archive (a block type, or a sign byte and an integer: at most
/// 9 bytes) taken from a stream that comes in pieces of any size: straight from the piece
/// when it holds the whole field (the usual case), else gathered across pieces.
#[derive(Debug, Default)]
pub(crate) struct FieldReader {
    gathered: [u8; 9],
    len: usize,
}

impl FieldReader {
    /// Takes what is missing of a field of `need` bytes from `data[*at..]`, moving `*at`
    /// past it; the whole field once it is complete.
    pub(crate) fn take(&mut self, data: &[u8], at: &mut usize, need: usize) -> Option<[u8; 9]> {
        let mut value = [0u8; 9];
        if self.len == 0
            && let Some(whole) = data.get(*at..*at + need)
        {
            value[..need].copy_from_slice(whole);
            *at += need;
            return Some(value);
        }
        let n = (need - self.len).min(data.len() - *at);
        self.gathered[self.len..self.len + n].copy_from_slice(&data[*at..*at + n]);
        self.len += n;
        *at += n;
        if self.len < need {
            return None;
        }
        self.len = 0;
        Some(self.gathered)
    }

    /// Whether part of a field has been taken and the rest not yet.
    pub(crate) fn is_partial(&self) -> bool {
        self.len > 0
    }
}

/// Read the header and TOC at the start of `bytes`.
pub fn parse_toc(bytes: &[u8]) -> Result<Toc, TocError> {
    let invalid = |why: String| Err(TocError::Invalid(why));
    let mut c = Cursor {
        bytes,
        pos: 0,
        int_size: 4,
    };
    if c.take(5)? != b"PGDMP" {
        return invalid("no PGDMP signature".into());
    }
    let (major, minor) = (c.byte()?, c.byte()?);
    let _revision = c.byte()?;
    // 1.12–1.14: pg_dump up to 15 (1.14 since 12); 1.15: 16 (the compression is one byte,
    // its algorithm);
    // 1.16: 17 and 18 (each entry records its relation's kind).
    if major != 1 || !(12..=16).contains(&minor) {
        return invalid(format!(
            "archive version {major}.{minor} is not one lifeboat reads"
        ));
    }
    c.int_size = usize::from(c.byte()?);
    let offset_size = usize::from(c.byte()?);
    if !(1..=8).contains(&c.int_size) || !(1..=8).contains(&offset_size) {
        return invalid("implausible integer sizes".into());
    }
    if c.byte()? != 1 {
        return invalid("not the custom format".into());
    }
    if minor >= 15 {
        c.byte()?; // compression algorithm
    } else {
        c.int()?; // compression level
    }
    for _ in 0..7 {
        c.int()?; // creation time
    }
    for _ in 0..3 {
        c.skip_str()?; // database name, server version, pg_dump version
    }
    let count = c.int()?;
    if count < 0 {
        return invalid("negative TOC size".into());
    }
    let mut entries = Vec::new();
    for _ in 0..count {
        let id = c.int()?;
        let has_data = c.int()? != 0;
        c.skip_str()?; // catalog table oid
        c.skip_str()?; // oid
        let tag = c.text()?;
        let desc = c.text()?;
        let section = c.int()?;
        let defn = if desc == "ENCODING" {
            c.text()?
        } else {
            c.skip_str()?;
            String::new()
        };
        c.skip_str()?; // drop statement
        let copy_stmt = c.text()?;
        let namespace = c.text()?;
        c.skip_str()?; // tablespace
        if minor >= 14 {
            c.skip_str()?; // table access method
        }
        if minor >= 16 {
            c.int()?; // relation kind
        }
        c.skip_str()?; // owner
        c.skip_str()?; // "with oids"
        let mut deps = Vec::new();
        while let Some(d) = c.dep()? {
            deps.push(d);
        }
        c.byte()?; // offset state
        c.take(offset_size)?; // offset
        entries.push(TocEntry {
            id,
            has_data,
            desc,
            section,
            deps,
            namespace,
            tag,
            copy_stmt,
            defn,
        });
        if c.pos > MAX_TOC_BYTES {
            return invalid("table of contents too large".into());
        }
    }
    Ok(Toc {
        entries,
        end: c.pos as u64,
        int_size: c.int_size,
    })
}

/// The TOC at the start of `head` (the dump's first `layout.toc_bytes` bytes), if the
/// layout fits the dump; else why not.
pub fn fitting_toc(head: &[u8], layout: &DumpLayout, dump_bytes: u64) -> Result<Toc, String> {
    let toc = parse_toc(head).map_err(|e| e.to_string())?;
    check_layout(layout, &toc, dump_bytes)?;
    Ok(toc)
}

/// Check that `layout` describes a dump of `dump_bytes` bytes whose TOC is `toc`: the blocks
/// follow the TOC and each other with no gap up to the end, and every entry with data has
/// exactly one block.
pub fn check_layout(layout: &DumpLayout, toc: &Toc, dump_bytes: u64) -> Result<(), String> {
    if layout.toc_bytes != toc.end {
        return Err(format!(
            "TOC ends at {} but the layout says {}",
            toc.end, layout.toc_bytes
        ));
    }
    let mut next = toc.end;
    for b in &layout.blocks {
        if b.offset != next {
            return Err(format!("block of entry {} is not where expected", b.id));
        }
        next = b.offset + b.bytes;
        let mut after = b.offset;
        for &c in &b.cuts {
            if c <= after || c >= next {
                return Err(format!("a cut of block {} lies outside it", b.id));
            }
            after = c;
        }
    }
    if next != dump_bytes {
        return Err(format!("blocks end at {next}, the dump at {dump_bytes}"));
    }
    let mut with_data: Vec<i64> = toc
        .entries
        .iter()
        .filter(|e| e.has_data)
        .map(|e| e.id)
        .collect();
    let mut blocks: Vec<i64> = layout.blocks.iter().map(|b| b.id).collect();
    with_data.sort_unstable();
    blocks.sort_unstable();
    if with_data != blocks {
        return Err("the blocks do not match the TOC's data entries".into());
    }
    Ok(())
}

/// What one of several `pg_restore` processes restores of the data section: its entries
/// (its `-L` list) and the stretches of data blocks it is fed after the TOC, both in TOC
/// order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DataShare {
    pub entries: Vec<i64>,
    pub pieces: Vec<Piece>,
}

impl DataShare {
    pub fn bytes(&self) -> u64 {
        self.pieces.iter().map(|p| p.to - p.from).sum()
    }
}

/// Bytes `from..to` of the dump, all or part of the block of entry `id`. A part that does
/// not start at the block's start is fed after a block header made for it
/// ([`Toc::block_header`]); one that does not reach the block's end, followed by an end
/// of data ([`Toc::block_end`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    pub id: i64,
    pub from: u64,
    pub to: u64,
    pub opens: bool,
    pub closes: bool,
}

impl Toc {
    /// The start of a data block of entry `id`.
    pub fn block_header(&self, id: i64) -> Vec<u8> {
        let mut b = vec![BLOCK_DATA];
        b.extend(encode_int(id, self.int_size));
        b
    }

    /// The zero length that ends a block's data.
    pub fn block_end(&self) -> Vec<u8> {
        encode_int(0, self.int_size)
    }

    /// The entries `pg_restore --section` counts in `section`, in TOC order. An entry of no
    /// section (a comment, a security label, an ACL) counts in the section of the entry
    /// before it, as `pg_restore` reckons it over the archive's own order. Given a `-L`
    /// list it reckons over the list's order instead, where such an entry can land behind
    /// an entry of another section and drop out of `--section`: list these entries rather
    /// than combine `-L` with `--section`.
    pub fn in_section(&self, section: i64) -> impl Iterator<Item = &TocEntry> {
        let mut current = SECTION_PRE_DATA;
        self.entries.iter().filter(move |e| {
            if e.section != SECTION_NONE {
                current = e.section;
            }
            current == section
        })
    }

    /// Whether the entry `id` is a table's data (whose blocks hold COPY rows).
    pub fn is_table_data(&self, id: i64) -> bool {
        self.entries
            .iter()
            .any(|e| e.id == id && e.desc == "TABLE DATA")
    }
}

/// A post-data entry that can be restored as soon as the rows of its table are in, while
/// the data of other tables is still loading, as `pg_restore -j` does: an index or a
/// constraint that locks only its own table (not a foreign key, which locks two and could
/// deadlock with another; not a materialized view's refresh, which reads other tables).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EarlyEntry {
    pub id: i64,
    /// The `TABLE DATA` entry whose rows must be in first.
    pub data: i64,
    /// Other early entries that must be done first.
    pub after: Vec<i64>,
}

/// The post-data entries of the `max_tables` largest tables with at least `min_bytes` of
/// data that can be restored early ([`EarlyEntry`]), in TOC order. Each entry's dependency
/// on its table is read as one on the table's data; any dependency on something restored
/// later (another post-data entry that is not early) keeps it for the end.
pub fn early_post_data(
    toc: &Toc,
    layout: &DumpLayout,
    min_bytes: u64,
    max_tables: usize,
) -> Vec<EarlyEntry> {
    let block_bytes: HashMap<i64, u64> = layout.blocks.iter().map(|b| (b.id, b.bytes)).collect();
    let mut large: Vec<(u64, i64)> = toc
        .entries
        .iter()
        .filter(|e| e.desc == "TABLE DATA")
        .filter_map(|e| block_bytes.get(&e.id).map(|&b| (b, e.id)))
        .filter(|&(b, _)| b >= min_bytes)
        .collect();
    large.sort_unstable_by(|a, b| b.cmp(a));
    large.truncate(max_tables);
    let large: HashSet<i64> = large.into_iter().map(|(_, id)| id).collect();
    // A table's dump id -> its data's.
    let data_of: HashMap<i64, i64> = toc
        .entries
        .iter()
        .filter(|e| e.desc == "TABLE DATA")
        .flat_map(|e| e.deps.iter().map(move |&d| (d, e.id)))
        .collect();
    let section: HashMap<i64, i64> = toc.entries.iter().map(|e| (e.id, e.section)).collect();
    let mut early: Vec<EarlyEntry> = toc
        .entries
        .iter()
        .filter(|e| e.section == SECTION_POST_DATA && (e.desc == "INDEX" || e.desc == "CONSTRAINT"))
        .filter_map(|e| {
            let mut data = None;
            let mut after = Vec::new();
            for d in &e.deps {
                if let Some(&t) = data_of.get(d) {
                    if data.is_some_and(|x| x != t) {
                        return None;
                    }
                    data = Some(t);
                } else if section.get(d) != Some(&SECTION_PRE_DATA) {
                    after.push(*d);
                }
            }
            let data = data.filter(|t| large.contains(t))?;
            Some(EarlyEntry {
                id: e.id,
                data,
                after,
            })
        })
        .collect();
    // Drop those that wait for an entry that is not early, until none does.
    loop {
        let ids: HashSet<i64> = early.iter().map(|e| e.id).collect();
        let before = early.len();
        early.retain(|e| e.after.iter().all(|d| ids.contains(d)));
        if early.len() == before {
            return early;
        }
    }
}

pub(crate) fn encode_int(v: i64, int_size: usize) -> Vec<u8> {
    let mut b = vec![u8::from(v < 0)];
    let mut m = v.unsigned_abs();
    for _ in 0..int_size {
        b.push((m & 0xff) as u8);
        m >>= 8;
    }
    b
}

/// Split the data into at most `jobs` shares of about equal bytes: the blocks in dump order,
/// each share a contiguous stretch, a large table split at a row boundary (a cut) where a
/// share is full — so one big table is loaded by several `COPY`s at once. Each share aims
/// at an equal part of what the shares before it left, so one cut short (or run long) at a
/// row boundary is made up by the next rather than piling up in the last. The data
/// section's entries without data (`SEQUENCE SET`) go to the first share, but pg_dump 17's
/// `BLOB METADATA` to the share of the `BLOBS` block that depends on it.
pub fn share_data(toc: &Toc, layout: &DumpLayout, jobs: usize) -> Vec<DataShare> {
    let jobs = jobs.max(1) as u64;
    let total: u64 = layout.blocks.iter().map(|b| b.bytes).sum();
    let mut shares: Vec<DataShare> = Vec::new();
    let mut current = DataShare::default();
    // Bytes in the shares before the current one, and in the current one.
    let (mut before, mut filled) = (0u64, 0u64);
    for b in &layout.blocks {
        let end = b.offset + b.bytes;
        let mut from = b.offset;
        while from < end {
            let i = shares.len() as u64;
            let room = if i + 1 >= jobs {
                u64::MAX
            } else {
                ((total - before) / (jobs - i)).saturating_sub(filled)
            };
            let piece = |to: u64| Piece {
                id: b.id,
                from,
                to,
                opens: from != b.offset,
                closes: to != end,
            };
            if end - from <= room {
                current.pieces.push(piece(end));
                filled += end - from;
                break;
            }
            // The share is full: it ends at the row boundary nearest to full — or where the
            // block ends, or (taking none of it) where the block starts.
            let want = from + room;
            let nothing = (!current.pieces.is_empty()).then_some(from);
            let to = b
                .cuts
                .iter()
                .copied()
                .filter(|&c| c > from && c < end)
                .chain([end])
                .chain(nothing)
                .min_by_key(|&c| c.abs_diff(want))
                .unwrap_or(end);
            if to > from {
                current.pieces.push(piece(to));
                filled += to - from;
            }
            from = to;
            if !current.pieces.is_empty() {
                shares.push(std::mem::take(&mut current));
                before += std::mem::take(&mut filled);
            }
        }
    }
    if !current.pieces.is_empty() || shares.is_empty() {
        shares.push(current);
    }
    for s in &mut shares {
        s.entries = s.pieces.iter().map(|p| p.id).collect();
        s.entries.dedup();
    }
    // pg_dump 17 creates large objects in the data section (`BLOB METADATA`, no data): each
    // goes with the `BLOBS` block that fills them (which depends on it), so that one
    // transaction creates and fills them whatever order the shares run in.
    let by_id: HashMap<i64, &TocEntry> = toc.entries.iter().map(|e| (e.id, e)).collect();
    let mut share_of: HashMap<i64, usize> = HashMap::new();
    for (i, s) in shares.iter().enumerate() {
        for id in &s.entries {
            for dep in by_id.get(id).map_or(&[][..], |e| &e.deps[..]) {
                if by_id.get(dep).is_some_and(|d| d.desc == "BLOB METADATA") {
                    share_of.entry(*dep).or_insert(i);
                }
            }
        }
    }
    let no_data: Vec<i64> = toc
        .in_section(SECTION_DATA)
        .filter(|e| !e.has_data)
        .map(|e| e.id)
        .collect();
    if !no_data.is_empty() {
        let position: HashMap<i64, usize> = toc
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.id, i))
            .collect();
        for id in no_data {
            shares[share_of.get(&id).copied().unwrap_or(0)]
                .entries
                .push(id);
        }
        for s in &mut shares {
            s.entries
                .sort_by_key(|id| position.get(id).copied().unwrap_or(usize::MAX));
        }
    }
    shares.retain(|s| !s.entries.is_empty());
    shares
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    BlockType,
    BlockId { blobs: bool },
    ChunkLength { in_blob: bool },
    BlobOid,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Collecting the bytes of a small field.
    Field(Field),
    /// Passing over chunk data.
    Skip { left: u64, in_blob: bool },
}

/// Maps the data blocks of an archive from its bytes as they stream past, in pieces of
/// any size. Never fails the stream: an archive it cannot read simply gets no layout.
#[derive(Debug)]
pub struct LayoutWatch {
    /// Bytes kept until the TOC is complete.
    head: Vec<u8>,
    /// The TOC is parsed again only once `head` has reached this length (double what it
    /// was at the last try), so a TOC of any size costs linear time.
    parse_at: usize,
    toc_tries: u32,
    toc: Option<Toc>,
    /// Offset of the next byte seen.
    pos: u64,
    state: State,
    field: FieldReader,
    field_start: u64,
    block: Option<(i64, u64)>,
    cuts: Vec<u64>,
    last_cut: u64,
    blocks: Vec<DataBlock>,
    failed: Option<String>,
    /// The block being read holds large objects.
    in_blobs: bool,
    /// The table data being read: its line ends, its bytes, and its last bytes (where
    /// COPY's `\.` line is looked for).
    lines: u64,
    data_bytes: u64,
    tail: [u8; TAIL],
    tail_len: usize,
    /// Rows of each table data block read (`None`: its end was not as COPY writes it).
    rows: Vec<(i64, Option<u64>)>,
}

/// Bytes of a data block's end kept to find COPY's end-of-data line in.
const TAIL: usize = 32;

impl Default for LayoutWatch {
    fn default() -> Self {
        Self::new()
    }
}

impl LayoutWatch {
    pub fn new() -> Self {
        Self {
            head: Vec::new(),
            parse_at: 0,
            toc_tries: 0,
            toc: None,
            pos: 0,
            state: State::Field(Field::BlockType),
            field: FieldReader::default(),
            field_start: 0,
            block: None,
            cuts: Vec::new(),
            last_cut: 0,
            blocks: Vec::new(),
            failed: None,
            in_blobs: false,
            lines: 0,
            data_bytes: 0,
            tail: [0; TAIL],
            tail_len: 0,
            rows: Vec::new(),
        }
    }

    pub fn see(&mut self, bytes: &[u8]) {
        if self.failed.is_some() || bytes.is_empty() {
            return;
        }
        if self.toc.is_some() {
            self.walk(bytes);
            return;
        }
        self.head.extend_from_slice(bytes);
        if self.head.len() >= self.parse_at || self.head.len() > MAX_TOC_BYTES {
            self.try_toc();
        }
    }

    /// Parse the TOC from the bytes kept so far; once complete, walk what follows it.
    fn try_toc(&mut self) {
        self.toc_tries += 1;
        match parse_toc(&self.head) {
            Ok(toc) => {
                let head = std::mem::take(&mut self.head);
                self.pos = toc.end;
                self.toc = Some(toc);
                self.walk(&head[self.pos as usize..]);
            }
            Err(TocError::Short) if self.head.len() <= MAX_TOC_BYTES => {
                self.parse_at = self.head.len() * 2;
            }
            Err(e) => self.fail(e.to_string()),
        }
    }

    fn fail(&mut self, why: String) {
        self.head = Vec::new();
        self.failed = Some(why);
    }

    fn walk(&mut self, bytes: &[u8]) {
        let int_size = self.toc.as_ref().map_or(4, |t| t.int_size);
        let mut i = 0;
        while i < bytes.len() && self.failed.is_none() {
            if self.state == State::Field(Field::ChunkLength { in_blob: false })
                && !self.field.is_partial()
                && self.whole_rows(bytes, &mut i, 1 + int_size)
            {
                continue;
            }
            match self.state {
                State::Skip { left, in_blob } => {
                    let n = left.min((bytes.len() - i) as u64);
                    if !in_blob {
                        self.see_rows(&bytes[i..i + n as usize]);
                    }
                    i += n as usize;
                    self.pos += n;
                    self.state = if n == left {
                        State::Field(Field::ChunkLength { in_blob })
                    } else {
                        State::Skip {
                            left: left - n,
                            in_blob,
                        }
                    };
                }
                State::Field(field) => {
                    let need = if field == Field::BlockType {
                        1
                    } else {
                        1 + int_size
                    };
                    if !self.field.is_partial() {
                        self.field_start = self.pos;
                    }
                    let from = i;
                    let value = self.field.take(bytes, &mut i, need);
                    self.pos += (i - from) as u64;
                    if let Some(value) = value {
                        self.complete(field, &value[..need]);
                    }
                }
            }
        }
    }

    fn complete(&mut self, field: Field, value: &[u8]) {
        let next = match field {
            Field::BlockType => match value[0] {
                BLOCK_DATA | BLOCK_BLOBS => {
                    self.block = Some((0, self.field_start));
                    self.last_cut = self.field_start;
                    self.in_blobs = value[0] == BLOCK_BLOBS;
                    (self.lines, self.data_bytes, self.tail_len) = (0, 0, 0);
                    Field::BlockId {
                        blobs: value[0] == BLOCK_BLOBS,
                    }
                }
                other => return self.fail(format!("unknown block type {other}")),
            },
            Field::BlockId { blobs } => {
                if let Some(b) = &mut self.block {
                    b.0 = decode_int(value);
                }
                if blobs {
                    Field::BlobOid
                } else {
                    Field::ChunkLength { in_blob: false }
                }
            }
            Field::ChunkLength { in_blob } => match decode_int(value) {
                0 if in_blob => Field::BlobOid,
                0 => {
                    self.end_block();
                    Field::BlockType
                }
                n if n > 0 => {
                    // A chunk of table data is one row (pg_dump writes each row COPY
                    // returns as a chunk): a place to split the table's rows.
                    if !in_blob {
                        self.row_starts(self.field_start);
                    }
                    self.state = State::Skip {
                        left: n as u64,
                        in_blob,
                    };
                    return;
                }
                _ => return self.fail("negative chunk length".into()),
            },
            Field::BlobOid => {
                if decode_int(value) == 0 {
                    self.end_block();
                    Field::BlockType
                } else {
                    Field::ChunkLength { in_blob: true }
                }
            }
        };
        self.state = State::Field(next);
    }

    /// The usual case, taken without the state machine: chunks of table data lying whole
    /// in `bytes` from `*i` on (a header of `head` bytes with a length above zero, and the
    /// data). Takes as many as there are; `false` if not even one (nothing taken).
    ///
    /// Their line ends are counted in one pass over all of them, headers included, less
    /// those in the headers: a row is often shorter than a vector loop's setup is worth.
    fn whole_rows(&mut self, bytes: &[u8], i: &mut usize, head: usize) -> bool {
        let from = *i;
        let (mut header_newlines, mut data_bytes) = (0u64, 0u64);
        // Where the data of the last TAIL rows lie: each has a byte at least, so they hold
        // the last TAIL bytes of data.
        let mut recent = [(0usize, 0usize); TAIL];
        let mut taken = 0usize;
        while let Some(h) = bytes.get(*i..*i + head) {
            let start = *i + head;
            let Some(n) = usize::try_from(decode_int(h))
                .ok()
                .filter(|&n| n > 0 && n <= bytes.len() - start)
            else {
                break;
            };
            self.row_starts(self.pos);
            header_newlines += h.iter().filter(|&&b| b == b'\n').count() as u64;
            recent[taken % TAIL] = (start, start + n);
            taken += 1;
            data_bytes += n as u64;
            *i = start + n;
            self.pos += (head + n) as u64;
        }
        if taken == 0 {
            return false;
        }
        self.lines += count_newlines(&bytes[from..*i]) - header_newlines;
        self.data_bytes += data_bytes;
        // The rows whose bytes make up the tail, oldest first.
        let (mut rows, mut held) = (0, 0);
        while rows < taken.min(TAIL) && held < TAIL {
            let (s, e) = recent[(taken - 1 - rows) % TAIL];
            held += e - s;
            rows += 1;
        }
        for back in (0..rows).rev() {
            let (s, e) = recent[(taken - 1 - back) % TAIL];
            self.keep_tail(&bytes[s..e]);
        }
        true
    }

    /// Table data passing: count its line ends (COPY's text format escapes newlines in
    /// values, so each row is one line) and keep its last bytes.
    fn see_rows(&mut self, data: &[u8]) {
        self.lines += count_newlines(data);
        self.data_bytes += data.len() as u64;
        self.keep_tail(data);
    }

    /// The last [`TAIL`] bytes of the table data read so far, `data` the latest.
    fn keep_tail(&mut self, data: &[u8]) {
        if data.len() >= TAIL {
            self.tail.copy_from_slice(&data[data.len() - TAIL..]);
            self.tail_len = TAIL;
        } else {
            let keep = (TAIL - data.len()).min(self.tail_len);
            self.tail
                .copy_within(self.tail_len - keep..self.tail_len, 0);
            self.tail[keep..keep + data.len()].copy_from_slice(data);
            self.tail_len = keep + data.len();
        }
    }

    /// The rows of the table data block just read: its lines before the `\.` line that
    /// ends COPY's data (pg_dump writes it, then an empty line). `None` if the block does
    /// not end so.
    fn block_rows(&self) -> Option<u64> {
        let t = &self.tail[..self.tail_len];
        let mut end = t.len();
        while end > 0 && t[end - 1] == b'\n' {
            end -= 1;
        }
        let after = (t.len() - end) as u64;
        if after == 0 || end < 2 || &t[end - 2..end] != b"\\." {
            return None;
        }
        let start = end - 2;
        // The `\.` must be a line of its own: at the block's start or after a line end.
        let at_block_start = self.data_bytes == (t.len() - start) as u64;
        if !(at_block_start || (start > 0 && t[start - 1] == b'\n')) {
            return None;
        }
        self.lines.checked_sub(after)
    }

    /// Rows per table (schema, name) whose data block was read whole and ended as COPY's
    /// data ends; a table missing here was not counted.
    pub fn table_rows(&mut self) -> std::collections::HashMap<(String, String), u64> {
        self.parse_rest();
        let Some(toc) = &self.toc else {
            return Default::default();
        };
        let by_id: std::collections::HashMap<i64, u64> = self
            .rows
            .iter()
            .filter_map(|(id, rows)| rows.map(|r| (*id, r)))
            .collect();
        toc.entries
            .iter()
            .filter(|e| e.desc == "TABLE DATA")
            .filter_map(|e| {
                let rows = by_id.get(&e.id)?;
                Some(((e.namespace.clone(), e.tag.clone()), *rows))
            })
            .collect()
    }

    /// A row of table data starts at `at`: a cut there if the last is far enough behind.
    fn row_starts(&mut self, at: u64) {
        if at >= self.last_cut + CUT_EVERY {
            self.cuts.push(at);
            self.last_cut = at;
        }
    }

    fn end_block(&mut self) {
        let cuts = thin(std::mem::take(&mut self.cuts), MAX_CUTS);
        if let Some((id, offset)) = self.block.take() {
            if !self.in_blobs {
                self.rows.push((id, self.block_rows()));
            }
            self.blocks.push(DataBlock {
                id,
                offset,
                bytes: self.pos - offset,
                cuts,
            });
        }
    }

    /// At the stream's end: parse the TOC and walk the blocks, if the bytes kept were not
    /// tried since they grew.
    fn parse_rest(&mut self) {
        if self.toc.is_none() && self.failed.is_none() && !self.head.is_empty() {
            self.try_toc();
        }
    }

    /// The layout, if the archive was read to a block boundary; else why not.
    pub fn finish(mut self) -> Result<DumpLayout, String> {
        self.parse_rest();
        log::debug!("table of contents parsed in {} tries", self.toc_tries);
        if let Some(why) = self.failed {
            return Err(why);
        }
        let Some(toc) = self.toc else {
            return Err(TocError::Short.to_string());
        };
        if self.state != State::Field(Field::BlockType) || self.field.is_partial() {
            return Err("the archive ends inside a data block".into());
        }
        Ok(DumpLayout {
            toc_bytes: toc.end,
            blocks: self.blocks,
        })
    }
}

/// How many `\n` bytes `data` holds. memchr counts 32 bytes at a time (AVX2, chosen at
/// run time), where an eight-byte loop compiled for plain x86-64 has no `popcnt`. With it,
/// counted once per run of whole rows, the layout walk went from 4.2% to 1.7% of a logical
/// backup's CPU samples (`perf`, issue 24).
fn count_newlines(data: &[u8]) -> u64 {
    memchr::memchr_iter(b'\n', data).count() as u64
}

/// At most `max` of `cuts`, evenly spread.
fn thin(cuts: Vec<u64>, max: usize) -> Vec<u64> {
    if cuts.len() <= max {
        return cuts;
    }
    let every = cuts.len().div_ceil(max);
    cuts.into_iter().skip(every - 1).step_by(every).collect()
}

/// What watching a dump stream found, handed over when the stream has ended.
#[derive(Debug)]
pub struct DumpFacts {
    /// The data blocks' layout, or why there is none.
    pub layout: Result<DumpLayout, String>,
    /// Rows per table (schema, name), counted from the dump's data (see
    /// [`LayoutWatch::table_rows`]).
    pub rows: std::collections::HashMap<(String, String), u64>,
}

/// A reader that shows every byte it passes to a [`LayoutWatch`], and sends what it found
/// at the end of the stream (dropped unsent if the stream is not read to its end).
pub struct Watched<R> {
    inner: R,
    watch: Option<(LayoutWatch, tokio::sync::oneshot::Sender<DumpFacts>)>,
}

impl<R> Watched<R> {
    pub fn new(inner: R, done: tokio::sync::oneshot::Sender<DumpFacts>) -> Self {
        Self {
            inner,
            watch: Some((LayoutWatch::new(), done)),
        }
    }
}

impl<R: std::io::Read> std::io::Read for Watched<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            if let Some((w, _)) = &mut self.watch {
                w.see(&buf[..n]);
            }
        } else if !buf.is_empty()
            && let Some((mut w, done)) = self.watch.take()
        {
            let rows = w.table_rows();
            let layout = w.finish();
            if let Err(why) = &layout {
                log::debug!("no layout recorded for the dump: {why}");
            }
            let _ = done.send(DumpFacts { layout, rows });
        }
        Ok(n)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A small archive in the custom format, written the way `pg_dump` writes it.
    struct Writer(Vec<u8>);

    impl Writer {
        fn int(&mut self, v: i64) {
            self.0.push(u8::from(v < 0));
            self.0
                .extend_from_slice(&(v.unsigned_abs() as u32).to_le_bytes());
        }
        fn str(&mut self, s: Option<&str>) {
            match s {
                Some(s) => {
                    self.int(s.len() as i64);
                    self.0.extend_from_slice(s.as_bytes());
                }
                None => self.int(-1),
            }
        }
        fn entry(&mut self, id: i64, has_data: bool, desc: &str, section: i64) {
            self.int(id);
            self.int(i64::from(has_data));
            for s in ["1259", "16390", "t"] {
                self.str(Some(s));
            }
            self.str(Some(desc));
            self.int(section);
            for s in ["CREATE TABLE t ();", "DROP TABLE t;", "", "public", ""] {
                self.str(Some(s));
            }
            self.str(Some("heap"));
            self.str(Some("postgres"));
            self.str(Some("false"));
            self.str(Some("215"));
            self.str(None);
            self.0.push(if has_data { 1 } else { 3 });
            self.0.extend_from_slice(&[0; 8]);
        }
    }

    fn archive() -> (Vec<u8>, DumpLayout) {
        let rows = [
            "1\talice\n",
            "2\tbob\n",
            "3\tcarol\n",
            "4\tdave, whose row is long\n",
        ];
        archive_with(&rows.map(|r| r.as_bytes().to_vec()))
    }

    /// An archive with a table of `rows` (one chunk each) and two large objects, and its
    /// layout worked out as it is written.
    pub(crate) fn archive_with(rows: &[Vec<u8>]) -> (Vec<u8>, DumpLayout) {
        archive_with_tables(0, rows)
    }

    /// The same, with `more` further tables (no data) in the TOC.
    fn archive_with_tables(more: usize, rows: &[Vec<u8>]) -> (Vec<u8>, DumpLayout) {
        let mut w = Writer(b"PGDMP".to_vec());
        w.0.extend_from_slice(&[1, 14, 0, 4, 8, 1]);
        w.int(0);
        for v in [1, 2, 3, 4, 5, 2026, 0] {
            w.int(v);
        }
        for s in ["app", "15.18", "15.18"] {
            w.str(Some(s));
        }
        w.int(4 + more as i64);
        w.entry(215, false, "TABLE", SECTION_PRE_DATA);
        for id in 0..more {
            w.entry(100_000 + id as i64, false, "TABLE", SECTION_PRE_DATA);
        }
        w.entry(3330, true, "TABLE DATA", SECTION_DATA);
        w.entry(3331, true, "BLOBS", SECTION_DATA);
        w.entry(3185, false, "CONSTRAINT", SECTION_POST_DATA);
        let toc_bytes = w.0.len() as u64;
        w.0.push(BLOCK_DATA);
        w.int(3330);
        let (mut cuts, mut last_cut) = (Vec::new(), toc_bytes);
        for row in rows {
            let at = w.0.len() as u64;
            if at >= last_cut + CUT_EVERY {
                cuts.push(at);
                last_cut = at;
            }
            w.int(row.len() as i64);
            w.0.extend_from_slice(row);
        }
        w.int(0);
        let second = w.0.len() as u64;
        // Two large objects, the second in two chunks.
        w.0.push(BLOCK_BLOBS);
        w.int(3331);
        for (oid, chunks) in [(16437, vec!["hello"]), (16438, vec!["wor", "ld"])] {
            w.int(oid);
            for c in chunks {
                w.int(c.len() as i64);
                w.0.extend_from_slice(c.as_bytes());
            }
            w.int(0);
        }
        w.int(0);
        let end = w.0.len() as u64;
        let layout = DumpLayout {
            toc_bytes,
            blocks: vec![
                DataBlock {
                    id: 3330,
                    offset: toc_bytes,
                    bytes: second - toc_bytes,
                    cuts,
                },
                DataBlock {
                    id: 3331,
                    offset: second,
                    bytes: end - second,
                    cuts: Vec::new(),
                },
            ],
        };
        (w.0, layout)
    }

    #[test]
    fn reads_the_toc() {
        let (bytes, layout) = archive();
        let toc = parse_toc(&bytes).unwrap();
        assert_eq!(toc.end, layout.toc_bytes);
        let ids: Vec<(i64, bool, i64)> = toc
            .entries
            .iter()
            .map(|e| (e.id, e.has_data, e.section))
            .collect();
        assert_eq!(
            ids,
            [
                (215, false, SECTION_PRE_DATA),
                (3330, true, SECTION_DATA),
                (3331, true, SECTION_DATA),
                (3185, false, SECTION_POST_DATA)
            ]
        );
        assert_eq!(toc.entries[2].desc, "BLOBS");
        assert!(toc.entries.iter().all(|e| e.deps == [215]));
        assert_eq!(parse_toc(&bytes[..40]), Err(TocError::Short));
        check_layout(&layout, &toc, bytes.len() as u64).unwrap();
    }

    #[test]
    fn counts_a_tables_rows_in_its_data_whatever_the_pieces() {
        // Rows as COPY writes them (newlines in values escaped), then pg_dump's `\.` line
        // and an empty line; a zero-column table's rows are empty lines; a row may be one
        // chunk or several, and the end line may share a chunk with the last row.
        let long = format!("9\t{}\n", "x".repeat(100));
        // Lengths whose headers hold `\n` bytes: 10 (0x0a) and 2,570 (0x0a0a).
        let ten = "123456789\n";
        let wide = format!("{}\n", "y".repeat(2569));
        let mut many_short = vec!["7\n"; 40];
        many_short.push("\\.\n\n");
        let mut many_short_no_end = vec!["7\n"; 40];
        many_short_no_end.push("x\\.\n");
        // The `\.` follows a row's last byte, not a line end: a tail missing the row
        // before the last would take it for COPY's end.
        let mut many_short_glued = vec!["7\n"; 40];
        many_short_glued.extend(["x", "\\.\n\n"]);
        let cases: Vec<(Vec<&str>, Option<u64>)> = vec![
            (vec![ten, ten, ten, "\\.\n\n"], Some(3)),
            (vec![wide.as_str(), ten, "\\.\n\n"], Some(2)),
            (many_short, Some(40)),
            (many_short_no_end, None),
            (many_short_glued, None),
            (vec!["1\talice\n", "2\tline\\nbreak\n", "\\.\n\n"], Some(2)),
            (vec!["\\.\n\n"], Some(0)),
            // As pg_dump 15 writes it: `\.`, then two more line ends.
            (vec!["1\tx\n", "\\.\n\n\n"], Some(1)),
            (vec!["\n", "\n", "\n", "\\.\n\n"], Some(3)),
            (vec!["1\t\\.\n", "\\.\n"], Some(1)),
            (vec![long.as_str(), long.as_str(), "3\tc\n\\.\n\n"], Some(3)),
            // Not COPY's end: not counted (the backup then counts the table by a query).
            (vec!["1\talice\n", "2\tbob\n"], None),
            (vec!["1\t\\.\n\n"], None),
            (vec![long.as_str(), "x\\.\n"], None),
        ];
        for (rows, expected) in cases {
            let rows: Vec<Vec<u8>> = rows.iter().map(|r| r.as_bytes().to_vec()).collect();
            let (bytes, _) = archive_with(&rows);
            for piece in [1, 2, 5, 64, bytes.len()] {
                let mut w = LayoutWatch::new();
                for p in bytes.chunks(piece) {
                    w.see(p);
                }
                let counted = w.table_rows();
                let key = (String::from("public"), String::from("t"));
                assert_eq!(
                    counted.get(&key).copied(),
                    expected,
                    "{rows:?} in pieces of {piece} bytes"
                );
                w.finish().unwrap();
            }
        }
    }

    /// Real archives of one database (`archive_fixtures/`: tables with tricky values, a
    /// zero-column, an empty, a mixed-case table in a schema with a space, partitions, a
    /// parent in inheritance, a large object) by pg_dump 15, 16, 17 and 18 (`-Fc -Z0`):
    /// archive versions 1.14, 1.15 and 1.16. `counts.tsv`: each table's own rows
    /// (`count(*) FROM ONLY`), as the server counted them when the archives were made.
    #[test]
    fn reads_archives_of_pg_dump_15_to_18() {
        let counts: std::collections::HashMap<(String, String), u64> =
            include_str!("archive_fixtures/counts.tsv")
                .lines()
                .map(|l| {
                    let f: Vec<&str> = l.split('\t').collect();
                    ((f[0].to_string(), f[1].to_string()), f[2].parse().unwrap())
                })
                .collect();
        assert_eq!(counts.len(), 8);
        let archives: [(&str, u8, &[u8]); 4] = [
            ("15", 14, include_bytes!("archive_fixtures/pg15.dump")),
            ("16", 15, include_bytes!("archive_fixtures/pg16.dump")),
            ("17", 16, include_bytes!("archive_fixtures/pg17.dump")),
            ("18", 16, include_bytes!("archive_fixtures/pg18.dump")),
        ];
        for (pg, minor, bytes) in archives {
            assert_eq!(bytes[6], minor, "pg_dump {pg}'s archive version");
            let toc = parse_toc(bytes).unwrap_or_else(|e| panic!("pg_dump {pg}: {e}"));
            let data: Vec<(&str, &str)> = toc
                .entries
                .iter()
                .filter(|e| e.desc == "TABLE DATA")
                .map(|e| (e.namespace.as_str(), e.tag.as_str()))
                .collect();
            assert_eq!(data.len(), 8, "pg_dump {pg}: {data:?}");
            assert!(data.contains(&("Odd Schema", "Mixed Case")), "{data:?}");
            for piece in [1, 7, 4096, bytes.len()] {
                let mut w = LayoutWatch::new();
                for p in bytes.chunks(piece) {
                    w.see(p);
                }
                assert_eq!(w.table_rows(), counts, "pg_dump {pg}, pieces of {piece}");
                let layout = w.finish().unwrap();
                check_layout(&layout, &toc, bytes.len() as u64)
                    .unwrap_or_else(|e| panic!("pg_dump {pg}: {e}"));
            }
        }
    }

    #[test]
    fn newlines_are_counted_exactly() {
        // Every length up to 100 and every byte value near `\n` (and 0x8a, 0x0a | 0x80).
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for len in 0..100 {
            for _ in 0..50 {
                let data: Vec<u8> = (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        [b'\n', 0x0b, 0x09, 0x8a, 0x00, 0xff, b'a'][(x % 7) as usize]
                    })
                    .collect();
                let naive = data.iter().filter(|&&b| b == b'\n').count() as u64;
                assert_eq!(count_newlines(&data), naive, "{data:?}");
            }
        }
    }

    #[test]
    fn maps_the_blocks_whatever_the_pieces() {
        let (bytes, expected) = archive();
        for piece in [1, 2, 3, 7, 64, bytes.len()] {
            let mut w = LayoutWatch::new();
            for p in bytes.chunks(piece) {
                w.see(p);
            }
            assert_eq!(w.finish().unwrap(), expected, "pieces of {piece} bytes");
        }
    }

    #[test]
    fn indexes_and_constraints_of_large_tables_may_come_early() {
        let entry = |id: i64, desc: &str, section: i64, deps: &[i64]| TocEntry {
            id,
            has_data: desc == "TABLE DATA",
            desc: desc.into(),
            section,
            deps: deps.to_vec(),
            ..Default::default()
        };
        let (pre, data, post) = (SECTION_PRE_DATA, SECTION_DATA, SECTION_POST_DATA);
        let toc = Toc {
            entries: vec![
                entry(1, "TABLE", pre, &[]),
                entry(2, "TABLE", pre, &[]),
                entry(3, "TABLE", pre, &[]),
                entry(4, "FUNCTION", pre, &[]),
                entry(11, "TABLE DATA", data, &[1]),
                entry(12, "TABLE DATA", data, &[2]),
                entry(13, "TABLE DATA", data, &[3]),
                entry(21, "CONSTRAINT", post, &[1]),
                entry(22, "INDEX", post, &[1, 4, 21]),
                entry(23, "CONSTRAINT", post, &[2]),
                entry(24, "FK CONSTRAINT", post, &[2, 21]),
                entry(25, "INDEX", post, &[2, 24]),
                entry(26, "INDEX", post, &[3]),
                entry(27, "TRIGGER", post, &[1]),
                entry(28, "MATERIALIZED VIEW DATA", post, &[1]),
                entry(29, "INDEX", post, &[1, 2]),
            ],
            end: 100,
            int_size: 4,
        };
        let block = |id: i64, offset: u64, bytes: u64| DataBlock {
            id,
            offset,
            bytes,
            cuts: Vec::new(),
        };
        let layout = DumpLayout {
            toc_bytes: 100,
            blocks: vec![
                block(11, 100, 900),
                block(12, 1000, 500),
                block(13, 1500, 10),
            ],
        };
        let early = |min_bytes, max_tables| -> Vec<(i64, i64, Vec<i64>)> {
            early_post_data(&toc, &layout, min_bytes, max_tables)
                .into_iter()
                .map(|e| (e.id, e.data, e.after))
                .collect()
        };
        // 22 waits for 21; 25 waits for a foreign key, which is never early; 29 spans two
        // tables; 26's table is small; triggers and refreshes stay for the end.
        assert_eq!(
            early(100, 10),
            [(21, 11, vec![]), (22, 11, vec![21]), (23, 12, vec![])]
        );
        assert_eq!(early(100, 1), [(21, 11, vec![]), (22, 11, vec![21])]);
        assert_eq!(early(0, 10).len(), 4);
        assert!(early(1000, 10).is_empty());
    }

    #[test]
    fn an_entry_of_no_section_counts_in_the_section_before_it() {
        let entry = |id: i64, desc: &str, section: i64| TocEntry {
            id,
            has_data: false,
            desc: desc.into(),
            section,
            deps: Vec::new(),
            ..Default::default()
        };
        let toc = Toc {
            entries: vec![
                entry(1, "COMMENT", SECTION_NONE),
                entry(2, "TABLE", SECTION_PRE_DATA),
                entry(3, "COMMENT", SECTION_NONE),
                entry(4, "TABLE DATA", SECTION_DATA),
                entry(5, "CONSTRAINT", SECTION_POST_DATA),
                entry(6, "COMMENT", SECTION_NONE),
                entry(7, "ACL", SECTION_NONE),
            ],
            end: 0,
            int_size: 4,
        };
        let ids = |section| -> Vec<i64> { toc.in_section(section).map(|e| e.id).collect() };
        assert_eq!(ids(SECTION_PRE_DATA), [1, 2, 3]);
        assert_eq!(ids(SECTION_DATA), [4]);
        assert_eq!(ids(SECTION_POST_DATA), [5, 6, 7]);
    }

    #[test]
    fn a_large_toc_is_parsed_a_logarithmic_number_of_times() {
        // 30,000 tables: a TOC of ~2.5 MB, arriving in pipe-sized reads.
        let rows = ["1\talice\n".as_bytes().to_vec()];
        let (bytes, expected) = archive_with_tables(30_000, &rows);
        assert!(expected.toc_bytes > 2_000_000, "{}", expected.toc_bytes);
        let mut w = LayoutWatch::new();
        for p in bytes.chunks(64 << 10) {
            w.see(p);
        }
        let tries = w.toc_tries;
        assert_eq!(w.finish().unwrap(), expected);
        // Every read would be ~40 tries, each parsing the whole head again.
        assert!((2..=8).contains(&tries), "{tries} tries");
    }

    #[test]
    fn a_truncated_or_foreign_archive_gets_no_layout() {
        let (bytes, _) = archive();
        let mut w = LayoutWatch::new();
        w.see(&bytes[..bytes.len() - 3]);
        assert!(w.finish().unwrap_err().contains("inside a data block"));
        let mut w = LayoutWatch::new();
        w.see(b"PGDMP\x01\x11\x00");
        w.see(&[0; 64]);
        assert!(w.finish().unwrap_err().contains("version 1.17"));
        let mut w = LayoutWatch::new();
        w.see(b"-- plain SQL\n");
        assert!(w.finish().is_err());
    }

    #[test]
    fn shares_the_data_in_dump_order() {
        let (bytes, layout) = archive();
        let mut toc = parse_toc(&bytes).unwrap();
        toc.entries.push(TocEntry {
            id: 3341,
            has_data: false,
            desc: "SEQUENCE SET".into(),
            section: SECTION_DATA,
            deps: vec![215],
            ..Default::default()
        });
        let whole = |b: &DataBlock| Piece {
            id: b.id,
            from: b.offset,
            to: b.offset + b.bytes,
            opens: false,
            closes: false,
        };
        let one = share_data(&toc, &layout, 1);
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].entries, [3330, 3331, 3341]);
        assert_eq!(
            one[0].pieces,
            layout.blocks.iter().map(whole).collect::<Vec<_>>()
        );
        // No row boundary in the small table: each block whole, one per share.
        let two = share_data(&toc, &layout, 2);
        let entries: Vec<Vec<i64>> = two.iter().map(|s| s.entries.clone()).collect();
        assert_eq!(entries, [vec![3330, 3341], vec![3331]]);
        assert_eq!(two[1].pieces, [whole(&layout.blocks[1])]);
        assert_eq!(share_data(&toc, &layout, 8).len(), 2);
    }

    /// The rows of entry 3330 in a stream of blocks, checking each block's framing.
    fn rows_of(stream: &[u8]) -> Vec<Vec<u8>> {
        let mut c = Cursor {
            bytes: stream,
            pos: 0,
            int_size: 4,
        };
        let mut rows = Vec::new();
        while c.pos < stream.len() {
            let kind = c.byte().unwrap();
            let id = c.int().unwrap();
            if kind == BLOCK_BLOBS {
                break;
            }
            assert_eq!((kind, id), (BLOCK_DATA, 3330));
            loop {
                let n = c.int().unwrap();
                if n == 0 {
                    break;
                }
                rows.push(c.take(n as usize).unwrap().to_vec());
            }
        }
        rows
    }

    #[test]
    fn a_large_table_is_split_between_shares_at_a_row_boundary() {
        let rows: Vec<Vec<u8>> = (0..40_000)
            .map(|i| format!("{i}\t{}\n", "x".repeat(990)).into_bytes())
            .collect();
        let (bytes, expected) = archive_with(&rows);
        assert_eq!(expected.blocks[0].cuts.len(), 2, "about 40 MB of rows");
        let mut w = LayoutWatch::new();
        for p in bytes.chunks(65_536) {
            w.see(p);
        }
        let layout = w.finish().unwrap();
        assert_eq!(layout, expected);
        let toc = parse_toc(&bytes).unwrap();
        check_layout(&layout, &toc, bytes.len() as u64).unwrap();

        let shares = share_data(&toc, &layout, 2);
        assert_eq!(shares.len(), 2);
        assert_eq!(shares[0].entries, [3330]);
        assert_eq!(shares[1].entries, [3330, 3331]);
        // Each share is fed well-formed blocks; together they hold every row once, in order.
        let mut restored = Vec::new();
        for s in &shares {
            let mut stream = Vec::new();
            for p in &s.pieces {
                if p.opens {
                    stream.extend(toc.block_header(p.id));
                }
                stream.extend_from_slice(&bytes[p.from as usize..p.to as usize]);
                if p.closes {
                    stream.extend(toc.block_end());
                }
            }
            let part = rows_of(&stream);
            assert!(part.len() > 15_000, "{} rows in one share", part.len());
            restored.extend(part);
        }
        assert_eq!(restored, rows);
    }

    #[test]
    fn shares_cut_short_at_a_row_boundary_do_not_pile_up_in_the_last() {
        // Tables of 331, 324, 193 and 27 units with a row boundary every 16 units, in 16
        // shares: each share ends at the boundary nearest its fair end, and what one share
        // lacks the next takes, so no share is more than a boundary's spacing off.
        let mut blocks = Vec::new();
        let mut offset = 100;
        for (id, bytes) in [(1, 331u64), (2, 324), (3, 193), (4, 27)] {
            let cuts = (1..)
                .map(|k| offset + 16 * k)
                .take_while(|&c| c < offset + bytes);
            blocks.push(DataBlock {
                id,
                offset,
                bytes,
                cuts: cuts.collect(),
            });
            offset += bytes;
        }
        let layout = DumpLayout {
            toc_bytes: 100,
            blocks,
        };
        let toc = Toc {
            entries: Vec::new(),
            end: 100,
            int_size: 4,
        };
        let shares = share_data(&toc, &layout, 16);
        let sizes: Vec<u64> = shares.iter().map(DataShare::bytes).collect();
        assert_eq!(sizes.iter().sum::<u64>(), 875);
        assert_eq!(sizes.len(), 16, "{sizes:?}");
        assert!(sizes.iter().all(|&b| b <= 55 + 16), "{sizes:?}");
    }

    #[test]
    fn cuts_are_thinned_evenly() {
        let cuts: Vec<u64> = (1..=1000).collect();
        let kept = thin(cuts.clone(), 256);
        assert!(kept.len() <= 256 && kept.len() >= 200, "{}", kept.len());
        assert!(kept.windows(2).all(|w| w[1] - w[0] == 4));
        assert_eq!(thin(cuts[..10].to_vec(), 256), cuts[..10]);
    }

    #[test]
    fn a_layout_that_does_not_fit_the_dump_is_refused() {
        let (bytes, layout) = archive();
        let toc = parse_toc(&bytes).unwrap();
        let mut gap = layout.clone();
        gap.blocks[1].offset += 1;
        assert!(check_layout(&gap, &toc, bytes.len() as u64).is_err());
        let mut missing = layout.clone();
        missing.blocks.pop();
        let end = missing.blocks[0].offset + missing.blocks[0].bytes;
        assert!(check_layout(&missing, &toc, end).is_err());
        assert!(check_layout(&layout, &toc, bytes.len() as u64 + 1).is_err());
    }
}
