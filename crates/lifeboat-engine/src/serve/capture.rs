//! `serve` runs the change capture of every `mode = "cdc"` target for as long as it runs: a
//! capture that fails (the server restarted, the network went) raises `capture:<target>`
//! (kind `capture-failed`) and is started again after 5 s, doubling up to 1 min while it
//! keeps failing; the alert is resolved once the capture has stored for 30 s. On shutdown what
//! was gathered is stored before it stops.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use super::Shared;
use crate::{cancel::Cancel, kinds::postgres_cdc::capture};

/// How long a capture must run before its alert is resolved.
const HEALTHY_AFTER: Duration = Duration::from_secs(30);

pub async fn keep_capturing(shared: Arc<Shared>, name: String, shutdown: Cancel) {
    let key = format!("capture:{name}");
    let mut wait = Duration::from_secs(5);
    loop {
        let began = Instant::now();
        let watching = shared.clone();
        let (k, n) = (key.clone(), name.clone());
        let healthy_after = Instant::now() + HEALTHY_AFTER;
        let stored = move |c: &capture::Captured| {
            {
                let mut state = watching.state();
                let t = state.targets.entry(n.clone()).or_default();
                t.capture_stored = Some(jiff::Timestamp::now());
                t.capture_transactions = c.transactions;
            }
            // Resolved once it has stored for a while, not at its first breath.
            if Instant::now() < healthy_after {
                return;
            }
            let cleared = watching
                .alerts()
                .cleared(&k, "the capture stores changes again");
            if let Some(a) = cleared {
                watching.announce(&a);
            }
        };
        let result = capture::run(&shared.engine, &name, &shutdown, &stored).await;
        if shutdown.is_cancelled() {
            return;
        }
        let message = match result {
            Ok(_) => "the capture stopped".to_string(),
            Err(e) => e.full_message(),
        };
        log::warn!(
            "capture of `{name}`: {message}; starting again in {}",
            wait.as_secs()
        );
        let alert = shared.alerts().problem(
            &key,
            "capture-failed",
            &name,
            &format!("the capture of `{name}` stopped: {message}"),
        );
        if let Some(a) = alert {
            shared.announce(&a);
        }
        if began.elapsed() > Duration::from_secs(60) {
            wait = Duration::from_secs(5);
        }
        if shutdown.guard(tokio::time::sleep(wait)).await.is_err() {
            return;
        }
        wait = (wait * 2).min(Duration::from_secs(60));
    }
}
