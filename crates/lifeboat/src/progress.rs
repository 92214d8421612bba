//! Progress bars for rustic's long operations, on a TTY only.

use std::{sync::Arc, time::Duration};

use indicatif::{ProgressBar, ProgressStyle};
use lifeboat_repo::{Bars, Progress, ProgressType, RusticProgress};

#[derive(Debug)]
struct TtyBars;

#[derive(Debug)]
struct Bar(ProgressBar);

impl RusticProgress for Bar {
    fn is_hidden(&self) -> bool {
        false
    }
    fn set_length(&self, len: u64) {
        self.0.set_length(len);
    }
    fn set_title(&self, title: &str) {
        self.0.set_prefix(title.to_string());
    }
    fn inc(&self, inc: u64) {
        self.0.inc(inc);
    }
    fn finish(&self) {
        self.0.finish_and_clear();
    }
}

impl lifeboat_repo::ProgressBars for TtyBars {
    fn progress(&self, t: ProgressType, prefix: &str) -> Progress {
        let style = match t {
            ProgressType::Bytes => "{prefix:20} {spinner} {bytes} {binary_bytes_per_sec} {elapsed}",
            ProgressType::Counter => "{prefix:20} {spinner} {pos}/{len} {elapsed}",
            ProgressType::Spinner => "{prefix:20} {spinner} {elapsed}",
        };
        let bar = ProgressBar::new(0).with_prefix(prefix.to_string());
        if let Ok(s) = ProgressStyle::with_template(style) {
            bar.set_style(s);
        }
        bar.enable_steady_tick(Duration::from_millis(200));
        Progress::new(Bar(bar))
    }
}

/// Bars on a TTY unless quiet or JSON output was asked for.
pub fn bars(enabled: bool) -> Bars {
    if enabled && crate::output::stderr_is_tty() {
        Bars(Some(Arc::new(TtyBars)))
    } else {
        Bars::default()
    }
}
