// lifeboat patch: new file. A Rabin chunker that cuts exactly where 0.13's loop in `rabin.rs`
// cuts, about three times faster: it hashes several stretches of a chunk in lock-step.

//! Content-defined chunking with `rustic_core` 0.13's Rabin fingerprint, cutting at exactly the
//! places [`super::rabin::ChunkIter`] cuts, but hashing several stretches of a chunk at once.
//!
//! # Why the cuts are the same
//!
//! The old loop tests, for every chunk length `L` in `min_size..max_size`, whether the
//! fingerprint of the window before `L` has no bits in the split mask; the first such `L`
//! (or `max_size`, or the end of input) ends the chunk. The fingerprint depends only on the
//! last 64 bytes, so it can be computed from scratch anywhere. This module splits the candidate
//! lengths into rounds of [`LANES`] stretches of [`LANE_LEN`] lengths, warms each stretch up
//! on the 64 bytes before it and rolls all of them in lock-step: the chains are independent,
//! so the CPU overlaps them. The first hit in order — lowest lane first — is the cut.
//!
//! The window the old loop starts from is quirky: `reset_and_prefill_window` loads 63 of the
//! 64 bytes before `min_size`, so byte `min_size − 1` is never hashed and the fingerprints of
//! the lengths `min_size..min_size + 64` are those of a window with that byte left out. They
//! are computed sequentially from such a window ([`scan_head`]); from `min_size + 64` on the
//! window is plain.
//!
//! # Where it differs from 0.13 (none of it changes a cut 0.13 makes)
//!
//! - `min_size` below 4 KiB: the old loop subtracts the bytes left in its 4 KiB read buffer
//!   from `min_size`, which wraps around when more are left than `min_size` (in release builds
//!   the next chunk then takes the rest of the input; in debug builds it panics), and panics
//!   for `min_size` below 64. Here nothing wraps. For `min_size` of 64 or more the cuts are
//!   those the old loop makes when its reads never return more than `min_size` bytes (then it
//!   does not wrap). Below 64 the starting window holds the `min_size − 1` bytes there are, after
//!   zeros, and a `min_size` of 0 counts as 1 so that no chunk is empty.
//! - The input is read in blocks of up to [`READ_AHEAD`] bytes past the scanned position, not
//!   4 KiB; bytes read past a cut start the next chunk.
//! - After a read error the iterator ends instead of carrying on behind the lost bytes.
//!
//! This module does not decide which chunker a repository uses; `super::ChunkIter` does.

#![allow(
    clippy::inline_always,
    reason = "the scan functions are inlined with a constant shift; measured in bench/chunker.sh"
)]

mod tables;
#[cfg(test)]
mod tests;

use std::{io::Read, sync::Arc};

use crate::error::{ErrorKind, RusticError, RusticResult};

use super::rabin::check_rabin_params;
pub(crate) use tables::RabinTables;
use tables::WINDOW;

/// Stretches hashed in lock-step. Six lanes of 4 KiB measured best on the Xeon this was written
/// on; each lane keeps its fingerprint in a register, and six plus the loop's own values fill
/// the 16 general-purpose registers of x86-64.
const LANES: usize = 6;
/// Candidate lengths per lane and round. Each lane warms up on 64 bytes, so longer lanes waste
/// less on warm-up; shorter ones hash less past a cut.
const LANE_LEN: usize = 4096;
/// Candidate lengths per round.
const ROUND: usize = LANES * LANE_LEN;
/// How far past the next candidate length to read per block.
const READ_AHEAD: usize = 4 * ROUND;
/// The shift of degree-53 polynomials, which `random_poly` and restic always choose; scanning
/// code specialised for it uses an immediate shift.
const SHIFT_DEGREE_53: u32 = 53 - 8;

/// `ChunkIter` is an iterator that chunks data.
#[derive(Debug)]
pub(crate) struct ChunkIter<R: Read + Send> {
    /// The reader.
    reader: R,

    /// Fingerprint tables of the repository's polynomial, shared through the cache.
    tables: Arc<RabinTables>,

    /// A length is a cut if the fingerprint before it has no bits in this mask.
    split_mask: u64,

    /// The minimum size of a chunk.
    min_size: usize,

    /// The maximum size of a chunk.
    max_size: usize,

