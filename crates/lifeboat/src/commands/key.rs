//! `lifeboat key list | add | remove ID | passwd`: the repository's keys. Several
//! passwords open one repository (an offline recovery key in a safe, a second
//! administrator); `passwd` rotates the one in use after a breach. restic opens the
//! repository with any of them, and the side area (WAL archive, drill reports, job history)
//! reads with each: its key derives from the master key, which no key change touches.

use std::io::{BufRead, IsTerminal, Write};

use lifeboat_core::Redacted;
use lifeboat_repo::keys::short;
use serde_json::json;

use super::Context;
use crate::{
    cli::{KeyCommand, NewPasswordArgs},
    error::{CliError, CliResult, FsContext},
    output,
};

pub async fn run(ctx: &Context, cmd: KeyCommand) -> CliResult<i32> {
    let config = ctx.load_config()?;
    // A new password is read before the repository is opened: a mistake costs nothing.
    let new = match &cmd {
        KeyCommand::Add(a) | KeyCommand::Passwd(a) => Some(new_password(a)?),
        _ => None,
    };
    let repo = ctx.open_repo(&config).await?;
    match cmd {
        KeyCommand::List => {
            let keys = lifeboat_repo::blocking(move || repo.keys()).await?;
            if ctx.json {
                output::json(&json!({ "keys": keys }));
            } else {
                let rows: Vec<Vec<String>> = keys
                    .iter()
                    .map(|k| {
                        vec![
                            format!("{}{}", if k.current { "*" } else { " " }, short(&k.id)),
                            k.host.clone().unwrap_or_default(),
                            k.user.clone().unwrap_or_default(),
                            k.created.clone().unwrap_or_default(),
                        ]
                    })
                    .collect();
                output::table(&["ID", "HOST", "USER", "CREATED"], &rows);
                outln!("(* the key this password opens)");
            }
            Ok(0)
        }
        KeyCommand::Add(a) => {
            let password = new.unwrap_or_else(|| Redacted::new(String::new()));
            let host = a.host.clone();
            let id =
                lifeboat_repo::blocking(move || repo.add_key(&password, host.as_deref())).await?;
            if ctx.json {
                output::json(&json!({ "added": id }));
            } else {
                outln!("added key {}", short(&id));
            }
            Ok(0)
        }
        KeyCommand::Remove(r) => {
            let removed = lifeboat_repo::blocking(move || {
                let key = repo.find_key(&r.id)?;
                repo.remove_key(&key.id).map(|()| key.id)
            })
            .await?;
            if ctx.json {
                output::json(&json!({ "removed": removed }));
            } else {
                outln!("removed key {}", short(&removed));
            }
            Ok(0)
        }
        KeyCommand::Passwd(a) => {
            let password = new.unwrap_or_else(|| Redacted::new(String::new()));
            let host = a.host.clone();
            let id =
                lifeboat_repo::blocking(move || repo.change_password(&password, host.as_deref()))
                    .await?;
            if ctx.json {
                output::json(&json!({ "key": id }));
            } else {
                outln!(
                    "the password is changed (key {}); the config's password source must give the new one now",
                    short(&id)
                );
            }
            Ok(0)
        }
    }
}

/// The new password: `--new-password-file`, `$LIFEBOAT_NEW_PASSWORD`, or asked twice on a
/// terminal (not echoed).
fn new_password(a: &NewPasswordArgs) -> CliResult<Redacted> {
    let password = if let Some(f) = &a.new_password_file {
        // As a `password-file` is read: the whole file, without its trailing line breaks
        // (so the same file can then be the config's password source).
        let text = std::fs::read_to_string(f).fs("read", f)?;
        text.trim_end_matches(['\n', '\r']).to_string()
    } else if let Ok(p) = std::env::var("LIFEBOAT_NEW_PASSWORD") {
        p
    } else if std::io::stdin().is_terminal() {
        let first = ask("new password: ")?;
        if ask("the same again: ")? != first {
            return Err(CliError::usage("the two passwords differ", None));
        }
        first
    } else {
        return Err(CliError::usage(
            "no new password given",
            Some("`--new-password-file FILE`, or `$LIFEBOAT_NEW_PASSWORD`".into()),
        ));
    };
    if password.is_empty() {
        return Err(CliError::usage("the new password is empty", None));
    }
    Ok(Redacted::new(password))
}

/// One line from the terminal with echo off.
fn ask(prompt: &str) -> CliResult<String> {
    let stty = |arg: &str| {
        std::process::Command::new("stty")
            .arg(arg)
            .stdin(std::process::Stdio::inherit())
            .status()
    };
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    if !stty("-echo").is_ok_and(|s| s.success()) {
        eprintln!();
        return Err(CliError::usage(
            "cannot turn off the terminal's echo to ask for the password",
            Some("give it with `--new-password-file FILE` or `$LIFEBOAT_NEW_PASSWORD`".into()),
        ));
    }
    let mut line = String::new();
    let read = std::io::stdin().lock().read_line(&mut line);
    let _ = stty("echo");
    eprintln!();
    read.map_err(|e| CliError::failure(format!("cannot read the password: {e}"), None))?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}
