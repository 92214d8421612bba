//! Table data re-framed on its way to `pg_restore`. `pg_dump` writes every row of a table
//! as a chunk of its own; `pg_restore` reads them length by length and hands each one to
//! `COPY` separately — millions of small reads and calls that a compressed dump (4 KiB
//! chunks) does not pay. `COPY` takes its data in pieces of any size, so lifeboat passes
//! the rows on in chunks of about 128 KiB: the same bytes, far fewer calls.
//!
//! [`Reframe`] does it for the chunks of one block, [`FramedDump`] for a whole dump whose
//! layout is known (large-object blocks pass unchanged).

use std::io::{self, Write};

use lifeboat_core::manifest::DumpLayout;

use crate::{
    archive::{self, FieldReader, Toc, decode_int, encode_int},
    cdc::fold::{Fold, TableFold},
};

const CHUNK: usize = 128 << 10;

fn bad_data(why: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.into())
}

/// The state of re-framing one block's chunks, apart from where they go; with a fold of
/// captured changes ([`TableFold`]), each row goes through it.
#[derive(Debug)]
struct Rows<'f> {
    int_size: usize,
    field: FieldReader,
    left: u64,
    buf: Vec<u8>,
    ended: bool,
    fold: Option<&'f TableFold>,
    /// With a fold: the start of a row whose end has not come yet.
    line: Vec<u8>,
    /// With a fold: its rows to add are in (before `COPY`'s end marker `\.`, which
    /// `pg_dump` writes as the last chunk, or at the block's end).
    added: bool,
}

impl<'f> Rows<'f> {
    fn new(int_size: usize, fold: Option<&'f TableFold>) -> Self {
        Self {
            int_size,
            field: FieldReader::default(),
            left: 0,
            buf: Vec::with_capacity(CHUNK * 2),
            ended: false,
            fold,
            line: Vec::new(),
            added: false,
        }
    }

    fn emit(&mut self, out: &mut impl Write) -> io::Result<()> {
        // In chunks of at most 16 CHUNKs (a fold's added rows can be many).
        for piece in self.buf.chunks(CHUNK * 16) {
            let len = i64::try_from(piece.len()).unwrap_or(i64::MAX);
            out.write_all(&encode_int(len, self.int_size))?;
            out.write_all(piece)?;
        }
        self.buf.clear();
        Ok(())
    }

    fn feed(&mut self, data: &[u8], out: &mut impl Write) -> io::Result<()> {
        let mut i = 0;
        while i < data.len() {
            if self.left > 0 {
                let n = self.left.min((data.len() - i) as u64) as usize;
                match self.fold {
                    None => self.buf.extend_from_slice(&data[i..i + n]),
                    Some(fold) => {
                        // Whole rows through the fold; a row's start waits for its end.
                        let mut rest = &data[i..i + n];
                        while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
                            let row: &[u8] = if self.line.is_empty() {
                                &rest[..nl]
                            } else {
                                self.line.extend_from_slice(&rest[..nl]);
                                &self.line
                            };
                            if self.added {
                                self.buf.extend_from_slice(row);
                                self.buf.push(b'\n');
                            } else if row == b"\\." {
                                fold.end(&mut self.buf);
                                self.added = true;
                                self.buf.extend_from_slice(b"\\.\n");
                            } else {
                                fold.row(row, &mut self.buf);
                            }
                            self.line.clear();
                            rest = &rest[nl + 1..];
                        }
                        self.line.extend_from_slice(rest);
                    }
                }
                i += n;
                self.left -= n as u64;
                if self.buf.len() >= CHUNK {
                    self.emit(out)?;
                }
                continue;
            }
            if self.ended {
                return Err(bad_data("data after the end of a block"));
            }
            let need = 1 + self.int_size;
            let Some(len) = self.field.take(data, &mut i, need) else {
                continue;
            };
            match u64::try_from(decode_int(&len[..need])) {
                Ok(0) => {
                    if let Some(fold) = self.fold {
                        if !self.line.is_empty() {
                            return Err(bad_data("a table's data ends inside a row"));
                        }
                        if !self.added {
                            fold.end(&mut self.buf);
                            self.added = true;
                        }
                    }
                    self.emit(out)?;
                    out.write_all(&encode_int(0, self.int_size))?;
                    self.ended = true;
                }
                Ok(n) => self.left = n,
                Err(_) => return Err(bad_data("a negative chunk length")),
            }
        }
        Ok(())
    }

    /// Pass on what is buffered; whether the block's end was seen. Fails if the input
    /// stopped inside a row.
    fn finish(&mut self, out: &mut impl Write) -> io::Result<bool> {
        if self.left > 0 || self.field.is_partial() || !self.line.is_empty() {
            return Err(bad_data("the data stops inside a row"));
        }
        self.emit(out)?;
        Ok(self.ended)
    }
}

