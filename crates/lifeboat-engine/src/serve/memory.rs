//! Memory between jobs. Twenty backups at once allocate pack buffers on many threads;
//! glibc keeps what they free in per-thread arenas (up to eight per core), so a `serve`
//! that ran them stays at its peak size between jobs. `serve` asks for two arenas (in
//! `main`, before the runtime's threads), and once the last running job ends,
//! `malloc_trim` gives the free pages back (bench/serve.sh measures both).

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
#[allow(unsafe_code)]
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` takes two integers and no pointers. glibc documents it as not
    // thread-safe (MT-Unsafe init): it is called before the runtime starts any thread.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}
