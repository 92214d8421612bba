// lifeboat patch: new file. Tests of the lanes chunker against 0.13's loop, and the throughput
// comparison `bench/chunker.sh` runs.

//! The lanes chunker must cut where `rustic_core` 0.13's loop ([`LegacyChunkIter`], unchanged in
//! `rabin.rs`) cuts: on random polynomials, several kinds of data, sizes small enough to hit
//! every edge often, short reads and every way input can end; and on `rustic_core`'s own golden
//! data (`chunk_random.snap`).

use std::{
    fmt::Write as _,
    io::{self, Cursor, Read},
    sync::Arc,
    time::{Duration, Instant},
};

use rand::prelude::*;
use rustic_cdc::Rabin64;

use super::{ChunkIter, LANE_LEN, LANES, READ_AHEAD, ROUND, RabinTables, WINDOW};
use crate::{
    chunker::{
        ChunkIter as ConfigChunkIter,
        rabin::{ChunkIter as LegacyChunkIter, PolynomExtend, random_poly},
    },
    crypto::hasher::hash,
    repofile::{ConfigFile, configfile::RepositoryId},
};

/// `rustic_core`'s default polynomial in its own tests.
const TEST_POLY: u64 = 0x003D_A335_8B4D_C173;
const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

/// Chunker parameters: `(chunk_size, min_size, max_size)`.
type Sizes = (usize, usize, usize);

const DEFAULT_SIZES: Sizes = (MIB, 512 * KIB, 8 * MIB);

/// Sizes that hit the head (the 64 lengths after `min_size`), partial and full rounds, `max_size`
/// inside the head and inside a round, and reads past several rounds.
const SMALL_SIZES: [Sizes; 11] = [
    (64, 64, 64),
    (64, 64, 128),
    (128, 64, 300),
    (256, 100, 4 * KIB),
    (1024, 1000, 40_000),
    (4 * KIB, 4 * KIB, 4 * KIB + 1),
    (4 * KIB, 4 * KIB, 4 * KIB + 64),
    (4 * KIB, 4 * KIB, 4 * KIB + 65),
    (8 * KIB, 4 * KIB, 64 * KIB),
    (16 * KIB, 5000, 200_000),
    (64 * KIB, 64 * KIB, 300 * KIB),
];

/// A random polynomial of degree 53 as [`random_poly`] picks it, but from a seeded generator so
/// that a failure can be reproduced.
fn seeded_poly(rng: &mut StdRng) -> u64 {
    loop {
        let poly = (rng.random::<u64>() & ((1 << 54) - 1)) | (1 << 53) | 1;
        if poly.irreducible() {
            return poly;
        }
    }
}

/// Kinds of input.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Random,
    PgDump,
    Zeros,
    Mixed,
}

const KINDS: [Kind; 4] = [Kind::Random, Kind::PgDump, Kind::Zeros, Kind::Mixed];

fn data(kind: Kind, len: usize, rng: &mut StdRng) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 4 * KIB);
    match kind {
        Kind::Random => {
            out.resize(len, 0);
            rng.fill_bytes(&mut out);
        }
        Kind::PgDump => pg_dump_text(&mut out, len, rng),
        Kind::Zeros => out.resize(len, 0),
        Kind::Mixed => {
            while out.len() < len {
                let part = rng.random_range(0..50_000).min(len - out.len());
                match rng.random_range(0..4) {
                    0 => {
                        let start = out.len();
                        out.resize(start + part, 0);
                        rng.fill_bytes(&mut out[start..]);
                    }
                    1 => {
                        let mut text = Vec::new();
                        pg_dump_text(&mut text, part, rng);
                        out.extend_from_slice(&text);
                    }
                    2 => out.resize(out.len() + part, 0),
                    _ => out.extend(
                        b"abcdefghijklmnopqrstuvwxyz0123456789\n"
                            .iter()
                            .cycle()
                            .take(part),
                    ),
                }
            }
        }
    }
    out.truncate(len);
    out
}