    /// Capacity to give a chunk when the size hint does not bound it: the maximum size, or, if
    /// that is huge, room for all but about 1 in 3,000 chunks.
    alloc_size: usize,

    /// Upper bound of the bytes still to come, used to size allocations; can be wrong.
    size_hint: usize,

    /// Bytes read past the last cut: the start of the next chunk.
    carry: Vec<u8>,

    /// The reader returned end of input (or an error); it is not read again.
    eof: bool,
}

impl<R: Read + Send> ChunkIter<R> {
    /// Creates a new `ChunkIter`.
    ///
    /// # Arguments
    ///
    /// * `tables` - Tables of the polynomial, from [`RabinTables::cached`].
    /// * `chunk_size` - Power of two; `chunk_size - 1` is the split mask.
    /// * `chunk_min_size`, `chunk_max_size` - Bounds of the chunk size.
    /// * `reader` - The reader to read from.
    /// * `size_hint` - Upper bound on the size, to size allocations; may be wrong.
    ///
    /// # Errors
    ///
    /// * If the sizes are not valid Rabin chunker parameters.
    pub(crate) fn new(
        tables: Arc<RabinTables>,
        chunk_size: usize,
        chunk_min_size: usize,
        chunk_max_size: usize,
        reader: R,
        size_hint: usize,
    ) -> RusticResult<Self> {
        check_rabin_params(chunk_size, chunk_min_size, chunk_max_size)?;
        // Past `min_size` a chunk ends at each length with probability 1 / chunk_size.
        let typical_max = chunk_min_size.saturating_add(chunk_size.saturating_mul(8));
        Ok(Self {
            reader,
            tables,
            split_mask: chunk_size as u64 - 1,
            min_size: chunk_min_size.max(1),
            max_size: chunk_max_size,
            alloc_size: chunk_max_size.min(typical_max).max(chunk_min_size),
            size_hint,
            carry: Vec::new(),
            eof: false,
        })
    }

    /// Appends bytes from the reader to `chunk` until it holds `want` bytes or the input ends.
    fn fill(&mut self, chunk: &mut Vec<u8>, want: usize) -> RusticResult<()> {
        let need = want - chunk.len();
        if chunk.capacity() < want {
            // The size hint was too small (or the chunk is unusually long): make room for a
            // whole chunk at once rather than copying it on every small step.
            chunk.reserve(self.alloc_size.max(want) - chunk.len());
        }
        match (&mut self.reader).take(need as u64).read_to_end(chunk) {
            Ok(read) => {
                self.eof = read < need;
                Ok(())
            }
            Err(err) => {
                self.eof = true;
                self.carry.clear();
                Err(RusticError::with_source(
                    ErrorKind::InputOutput,
                    "Failed to read from reader in iterator",
                    err,
                ))
            }
        }
    }

    /// Ends the chunk at `cut`, keeping the bytes after it for the next one.
    fn finish(&mut self, mut chunk: Vec<u8>, cut: usize) -> Vec<u8> {
        self.carry.extend_from_slice(&chunk[cut..]);
        chunk.truncate(cut);
        // Gives back the unused capacity (glibc shrinks in place, without a copy); the archiver
        // may hold the chunk a while.
        chunk.shrink_to_fit();
        self.size_hint = self.size_hint.saturating_sub(chunk.len());
        chunk
    }
}

impl<R: Read + Send> Iterator for ChunkIter<R> {
    type Item = RusticResult<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.eof && self.carry.is_empty() {
            return None;
        }
        let min_size = self.min_size;
        // The old loop checks the maximum before the first fingerprint.
        let limit = self.max_size.max(min_size);

        let mut chunk =
            Vec::with_capacity(self.size_hint.min(self.alloc_size).max(self.carry.len()));
        chunk.extend_from_slice(&self.carry);
        self.carry.clear();

