//! [`Store`]: the versioned key-value store, usable without HTTP.
//!
//! ```no_run
//! let store = vkv::Store::open(vkv::StoreConfig::new("kv_store.db"))?;
//! let put = store.put("greeting", &"hello")?;
//! let got = store.get("greeting", None)?;
//! assert_eq!(got.version, put.version);
//! assert_eq!(got.value_as::<String>()?, "hello");
//! store.close();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::value::RawValue;

use crate::cache::{CacheStats, LatestCache};
use crate::change::ChangePage;
use crate::deadlines::{ExpiryStats, Lease, MAX_TTL, MIN_TTL, Schedule};
use crate::error::{OpenError, StoreError};
use crate::key::{validate_key, validate_key_to_remove};
use crate::storage;
use crate::storage::seam::{
    DbStats, Done, Fresh, Hooks, KeyInfo, KeyPage, Lifetime, Op, Options, Reads, SyncMode,
    VersionInfo, Written,
};
use crate::value::check_value;
use crate::version::{Deadline, Operation, PutOutcome, Versioned};
use crate::watch::{FeedWatch, Subscription, Watchers};
use crate::writer::reply::Pending;
use crate::writer::{WriteFault, Writer, WriterContext, WriterCounters};

pub use crate::storage::seam::PutItem;

/// How to open a [`Store`]: [`StoreConfig::new`] gives the defaults, and
/// the setters change them (new settings may be added without breaking
/// callers).
///
/// ```
/// let config = vkv::StoreConfig::new("kv_store.db")
///     .cache_size(10_000)
///     .max_versions(100);
/// assert_eq!(config.cache_size, 10_000);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StoreConfig {
    /// The database: a SQLite file (created if missing), or a
    /// `postgres://` / `postgresql://` URL (feature `postgres`).
    pub path: PathBuf,
    /// How many keys' latest versions the LRU cache holds (0 disables it).
    pub cache_size: usize,
    /// How many bytes of keys and values the cache holds (0 disables it);
    /// a larger value is not cached.
    pub cache_bytes: usize,
    /// Commit durability.
    pub sync: SyncMode,
    /// Read-only connections in the pool.
    pub read_connections: u32,
    /// Operations that may wait for the writer before `put` blocks.
    pub write_queue: usize,
    /// The most writes committed in one transaction.
    pub max_batch: usize,
    /// Versions kept per key; older ones are removed by the write that
    /// passes the limit (0: keep all).
    pub max_versions: u64,
    /// The most watchers that may wait at once.
    pub max_watchers: usize,
    /// The longest a commit may take: past it, its writes fail with
    /// [`StoreError::Unavailable`] saying their outcome is unknown, and new
    /// writes are refused until it returns (a PostgreSQL primary waiting
    /// for a lost synchronous standby). `None`: wait as long as it takes.
    pub commit_timeout: Option<Duration>,
    /// PostgreSQL: how long a replica's read lease lasts, during which it
    /// serves cached latest versions without asking the database (a write
    /// elsewhere waits until this replica dropped the key, or at most this
    /// long if it vanished). Zero: no leases, every latest read is
    /// confirmed by the database. Unused with SQLite.
    pub read_lease: Duration,
    /// The longest a read waits on the database (PostgreSQL: a statement
    /// or a lock it waits for, such as a table an operator locked); past
    /// it the read fails with [`StoreError::Unavailable`].
    pub query_timeout: Duration,
}

impl StoreConfig {
    /// Defaults for the database at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        StoreConfig {
            path: path.into(),
            cache_size: 100,
            cache_bytes: 32 << 20,
            sync: SyncMode::Full,
            read_connections: 4,
            write_queue: 4096,
            max_batch: 512,
            max_versions: 0,
            max_watchers: 1024,
            commit_timeout: None,
            read_lease: Duration::from_secs(1),
            query_timeout: Duration::from_secs(5),
        }
    }

    /// Sets [`StoreConfig::cache_size`].
    pub fn cache_size(mut self, keys: usize) -> Self {
        self.cache_size = keys;
        self
    }

    /// Sets [`StoreConfig::cache_bytes`].
    pub fn cache_bytes(mut self, bytes: usize) -> Self {
        self.cache_bytes = bytes;
        self
    }

    /// Sets [`StoreConfig::sync`].
    pub fn sync(mut self, sync: SyncMode) -> Self {
        self.sync = sync;
        self
    }

    /// Sets [`StoreConfig::read_connections`].
    pub fn read_connections(mut self, n: u32) -> Self {
        self.read_connections = n;
        self
    }

    /// Sets [`StoreConfig::write_queue`].
    pub fn write_queue(mut self, n: usize) -> Self {
        self.write_queue = n;
        self
    }

    /// Sets [`StoreConfig::max_batch`].
    pub fn max_batch(mut self, n: usize) -> Self {
        self.max_batch = n;
        self
    }

    /// Sets [`StoreConfig::max_versions`].
    pub fn max_versions(mut self, n: u64) -> Self {
        self.max_versions = n;
        self
    }

    /// Sets [`StoreConfig::max_watchers`].
    pub fn max_watchers(mut self, n: usize) -> Self {
        self.max_watchers = n;
        self
    }

    /// Sets [`StoreConfig::commit_timeout`].
    pub fn commit_timeout(mut self, limit: Option<Duration>) -> Self {
        self.commit_timeout = limit;
        self
    }

    /// Sets [`StoreConfig::read_lease`].
    pub fn read_lease(mut self, lease: Duration) -> Self {
        self.read_lease = lease;
        self
    }

    /// Sets [`StoreConfig::query_timeout`].
    pub fn query_timeout(mut self, limit: Duration) -> Self {
        self.query_timeout = limit;
        self
    }
}

