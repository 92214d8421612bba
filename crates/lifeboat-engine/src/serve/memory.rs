//! Memory between jobs. Twenty backups at once allocate pack buffers on many threads;
//! glibc keeps what they free in per-thread arenas, so a `serve` that ran them stays at its
//! peak size between jobs. Once the last running job ends, `malloc_trim` gives the free
//! pages back (bench/serve.sh measures it).

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
