//! The PostgreSQL backend (feature `postgres`): any number of vkv processes
//! (replicas) on one database.
//!
//! - `conn.rs`: connections with cached prepared statements, the r2d2
//!   manager, PostgreSQL errors as [`StoreError`]s;
//! - `schema.rs`: tables, and their migration under an advisory lock;
//! - `reads.rs`: the read pool and queries (a latest read not served under
//!   a read lease is confirmed by the database, see
//!   [`crate::storage::Reads::latest_unless`]);
//! - `confirm.rs`: point reads (latest, one version) in shared rounds on a
//!   thread of their own (one query answers every read queued before it
//!   was sent; callers are answered through callbacks);
//! - `apply.rs`: the writer thread's transaction (heads locked in key
//!   order, decisions in memory, one write statement, `NOTIFY`);
//! - `lease.rs`: read leases, which let a replica serve its cache without
//!   a round trip (writes wait until every holder dropped what they
//!   changed);
//! - `listen.rs`: the `LISTEN` thread: drops other replicas' writes from
//!   the cache and acknowledges them, renews the lease, wakes this
//!   replica's watchers on other replicas' commits.
//!
//! The `postgres` crate runs each call on a private current-thread tokio
//! runtime inside the blocking call: no runtime of vkv's, no futures.

mod apply;
pub(crate) mod bulk;
mod confirm;
mod conn;
mod lease;
mod listen;
mod reads;
mod schema;
mod tls;

use std::hash::BuildHasher;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use r2d2_postgres::PostgresConnectionManager;

use crate::error::OpenError;
use crate::storage::{Backend, Hooks, display_location};
use crate::store::StoreConfig;

/// Used when the URL sets no `connect_timeout`: a host that does not answer
/// must not hold a request (or the start) for the kernel's minutes.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a request waits for a pooled read connection.
const POOL_WAIT: Duration = Duration::from_secs(2);

/// Connects (checking the server), migrates the schema, starts the pool and
/// the `LISTEN` thread.
pub(crate) fn open(config: &StoreConfig, hooks: Hooks) -> Result<Backend, OpenError> {
    let target = Target::of(&config.path)?;
    let url = target.url.clone();
    let fail = |reason: String| OpenError::Postgres {
        url: url.clone(),
        reason,
    };
    let mut client = target.connect().map_err(|e| fail(describe(&e)))?;
    schema::migrate(&mut client, &url)?;

    let pool = r2d2::Pool::builder()
        .max_size(config.read_connections.max(1))
        .min_idle(Some(1))
        .connection_timeout(POOL_WAIT)
        // Not tested at check-out: that would be one more round trip per
        // read round. A connection that broke fails its query (503), is
        // dropped when it comes back (`Manager::has_broken`), and the next
        // check-out opens a new one.
        .test_on_check_out(false)
        .thread_pool(Arc::new(
            scheduled_thread_pool::ScheduledThreadPool::builder()
                .num_threads(1)
                .thread_name_pattern("vkv-r2d2-{}")
                .build(),
        ))
        // Not `build`, which fails the start when the pool's first
        // connection takes longer than POOL_WAIT (seen on a loaded machine):
        // the server was just reached above, and a request that finds no
        // connection in time is answered 503 like any outage.
        .build_unchecked(conn::Manager(PostgresConnectionManager::new(
            target.config.clone(),
            target.tls.clone(),
        )));
    let leases = Arc::new(lease::Leases::new(config.read_lease));
    let reads = Arc::new(reads::PgReads {
        confirm: confirm::Confirmer::start(pool.clone())?,
        pool,
        location: url.clone(),
        leases: Arc::clone(&leases),
    });
    let stop = Arc::new(AtomicBool::new(false));
    listen::start(listen::Listener {
        target: target.clone(),
        reads: Arc::clone(&reads),
        watchers: hooks.watchers,
        cache: hooks.cache,
        leases: Arc::clone(&leases),
        stop: Arc::clone(&stop),
    })
    .map_err(fail)?;
    let shard = (std::collections::hash_map::RandomState::new().hash_one(std::process::id())
        % schema::COUNTER_SHARDS as u64) as i32;
    log::info!("PostgreSQL {url}: schema ready, this replica counts in shard {shard}");
    Ok(Backend {
        reads,
        committer: Box::new(apply::PgCommitter {
            target,
            conn: Some(conn::PgConn::open(client).map_err(|e| fail(describe(&e)))?),
            shard,
            max_versions: config.max_versions,
            outcome_unknown: false,
            stop,
            leases,
            seq: 0,
            fence: None,
        }),
    })
}

/// A database to connect to: the client settings, the TLS connector and
/// the URL with its password masked (for logs and errors).
#[derive(Clone)]
pub(crate) struct Target {
    pub config: postgres::Config,
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

    /// A new connection.
    pub fn connect(&self) -> Result<postgres::Client, postgres::Error> {
        self.config.connect(self.tls.clone())
    }
}

/// The client settings of the URL `text`, with vkv's defaults for what it
/// leaves out.
fn client_config(text: &str) -> Result<postgres::Config, postgres::Error> {
    let mut pg = postgres::Config::from_str(text)?;
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