/// The chunks of one block of table data (not its header), re-framed into `inner`; the
/// zero length that ends the block, if it comes, is passed on after the last chunk. With
/// a fold, the rows go through it (and its rows to add come before the end).
pub struct Reframe<'f, W: Write> {
    inner: W,
    rows: Rows<'f>,
}

impl<'f, W: Write> Reframe<'f, W> {
    pub fn new(inner: W, toc: &Toc, fold: Option<&'f TableFold>) -> Self {
        Self {
            inner,
            rows: Rows::new(toc.int_size, fold),
        }
    }

    /// Pass on what is buffered; returns whether the block's end was seen. Fails if the
    /// input stopped inside a row.
    pub fn finish(mut self) -> io::Result<bool> {
        self.rows.finish(&mut self.inner)
    }
}

impl<W: Write> Write for Reframe<'_, W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.rows.feed(data, &mut self.inner)?;
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A whole dump written through in order, its table data re-framed by the recorded layout
/// (and folded, with a fold). The TOC is read as it passes; if it does not fit the layout,
/// everything passes unchanged.
pub struct FramedDump<'a, W: Write> {
    inner: W,
    layout: &'a DumpLayout,
    fold: Option<&'a Fold>,
    dump_bytes: u64,
    pos: u64,
    head: Vec<u8>,
    /// Once the TOC has passed: whether table data is re-framed, and of which entries.
    toc: Option<Option<Toc>>,
    /// The block being written, by index in the layout, what the TOC says of it, and its
    /// re-framing.
    block: usize,
    span: Option<Span>,
    rows: Option<Rows<'a>>,
}

/// Where the block being written ends, where its header ends, and whether its chunks are
/// re-framed (table data): worked out once per block, not on every write.
#[derive(Debug, Clone, Copy)]
struct Span {
    id: i64,
    end: u64,
    header_end: u64,
    reframed: bool,
}

impl<'a, W: Write> FramedDump<'a, W> {
    pub fn new(inner: W, layout: &'a DumpLayout, dump_bytes: u64, fold: Option<&'a Fold>) -> Self {
        Self {
            inner,
            layout,
            fold,
            dump_bytes,
            pos: 0,
            head: Vec::new(),
            toc: None,
            block: 0,
            span: None,
            rows: None,
        }
    }

    /// Whether the table data was re-framed (the layout fit the dump).
    pub fn finish(mut self) -> io::Result<bool> {
        if let Some(mut rows) = self.rows.take()
            && !rows.finish(&mut self.inner)?
        {
            return Err(bad_data("the dump ends inside a block"));
        }
        self.inner.flush()?;
        Ok(matches!(self.toc, Some(Some(_))))
    }

    /// Bytes of the head (header and TOC) up to `toc_bytes`, then decide.
    fn take_head(&mut self, data: &[u8]) -> io::Result<usize> {
        let want = (self.layout.toc_bytes - self.pos) as usize;
        let n = want.min(data.len());
        self.head.extend_from_slice(&data[..n]);
        self.inner.write_all(&data[..n])?;
        self.pos += n as u64;
        if self.pos == self.layout.toc_bytes {
            let fits = archive::fitting_toc(&self.head, self.layout, self.dump_bytes);
            self.toc = Some(match fits {
                Ok(toc) => Some(toc),
                Err(why) => {
                    log::warn!(
                        "the dump's recorded layout does not fit it ({why}); passed on as it is"
                    );
                    None
                }
            });
            self.head = Vec::new();
        }
        Ok(n)
    }
}