/// Text shaped like `pg_dump` output: COPY blocks of pgbench accounts (blank-padded filler) and
/// history, and of an application table with names, e-mail addresses, amounts and JSON.
fn pg_dump_text(out: &mut Vec<u8>, len: usize, rng: &mut StdRng) {
    const WORDS: [&str; 16] = [
        "alpha", "harbour", "copper", "lantern", "meadow", "quartz", "river", "saffron", "timber",
        "violet", "willow", "zephyr", "ember", "glacier", "orchid", "pepper",
    ];
    let mut text = String::with_capacity(len + 4 * KIB);
    let mut aid: u64 = rng.random_range(1..1_000_000);
    let mut order: u64 = rng.random_range(1..1_000_000);
    while text.len() < len {
        match rng.random_range(0..3) {
            0 => {
                text.push_str(
                    "COPY public.pgbench_accounts (aid, bid, abalance, filler) FROM stdin;\n",
                );
                for _ in 0..rng.random_range(50..2000) {
                    let balance: i64 = if rng.random_ratio(1, 8) {
                        rng.random_range(-5000..5000)
                    } else {
                        0
                    };
                    _ = writeln!(text, "{aid}\t{}\t{balance}\t{:84}", aid / 100_000 + 1, "");
                    aid += 1;
                }
                text.push_str("\\.\n\n");
            }
            1 => {
                text.push_str("COPY public.pgbench_history (tid, bid, aid, delta, mtime, filler) FROM stdin;\n");
                for _ in 0..rng.random_range(20..500) {
                    _ = writeln!(
                        text,
                        "{}\t{}\t{}\t{}\t2026-12-0{} {:02}:{:02}:{:02}.{:06}\t\\N",
                        rng.random_range(1..500),
                        rng.random_range(1..50),
                        rng.random_range(1..5_000_000),
                        rng.random_range(-5000..5000),
                        rng.random_range(1..8),
                        rng.random_range(0..24),
                        rng.random_range(0..60),
                        rng.random_range(0..60),
                        rng.random_range(0..1_000_000),
                    );
                }
                text.push_str("\\.\n\n");
            }
            _ => {
                text.push_str("COPY public.orders (id, customer, email, amount, status, placed_at, details) FROM stdin;\n");
                for _ in 0..rng.random_range(20..800) {
                    let first = WORDS[rng.random_range(0..WORDS.len())];
                    let last = WORDS[rng.random_range(0..WORDS.len())];
                    _ = writeln!(
                        text,
                        "{order}\t{first} {last}\t{first}.{last}{}@example.com\t{}.{:02}\t{}\t2026-11-{:02} {:02}:{:02}:00+00\t{{\"items\": {}, \"note\": \"{} {}\"}}",
                        rng.random_range(1..1000),
                        rng.random_range(1..100_000),
                        rng.random_range(0..100),
                        ["paid", "shipped", "open"][rng.random_range(0..3)],
                        rng.random_range(1..31),
                        rng.random_range(0..24),
                        rng.random_range(0..60),
                        rng.random_range(1..20),
                        WORDS[rng.random_range(0..WORDS.len())],
                        WORDS[rng.random_range(0..WORDS.len())],
                    );
                    order += 1;
                }
                text.push_str("\\.\n\n");
            }
        }
    }
    out.extend_from_slice(text.as_bytes());
}

/// A reader that returns between 1 and `max_read` bytes per call, and sometimes `Interrupted`.
struct ShortReads<'a> {
    data: &'a [u8],
    rng: StdRng,
    max_read: usize,
}

impl<'a> ShortReads<'a> {
    fn new(data: &'a [u8], max_read: usize, seed: u64) -> Self {
        Self {
            data,
            rng: StdRng::seed_from_u64(seed),
            max_read,
        }
    }
}

