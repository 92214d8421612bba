//! Regression test of the vendored pariter (vendor/README.md): rustic_core's archiver waits
//! on `ParallelMap::next` for the chunks of a large file, for as long as the file takes;
//! pariter 0.6.0 polled every 100 µs and spun a core the whole time.

use std::time::{Duration, Instant};

use pariter::IteratorExt;

/// How often the calling thread has given up the CPU so far (it slept, or yielded to
/// another thread): `/proc/thread-self/status`.
fn thread_switches() -> u64 {
    let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
    status
        .lines()
        .filter(|l| l.contains("ctxt_switches:"))
        .map(|l| l.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap())
        .sum()
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
    // Polling every 100 µs: thousands of wake-ups in 0.8 s (each one spinning and
    // yielding: 312,000 `sched_yield` calls in a 7-second backup); every 50 ms: sixteen.
    assert!(woke <= 200, "woke {woke} times while waiting {waited:?}");
    assert_eq!(items.collect::<Vec<_>>(), [10, 20]);
}