impl<W: Write> Write for FramedDump<'_, W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let mut i = 0;
        while i < data.len() {
            let rest = &data[i..];
            let toc = match &self.toc {
                None => {
                    i += self.take_head(rest)?;
                    continue;
                }
                Some(None) => {
                    self.inner.write_all(rest)?;
                    self.pos += rest.len() as u64;
                    break;
                }
                Some(Some(toc)) => toc,
            };
            let Span {
                id,
                end,
                header_end,
                reframed,
            } = match self.span {
                Some(span) => span,
                None => {
                    let Some(b) = self.layout.blocks.get(self.block) else {
                        return Err(bad_data("data after the last block of the layout"));
                    };
                    *self.span.insert(Span {
                        id: b.id,
                        end: b.offset + b.bytes,
                        header_end: b.offset + toc.block_header(b.id).len() as u64,
                        reframed: toc.is_table_data(b.id),
                    })
                }
            };
            let n = (end - self.pos).min(rest.len() as u64) as usize;
            let (this, _) = rest.split_at(n);
            if !reframed {
                self.inner.write_all(this)?;
            } else {
                // The header passes as it is; the chunks after it are re-framed.
                let h = (header_end.saturating_sub(self.pos) as usize).min(n);
                self.inner.write_all(&this[..h])?;
                if h < n {
                    let fold = self.fold.and_then(|f| f.table(id));
                    let rows = self
                        .rows
                        .get_or_insert_with(|| Rows::new(toc.int_size, fold));
                    rows.feed(&this[h..], &mut self.inner)?;
                }
            }
            self.pos += n as u64;
            i += n;
            if self.pos == end {
                if let Some(mut rows) = self.rows.take()
                    && !rows.finish(&mut self.inner)?
                {
                    return Err(bad_data(format!(
                        "the data of entry {id} does not end where the layout says"
                    )));
                }
                self.block += 1;
                self.span = None;
            }
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::{parse_toc, tests::archive_with};

    fn rows(n: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| format!("{i}\t{}\n", "y".repeat(i % 200)).into_bytes())
            .collect()
    }

    /// Chunk lengths and the concatenated data of each block of a stream after the TOC.
    fn blocks_of(bytes: &[u8], toc: &Toc) -> Vec<(u8, i64, usize, Vec<u8>)> {
        let int = |at: &mut usize| {
            let v = decode_int(&bytes[*at..*at + 1 + toc.int_size]);
            *at += 1 + toc.int_size;
            v
        };
        let mut at = toc.end as usize;
        let mut out = Vec::new();
        while at < bytes.len() {
            let kind = bytes[at];
            at += 1;
            let id = int(&mut at);
            let (mut chunks, mut data) = (0, Vec::new());
            loop {
                if kind == 3 {
                    let oid = int(&mut at);
                    if oid == 0 {
                        break;
                    }
                    data.extend_from_slice(&oid.to_le_bytes());
                }
                loop {
                    let n = int(&mut at) as usize;
                    if n == 0 {
                        break;
                    }
                    data.extend_from_slice(&bytes[at..at + n]);
                    at += n;
                    chunks += 1;
                }
                if kind == 1 {
                    break;
                }
            }
            out.push((kind, id, chunks, data));
        }
        out
    }

    #[test]
    fn rows_are_reframed_in_large_chunks() {
        let rows = rows(5_000);
        let (bytes, layout) = archive_with(&rows);
        let toc = parse_toc(&bytes).unwrap();
        let b = &layout.blocks[0];
        let header = toc.block_header(b.id);
        let body = &bytes[(b.offset as usize + header.len())..(b.offset + b.bytes) as usize];
        for piece in [1, 7, 4096, body.len()] {
            let mut out = bytes[..toc.end as usize].to_vec();
            out.extend_from_slice(&header);
            let mut r = Reframe::new(&mut out, &toc, None);
            for p in body.chunks(piece) {
                r.write_all(p).unwrap();
            }
            assert!(r.finish().unwrap(), "the block's end is passed on");
            let blocks = blocks_of(&out, &toc);
            assert_eq!(blocks.len(), 1);
            let (kind, id, chunks, data) = &blocks[0];
            assert_eq!((*kind, *id), (1, b.id));
            assert_eq!(*data, rows.concat());
            assert!(*chunks < 10, "{chunks} chunks for {} bytes", data.len());
        }
        // Stopping inside a row is an error; at a row boundary, a part without the end.
        let mut r = Reframe::new(Vec::new(), &toc, None);
        r.write_all(&body[..10]).unwrap();
        assert!(r.finish().is_err());
        let mut r = Reframe::new(Vec::new(), &toc, None);
        r.write_all(&body[..5 + rows[0].len()]).unwrap();
        assert!(!r.finish().unwrap());
    }

    #[test]
    fn a_whole_dump_keeps_its_data_and_large_objects() {
        let rows = rows(5_000);
        let (bytes, layout) = archive_with(&rows);
        let toc = parse_toc(&bytes).unwrap();
        let before = blocks_of(&bytes, &toc);
        for piece in [1, 13, 65_536, bytes.len()] {
            let mut out = Vec::new();
            let mut f = FramedDump::new(&mut out, &layout, bytes.len() as u64, None);
            for p in bytes.chunks(piece) {
                f.write_all(p).unwrap();
            }
            assert!(f.finish().unwrap());
            assert_eq!(out[..toc.end as usize], bytes[..toc.end as usize]);
            let after = blocks_of(&out, &toc);
            assert_eq!(after.len(), 2);
            // The table's rows in a few chunks; the large objects exactly as they were.
            assert_eq!(after[0].3, before[0].3);
            assert!(after[0].2 < 10 && before[0].2 == 5_000);
            assert_eq!(after[1], before[1]);
        }
        // A layout that does not fit: passed on unchanged.
        let mut wrong = layout.clone();
        wrong.toc_bytes -= 1;
        let mut out = Vec::new();
        let mut f = FramedDump::new(&mut out, &wrong, bytes.len() as u64, None);
        f.write_all(&bytes).unwrap();
        assert!(!f.finish().unwrap());
        assert_eq!(out, bytes);
    }
}