/// Write-path statistics of the group commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterStats {
    /// Transactions committed.
    pub batches: u64,
    /// Writes committed over all batches (`writes / batches` is the mean
    /// batch size).
    pub writes: u64,
}

/// A put queued by [`Store::begin_put`], not yet awaited.
pub(crate) struct PendingPut(Pending);

impl PendingPut {
    /// Waits until the put is committed (or failed).
    pub fn wait(self) -> Result<PutOutcome, StoreError> {
        first_outcome(self.0.wait()?)
    }
}

/// The answer to [`Store::subscribe`].
pub enum Watch {
    /// The key is already past the version: its latest (maybe a tombstone).
    Ready(Arc<Versioned>),
    /// Not yet: wait on the subscription's channel.
    Pending(Subscription),
}

struct Inner {
    cache: Arc<LatestCache>,
    reads: Arc<dyn Reads>,
    writer: Arc<Writer>,
    schedule: Arc<Schedule>,
    watchers: Arc<Watchers>,
    counters: Arc<WriterCounters>,
    fault: Arc<WriteFault>,
    path: PathBuf,
    /// Batches queued by [`Store::batch_then`] and not committed yet.
    batches: Arc<AtomicUsize>,
}

/// Batches that [`Store::batch_then`] queues without a thread waiting; past
/// them the caller waits for the commit, so that parsed batches in memory
/// stay bounded whatever the writer's queue takes.
const BATCHES_IN_FLIGHT: usize = 32;