        // The next candidate length to test.
        let mut next = min_size;
        loop {
            let want = limit.min(next + READ_AHEAD);
            if chunk.len() < want
                && !self.eof
                && let Err(err) = self.fill(&mut chunk, want)
            {
                return Some(Err(err));
            }
            if chunk.len() < min_size {
                // Only at the end of input: the rest is the last chunk.
                self.size_hint = self.size_hint.saturating_sub(chunk.len());
                return (!chunk.is_empty()).then_some(Ok(chunk));
            }

            // `fill` returned at least `want` bytes unless the input ended, so without a cut
            // this scans at least one round and the loop makes progress.
            let end = chunk.len().min(limit);
            let last = self.eof || end == limit;
            let (cut, scanned) = find_cut(
                &self.tables,
                self.split_mask,
                &chunk,
                min_size,
                next..end,
                last,
            );
            if let Some(cut) = cut {
                return Some(Ok(self.finish(chunk, cut)));
            }
            if last {
                return Some(Ok(self.finish(chunk, end)));
            }
            next = scanned;
        }
    }
}

/// The first length in `range` that is a cut for a chunk starting `chunk`, and how far the
/// scan got without finding one. If `last` is false, lengths in the final partial round are
/// left for a later call with more bytes.
///
/// `range` must start at `min_size` or later and end at `chunk.len()` or earlier.
fn find_cut(
    tables: &RabinTables,
    mask: u64,
    chunk: &[u8],
    min_size: usize,
    range: std::ops::Range<usize>,
    last: bool,
) -> (Option<usize>, usize) {
    if tables.shift() == SHIFT_DEGREE_53 {
        scan(tables, SHIFT_DEGREE_53, mask, chunk, min_size, range, last)
    } else {
        scan(tables, tables.shift(), mask, chunk, min_size, range, last)
    }
}

/// [`find_cut`] for `shift == tables.shift()`, inlined so that a constant `shift` propagates.
#[inline(always)]
fn scan(
    tables: &RabinTables,
    shift: u32,
    mask: u64,
    chunk: &[u8],
    min_size: usize,
    range: std::ops::Range<usize>,
    last: bool,
) -> (Option<usize>, usize) {
    let (mut pos, end) = (range.start, range.end);

    let head_end = end.min(min_size + WINDOW);
    if pos < head_end {
        if let Some(cut) = scan_head(tables, shift, mask, chunk, min_size, pos..head_end) {
            return (Some(cut), pos);
        }
        pos = head_end;
    }

    while pos + ROUND <= end {
        if let Some(cut) = scan_round(tables, shift, mask, chunk, pos) {
            return (Some(cut), pos);
        }
        pos += ROUND;
    }
    if last && pos < end {
        let lane_len = (end - pos) / LANES;
        if lane_len > 0 {
            if let Some(cut) = scan_lanes(tables, shift, mask, chunk, pos, lane_len) {
                return (Some(cut), pos);
            }
            pos += LANES * lane_len;
        }
        if let Some(cut) = scan_sequential(tables, shift, mask, chunk, pos..end) {
            return (Some(cut), pos);
        }
        pos = end;
    }
    (None, pos)
}

/// The first cut among the lengths in `range` ⊆ `min_size..min_size + 64`, whose windows
/// contain the 63 bytes `reset_and_prefill_window` loaded and leave out byte `min_size − 1`.
#[inline(always)]
fn scan_head(
    tables: &RabinTables,
    shift: u32,
    mask: u64,
    chunk: &[u8],
    min_size: usize,
    range: std::ops::Range<usize>,
) -> Option<usize> {
    // `virtual_bytes[WINDOW + i]` is the byte hashed into the fingerprint of length
    // `min_size + i + 1`; before it come the prefilled bytes, after zeros.
    let mut virtual_bytes = [0u8; 2 * WINDOW];
    let prefill = &chunk[min_size.saturating_sub(WINDOW)..min_size - 1];
    virtual_bytes[WINDOW - prefill.len()..WINDOW].copy_from_slice(prefill);
    let after = &chunk[min_size..range.end];
    virtual_bytes[WINDOW..WINDOW + after.len()].copy_from_slice(after);

    let start = WINDOW + range.start - min_size;
    scan_sequential(
        tables,
        shift,
        mask,
        &virtual_bytes[..WINDOW + after.len()],
        start..WINDOW + after.len(),
    )
    .map(|cut| cut - WINDOW + min_size)
}

