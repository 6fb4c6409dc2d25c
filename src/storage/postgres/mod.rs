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
//! - `deadlines.rs`: leases in that transaction (their rows locked before
//!   any head), keys' deadlines on the database's clock;
//! - `dues.rs`: the deadlines of leases as this replica last learnt them,
//!   so that a GET shows a key's `expires_at` without a query;
//! - `lease.rs`: read leases, which let a replica serve its cache without
//!   a round trip (writes wait until every holder dropped what they
//!   changed);
//! - `slots.rs`: when the server has no free connection slot, reads
//!   yield theirs to writers and listeners, on every replica;
//! - `listen.rs`: the `LISTEN` thread: drops other replicas' writes from
//!   the cache and acknowledges them, renews the lease, wakes this
//!   replica's watchers on other replicas' commits.
//!
//! Each call runs tokio-postgres on a private current-thread tokio runtime
//! inside the blocking call (the `postgres` crate for the `LISTEN` and bulk
//! connections, `client.rs` for the others, which can pipeline): no
//! runtime of vkv's, no futures above this directory.

mod apply;
pub(crate) mod bulk;
mod client;
mod confirm;
mod conn;
mod deadlines;
mod dues;
mod lease;
mod listen;
mod reads;
mod rows;
mod schema;
mod slots;
mod target;
mod tls;

use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use crate::error::OpenError;
use crate::storage::seam::Options;
use crate::storage::seam::{Backend, Hooks};
use target::{Target, describe};

/// How long a request waits for a pooled read connection.
const POOL_WAIT: Duration = Duration::from_secs(2);

/// How long a read connection may sit idle in the pool before it is
/// closed (r2d2 looks every 30 s).
const POOL_IDLE: Duration = Duration::from_secs(10);

/// Warns when the server has fewer free connection slots than this replica
/// needs: its writer, its `LISTEN` connection (both open now), its read
/// pool and its expiry thread's connection. With too few, reads wait for a slot (`503` past the pool's wait).
fn warn_if_few_slots(client: &mut postgres::Client, read_connections: u32) {
    // Other roles' sessions show no backend_type to a role that may not
    // read their statistics: counted as client backends (slots taken).
    let free = client.query_one(
        "SELECT current_setting('max_connections')::int
             - current_setting('superuser_reserved_connections')::int
             - (SELECT count(*) FROM pg_stat_activity
                WHERE backend_type = 'client backend' OR backend_type IS NULL)::int",
        &[],
    );
    match free.and_then(|row| row.try_get::<_, i32>(0)) {
        // This connection is counted already; the LISTEN one is not yet.
        Ok(free) if i64::from(free) < i64::from(read_connections) + 2 => log::warn!(
            "PostgreSQL has {free} free connection slots, fewer than this replica's \
             {read_connections} read connections, its LISTEN connection and its expiry \
             thread's: reads may wait for a slot (raise max_connections, or run fewer \
             --workers)"
        ),
        Ok(_) => {}
        Err(e) => log::warn!(
            "cannot count PostgreSQL's free connection slots: {}",
            describe(&e)
        ),
    }
}

/// Connects (checking the server), migrates the schema, starts the pool and
/// the `LISTEN` thread.
pub(crate) fn open(config: &Options, hooks: Hooks) -> Result<Backend, OpenError> {
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
    // The writer's own client pipelines (`client.rs`); the one that
    // migrated leaves its slot to it.
    drop(client);
    let client = target.open().map_err(|e| fail(e.to_string()))?;
    let mut writer =
        conn::PgConn::open(client, conn::Role::Writer).map_err(|e| fail(describe(&e)))?;
    let server = apply::server_started(&mut writer).ok();
    apply::prepare_writer(&mut writer);
    let leases = Arc::new(lease::Leases::new(config.read_lease));
    let stop = Arc::new(AtomicBool::new(false));
    let listening = listen::connect(&target, &leases)
        .map_err(|e| fail(format!("cannot LISTEN: {}", describe(&e))))?;
    let slots = Arc::new(slots::Slots::default());

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
        .error_handler(Box::new(conn::PoolErrors))
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
            target: target.clone(),
            query_timeout: config.query_timeout,
            slots: Arc::clone(&slots),
        });
    let read_pool = pool.clone();
    let dues = Arc::new(dues::LeaseDues::default());
    let reads = Arc::new(reads::PgReads {
        confirm: confirm::Confirmer::start(pool.clone(), config.query_timeout, Arc::clone(&dues))?,
        dues: Arc::clone(&dues),
        pool,
        location: url.clone(),
        leases: Arc::clone(&leases),
        query_timeout: config.query_timeout,
        target: target.clone(),
        poller: std::sync::Mutex::new(None),
    });
    let listening = listen::start(
        listen::Listener {
            target: target.clone(),
            reads: Arc::clone(&reads),
            watchers: hooks.watchers,
            cache: hooks.cache,
            leases: Arc::clone(&leases),
            stop: Arc::clone(&stop),
            slots: Arc::clone(&slots),
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
            listening: Some(listening),
            leases,
            seq: 0,
            awaiting: std::collections::VecDeque::new(),
            fence: None,
            server,
            slots,
            pool: read_pool,
            dues,
        }),
    })
}