impl Read for ShortReads<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.rng.random_ratio(1, 50) {
            return Err(io::ErrorKind::Interrupted.into());
        }
        let n = self
            .rng
            .random_range(1..=self.max_read)
            .min(buf.len())
            .min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

fn legacy_lengths(
    poly: u64,
    sizes: Sizes,
    reader: impl Read + Send,
    size_hint: usize,
) -> Vec<usize> {
    let (chunk_size, min_size, max_size) = sizes;
    let rabin = Rabin64::new_with_polynom(6, &poly);
    LegacyChunkIter::new(rabin, chunk_size, min_size, max_size, reader, size_hint)
        .unwrap()
        .map(|chunk| chunk.unwrap().len())
        .collect()
}

/// The chunk lengths of the lanes chunker, checking that the chunks put together are `data`.
fn lanes_lengths(poly: u64, sizes: Sizes, data: &[u8], reader: impl Read + Send) -> Vec<usize> {
    let (chunk_size, min_size, max_size) = sizes;
    let tables = RabinTables::cached(poly).unwrap();
    let mut pos = 0;
    let mut lengths = Vec::new();
    for chunk in ChunkIter::new(tables, chunk_size, min_size, max_size, reader, data.len()).unwrap()
    {
        let chunk = chunk.unwrap();
        assert!(!chunk.is_empty());
        assert_eq!(chunk[..], data[pos..pos + chunk.len()]);
        pos += chunk.len();
        lengths.push(chunk.len());
    }
    assert_eq!(pos, data.len());
    lengths
}

/// Compares the lanes chunker (reading everything at once, and in short reads) with 0.13's
/// loop and returns the number of chunks compared.
fn assert_same_cuts(poly: u64, sizes: Sizes, data: &[u8], seed: u64, what: &str) -> usize {
    let (_, min_size, _) = sizes;
    // 0.13 wraps around when its 4 KiB buffer holds more than `min_size` bytes after a cut;
    // reads of at most `min_size` bytes avoid that and leave its cuts as they are.
    let expected = if min_size < 4 * KIB {
        legacy_lengths(
            poly,
            sizes,
            ShortReads::new(data, min_size, seed),
            data.len(),
        )
    } else {
        legacy_lengths(poly, sizes, Cursor::new(data), data.len())
    };
    let context = || {
        format!(
            "{what}: poly {poly:#x}, sizes {sizes:?}, {} bytes",
            data.len()
        )
    };
    let whole = lanes_lengths(poly, sizes, data, Cursor::new(data));
    assert_eq!(whole, expected, "whole reads, {}", context());
    let short = lanes_lengths(
        poly,
        sizes,
        data,
        ShortReads::new(data, 3 * KIB, seed.wrapping_add(1)),
    );
    assert_eq!(short, expected, "short reads, {}", context());
    expected.len()
}

#[test]
fn tables_match_rustic_cdc() {
    let mut rng = StdRng::seed_from_u64(1);
    let mut polys: Vec<u64> = (0..20).map(|_| seeded_poly(&mut rng)).collect();
    polys.extend([
        TEST_POLY,
        0x1_0000_0000_0001,
        0x100,
        0x1ff,
        (1 << 56) | 0xabcd,
    ]);
    for poly in polys {
        let tables = RabinTables::build(poly).unwrap();
        assert_eq!(
            tables.mod_table(),
            &Rabin64::calculate_mod_table(&poly),
            "{poly:#x}"
        );
        // Our out table is applied after the shift: one byte further than rustic_cdc's.
        assert_eq!(
            tables.out_table(),
            &Rabin64::calculate_out_table(65, &poly),
            "{poly:#x}"
        );
    }
}

#[test]
fn unsupported_degrees_have_no_tables() {
    for poly in [0, 1, 0xff, 1 << 57 | 1, u64::MAX] {
        assert!(RabinTables::build(poly).is_none(), "{poly:#x}");
        assert!(RabinTables::cached(poly).is_none(), "{poly:#x}");
    }
}