/// A handle to an open store; cheap to clone and share between threads.
///
/// ```
/// # let dir = std::env::temp_dir().join(format!("vkv-doc-{}", std::process::id()));
/// # std::fs::create_dir_all(&dir)?;
/// let store = vkv::Store::open(vkv::StoreConfig::new(dir.join("kv.db")))?;
/// let first = store.put("config/mode", &"on")?;
/// store.put("config/mode", &"off")?;
/// // Every version stays readable.
/// let old = store.get("config/mode", Some(first.version))?;
/// assert_eq!(old.value_as::<String>()?, "on");
/// // A compare-and-set that lost: nothing is written.
/// let raw = serde_json::value::to_raw_value(&"auto")?;
/// assert!(store.put_if("config/mode", raw, Some(first.version)).is_err());
/// assert_eq!(store.get("config/mode", None)?.version, 2);
/// store.close();
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl Store {
    /// Opens (or creates) the store described by `config`.
    pub fn open(config: StoreConfig) -> Result<Store, OpenError> {
        let watchers = Arc::new(Watchers::new(config.max_watchers));
        let cache = Arc::new(LatestCache::new(config.cache_size, config.cache_bytes));
        let options = Options {
            path: config.path.clone(),
            sync: config.sync,
            read_connections: config.read_connections,
            max_versions: config.max_versions,
            read_lease: config.read_lease,
            query_timeout: config.query_timeout,
        };
        let backend = storage::open::open(
            &options,
            Hooks {
                watchers: Arc::clone(&watchers),
                cache: Arc::clone(&cache),
            },
        )?;
        let counters = Arc::new(WriterCounters::default());
        let fault = Arc::new(WriteFault::default());
        let schedule = Arc::new(Schedule::default());
        let polls = backend.reads.polls_deadlines();
        if polls {
            schedule.set_polled();
        }
        if backend.reads.supports_expiry() && !polls {
            let stored = backend
                .reads
                .expiry_state()
                .map_err(|e| OpenError::Database {
                    path: config.path.clone(),
                    reason: format!("cannot read the deadlines of keys: {e}"),
                })?;
            schedule.load(stored);
        }
        let ctx = WriterContext {
            cache: Arc::clone(&cache),
            watchers: Arc::clone(&watchers),
            schedule: Arc::clone(&schedule),
            counters: Arc::clone(&counters),
            fault: Arc::clone(&fault),
            max_batch: config.max_batch.max(1),
            commit_timeout: config.commit_timeout,
        };
        let writer = Arc::new(Writer::start(backend.committer, ctx, config.write_queue)?);
        if backend.reads.supports_expiry() {
            // Keys whose deadline passed while the store was closed expire
            // at once: the schedule has them due, or the first poll finds
            // them.
            let reads = polls.then(|| Arc::clone(&backend.reads));
            crate::expiry::start(Arc::clone(&schedule), Arc::clone(&writer), reads)?;
        }
        Ok(Store {
            inner: Arc::new(Inner {
                cache,
                reads: backend.reads,
                writer,
                schedule,
                watchers,
                counters,
                fault,
                path: config.path,
                batches: Arc::default(),
            }),
        })
    }

    /// Stores `value` (serialized as JSON) as the next version of `key`.
    /// Returns once the version is committed to disk.
    pub fn put<T: serde::Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
    ) -> Result<PutOutcome, StoreError> {
        let raw = serde_json::value::to_raw_value(value)
            .map_err(|e| StoreError::InvalidValue(e.to_string()))?;
        self.put_raw(key, raw)
    }

    /// Stores already-serialized JSON as the next version of `key`.
    pub fn put_raw(&self, key: &str, value: Box<RawValue>) -> Result<PutOutcome, StoreError> {
        self.put_if(key, value, None)
    }

    /// Stores `value` only if the live version of `key` (its latest, unless
    /// that is a deletion marker) is `expect` (`Some(0)`: only if the key
    /// has no live version: never written, deleted or purged). The check
    /// and the write are one transaction; a mismatch is
    /// [`StoreError::Conflict`] and writes nothing.
    pub fn put_if(
        &self,
        key: &str,
        value: Box<RawValue>,
        expect: Option<u64>,
    ) -> Result<PutOutcome, StoreError> {
        self.begin_put(key, value, expect)?.wait()
    }

    /// Queues a (conditional) put and returns without waiting for its
    /// commit; [`PendingPut::wait`] gives the outcome. Lets a caller that
    /// must not block (an HTTP worker) hand the wait to someone else.
    pub(crate) fn begin_put(
        &self,
        key: &str,
        value: Box<RawValue>,
        expect: Option<u64>,
    ) -> Result<PendingPut, StoreError> {
        let item = self.checked(PutItem {
            key: key.to_string(),
            value,
            expect,
            lifetime: Lifetime::Permanent,
        })?;
        Ok(PendingPut(self.inner.writer.submit(Op::Put(item))?))
    }

    /// Queues a (conditional) put; `then` runs with its outcome on the
    /// writer thread right after the commit (or at once if the put is
    /// refused before it is queued). No thread waits meanwhile: this is how
    /// the HTTP layer answers a put. Keep `then` short.
    pub(crate) fn put_then(
        &self,
        item: PutItem,
        then: impl FnOnce(Result<PutOutcome, StoreError>) + Send + 'static,
    ) {
        let item = self.checked(item);
        match item {
            Ok(item) => self.inner.writer.submit_then(
                Op::Put(item),
                Box::new(move |done| then(done.and_then(first_outcome))),
            ),
            Err(e) => then(Err(e)),
        }
    }

    /// Stores `item` (its condition and lifetime included): the one put
    /// that takes every option.
    pub fn put_item(&self, item: PutItem) -> Result<PutOutcome, StoreError> {
        let item = self.checked(item)?;
        first_outcome(self.inner.writer.apply(Op::Put(item))?)
    }

    /// Commits every put of `items` or none of them (one transaction).
    pub fn batch(&self, items: Vec<PutItem>) -> Result<Vec<PutOutcome>, StoreError> {
        let items = items
            .into_iter()
            .map(|i| self.checked(i))
            .collect::<Result<_, _>>()?;
        batch_outcomes(self.inner.writer.apply(Op::Batch(items))?)
    }

    /// [`Store::batch`] without waiting: `then` runs on the writer thread
    /// with the outcome, right after the commit (or at once if an item is
    /// invalid). Waits for the commit when [`BATCHES_IN_FLIGHT`] batches
    /// are queued already (then `then` runs on this thread).
    pub(crate) fn batch_then(
        &self,
        items: Vec<PutItem>,
        then: impl FnOnce(Result<Vec<PutOutcome>, StoreError>) + Send + 'static,
    ) {
        let items = items
            .into_iter()
            .map(|i| self.checked(i))
            .collect::<Result<_, _>>();
        let items = match items {
            Ok(items) => items,
            Err(e) => return then(Err(e)),
        };
        let batches = Arc::clone(&self.inner.batches);
        if batches.fetch_add(1, Ordering::AcqRel) >= BATCHES_IN_FLIGHT {
            let done = self.inner.writer.apply(Op::Batch(items));
            batches.fetch_sub(1, Ordering::AcqRel);
            return then(done.and_then(batch_outcomes));
        }
        self.inner.writer.submit_then(
            Op::Batch(items),
            Box::new(move |done| {
                batches.fetch_sub(1, Ordering::AcqRel);
                then(done.and_then(batch_outcomes))
            }),
        );
    }

    /// Grants a lease of `ttl` (1 s to 30 days): keys put with
    /// [`Lifetime::Lease`] expire when it runs out (unless kept alive with
    /// [`Store::keepalive`]) or is revoked.
    pub fn grant_lease(&self, ttl: Duration) -> Result<Lease, StoreError> {
        self.leases_supported()?;
        let ttl_ms = ttl_ms(ttl)?;
        match self.inner.writer.apply(Op::Grant { ttl_ms })? {
            Done::Granted(row) => Ok(self.inner.schedule.lease(row.id).unwrap_or(Lease {
                id: row.id,
                ttl,
                expires_ms: row.granted_ms.saturating_add(ttl_ms),
            })),
            _ => Err(StoreError::Internal("a grant granted no lease".into())),
        }
    }

    /// Keeps lease `id` alive: it now runs out its TTL from now. Not a
    /// write: after a restart every lease gets its full TTL again.
    pub fn keepalive(&self, id: u64) -> Result<Lease, StoreError> {
        self.leases_supported()?;
        if self.inner.reads.polls_deadlines() {
            // The database holds the lease: a write any replica sees.
            return match self.inner.writer.apply(Op::Keepalive { id })? {
                Done::Kept(state) => Ok(lease_of(state)),
                _ => Err(StoreError::Internal("a keepalive kept no lease".into())),
            };
        }
        self.inner
            .schedule
            .keepalive(id)
            .ok_or(StoreError::LeaseNotFound(id))
    }

    /// Lease `id`, up to `limit` of the keys attached to it (in byte
    /// order), and whether more are.
    pub fn lease(&self, id: u64, limit: usize) -> Result<(Lease, Vec<String>, bool), StoreError> {
        self.leases_supported()?;
        let lease = if self.inner.reads.polls_deadlines() {
            self.inner.reads.lease(id)?.map(lease_of)
        } else {
            self.inner.schedule.lease(id)
        };
        let lease = lease.ok_or(StoreError::LeaseNotFound(id))?;
        let (keys, more) = self.inner.reads.lease_keys(id, limit)?;
        Ok((lease, keys, more))
    }

    /// Every live lease, by id.
    pub fn leases(&self) -> Result<Vec<Lease>, StoreError> {
        self.leases_supported()?;
        if self.inner.reads.polls_deadlines() {
            return Ok(self
                .inner
                .reads
                .leases()?
                .into_iter()
                .map(lease_of)
                .collect());
        }
        Ok(self.inner.schedule.leases())
    }

    /// Revokes lease `id`: every key attached to it expires, in one
    /// transaction. The tombstones written.
    pub fn revoke_lease(&self, id: u64) -> Result<Vec<PutOutcome>, StoreError> {
        self.leases_supported()?;
        let revoke = Op::Revoke { id, if_due: false };
        if self.inner.reads.polls_deadlines() {
            return match self.inner.writer.apply(revoke)? {
                Done::Written(vs) => Ok(vs.iter().map(outcome).collect()),
                _ => Err(StoreError::Internal("a revoke wrote no versions".into())),
            };
        }
        let taken = self
            .inner
            .schedule
            .take_lease(id)
            .ok_or(StoreError::LeaseNotFound(id))?;
        match self.inner.writer.apply(revoke) {
            Ok(Done::Written(vs)) => Ok(vs.iter().map(outcome).collect()),
            Ok(_) => Err(StoreError::Internal("a revoke wrote no versions".into())),
            Err(e) => {
                if !e.is_refusal() {
                    // Not revoked: it runs out as it would have.
                    let ttl = i64::try_from(taken.ttl.as_millis()).unwrap_or(i64::MAX);
                    self.inner.schedule.retry_lease(id, ttl);
                }
                Err(e)
            }
        }
    }

    /// When the key of `v` expires if `v` is its latest and has a
    /// deadline (its own or its lease's), in milliseconds since the epoch.
    /// Asks no database: where the database holds deadlines, `v` carries
    /// its own, and a lease's is the one this process last learnt (its own
    /// grants and keepalives, other processes' keepalives, its reads).
    pub fn expires_at(&self, v: &Versioned) -> Option<i64> {
        match v.deadline {
            Some(Deadline::At(due)) => Some(due),
            Some(Deadline::Lease(id)) => self.inner.reads.lease_due(id),
            None => self.inner.schedule.deadline_of(&v.key, v.version),
        }
    }

    /// Expiry counters: keys with a deadline and live leases (counted by
    /// the database where it holds them: `None` if it does not answer
    /// within a short bound), expiries, lag.
    pub fn expiry_stats(&self) -> ExpiryStats {
        let schedule = &self.inner.schedule;
        let mut stats = schedule.counters.stats(schedule.counts());
        if self.inner.reads.polls_deadlines() {
            let counts = self.inner.reads.expiry_counts();
            stats.keys_with_deadline = counts.map(|(keys, _)| keys);
            stats.leases = counts.map(|(_, leases)| leases);
        }
        stats
    }

    /// Refuses TTLs where the backend does not store them.
    fn expiry_supported(&self) -> Result<(), StoreError> {
        if self.inner.reads.supports_expiry() {
            Ok(())
        } else {
            Err(StoreError::InvalidLifetime(
                "TTLs are not supported by this store".into(),
            ))
        }
    }

    /// Refuses leases where the backend does not store them.
    fn leases_supported(&self) -> Result<(), StoreError> {
        if self.inner.reads.supports_leases() {
            Ok(())
        } else {
            Err(StoreError::InvalidLifetime(
                "leases are not supported by this store".into(),
            ))
        }
    }

    /// `item` if it may be queued: a valid key and value, and a lifetime
    /// this store can keep (a TTL within bounds, a live lease).
    fn checked(&self, item: PutItem) -> Result<PutItem, StoreError> {
        validate_key(&item.key)?;
        check_value(item.value.get())?;
        match item.lifetime {
            Lifetime::Permanent => {}
            Lifetime::Ttl(ttl) => {
                self.expiry_supported()?;
                ttl_ms(ttl)?;
            }
            // Where the database holds leases, the write checks it.
            Lifetime::Lease(id) if !self.inner.reads.polls_deadlines() => {
                self.leases_supported()?;
                self.inner
                    .schedule
                    .lease(id)
                    .ok_or(StoreError::LeaseNotFound(id))?;
            }
            Lifetime::Lease(_) => self.leases_supported()?,
        }
        Ok(item)
    }

    /// Writes a deletion marker as the next version of `key`. Older
    /// versions stay readable; the next put continues the numbering.
    pub fn delete(&self, key: &str) -> Result<PutOutcome, StoreError> {
        self.delete_if(key, None)
    }

    /// [`Store::delete`] only if the live version of `key` is `expect`
    /// (as [`Store::put_if`]); a mismatch is [`StoreError::Conflict`] and
    /// writes nothing.
    pub fn delete_if(&self, key: &str, expect: Option<u64>) -> Result<PutOutcome, StoreError> {
        validate_key_to_remove(key)?;
        let key = key.to_string();
        first_outcome(self.inner.writer.apply(Op::Delete { key, expect })?)
    }

    /// Removes every version of `key` for good; returns how many.
    pub fn purge(&self, key: &str) -> Result<u64, StoreError> {
        self.purge_if(key, None)
    }

    /// [`Store::purge`] only if the live version of `key` is `expect`
    /// (`Some(0)`: only a deleted key); a mismatch is
    /// [`StoreError::Conflict`] and removes nothing.
    pub fn purge_if(&self, key: &str, expect: Option<u64>) -> Result<u64, StoreError> {
        self.purge_revision(key, expect)
            .map(|(versions, _)| versions)
    }

    /// [`Store::purge_if`], with the store's revision of the purge: (the
    /// versions removed, the revision).
    pub fn purge_revision(&self, key: &str, expect: Option<u64>) -> Result<(u64, u64), StoreError> {
        validate_key_to_remove(key)?;
        let key = key.to_string();
        match self.inner.writer.apply(Op::Purge { key, expect })? {
            Done::Purged {
                versions, revision, ..
            } => Ok((versions, revision)),
            _ => Err(StoreError::Internal("purge wrote".into())),
        }
    }

    /// The latest version of `key` (`version: None`) or a given version.
    /// Latest reads go through the cache; a miss reads the database and
    /// caches what it found. Nothing is cached for a key that is missing.
    /// A deleted key answers [`StoreError::Deleted`].
    pub fn get(&self, key: &str, version: Option<u64>) -> Result<Arc<Versioned>, StoreError> {
        validate_key(key)?;
        let found = match version {
            None => self
                .head(key)?
                .ok_or_else(|| StoreError::KeyNotFound(key.to_string()))?,
            Some(n) => match self.cached_version(key, n) {
                Some(hit) => hit,
                None => Arc::new(self.inner.reads.version(key, n)?),
            },
        };
        live(found)
    }

    /// [`Store::get`], its answer handed to `then`: at once when no
    /// database round trip is needed, else when the database answers
    /// (PostgreSQL: on the thread that runs the shared read rounds, so keep
    /// `then` short). No thread waits meanwhile: this is how the HTTP layer
    /// answers a GET in PostgreSQL mode. A read of the latest is answered
    /// within the query timeout of `asked` (see [`Reads::latest_then`]).
    pub(crate) fn get_then(
        &self,
        key: &str,
        version: Option<u64>,
        asked: Instant,
        then: impl FnOnce(Result<Arc<Versioned>, StoreError>) + Send + 'static,
    ) {
        if let Err(e) = validate_key(key) {
            return then(Err(e));
        }
        let inner = &self.inner;
        match version {
            Some(n) => match self.cached_version(key, n) {
                Some(hit) => then(live(hit)),
                None => inner.reads.version_then(
                    key,
                    n,
                    Box::new(move |found| then(found.map(Arc::new).and_then(live))),
                ),
            },
            None => {
                let cached = inner.cache.get(key, None);
                let ticket = inner.cache.ticket(key);
                if let Some(hit) = &cached
                    && inner.reads.cache_is_current()
                {
                    return then(live(Arc::clone(hit)));
                }
                let (cache, name) = (Arc::clone(&inner.cache), key.to_string());
                let known = cached.clone();
                inner.reads.latest_then(
                    key,
                    known.as_deref(),
                    asked,
                    Box::new(move |fresh| {
                        let found = fresh.and_then(|f| resolve(&cache, ticket, cached, f));
                        then(
                            found.and_then(|v| {
                                v.ok_or(StoreError::KeyNotFound(name)).and_then(live)
                            }),
                        )
                    }),
                );
            }
        }
    }

    /// [`Store::get`] when the answer is in the cache and needs nothing
    /// else (no database, no lock but the cache's): `None` otherwise, and
    /// then [`Store::get`] must be asked. Lets the connection loop answer
    /// hot reads itself without ever blocking on storage.
    pub(crate) fn get_cached(
        &self,
        key: &str,
        version: Option<u64>,
    ) -> Option<Result<Arc<Versioned>, StoreError>> {
        // Another process may have written a newer latest, or purged or
        // retired any version (PostgreSQL): only a confirmed read may serve
        // it.
        if !self.inner.reads.cache_is_current() {
            return None;
        }
        validate_key(key).ok()?;
        self.inner.cache.hit(key, version).map(live)
    }

    /// Version `n` of `key` from the cache: only while the cache is known
    /// current, since another process may have purged it or retention
    /// removed it meanwhile (PostgreSQL).
    fn cached_version(&self, key: &str, n: u64) -> Option<Arc<Versioned>> {
        let inner = &self.inner;
        if !inner.reads.cache_is_current() {
            return None;
        }
        inner.cache.get(key, Some(n))
    }

    /// The latest version of `key` including a tombstone, through the cache.
    /// When other processes write the same database (PostgreSQL), a cached
    /// entry is only served once the database confirms it is still the
    /// latest (one round trip that carries the value only if it changed):
    /// no read returns a version older than a write acknowledged anywhere
    /// before the read began.
    fn head(&self, key: &str) -> Result<Option<Arc<Versioned>>, StoreError> {
        let inner = &self.inner;
        let cached = inner.cache.get(key, None);
        let ticket = inner.cache.ticket(key);
        let fresh = match &cached {
            Some(hit) if inner.reads.cache_is_current() => return Ok(Some(Arc::clone(hit))),
            Some(hit) => inner.reads.latest_unless(key, hit)?,
            None => Fresh::Changed(inner.reads.latest(key)?),
        };
        resolve(&inner.cache, ticket, cached, fresh)
    }

    /// Versions of `key` below `before` (all when `None`), newest first, at
    /// most `limit`; and whether older ones remain.
    pub fn history(
        &self,
        key: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Result<(Vec<VersionInfo>, bool), StoreError> {
        validate_key(key)?;
        self.inner.reads.history(key, before, limit)
    }

    /// Live keys starting with `prefix`, after `after`, in byte order, at
    /// most `limit`; and whether more remain.
    pub fn keys(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<KeyInfo>, bool), StoreError> {
        let page = self.inner.reads.keys(prefix, after, limit, false)?;
        Ok((page.keys, page.more))
    }

    /// [`Store::keys`] with the store's revision the page shows (the page
    /// is exactly the store at that revision: the change feed after it
    /// misses nothing and repeats nothing), and with `values`, each key's
    /// latest value.
    pub fn keys_page(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
        values: bool,
    ) -> Result<KeyPage, StoreError> {
        self.inner.reads.keys(prefix, after, limit, values)
    }

    /// The change feed: changes of keys starting with `prefix` after
    /// revision `after` (0: from the oldest kept; `None`: from now on), in
    /// revision order, about `limit` of them (a page never ends inside a
    /// revision), and the store's revision the page covers.
    /// [`StoreError::ChangesGone`] when retention or a purge removed
    /// changes after `after`.
    pub fn changes(
        &self,
        prefix: &str,
        after: Option<u64>,
        limit: usize,
        values: bool,
    ) -> Result<ChangePage, StoreError> {
        self.inner.reads.changes(prefix, after, limit, values)
    }

    /// The feed's wake-up epoch, taken before reading the feed (see
    /// [`Store::subscribe_feed`]).
    pub(crate) fn feed_epoch(&self) -> u64 {
        self.inner.watchers.epoch()
    }

    /// Waits, with no thread, for a change under `prefix` after the feed
    /// was read at `epoch`: `then(true)` on one (a hint: read the feed
    /// again; on the writer's or the listener's thread, keep it short),
    /// `then(false)` at shutdown. `Changed` at once if one came meanwhile.
    pub(crate) fn subscribe_feed(
        &self,
        prefix: &str,
        epoch: u64,
        then: impl FnOnce(bool) + Send + 'static,
    ) -> Result<FeedWatch, StoreError> {
        self.inner
            .watchers
            .subscribe_feed(prefix, epoch, Box::new(then))
    }

    /// Waits-to-be: `Ready` with the latest version if `key` is already
    /// above version `after`, else a subscription that receives the first
    /// newer version committed (for callers that park the wait).
    pub fn subscribe(&self, key: &str, after: u64) -> Result<Watch, StoreError> {
        self.watch(key, after, |w, seen| w.subscribe(key, seen))
    }

    /// Like [`Store::subscribe`], but the first newer version committed is
    /// handed to `then` (on the writer thread, keep it short) instead of a
    /// channel, so no thread waits; `then(None)` when the watchers are
    /// closed (shutdown). Dropping the subscription unregisters it without
    /// calling `then`. With `Ready`, `then` may still have been called.
    pub(crate) fn subscribe_then(
        &self,
        key: &str,
        after: u64,
        then: impl FnOnce(Option<Arc<Versioned>>) + Send + 'static,
    ) -> Result<Watch, StoreError> {
        self.watch(key, after, |w, seen| {
            w.subscribe_then(key, seen, Box::new(then))
        })
    }

    fn watch(
        &self,
        key: &str,
        after: u64,
        register: impl FnOnce(&Arc<Watchers>, u64) -> Result<Subscription, StoreError>,
    ) -> Result<Watch, StoreError> {
        validate_key(key)?;
        if let Some(v) = self.head(key)?
            && v.version > after
        {
            return Ok(Watch::Ready(v));
        }
        // Woken by a version above `after` only, even when the latest here
        // is older (the client saw a newer one through another replica).
        let sub = register(&self.inner.watchers, after)?;
        // A commit between the check above and the registration would be
        // missed: look again now that we are registered.
        match self.head(key)? {
            Some(v) if v.version > after => Ok(Watch::Ready(v)),
            _ => Ok(Watch::Pending(sub)),
        }
    }

    /// Blocks until `key` has a version above `after` (returning it) or
    /// `timeout` passes (returning `None`).
    pub fn wait_for(
        &self,
        key: &str,
        after: u64,
        timeout: Duration,
    ) -> Result<Option<Arc<Versioned>>, StoreError> {
        match self.subscribe(key, after)? {
            Watch::Ready(v) => Ok(Some(v)),
            Watch::Pending(sub) => Ok(sub.next(timeout)),
        }
    }

    /// Watchers waiting now.
    pub fn watchers(&self) -> usize {
        self.inner.watchers.len()
    }

    /// Wakes every waiting watcher and refuses new ones (first step of a
    /// shutdown).
    pub(crate) fn close_watchers(&self) {
        self.inner.watchers.close();
    }

    /// Cache counters and sizes.
    pub fn cache_stats(&self) -> CacheStats {
        self.inner.cache.stats()
    }

    /// Database totals (constant time).
    pub fn db_stats(&self) -> Result<DbStats, StoreError> {
        self.inner.reads.stats()
    }

    /// Database totals if the database gives them at once, else `None`
    /// (for `/metrics`, which never waits on the database).
    pub(crate) fn db_stats_now(&self) -> Option<DbStats> {
        self.inner.reads.stats_now()
    }

    /// PostgreSQL: whether this replica holds a read lease now, and how
    /// many it took anew so far; `None` on SQLite.
    pub(crate) fn read_lease(&self) -> Option<(bool, u64)> {
        self.inner.reads.read_lease()
    }

    /// Group-commit counters.
    pub fn writer_stats(&self) -> WriterStats {
        let c = &self.inner.counters;
        WriterStats {
            batches: c.batches.load(Ordering::Relaxed),
            writes: c.ops.load(Ordering::Relaxed),
        }
    }

    /// `Ok` when the database answers a query and takes writes: the
    /// backend's own check (SQLite: the path still leads to the file that
    /// was opened and its directory's file system is writable), and if the
    /// last write transaction failed (disk full, I/O error), a probe write
    /// now commits. While healthy this costs one query, one `stat` and one
    /// `open`; the probe (one small commit) runs only after a failure, so a
    /// fault clears once writes work again even if no client writes. While a
    /// commit has not returned within [`StoreConfig::commit_timeout`], not
    /// healthy.
    pub fn health(&self) -> Result<(), StoreError> {
        self.inner.reads.check()?;
        if let Some(stalled) = self.inner.writer.refusal() {
            return Err(stalled);
        }
        if self.inner.fault.get().is_some() {
            self.inner.writer.apply(Op::Probe)?;
        }
        Ok(())
    }

    /// The database file (or PostgreSQL URL) as configured.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The database as it may be logged: the file, or the PostgreSQL URL
    /// with its password masked.
    pub fn location(&self) -> String {
        storage::location::display_location(&self.inner.path)
    }

    /// Whether [`Store::get_then`] never blocks the caller: a read it
    /// cannot answer from the cache is queued, and answered on a thread of
    /// the storage's own.
    pub(crate) fn reads_never_block(&self) -> bool {
        self.inner.reads.queues_reads()
    }

    /// Whether a put queued now with [`Store::put_then`] is unlikely to
    /// block the caller: the writer's queue is at most half full.
    pub(crate) fn writes_have_room(&self) -> bool {
        self.inner.writer.has_room()
    }

    /// Commits every queued write and stops the writer. Later writes fail
    /// with [`StoreError::Closed`]; reads keep working.
    pub fn close(&self) {
        self.inner.schedule.close();
        self.inner.watchers.close();
        self.inner.writer.stop();
    }
}

