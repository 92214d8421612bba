// lifeboat patch: this module is new (not in scrypt 0.12.0); see vendor/README.md.

//! `ROMix`'s V, made present before the loop reaches it.
//!
//! `ROMix`'s first loop writes V (N · r · 128 bytes: 128 MiB at N = 2^17, r = 8) from its start
//! to its end. Fresh memory takes a page fault for every 4 KiB page on the way (32,768 at
//! 128 MiB), and freeing it unmaps them all again: about a quarter of a key derivation's time
//! (0.1–0.15 s of 0.45 s on lifeboat's machine, `perf`), all of it on the thread that waits
//! for the key. On Linux, V here is an anonymous mapping asked for huge pages
//! (`MADV_HUGEPAGE`), which a helper thread makes present and writable ahead of the loop,
//! piece by piece in the loop's order (`MADV_POPULATE_WRITE`, Linux 5.14). The helper
//! touches no byte of V: it only has the kernel do, earlier and on another core, what the
//! loop's own page faults would do. Whatever the system refuses of this (an older kernel, no
//! thread) leaves the loop to fault its pages in itself, as before — in huge pages where the
//! kernel gives them, which under THP `defrag=madvise` a fault may wait for compaction to
//! find.
//! Elsewhere, and for V smaller than [`MAPPED_FROM`], V is a `Vec` as before. Same bytes in
//! V either way (zeroed, then written by the loop), same result.

use alloc::vec;

/// Smaller V are allocated as before: a mapping and a thread would cost more than they save.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
const MAPPED_FROM: usize = 4 << 20;

/// Calls `f` with a zeroed V of `len` bytes.
pub(crate) fn with_v(len: usize, f: impl FnOnce(&mut [u8])) {
    #[cfg(target_os = "linux")]
    if len >= MAPPED_FROM {
        if let Some(mut v) = linux::Mapped::new(len) {
            return v.run(f);
        }
    }
    f(&mut vec![0u8; len]);
}

#[cfg(target_os = "linux")]
mod linux {
    extern crate std;

    use core::ffi::c_void;

    /// A huge page; V starts at a multiple of it.
    const HUGE: usize = 2 << 20;
    /// How much the helper makes present per call: the loop, when it catches up, waits for
    /// at most one piece.
    const PIECE: usize = 2 * HUGE;

    /// An anonymous private mapping holding V at `start`.
    pub(super) struct Mapped {
        map: *mut c_void,
        map_len: usize,
        start: usize,
        len: usize,
    }

    impl Mapped {
        /// A mapping for V of `len` bytes, or `None` if the system refuses one.
        pub(super) fn new(len: usize) -> Option<Self> {
            let map_len = len.checked_add(HUGE)?;
            // SAFETY: a new anonymous mapping; no existing memory is touched.
            let map = unsafe {
                libc::mmap(
                    core::ptr::null_mut(),
                    map_len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            if map == libc::MAP_FAILED {
                return None;
            }
            let start = (map as usize).next_multiple_of(HUGE);
            // Huge pages where the system gives them on request: 64 faults for 128 MiB
            // instead of 32,768. A refusal leaves 4 KiB pages.
            // SAFETY: `start..start + len` lies inside the mapping (`map_len` = `len` + HUGE).
            unsafe { libc::madvise(start as *mut c_void, len, libc::MADV_HUGEPAGE) };
            Some(Self {
                map,
                map_len,
                start,
                len,
            })
        }

        /// Calls `f` with V while a helper thread makes V's pages present ahead of it.
        pub(super) fn run(&mut self, f: impl FnOnce(&mut [u8])) {
            let (start, len) = (self.start, self.len);
            std::thread::scope(|s| {
                // No helper (the system refused a thread): the loop faults its pages in.
                let _ = std::thread::Builder::new()
                    .name("scrypt-populate".into())
                    .spawn_scoped(s, move || populate(start, len));
                // SAFETY: `start..start + len` lies inside the mapping, which is readable,
                // writable, zero-filled and lives as long as `self`, borrowed mutably here;
                // the helper reads and writes none of its bytes.
                let v = unsafe {
                    core::slice::from_raw_parts_mut(
                        self.map.cast::<u8>().add(start - self.map as usize),
                        len,
                    )
                };
                f(v);
            });
        }
    }

    impl Drop for Mapped {
        fn drop(&mut self) {
            // SAFETY: the whole mapping made in `new`, no longer borrowed.
            unsafe { libc::munmap(self.map, self.map_len) };
        }
    }

    /// Makes `start..start + len` present and writable, from its start; `false` at the first
    /// piece the kernel refuses (the rest is left to page faults).
    pub(super) fn populate(start: usize, len: usize) -> bool {
        let mut done = 0;
        while done < len {
            let n = PIECE.min(len - done);
            // SAFETY: inside a live mapping; populating changes no byte of it (absent pages
            // become present zeroed pages, present pages stay as they are).
            let got = unsafe {
                libc::madvise((start + done) as *mut c_void, n, libc::MADV_POPULATE_WRITE)
            };
            if got != 0 {
                return false;
            }
            done += n;
        }
        true
    }

    #[cfg(test)]
    mod lifeboat_patch_tests {
        use super::*;
        use alloc::vec::Vec;

        /// The size of a page.
        fn page_size() -> usize {
            // SAFETY: sysconf has no preconditions.
            usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).expect("a page size")
        }

        /// Pages of `start..start + len` the kernel holds in memory (`mincore`).
        fn resident(start: usize, len: usize) -> usize {
            let page = page_size();
            let mut flags: Vec<u8> = vec![0; len.div_ceil(page)];
            // SAFETY: `start` is page-aligned and inside a live mapping; `flags` holds one
            // byte per page.
            let got = unsafe { libc::mincore(start as *mut c_void, len, flags.as_mut_ptr()) };
            assert_eq!(got, 0, "mincore failed");
            flags.iter().filter(|&&f| f & 1 == 1).count()
        }

        /// Needs Linux 5.14 or later (`MADV_POPULATE_WRITE`); on an older kernel the patch
        /// leaves the pages to the loop, and this test says so by failing.
        #[test]
        fn lifeboat_patch_the_helper_makes_every_page_present_and_v_reads_zero() {
            let len = 24 << 20;
            let mut mapped = Mapped::new(len).expect("a mapping");
            let page = page_size();
            assert_eq!(mapped.start % HUGE, 0);
            assert!(mapped.start + len <= mapped.map as usize + mapped.map_len);
            assert_eq!(resident(mapped.start, len), 0, "fresh: nothing present yet");
            assert!(
                populate(mapped.start, len),
                "the kernel refused MADV_POPULATE_WRITE (Linux 5.14 or later has it)"
            );
            assert_eq!(resident(mapped.start, len), len / page);
            mapped.run(|v| {
                assert_eq!(v.len(), len);
                assert!(v.iter().all(|&b| b == 0));
                v[len - 1] = 7;
            });
        }
    }
}

#[cfg(test)]
mod lifeboat_patch_tests {
    use super::*;
    use crate::romix::scrypt_ro_mix;
    use alloc::vec::Vec;

