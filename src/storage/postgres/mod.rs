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

/// How long a read connection may sit idle in the pool before it is
/// closed (r2d2 looks every 30 s).
const POOL_IDLE: Duration = Duration::from_secs(10);

/// Warns when the server has fewer free connection slots than this replica
/// needs: its writer, its `LISTEN` connection (both open now) and its read
/// pool. With too few, reads wait for a slot (`503` past the pool's wait).
fn warn_if_few_slots(client: &mut postgres::Client, read_connections: u32) {
    let free = client.query_one(
        "SELECT current_setting('max_connections')::int
             - current_setting('superuser_reserved_connections')::int
             - (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')::int",
        &[],
    );
    match free.and_then(|row| row.try_get::<_, i32>(0)) {
        // This connection is counted already; the LISTEN one is not yet.
        Ok(free) if i64::from(free) < i64::from(read_connections) + 1 => log::warn!(
            "PostgreSQL has {free} free connection slots, fewer than this replica's \
             {read_connections} read connections and its LISTEN connection: reads may \
             wait for a slot (raise max_connections, or run fewer --workers)"
        ),
        Ok(_) => {}
        Err(e) => log::debug!(
            "cannot count PostgreSQL's free connection slots: {}",
            describe(&e)
        ),
    }
}

/// Connects (checking the server), migrates the schema, starts the pool and
/// the `LISTEN` thread.
pub(crate) fn open(config: &StoreConfig, hooks: Hooks) -> Result<Backend, OpenError> {
    let target = Target::of(&config.path)?;
    let url = target.url.clone();
    let fail = |reason: String| OpenError::Postgres {
        url: url.clone(),
        reason,
    };
    // The writer's connection and the LISTEN one first, and kept: with few
    // connection slots, reads wait for one, writes must not.
    let mut client = target.connect().map_err(|e| fail(describe(&e)))?;
    schema::migrate(&mut client, &url)?;
    warn_if_few_slots(&mut client, config.read_connections);
    let writer = conn::PgConn::open(client, conn::Role::Writer).map_err(|e| fail(describe(&e)))?;
    let leases = Arc::new(lease::Leases::new(config.read_lease));
    let stop = Arc::new(AtomicBool::new(false));
    let listening = listen::connect(&target, &leases)
        .map_err(|e| fail(format!("cannot LISTEN: {}", describe(&e))))?;
    let yield_slots = Arc::new(AtomicBool::new(false));

    let pool = r2d2::Pool::builder()
        .max_size(config.read_connections.max(1))
        // One kept open (opening one costs a few round trips and the
        // password exchange); the others closed when idle for a few
        // seconds: slots are shared with every replica's writer.
        .min_idle(Some(1))
        .idle_timeout(Some(POOL_IDLE))
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
        .build_unchecked(conn::Manager {
            inner: PostgresConnectionManager::new(target.config.clone(), target.tls.clone()),
            query_timeout: config.query_timeout,
            yield_slots: Arc::clone(&yield_slots),
        });
    let reads = Arc::new(reads::PgReads {
        confirm: confirm::Confirmer::start(pool.clone())?,
        pool,
        location: url.clone(),
        leases: Arc::clone(&leases),
        query_timeout: config.query_timeout,
    });
    listen::start(
        listen::Listener {
            target: target.clone(),
            reads: Arc::clone(&reads),
            watchers: hooks.watchers,
            cache: hooks.cache,
            leases: Arc::clone(&leases),
            stop: Arc::clone(&stop),
        },
        listening,
    )
    .map_err(fail)?;
    let shard = (std::collections::hash_map::RandomState::new().hash_one(std::process::id())
        % schema::COUNTER_SHARDS as u64) as i32;
    log::info!("PostgreSQL {url}: schema ready, this replica counts in shard {shard}");
    Ok(Backend {
        reads,
        committer: Box::new(apply::PgCommitter {
            target,
            conn: Some(writer),
            shard,
            max_versions: config.max_versions,
            outcome_unknown: false,
            stop,
            leases,
            seq: 0,
            fence: None,
            yield_slots,
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
