//! The `vkv` binary: parse configuration, open the store, serve HTTP until
//! SIGTERM or SIGINT, then shut down gracefully. SIGHUP reloads the tokens
//! file.

mod cli;
mod client;
mod fdlimit;
mod logger;
mod malloc;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use cli::{Cli, Command};
use vkv::Store;
use vkv::server::AuthTokens;
use vkv::server::Server;

fn main() -> ExitCode {
    malloc::tune();
    let cli = Cli::parse();
    logger::init(cli.log_level);
    match cli.command {
        Some(Command::Client(command)) => return client::run(command, Cli::command),
        Some(Command::Health { tls, ref cacert }) => {
            return client::health::run(&client::health::Probe {
                bind: &cli.bind,
                tls,
                cacert: cacert.as_deref(),
                server_cert: cli.tls_cert.as_deref(),
            });
        }
        _ => {}
    }
    match try_main(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn try_main(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    match &cli.command {
        None => serve(&cli),
        Some(Command::Health { .. } | Command::Client(_)) => Ok(()),
        Some(Command::Restore { snapshot, force }) => {
            let report = vkv::backup::restore(snapshot, &cli.db, *force)?;
            println!("restored {} to {}", snapshot.display(), cli.db.display());
            println!("{report}");
            Ok(())
        }
        Some(Command::Copy { from, to, force }) => {
            let report = vkv::copy::copy(from, to, *force)?;
            println!("{report}");
            Ok(())
        }
        Some(Command::Check) => {
            let report = vkv::check::check(&cli.db)?;
            println!("{report}");
            if report.is_ok() {
                Ok(())
            } else {
                Err(format!(
                    "check of {} found {} problem(s)",
                    vkv::display_location(&cli.db),
                    report.problem_count
                )
                .into())
            }
        }
    }
}

fn serve(cli: &Cli) -> Result<(), Box<dyn std::error::Error>> {
    // Install the handlers before anything starts, so a signal that comes
    // during start-up is not lost.
    let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP])?;
    // Files first: a bad token file or certificate refuses start-up before
    // the database is touched.
    let config = cli.load_server_config()?;
    let auth = config.auth.clone();
    let security = match (&config.auth, cli.tls_cert.is_some()) {
        (Some(tokens), tls) => format!(
            ", {} auth tokens{}",
            tokens.len(),
            if tls { ", TLS" } else { "" }
        ),
        (None, true) => ", TLS".to_string(),
        (None, false) => String::new(),
    };
    open_files_limit(cli);
    // The port before the database: a port in use refuses start-up before a
    // database file is created or a schema migrated.
    let listening =
        Server::bind(config).map_err(|e| format!("cannot listen on {}: {e}", cli.bind))?;
    let store = Store::open(cli.store_config())?;
    let server = listening
        .serve(store.clone())
        .map_err(|e| format!("cannot serve on {}: {e}", cli.bind))?;
    log::info!(
        "vkv {} listening on {} (database {}, {} workers{security})",
        env!("CARGO_PKG_VERSION"),
        server.local_addr(),
        store.location(),
        cli.workers
    );
    let signal = signals
        .forever()
        .find(|&signal| signal != SIGHUP || reload_tokens(auth.as_deref()));
    let why = match signal {
        Some(SIGTERM) => "SIGTERM received",
        Some(SIGINT) => "SIGINT received",
        _ => "signal handling ended",
    };
    log::info!("{why}: stopping gracefully (answering requests in flight)");
    server.shutdown();
    store.close();
    log::info!("stopped");
    Ok(())
}

/// SIGHUP: re-reads the tokens file; a bad one keeps the tokens in force.
/// Returns false: the server goes on.
fn reload_tokens(auth: Option<&AuthTokens>) -> bool {
    let Some(auth) = auth else {
        log::info!("SIGHUP received: no --auth-tokens file to reload");
        return false;
    };
    let file = auth
        .path()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    match auth.reload() {
        Ok(n) => log::info!("SIGHUP received: reloaded {n} auth tokens from {file}"),
        Err(e) => log::error!(
            "SIGHUP received: {e}; keeping the {} auth tokens loaded before",
            auth.len()
        ),
    }
    false
}

/// Raises the open-files limit to the hard limit and logs what vkv got,
/// warning when it is below what --max-connections needs.
fn open_files_limit(cli: &Cli) {
    let max_connections = u64::from(cli.max_connections);
    let needed = fdlimit::needed(max_connections, u64::from(cli.workers));
    match fdlimit::raise() {
        Ok(limits) => {
            let (got, warning) = fdlimit::describe(&limits, needed, max_connections);
            log::info!("{got}");
            if let Some(warning) = warning {
                log::warn!("{warning}");
            }
        }
        Err(e) => log::warn!("cannot raise the open files limit: {e}"),
    }
}