    /// `ROMix` of `b` with V from `with_v` and with V from a `Vec` (scrypt 0.12.0's way).
    fn both_ways(log_n: u32, r: usize, b: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let (n, r128) = (1usize << log_n, r * 128);
        let (mut new, mut old) = (b.to_vec(), b.to_vec());
        let mut t = vec![0u8; r128];
        with_v(n * r128, |v| {
            new.chunks_mut(r128)
                .for_each(|chunk| scrypt_ro_mix(chunk, v, &mut t, n));
        });
        let mut v = vec![0u8; n * r128];
        old.chunks_mut(r128)
            .for_each(|chunk| scrypt_ro_mix(chunk, &mut v, &mut t, n));
        (new, old)
    }

    /// `bench/kdf.sh`: `ROMix` at lifeboat's parameters (N = 2^17, r = 8, p = 1) with V from a
    /// `Vec` (scrypt 0.12.0) and from `with_v`, alternating, `KDF_BENCH_ROUNDS` rounds
    /// (default 9); the same result both ways, every round.
    #[test]
    #[ignore = "a benchmark: bench/kdf.sh runs it in a release build"]
    fn lifeboat_patch_timing() {
        extern crate std;
        use std::time::Instant;
        let rounds: usize = std::env::var("KDF_BENCH_ROUNDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(9);
        let (log_n, r) = (17u32, 8usize);
        let (n, r128) = (1usize << log_n, r * 128);
        let b: Vec<u8> = (0..r128)
            .map(|i| u8::try_from(i % 251).expect("a byte"))
            .collect();
        let (mut old_s, mut new_s) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            let mut t = vec![0u8; r128];
            let started = Instant::now();
            let mut old = b.clone();
            let mut v = vec![0u8; n * r128];
            scrypt_ro_mix(&mut old, &mut v, &mut t, n);
            drop(v);
            old_s.push(started.elapsed().as_secs_f64());
            let started = Instant::now();
            let mut new = b.clone();
            with_v(n * r128, |v| scrypt_ro_mix(&mut new, v, &mut t, n));
            new_s.push(started.elapsed().as_secs_f64());
            assert_eq!(new, old, "round {round}");
            std::println!(
                "round {round}: vec {:.3} s, mapped {:.3} s",
                old_s[round],
                new_s[round]
            );
        }
        let median = |s: &mut Vec<f64>| {
            s.sort_by(f64::total_cmp);
            s[s.len() / 2]
        };
        let (old_m, new_m) = (median(&mut old_s), median(&mut new_s));
        std::println!(
            "romix N=2^{log_n} r={r}: median of {rounds}: vec {old_m:.3} s (best {:.3}), mapped \
             {new_m:.3} s (best {:.3}), ratio {:.2}",
            old_s[0],
            new_s[0],
            old_m / new_m
        );
    }

    #[test]
    fn lifeboat_patch_romix_is_the_same_with_v_mapped() {
        // Below `MAPPED_FROM` (a Vec both ways), at it, with p = 2 (V used twice), and above it.
        for (log_n, r, p) in [(10, 8, 1), (12, 8, 1), (12, 8, 2), (12, 9, 1)] {
            let b: Vec<u8> = (0..p * r * 128)
                .map(|i| u8::try_from((i * 7 + log_n as usize) % 251).expect("a byte"))
                .collect();
            let (new, old) = both_ways(log_n, r, &b);
            assert_eq!(new, old, "log_n {log_n}, r {r}, p {p}");
            assert_ne!(new, b, "ROMix changed nothing: log_n {log_n}");
        }
    }
}