#[test]
fn tables_are_built_once_per_polynomial() {
    let a = RabinTables::cached(TEST_POLY).unwrap();
    let b = RabinTables::cached(TEST_POLY).unwrap();
    assert!(Arc::ptr_eq(&a, &b));
    let other = RabinTables::cached(0x3c_6576_8a3a_1c27).unwrap();
    assert!(!Arc::ptr_eq(&a, &other));
}

#[test]
fn window_hash_matches_rolling_hash() {
    use rustic_cdc::RollingHash64;

    let mut rng = StdRng::seed_from_u64(2);
    let bytes = data(Kind::Random, 10_000, &mut rng);
    for poly in [TEST_POLY, seeded_poly(&mut rng), seeded_poly(&mut rng)] {
        let tables = RabinTables::build(poly).unwrap();
        let mut rabin = Rabin64::new_with_polynom(6, &poly);
        for (i, &byte) in bytes.iter().enumerate() {
            rabin.slide(byte);
            let window = &bytes[(i + 1).saturating_sub(64)..=i];
            assert_eq!(rabin.hash, tables.window_hash(window), "{poly:#x} at {i}");
            if i >= 64 {
                let rolled = tables.roll(
                    tables.shift(),
                    tables.window_hash(&bytes[i - 64..i]),
                    byte,
                    bytes[i - 64],
                );
                assert_eq!(rabin.hash, rolled, "{poly:#x} at {i}");
            }
        }
    }
}

/// `rustic_core`'s golden test `rabin::tests::chunk_random`, against its snapshot file.
#[test]
fn chunk_random_matches_golden_snapshot() {
    const SNAPSHOT: &str =
        include_str!("../snapshots/rustic_core__chunker__rabin__tests__chunk_random.snap");
    let expected: Vec<(usize, String)> = SNAPSHOT
        .lines()
        .filter_map(|line| {
            let (len, rest) = line.trim().strip_prefix('(')?.split_once(", Id(\"")?;
            Some((len.parse().ok()?, rest.split_once('"')?.0.to_string()))
        })
        .collect();
    assert_eq!(expected.len(), 29);

    let mut rng = StdRng::seed_from_u64(23);
    let mut data = vec![0u8; 32 * MIB];
    rng.fill_bytes(&mut data);
    let (chunk_size, min_size, max_size) = DEFAULT_SIZES;
    let tables = RabinTables::cached(TEST_POLY).unwrap();
    let chunks: Vec<(usize, String)> = ChunkIter::new(
        tables,
        chunk_size,
        min_size,
        max_size,
        Cursor::new(&data),
        0,
    )
    .unwrap()
    .map(|chunk| {
        let chunk = chunk.unwrap();
        (chunk.len(), hash(&chunk).to_hex().as_str().to_string())
    })
    .collect();
    assert_eq!(chunks, expected);
}

#[test]
fn same_cuts_as_0_13_on_random_polynomials() {
    let mut rng = StdRng::seed_from_u64(3);
    let (mut inputs, mut chunks) = (0, 0);
    for _ in 0..4 {
        let poly = seeded_poly(&mut rng);
        for kind in KINDS {
            let bytes = data(kind, 400_000, &mut rng);
            for sizes in SMALL_SIZES {
                let bytes = &bytes[..rng.random_range(100_000..400_000)];
                chunks += assert_same_cuts(poly, sizes, bytes, rng.random(), &format!("{kind:?}"));
                inputs += 1;
            }
        }
    }
    eprintln!("random polynomials: {inputs} inputs, {chunks} chunks identical");
    assert!(chunks > 30_000, "{chunks}");
}

