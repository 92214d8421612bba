//! The `lifeboat` binary: parses the command line, builds a runtime, dispatches to
//! `commands/<verb>.rs`, and turns errors into a message, a `hint:` line and an exit code.
//!
//! Exit codes: 0 success, 1 failure, 2 usage or config error, 3 verification failed or
//! objective missed.

// First: its `outln!` macro is used by the modules after it.
#[macro_use]
mod output;
mod cli;
mod commands;
mod error;
mod interrupt;
mod progress;
mod report;
mod systemd;

use clap::Parser;

use crate::cli::Cli;

fn main() {
    let cli = Cli::parse();
    output::init_logging(cli.global.verbose, cli.global.quiet);
    // rustic_core 0.13 panics where it should return errors (its restore unwraps every
    // write: a full disk). lifeboat catches those panics in restores and reports them as
    // errors with a hint; the panic's own message and backtrace would only bury that:
    // shown with `-vv`. Any other panic is reported as usual.
    let report_panic = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if lifeboat_repo::quiet_panics()
            && info
                .location()
                .is_some_and(|l| l.file().contains("rustic_core"))
        {
            log::debug!("rustic_core: {info}");
            lifeboat_repo::note_caught_panic(info.payload_as_str().unwrap_or("a panic"));
        } else {
            report_panic(info);
        }
    }));
    // Chunk and pack buffers from the heap, reused; `serve` runs many jobs for a long
    // time: two malloc arenas. Set before any thread.
    lifeboat_engine::memory::keep_large_buffers();
    if matches!(cli.command, cli::Command::Serve(_)) {
        lifeboat_engine::memory::limit_arenas();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = match runtime.block_on(commands::dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            e.print();
            e.code
        }
    };
    // Children are done, and blocking tasks too but for one that only reads (a bucket
    // listing started early, left by a failed backup; its early fetches run on the S3
    // runtime, which ends with the process); don't wait long for it or for idle runtime
    // threads.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    std::process::exit(code);
}

#[cfg(test)]
mod tests {
    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }

    #[test]
    fn errors_have_codes() {
        let e = crate::error::CliError::usage("bad", None);
        assert_eq!(e.code, 2);
    }
}