/// What a confirmed latest read found, given what was `cached` when its
/// `ticket` was taken: the version to serve, now cached (if no commit
/// touched the key meanwhile).
fn resolve(
    cache: &LatestCache,
    ticket: crate::cache::Ticket,
    cached: Option<Arc<Versioned>>,
    fresh: Fresh,
) -> Result<Option<Arc<Versioned>>, StoreError> {
    match fresh {
        Fresh::Same => cached
            .map(Some)
            .ok_or_else(|| StoreError::Internal("no version was known".into())),
        Fresh::Changed(None) => Ok(None),
        Fresh::Changed(Some(found)) => {
            let found = Arc::new(found);
            cache.insert_if_unchanged(ticket, Arc::clone(&found));
            Ok(Some(found))
        }
    }
}

/// `v`, unless it is a tombstone ([`StoreError::Deleted`], or
/// [`StoreError::Expired`] for an expiry's).
fn live(v: Arc<Versioned>) -> Result<Arc<Versioned>, StoreError> {
    if v.expired {
        return Err(StoreError::Expired {
            key: v.key.clone(),
            version: v.version,
        });
    }
    if v.deleted {
        return Err(StoreError::Deleted {
            key: v.key.clone(),
            version: v.version,
        });
    }
    Ok(v)
}