/// A polynomial as `rustic init` makes one (thread-local randomness), in case the seeded ones
/// miss something; the polynomial is in the failure message.
#[test]
fn same_cuts_as_0_13_on_a_fresh_polynomial() {
    let poly = random_poly().unwrap();
    let mut rng = StdRng::seed_from_u64(4);
    let bytes = data(Kind::Mixed, 600_000, &mut rng);
    for sizes in SMALL_SIZES {
        _ = assert_same_cuts(poly, sizes, &bytes, 5, "mixed");
    }
}

#[test]
fn same_cuts_as_0_13_at_default_sizes() {
    let mut rng = StdRng::seed_from_u64(6);
    let mut chunks = 0;
    for (poly, kind) in [
        (TEST_POLY, Kind::PgDump),
        (seeded_poly(&mut rng), Kind::Mixed),
        (seeded_poly(&mut rng), Kind::Random),
    ] {
        let bytes = data(kind, 16 * MIB + rng.random_range(0..MIB), &mut rng);
        chunks += assert_same_cuts(poly, DEFAULT_SIZES, &bytes, 7, &format!("{kind:?}"));
    }
    eprintln!("default sizes: 3 inputs, {chunks} chunks identical");
}

/// Polynomials of other degrees the lanes accept (8..=56), irreducible or not.
#[test]
fn same_cuts_as_0_13_for_other_degrees() {
    let mut rng = StdRng::seed_from_u64(8);
    for degree in [8, 9, 20, 31, 52, 54, 55, 56] {
        let poly = (rng.random::<u64>() & ((1 << degree) - 1)) | (1 << degree) | 1;
        for kind in [Kind::Random, Kind::PgDump] {
            let bytes = data(kind, 200_000, &mut rng);
            for sizes in [(256, 100, 4 * KIB), (16 * KIB, 5000, 200_000)] {
                _ = assert_same_cuts(poly, sizes, &bytes, 9, &format!("degree {degree}"));
            }
        }
    }
}

/// Every way the input can end relative to `min_size`, the head, rounds, reads and
/// `max_size`.
#[test]
fn same_cuts_as_0_13_at_end_of_input() {
    let mut rng = StdRng::seed_from_u64(10);
    let poly = seeded_poly(&mut rng);
    let (mut inputs, mut chunks) = (0, 0);
    for sizes in [
        (4 * KIB, 4 * KIB, 64 * KIB),
        (64 * KIB, 64 * KIB, 300 * KIB),
        (1024, 1000, 40_000),
    ] {
        let (_, min, max) = sizes;
        let mut lengths = vec![
            0,
            1,
            63,
            64,
            65,
            min - 1,
            min,
            min + 1,
            min + 63,
            min + 64,
            min + 65,
        ];
        for base in [
            min + 64,
            min + 64 + ROUND,
            min + READ_AHEAD,
            max,
            2 * max,
            3 * max + min,
        ] {
            lengths.extend([base - 1, base, base + 1, base + LANE_LEN, base + LANES - 1]);
        }
        let longest = lengths.iter().copied().max().unwrap_or(0);
        for kind in KINDS {
            let bytes = data(kind, longest, &mut rng);
            for &len in &lengths {
                let what = format!("{kind:?}, {len} bytes");
                chunks += assert_same_cuts(poly, sizes, &bytes[..len], len as u64, &what);
                inputs += 1;
            }
        }
    }
    eprintln!("end of input: {inputs} inputs, {chunks} chunks identical");
}

