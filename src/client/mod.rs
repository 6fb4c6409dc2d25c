//! The command-line client in the `vkv` binary: `vkv get|put|del|history|
//! ls|watch|changes|batch|backup|lease|lock` against running servers, `vkv
//! completion`, and the `vkv health` probe. Blocking HTTP/1.1 over
//! `std::net` (rustls with the `tls` feature); nothing from the server's
//! code.
//!
//! - `args.rs`: the flags and help texts (clap).
//! - `endpoint.rs`: endpoint URLs, keys in paths.
//! - `http.rs`: one connection, one request at a time.
//! - `tls.rs`: what a TLS connection trusts.
//! - `failover.rs`: the endpoints as one service (next on a connection
//!   error or a `503`).
//! - `exit.rs`: failures and their exit codes.
//! - `backoff.rs`: waiting for an endpoint to answer again.
//! - `output.rs`: printing.
//! - `feed.rs`: the change feed's requests, answers and lines.
//! - `commands.rs`, `watch.rs` (a key), `follow.rs` (a prefix),
//!   `changes.rs`, `lease.rs`, `lock.rs`, `health.rs`: the commands.

mod args;
mod backoff;
mod changes;
mod commands;
mod endpoint;
mod exit;
mod failover;
mod feed;
mod follow;
pub mod health;
mod http;
mod lease;
mod lock;
mod output;
mod stream;
mod tls;
mod watch;

use std::process::ExitCode;

pub use args::Command;

/// Runs a client command; `app` builds the whole command line (for the
/// completion scripts).
pub fn run(command: Command, app: fn() -> clap::Command) -> ExitCode {
    let (name, result) = match &command {
        Command::Get(a) => ("get", commands::get(a)),
        Command::Put(a) => ("put", commands::put(a)),
        Command::Del(a) => ("del", commands::del(a)),
        Command::History(a) => ("history", commands::history(a)),
        Command::Ls(a) => ("ls", commands::ls(a)),
        Command::Watch(a) => ("watch", watch::watch(a)),
        Command::Changes(a) => ("changes", changes::changes(a)),
        Command::Batch(a) => ("batch", commands::batch(a)),
        Command::Backup(a) => ("backup", commands::backup(a)),
        Command::Lease(c) => ("lease", lease::lease(c)),
        Command::Lock(a) => match lock::lock(a) {
            Ok(status) => return ExitCode::from(status),
            Err(f) => ("lock", Err(f)),
        },
        Command::Completion { shell } => {
            let mut out = std::io::stdout().lock();
            clap_complete::generate(*shell, &mut app(), "vkv", &mut out);
            ("completion", Ok(()))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => failure.exit(name),
    }
}