/// A lease as the database holds it, as clients see it.
fn lease_of(state: crate::storage::seam::LeaseState) -> Lease {
    Lease {
        id: state.id,
        ttl: Duration::from_millis(u64::try_from(state.ttl_ms).unwrap_or(0)),
        expires_ms: state.due_ms,
    }
}

/// `ttl` in milliseconds, if it is within [`MIN_TTL`] and [`MAX_TTL`].
fn ttl_ms(ttl: Duration) -> Result<i64, StoreError> {
    if !(MIN_TTL..=MAX_TTL).contains(&ttl) {
        return Err(StoreError::InvalidLifetime(format!(
            "a TTL must be from 1s to 30days (2592000 s), got {}",
            humantime::format_duration(ttl)
        )));
    }
    i64::try_from(ttl.as_millis()).map_err(|_| StoreError::InvalidLifetime("TTL too long".into()))
}

fn outcome(w: &Written) -> PutOutcome {
    let v = &w.version;
    PutOutcome {
        key: v.key.clone(),
        version: v.version,
        timestamp_ms: v.timestamp_ms,
        revision: v.revision,
        operation: if w.created {
            Operation::Create
        } else {
            Operation::Update
        },
    }
}

/// What a committed batch answers: one outcome per put, in order.
fn batch_outcomes(done: Done) -> Result<Vec<PutOutcome>, StoreError> {
    match done {
        Done::Written(vs) => Ok(vs.iter().map(outcome).collect()),
        _ => Err(StoreError::Internal("a batch wrote no versions".into())),
    }
}

/// The version a single put or delete wrote.
fn first_outcome(done: Done) -> Result<PutOutcome, StoreError> {
    match done {
        Done::Written(vs) => vs
            .first()
            .map(outcome)
            .ok_or_else(|| StoreError::Internal("a write committed no version".into())),
        _ => Err(StoreError::Internal("a write purged instead".into())),
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The expiry thread holds the writer: stop it first.
        self.schedule.close();
        self.writer.stop();
    }
}
