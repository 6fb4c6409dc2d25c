//! A database to connect to: the URL's client settings with vkv's defaults
//! for what it leaves out, its TLS, and what went wrong in words.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use super::client::{Client, ConnectError};
use super::tls;
use crate::error::OpenError;
use crate::storage::location::display_location;

/// Used when the URL sets no `connect_timeout`: a host that does not answer
/// must not hold a request (or the start) for the kernel's minutes.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A database to connect to: the client settings, the TLS connector and
/// the URL with its password masked (for logs and errors).
#[derive(Clone)]
pub(crate) struct Target {
    pub config: tokio_postgres::Config,
    pub tls: tls::Connector,
    pub url: String,
}

impl Target {
    /// The settings of the URL `location`, with vkv's defaults for what it
    /// leaves out.
    pub fn of(location: &Path) -> Result<Target, OpenError> {
        let url = display_location(location);
        let fail = |reason: String| OpenError::Postgres {
            url: url.clone(),
            reason,
        };
        let text = location
            .to_str()
            .ok_or_else(|| fail("the URL is not UTF-8".into()))?;
        let (text, tls) = tls::split_url(text).map_err(&fail)?;
        let config = client_config(&text)
            .map_err(|e| fail(format!("not a valid PostgreSQL URL: {}", describe(&e))))?;
        let tls = tls::connector(&tls).map_err(fail)?;
        Ok(Target { config, tls, url })
    }

    /// A new connection, with `postgres`'s client (what `LISTEN` and the
    /// bulk copies use).
    pub fn connect(&self) -> Result<postgres::Client, postgres::Error> {
        postgres::Config::from(self.config.clone()).connect(self.tls.clone())
    }

    /// A new connection, with the client that can pipeline.
    pub fn open(&self) -> Result<Client, ConnectError> {
        Client::connect(&self.config, self.tls.clone())
    }
}

/// The client settings of the URL `text`, with vkv's defaults for what it
/// leaves out.
fn client_config(text: &str) -> Result<tokio_postgres::Config, postgres::Error> {
    let mut pg = tokio_postgres::Config::from_str(text)?;
    if pg.get_connect_timeout().is_none() {
        pg.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
    }
    // A peer that vanishes without a reset (a dead host, a partition) is
    // noticed within seconds, not the kernel's hours.
    if pg.get_tcp_user_timeout().is_none() {
        pg.tcp_user_timeout(Duration::from_secs(10));
    }
    pg.keepalives(true)
        .keepalives_idle(Duration::from_secs(5))
        .keepalives_interval(Duration::from_secs(1))
        .keepalives_retries(3);
    if pg.get_application_name().is_none() {
        pg.application_name("vkv");
    }
    Ok(pg)
}

/// What went wrong, in words: the server's message when it sent one (the
/// crate's own text for a server error is only "db error").
pub(crate) fn describe(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                text.push_str(": ");
                text.push_str(&s.to_string());
                source = s.source();
            }
            text
        }
    }
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Pg(e) => f.write_str(&describe(e)),
            ConnectError::Runtime(e) => write!(f, "cannot start a client runtime: {e}"),
        }
    }
}

impl std::error::Error for ConnectError {}