/// The first `i` in `range` for which the window `bytes[i - 64..i]` is a cut, one at a time.
/// `range` must start at 64 or later and end at `bytes.len()` or earlier.
#[inline(always)]
fn scan_sequential(
    tables: &RabinTables,
    shift: u32,
    mask: u64,
    bytes: &[u8],
    range: std::ops::Range<usize>,
) -> Option<usize> {
    let mut hash = tables.window_hash(&bytes[range.start - WINDOW..range.start]);
    let entering = &bytes[range.clone()];
    let leaving = &bytes[range.start - WINDOW..range.end - WINDOW];
    for (i, (&byte_in, &byte_out)) in (range.start..).zip(entering.iter().zip(leaving)) {
        if hash & mask == 0 {
            return Some(i);
        }
        hash = tables.roll(shift, hash, byte_in, byte_out);
    }
    None
}

/// The first cut among the [`ROUND`] lengths from `start` (which must be 64 or more), hashing
/// lane `k`'s stretch `start + k·LANE_LEN ..` in lock-step with the others.
///
/// Lanes are a constant distance apart, so one register addresses all of them: with six
/// pointers the loop runs out of registers.
#[inline(always)]
fn scan_round(
    tables: &RabinTables,
    shift: u32,
    mask: u64,
    bytes: &[u8],
    start: usize,
) -> Option<usize> {
    let Ok(round): Result<&[u8; WINDOW + ROUND], _> =
        bytes[start - WINDOW..start + ROUND].try_into()
    else {
        unreachable!("the slice is WINDOW + ROUND long");
    };

    let mut hash = [0u64; LANES];
    for i in 0..WINDOW {
        for (k, hash) in hash.iter_mut().enumerate() {
            *hash = tables.push(shift, *hash, round[k * LANE_LEN + i]);
        }
    }

    for i in 0..LANE_LEN {
        for (k, hash) in hash.iter_mut().enumerate() {
            // Leaving the loop (rather than noting the hit and going on) keeps the test a
            // branch that is almost never taken; noted hits became conditional moves.
            if *hash & mask == 0 {
                return Some(first_cut_after_hit(
                    tables, mask, bytes, start, LANE_LEN, k, i,
                ));
            }
            // `round[k·LANE_LEN + i]` is 64 bytes before the byte entering lane k.
            let leaving = round[k * LANE_LEN + i];
            *hash = tables.roll(shift, *hash, round[k * LANE_LEN + WINDOW + i], leaving);
        }
    }
    None
}

/// [`scan_round`] for a final, shorter round: `LANES` stretches of `lane_len` lengths.
#[inline(always)]
fn scan_lanes(
    tables: &RabinTables,
    shift: u32,
    mask: u64,
    bytes: &[u8],
    start: usize,
    lane_len: usize,
) -> Option<usize> {
    let lane_start = |k: usize| start + k * lane_len;
    // Both slices of a lane are `lane_len` long, so indexing them below needs no check.
    let entering: [&[u8]; LANES] = std::array::from_fn(|k| &bytes[lane_start(k)..][..lane_len]);
    let leaving: [&[u8]; LANES] =
        std::array::from_fn(|k| &bytes[lane_start(k) - WINDOW..][..lane_len]);

    let mut hash: [u64; LANES] =
        std::array::from_fn(|k| tables.window_hash(&bytes[lane_start(k) - WINDOW..lane_start(k)]));
    for i in 0..lane_len {
        for (k, hash) in hash.iter_mut().enumerate() {
            if *hash & mask == 0 {
                return Some(first_cut_after_hit(
                    tables, mask, bytes, start, lane_len, k, i,
                ));
            }
            *hash = tables.roll(shift, *hash, entering[k][i], leaving[k][i]);
        }
    }
    None
}

/// Lane `hit_lane` of a round found a cut at its step `hit_step`, the first in lock-step order.
/// Earlier lanes may still have one after that step, which comes first in the chunk: scan
/// their rest one byte at a time (once per chunk, so speed does not matter).
#[cold]
#[inline(never)]
fn first_cut_after_hit(
    tables: &RabinTables,
    mask: u64,
    bytes: &[u8],
    start: usize,
    lane_len: usize,
    hit_lane: usize,
    hit_step: usize,
) -> usize {
    let lane_start = |k: usize| start + k * lane_len;
    (0..hit_lane)
        .find_map(|k| {
            let rest = lane_start(k) + hit_step + 1..lane_start(k) + lane_len;
            scan_sequential(tables, tables.shift(), mask, bytes, rest)
        })
        .unwrap_or_else(|| lane_start(hit_lane) + hit_step)
}
