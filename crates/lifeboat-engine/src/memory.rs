//! How the process asks glibc's malloc to keep and give back memory (elsewhere: nothing).
//!
//! - Every command: buffers up to 32 MiB (chunks of 0.5–8 MiB, packs) come from the heap
//!   and are reused once freed; up to 16 MiB free at the top of a heap is kept
//!   ([`keep_large_buffers`]).
//! - `serve` runs many jobs for a long time. Twenty backups at once allocate pack buffers
//!   on many threads; glibc keeps what they free in per-thread arenas (up to eight per
//!   core), so a `serve` that ran them stays at its peak size between jobs. `serve` asks for
//!   two arenas (in `main`, before the runtime's threads), and once the last running job
//!   ends, `malloc_trim` gives the free pages back (bench/serve.sh measures both).

/// Return free heap memory to the system (glibc); nothing elsewhere.
#[allow(unsafe_code)]
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` takes no pointers and only walks glibc's own free lists; it
    // is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// At most two malloc arenas (glibc): threads share them, so what one job frees another
/// reuses, instead of each thread growing an arena of its own. Call it once, in `main`,
/// before any other thread exists.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    set("M_ARENA_MAX", libc::M_ARENA_MAX, 2);
}

/// One `mallopt` setting; a refusal is logged (debug) and leaves the default.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn set(name: &str, param: i32, value: i32) {
    // SAFETY: `mallopt` takes two integers and no pointers. glibc documents it as not
    // thread-safe (MT-Unsafe init) but takes the main arena's lock inside; `main` calls
    // the functions here before the runtime starts any thread (the test below, beside
    // other test threads, relies on that lock).
    if unsafe { libc::mallopt(param, value) } == 0 {
        log::debug!("malloc refused {name} = {value}");
    }
}

/// Largest allocation served from the heap rather than a mapping of its own (glibc's cap
/// for the setting, half its 64 MiB heap size).
const HEAP_UP_TO: i32 = 32 << 20;
/// Free memory at the top of a heap kept rather than given back at once: room for two
/// chunk reservations. Not more: the top of a thread's heap (64 MiB at most) is given back
/// only when a free leaves more than this there — `malloc_trim` releases free blocks
/// inside every heap but not the tops of threads' heaps — so this is what an idle `serve`
/// may keep per arena. (64 MiB: 12,800 page faults on the dump below; 16 MiB: 15,400;
/// 8 MiB: 79,000.)
const KEEP_FREE: i32 = 16 << 20;

/// Serve buffers up to 32 MiB from the heap and keep up to 16 MiB free at its top. glibc's
/// default maps each allocation above a moving threshold (128 KiB at first, at most the
/// largest block freed so far) and unmaps it when freed: the chunker asks for room for a
/// whole chunk (8 MiB) per chunk and gives most of it back, so every chunk of a backup
/// came in fresh pages — 120,000 page faults, the kernel zeroing each page and the
/// chunker's reads zeroing it again, on a 0.9 GB dump (`perf`, issue 24). With these
/// settings the same backup takes 15,000. Memory freed inside the heap is reused by the
/// next buffer; `serve` gives free blocks back between jobs ([`trim`]). Call it once, in
/// `main`, before any other thread exists. A setting glibc refuses is logged (debug) and
/// left at its default.
pub fn keep_large_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        set("M_MMAP_THRESHOLD", libc::M_MMAP_THRESHOLD, HEAP_UP_TO);
        set("M_TRIM_THRESHOLD", libc::M_TRIM_THRESHOLD, KEEP_FREE);
    }
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    /// Minor page faults of the calling thread so far.
    #[allow(unsafe_code)]
    fn thread_faults() -> i64 {
        // SAFETY: `getrusage` writes one `rusage` into the zeroed struct it is given.
        unsafe {
            let mut usage: libc::rusage = std::mem::zeroed();
            assert_eq!(libc::getrusage(libc::RUSAGE_THREAD, &mut usage), 0);
            usage.ru_minflt
        }
    }

    /// What the chunker does for each chunk: room for 8 MiB, 1 MiB of it filled, the rest
    /// given back, then the chunk freed.
    fn one_chunk() {
        let mut chunk = Vec::<u8>::with_capacity(8 << 20);
        chunk.resize(1 << 20, 7);
        chunk.shrink_to_fit();
        std::hint::black_box(&chunk);
    }

    #[test]
    fn a_chunk_freed_leaves_its_pages_to_the_next() {
        keep_large_buffers();
        one_chunk();
        let before = thread_faults();
        for _ in 0..8 {
            one_chunk();
        }
        let faults = thread_faults() - before;
        // glibc's default maps each of these chunks afresh: 256 faults per chunk (1 MiB
        // in 4 KiB pages), 2,048 for the eight.
        assert!(
            faults < 256,
            "{faults} page faults for eight chunks after the first"
        );
    }
}
