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

pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

pub fn time(t: &jiff::Zoned) -> String {
    t.with_time_zone(jiff::tz::TimeZone::UTC)
        .strftime("%Y-%m-%d %H:%M:%S UTC")
        .to_string()
}

pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Print rows as an aligned table with a header.
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let s: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        outln!("{}", s.join("  ").trim_end());
    };
    line(header.iter().map(|h| h.to_string()).collect());
    for r in rows {
        line(r.clone());
    }
}

pub fn json(value: &serde_json::Value) {
    outln!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| "null".into())
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 * 1024 * 1024 / 2), "1.5 MiB");
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(thousands(12), "12");
    }
}
