//! Output conventions: data on stdout (a table or `--json`), logs and progress on stderr,
//! sizes in KiB/MiB/GiB, times as "2026-11-22 02:00 UTC" and "3 h ago".

use std::io::{IsTerminal, Write};

/// `println!` for what lifeboat prints on stdout, except that a closed stdout (`lifeboat
/// snapshots | head -3`) is not an error: the rest of the output is dropped and the command
/// goes on to its end. (Rust ignores SIGPIPE, and `println!` panics on the broken pipe —
/// a panic in the middle of a backup would leave it unfinished.)
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::output::write_line(format_args!($($arg)*))
    };
}

pub fn write_line(line: std::fmt::Arguments) {
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

struct StderrLogger {
    level: log::LevelFilter,
}

impl log::Log for StderrLogger {
    fn enabled(&self, m: &log::Metadata) -> bool {
        // rustic_core logs chatty progress at info; ours is what matters. opendal warns on
        // every expected miss (a stat of an object that is not there) and every retried S3
        // call, reqsign on every credential source it tries and finds empty (the error
        // that follows says what is missing): shown with `-v`.
        let ours = m.target().starts_with("lifeboat");
        let s3_chatter = m.target().starts_with("opendal") || m.target().starts_with("reqsign");
        if s3_chatter && self.level < log::LevelFilter::Info {
            return false;
        }
        m.level() <= self.level
            && (ours || m.level() <= log::Level::Warn || self.level >= log::LevelFilter::Debug)
    }

    fn log(&self, r: &log::Record) {
        // rustic_core's warning as it drops an object left out of a bucket backup: the
        // backup's own warning names them all (shown with `-v`).
        if self.level < log::LevelFilter::Info
            && !r.target().starts_with("lifeboat")
            && r.args().to_string().contains(lifeboat_repo::LEFT_OUT)
        {
            return;
        }
        if self.enabled(r.metadata()) {
            let level = match r.level() {
                log::Level::Error => "error",
                log::Level::Warn => "warning",
                log::Level::Info => "info",
                log::Level::Debug => "debug",
                log::Level::Trace => "trace",
            };
            eprintln!("{level}: {}", r.args());
        }
    }

    fn flush(&self) {}
}

pub fn init_logging(verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) => log::LevelFilter::Error,
        (false, 0) => log::LevelFilter::Warn,
        (false, 1) => log::LevelFilter::Info,
        (false, 2) => log::LevelFilter::Debug,
        _ => log::LevelFilter::Trace,
    };
    let _ = log::set_boxed_logger(Box::new(StderrLogger { level }));
    log::set_max_level(level);
}

pub fn stderr_is_tty() -> bool {
    std::io::stderr().is_terminal()
}

pub use lifeboat_engine::format::{bytes, time};

/// Print rows as an aligned table with a header.
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    for line in lifeboat_engine::format::table(header, rows) {
        outln!("{line}");
    }
}

pub fn json(value: &serde_json::Value) {
    outln!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| "null".into())
    );
}