/// A huge `max_size` with no size hint: chunks get room for a typical chunk and grow past it
/// when there is no cut (a run of one byte value hashes to one value, here never a cut).
#[test]
fn huge_max_size_grows_past_the_first_allocation() {
    let mut rng = StdRng::seed_from_u64(13);
    let sizes = (4 * KIB, 4 * KIB, 1 << 40);
    let mut bytes = data(Kind::Mixed, 300_000, &mut rng);
    let tables = RabinTables::cached(TEST_POLY).unwrap();
    let run = [0x5a; WINDOW];
    assert_ne!(tables.window_hash(&run) & (4 * KIB as u64 - 1), 0);
    bytes.extend(std::iter::repeat_n(0x5a, 200_000));
    bytes.extend(data(Kind::Random, 50_000, &mut rng));

    let (chunk_size, min_size, max_size) = sizes;
    let lengths: Vec<usize> = ChunkIter::new(
        tables,
        chunk_size,
        min_size,
        max_size,
        Cursor::new(&bytes),
        usize::MAX,
    )
    .unwrap()
    .map(|chunk| chunk.unwrap().len())
    .collect();
    assert!(lengths.iter().any(|&len| len > 200_000), "{lengths:?}");
    assert_eq!(
        lengths,
        legacy_lengths(TEST_POLY, sizes, Cursor::new(&bytes), usize::MAX)
    );
}

/// Zeros hash to zero: every chunk is `min_size` long, as in 0.13's `chunk_zeros`.
#[test]
fn endless_zeros_cut_at_min_size() {
    let (chunk_size, min_size, max_size) = DEFAULT_SIZES;
    let tables = RabinTables::cached(TEST_POLY).unwrap();
    let chunker = ChunkIter::new(
        tables,
        chunk_size,
        min_size,
        max_size,
        io::repeat(0),
        usize::MAX,
    )
    .unwrap();
    for chunk in chunker.take(3) {
        assert_eq!(chunk.unwrap().len(), min_size);
    }
}

/// 0.13 panics below a `min_size` of 64 and wraps around below 4 KiB; the lanes chunker does
/// neither and never returns an empty chunk.
#[test]
fn tiny_min_sizes_do_not_wrap() {
    let mut rng = StdRng::seed_from_u64(11);
    let bytes = data(Kind::Mixed, 100_000, &mut rng);
    for (chunk_size, min_size, max_size) in [
        (1, 0, 1),
        (2, 1, 64),
        (64, 2, 64),
        (64, 63, 1000),
        (256, 200, 10_000),
    ] {
        let lengths = lanes_lengths(
            TEST_POLY,
            (chunk_size, min_size, max_size),
            &bytes,
            Cursor::new(&bytes),
        );
        let (last, rest) = lengths.split_last().unwrap();
        assert!(
            rest.iter()
                .all(|&len| (min_size.max(1)..=max_size).contains(&len)),
            "{min_size}"
        );
        assert!((1..=max_size).contains(last), "{min_size}");
    }
}

#[test]
fn read_error_ends_the_iterator() {
    struct FailAfter<'a>(&'a [u8]);
    impl Read for FailAfter<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() {
                return Err(io::Error::other("disk on fire"));
            }
            let n = buf.len().min(self.0.len()).min(1000);
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }
    let bytes = vec![0u8; 10_000];
    let tables = RabinTables::cached(TEST_POLY).unwrap();
    let mut chunker =
        ChunkIter::new(tables, 4 * KIB, 4 * KIB, 4 * KIB, FailAfter(&bytes), 0).unwrap();
    assert_eq!(chunker.next().unwrap().unwrap().len(), 4 * KIB);
    assert_eq!(chunker.next().unwrap().unwrap().len(), 4 * KIB);
    assert!(chunker.next().unwrap().is_err());
    assert!(chunker.next().is_none());
}

