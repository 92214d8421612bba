//! Regression test of the vendored pariter (vendor/README.md): rustic_core's archiver waits
//! on `ParallelMap::next` for the chunks of a large file, for as long as the file takes;
//! pariter 0.6.0 polled every 100 µs and spun a core the whole time.

use std::time::{Duration, Instant};

use pariter::IteratorExt;

/// How often the calling thread has gone to sleep so far (`voluntary_ctxt_switches` of
/// `/proc/thread-self/status`; yields taken by another thread on a busy machine count
/// as involuntary and are left out).
fn thread_switches() -> u64 {
    let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .map(|v| v.trim().parse::<u64>().unwrap())
        .unwrap()
}

#[test]
fn waiting_for_a_slow_item_does_not_poll() {
    let mut items = (0..3u32).parallel_map(|i| {
        if i == 0 {
            std::thread::sleep(Duration::from_millis(800));
        }
        i * 10
    });
    let (switches, started) = (thread_switches(), Instant::now());
    assert_eq!(items.next(), Some(0));
    let waited = started.elapsed();
    let woke = thread_switches() - switches;
    assert!(waited >= Duration::from_millis(700), "{waited:?}");
    // Polling every 100 µs: thousands of sleeps in 0.8 s (each wake-up spinning and
    // yielding: 312,000 `sched_yield` calls in a 7-second backup); every 50 ms: sixteen.
    assert!(woke <= 400, "slept {woke} times while waiting {waited:?}");
    assert_eq!(items.collect::<Vec<_>>(), [10, 20]);
}
