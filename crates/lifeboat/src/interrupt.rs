//! SIGINT and SIGTERM: the first one cancels what is running (which cleans up after itself)
//! and the command exits 130.

use std::io::Write;

use lifeboat_engine::cancel::Cancel;

/// Exit code of a command stopped by a signal.
pub const EXIT_INTERRUPTED: i32 = 130;

/// A token set on the first SIGINT or SIGTERM; `doing` is said on stderr then.
pub fn on_signal(doing: &'static str) -> Cancel {
    let cancel = Cancel::new();
    let set = cancel.clone();
    tokio::spawn(async move {
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term => {}
        }
        set.cancel();
        // stderr may be closed by now; a failed write must not lose the flag.
        let _ = writeln!(std::io::stderr(), "interrupted: {doing}");
    });
    cancel
}