/// `ChunkIter::from_config` picks the lanes for degree 53 and 0.13's loop where the lanes
/// cannot follow it; both cut as 0.13 does.
#[test]
fn from_config_picks_lanes_where_they_apply() {
    let mut rng = StdRng::seed_from_u64(12);
    let bytes = data(Kind::Mixed, 300_000, &mut rng);
    for (poly, lanes) in [(TEST_POLY, true), ((1 << 60) | 0x1b, false)] {
        let mut config = ConfigFile::new(2, RepositoryId::default(), poly);
        let sizes = (8 * KIB, 4 * KIB, 64 * KIB);
        (
            config.chunk_size,
            config.chunk_min_size,
            config.chunk_max_size,
        ) = (Some(sizes.0), Some(sizes.1), Some(sizes.2));
        let chunker =
            ConfigChunkIter::from_config(&config, Cursor::new(&bytes), bytes.len()).unwrap();
        assert_eq!(
            matches!(chunker, ConfigChunkIter::RabinLanes(_)),
            lanes,
            "{poly:#x}"
        );
        let lengths: Vec<usize> = chunker.map(|chunk| chunk.unwrap().len()).collect();
        assert_eq!(
            lengths,
            legacy_lengths(poly, sizes, Cursor::new(&bytes), bytes.len()),
            "{poly:#x}"
        );
    }
}

/// Throughput of 0.13's loop and the lanes on the same data, single thread, through the
/// iterator (reader in, one `Vec` per chunk). Run by `bench/chunker.sh`:
/// `cargo test --release --lib chunker::rabin_lanes::tests::throughput -- --ignored --nocapture`;
/// `CHUNKER_BENCH_MIB` sets the size of each data set (default 256).
#[test]
#[ignore = "benchmark; run by bench/chunker.sh in release mode"]
fn throughput() {
    let mib: usize = std::env::var("CHUNKER_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let (chunk_size, min_size, max_size) = DEFAULT_SIZES;
    let mut rng = StdRng::seed_from_u64(42);
    let poly = seeded_poly(&mut rng);

    let per_call = |calls: u32, f: &mut dyn FnMut()| {
        let start = Instant::now();
        for _ in 0..calls {
            f();
        }
        start.elapsed() / calls
    };
    let old_tables = per_call(200, &mut || {
        _ = std::hint::black_box(Rabin64::new_with_polynom(6, &poly));
    });
    let new_build = per_call(2000, &mut || {
        _ = std::hint::black_box(RabinTables::build(poly));
    });
    let new_cached = per_call(100_000, &mut || {
        _ = std::hint::black_box(RabinTables::cached(poly));
    });
    println!(
        "tables per file: 0.13 {:.1} µs, lanes build {:.2} µs, lanes cache hit {:.3} µs",
        micros(old_tables),
        micros(new_build),
        micros(new_cached)
    );

    for kind in [Kind::PgDump, Kind::Random] {
        let bytes = data(kind, mib * MIB, &mut rng);
        #[allow(clippy::cast_precision_loss, reason = "a few hundred MiB")]
        let gb = bytes.len() as f64 / 1e9;
        let (mut best_old, mut best_new) = (Duration::MAX, Duration::MAX);
        for round in 1..=3 {
            let start = Instant::now();
            let old: Vec<usize> =
                legacy_lengths(poly, DEFAULT_SIZES, Cursor::new(&bytes), bytes.len());
            let old_time = start.elapsed();
            let start = Instant::now();
            let tables = RabinTables::cached(poly).unwrap();
            let new: Vec<usize> = ChunkIter::new(
                tables,
                chunk_size,
                min_size,
                max_size,
                Cursor::new(&bytes),
                0,
            )
            .unwrap()
            .map(|chunk| chunk.unwrap().len())
            .collect();
            let new_time = start.elapsed();
            assert_eq!(old, new, "{kind:?}");
            println!(
                "{kind:?} round {round}: {} MiB, {} chunks: 0.13 {:.3} GB/s, lanes {:.3} GB/s",
                mib,
                new.len(),
                gb / old_time.as_secs_f64(),
                gb / new_time.as_secs_f64()
            );
            best_old = best_old.min(old_time);
            best_new = best_new.min(new_time);
        }
        println!(
            "{kind:?} best of 3: 0.13 {:.3} GB/s, lanes {:.3} GB/s, ratio {:.2}",
            gb / best_old.as_secs_f64(),
            gb / best_new.as_secs_f64(),
            best_old.as_secs_f64() / best_new.as_secs_f64()
        );
    }
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
