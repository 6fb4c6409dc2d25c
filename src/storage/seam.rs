//! The storage seam: what the layers above need from a database, as
//! crate-private traits and the vocabulary they speak. Each backend
//! implements them; nothing here knows which backend runs.
//! - [`Reads`]: the request-path queries (latest, a version, history, key
//!   listing, totals, health), shared by every thread;
//! - [`Committer`]: the writer thread's connection, which applies one batch
//!   of operations ([`Op`]) in one transaction;
//! - [`Export`] and [`Import`]: whole-store dumps and loads, as
//!   [`Record`]s, for `vkv copy`, `vkv check` and backups.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::value::RawValue;

use crate::change::ChangePage;
use crate::error::StoreError;
use crate::version::{Deadline, Versioned};

/// What a backend is opened with (from [`crate::StoreConfig`]).
#[derive(Debug, Clone)]
pub(crate) struct Options {
    /// A SQLite file, or a PostgreSQL URL.
    pub path: PathBuf,
    /// Commit durability (SQLite).
    pub sync: SyncMode,
    /// Connections of the read pool.
    pub read_connections: u32,
    /// Versions kept per key (0: all).
    pub max_versions: u64,
    /// A replica's read lease (PostgreSQL; zero: none).
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub read_lease: Duration,
    /// The longest a read waits on the database (PostgreSQL).
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub query_timeout: Duration,
}

/// How hard SQLite syncs a commit to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncMode {
    /// `synchronous=FULL`: a commit survives power loss. The default.
    #[default]
    Full,
    /// `synchronous=NORMAL`: in WAL mode a commit survives a process crash
    /// but the last commits may be lost on power loss.
    Normal,
}

/// One entry of a key's history.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct VersionInfo {
    /// The version number.
    pub version: u64,
    /// Commit time, milliseconds since the Unix epoch.
    #[serde(skip)]
    pub timestamp_ms: i64,
    /// Whether it is a deletion marker.
    pub deleted: bool,
    /// Size of the stored JSON value in bytes.
    pub size_bytes: u64,
    /// Whether it is the tombstone of an expiry (a TTL or a lease ran
    /// out, or the lease was revoked), not of a delete.
    #[serde(skip)]
    pub expired: bool,
    /// The store's revision of the write that made it.
    pub revision: u64,
    /// Written where the key had no live version.
    #[serde(skip)]
    pub created: bool,
}

impl VersionInfo {
    /// What wrote it, as the change feed names it.
    pub fn operation(&self) -> crate::ChangeOperation {
        crate::ChangeOperation::of(crate::change::Stored {
            purge: false,
            deleted: self.deleted,
            expired: self.expired,
            created: self.created,
        })
    }
}

/// One entry of a key listing.
#[derive(Debug, Clone)]
pub struct KeyInfo {
    /// The key.
    pub key: String,
    /// Its latest version.
    pub version: u64,
    /// Commit time of the latest version, milliseconds since the epoch.
    pub timestamp_ms: i64,
    /// Its latest value, when the listing was asked for values.
    pub value: Option<Box<RawValue>>,
}

impl PartialEq for KeyInfo {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
            && self.version == other.version
            && self.timestamp_ms == other.timestamp_ms
            && self.value.as_ref().map(|v| v.get()) == other.value.as_ref().map(|v| v.get())
    }
}

impl Eq for KeyInfo {}

/// A page of a key listing, read from one snapshot of the store.
#[derive(Debug, Clone)]
pub struct KeyPage {
    /// The keys, in byte order.
    pub keys: Vec<KeyInfo>,
    /// Whether more keys follow.
    pub more: bool,
    /// The store's revision the page shows: the page is exactly the store
    /// at that revision, so the change feed after it misses nothing and
    /// repeats nothing.
    pub revision: u64,
}

/// Database totals, as `/db/stats` shows them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct DbStats {
    /// Keys with at least one version.
    pub total_keys: u64,
    /// Versions stored, over all keys.
    pub total_versions: u64,
    /// Bytes on disk: the database file plus its write-ahead log.
    pub file_size_bytes: u64,
    /// The database file.
    pub path: String,
    /// SQLite's journal mode (`wal`).
    pub journal_mode: String,
    /// The store's revision: that of the last committed write.
    pub revision: u64,
}

/// One put: the value for `key`, optionally only if its latest version is
/// `expect` (0: only if the key has no live version: never written, deleted
/// or purged).
#[derive(Debug)]
pub struct PutItem {
    /// The key.
    pub key: String,
    /// The JSON value.
    pub value: Box<RawValue>,
    /// The condition, if any.
    pub expect: Option<u64>,
    /// How long the version lives: for good, until a deadline, or while a
    /// lease does.
    pub lifetime: Lifetime,
}

/// How long a put's version lives before the key expires (a tombstone
/// marked as an expiry is written). A later put sets it anew: without a
/// TTL or a lease, the key is permanent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lifetime {
    /// Until it is written again or deleted.
    #[default]
    Permanent,
    /// Expires this long after the commit (1 s to 30 days).
    Ttl(Duration),
    /// Expires when the lease with this id runs out or is revoked.
    Lease(u64),
}

/// A key whose deadline `due_ms` has passed, to expire if that is still
/// its deadline when the expiry commits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Due {
    pub key: String,
    pub due_ms: i64,
}

/// A lease as stored: its id, its TTL, and when it was granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LeaseRow {
    pub id: u64,
    pub ttl_ms: i64,
    pub granted_ms: i64,
}

/// A live lease and its deadline, milliseconds since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LeaseState {
    pub id: u64,
    pub ttl_ms: i64,
    pub due_ms: i64,
}

/// A key's deadline as stored, with the version that set it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeadlineRow {
    pub key: String,
    pub version: u64,
    pub deadline: Deadline,
}

/// Every deadline and lease of a store, as loaded at start.
#[derive(Debug, Default)]
pub(crate) struct ExpiryState {
    pub deadlines: Vec<DeadlineRow>,
    pub leases: Vec<LeaseRow>,
}

/// A write operation. `expect` is a condition on the key's live version
/// (see `crate::rules`), as on a put.
#[derive(Debug)]
pub(crate) enum Op {
    Put(PutItem),
    Delete {
        key: String,
        expect: Option<u64>,
    },
    Purge {
        key: String,
        expect: Option<u64>,
    },
    Batch(Vec<PutItem>),
    /// Tombstones marked as expiries for the keys whose deadline is still
    /// the one given and has passed at commit; others are left alone.
    Expire(Vec<Due>),
    /// A new lease of `ttl_ms`.
    Grant {
        ttl_ms: i64,
    },
    /// Ends lease `id`: every key attached to it expires, in this
    /// transaction. `if_due`: only if its deadline has passed (a
    /// keepalive may have moved it since it was found due); where
    /// deadlines are scheduled in memory, the schedule has decided that.
    Revoke {
        id: u64,
        #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
        if_due: bool,
    },
    /// Keeps lease `id` alive: its deadline is its TTL from now (where the
    /// database holds leases; in memory elsewhere, not a write).
    Keepalive {
        #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
        id: u64,
    },
    /// A no-op write (one row rewritten as it is) that commits like any
    /// other: whether writes work again after a failure.
    Probe,
}

/// What an operation did.
#[derive(Debug)]
pub(crate) enum Done {
    /// New versions, in order (a tombstone for a delete).
    Written(Vec<Written>),
    /// A purge removed this many versions of `key`; the purge is change
    /// `revision` of the store.
    Purged {
        key: String,
        versions: u64,
        revision: u64,
    },
    /// A lease was granted.
    Granted(LeaseRow),
    /// A lease was kept alive: its new deadline.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    Kept(LeaseState),
}

/// One version a write committed.
#[derive(Debug)]
pub(crate) struct Written {
    /// The version.
    pub version: Arc<Versioned>,
    /// Whether the key had no live version before it: new, deleted or
    /// purged (the numbering continues after a delete or a purge, so a
    /// created key's first version is not always 1).
    pub created: bool,
    /// The key's deadline from this version on (`None`: permanent).
    pub deadline: Option<Deadline>,
}

/// Where a read of the change feed starts, on every backend: after `after`,
/// or after the store's `revision` now when none is given, or after the
/// oldest change kept (`compacted`) for `after=0`. Starting below what
/// retention or a purge under the prefix removed is
/// [`StoreError::ChangesGone`].
pub(crate) fn feed_start(
    after: Option<u64>,
    revision: u64,
    compacted: u64,
) -> Result<u64, StoreError> {
    let after = match after {
        None => revision,
        Some(0) => compacted,
        Some(a) => a,
    };
    if after < compacted {
        return Err(StoreError::ChangesGone {
            after,
            oldest: compacted,
        });
    }
    Ok(after)
}

/// The outcome of each operation of a committed batch, in order. A refused
/// operation (failed condition, missing key) is an `Err` here and wrote
/// nothing; its neighbours committed.
pub(crate) type Outcomes = Vec<Result<Done, StoreError>>;

/// The read side of a backend: every query a request thread runs. Shared
/// by all threads; implementations hold a connection pool.
pub(crate) trait Reads: Send + Sync {
    /// The latest version of `key` (possibly a tombstone), if it has any.
    fn latest(&self, key: &str) -> Result<Option<Versioned>, StoreError>;

    /// Version `version` of `key`, or why there is none
    /// ([`StoreError::KeyNotFound`], [`StoreError::Gone`],
    /// [`StoreError::VersionNotFound`]).
    fn version(&self, key: &str, version: u64) -> Result<Versioned, StoreError>;

    /// Up to `limit` versions of `key` below `before`, newest first, and
    /// whether older ones remain.
    fn history(
        &self,
        key: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Result<(Vec<VersionInfo>, bool), StoreError>;

    /// Up to `limit` live keys starting with `prefix` and after `after`, in
    /// byte order, whether more remain, and the store's revision they show
    /// (all from one snapshot); with `values`, each key's latest value.
    fn keys(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
        values: bool,
    ) -> Result<KeyPage, StoreError>;

    /// The changes of keys starting with `prefix` with a revision above
    /// `after`, in revision order, at most about `limit` (a page ends at
    /// the end of a revision: one batch larger than `limit` comes whole),
    /// with values if `values`; and the store's revision, from the same
    /// snapshot. `after` 0 starts at the oldest change kept without a gap;
    /// `None` at the store's revision (no change yet). [`StoreError::ChangesGone`]
    /// if retention or a purge removed a change above `after`.
    fn changes(
        &self,
        prefix: &str,
        after: Option<u64>,
        limit: usize,
        values: bool,
    ) -> Result<ChangePage, StoreError>;

    /// Totals, in constant time.
    fn stats(&self) -> Result<DbStats, StoreError>;

    /// Whether a cached latest version may be served as it is: always on
    /// SQLite (this process's writer thread is the only writer, so what it
    /// put in the cache is the truth); on PostgreSQL while this replica
    /// holds a read lease (`postgres/lease.rs`). If not, a cached latest
    /// version must be confirmed with [`Reads::latest_unless`] first.
    fn cache_is_current(&self) -> bool {
        true
    }

    /// Whether [`Reads::latest_then`] and [`Reads::version_then`] only
    /// queue the read and return at once (its answer comes on a thread of
    /// the backend's), so that a caller that must never block, such as
    /// the connection loop, may ask them. By default they read on the
    /// calling thread.
    fn queues_reads(&self) -> bool {
        false
    }

    /// The latest version of `key`, unless it is still `known` (same
    /// version and timestamp): then [`Fresh::Same`], and the value is not
    /// transferred. One round trip.
    fn latest_unless(&self, key: &str, known: &Versioned) -> Result<Fresh, StoreError> {
        Ok(match self.latest(key)? {
            Some(v) if v.version == known.version && v.timestamp_ms == known.timestamp_ms => {
                Fresh::Same
            }
            other => Fresh::Changed(other),
        })
    }

    /// [`Reads::latest_unless`] (or [`Reads::latest`] when nothing is
    /// `known`), its answer handed to `then`, maybe later on another thread
    /// (PostgreSQL: when the shared round that carries it returns), so that
    /// no thread waits meanwhile. A backend that bounds reads by its query
    /// timeout answers within it of `asked`, when the read was asked (a
    /// long poll's read at its deadline is asked then, however long it
    /// waited for a thread to run it). Default: at once, on this thread.
    fn latest_then(&self, key: &str, known: Option<&Versioned>, asked: Instant, then: LatestReply) {
        let _ = asked;
        then(match known {
            Some(known) => self.latest_unless(key, known),
            None => self.latest(key).map(Fresh::Changed),
        });
    }

    /// [`Reads::version`], its answer handed to `then` (as
    /// [`Reads::latest_then`]).
    fn version_then(&self, key: &str, version: u64, then: VersionReply) {
        then(self.version(key, version));
    }

    /// `Ok` when the database answers a query and would take a write (for
    /// `/health`; cheap, no write).
    fn check(&self) -> Result<(), StoreError>;

    /// The totals if the database gives them at once (`/metrics`, which
    /// must not wait on it): `None` otherwise.
    fn stats_now(&self) -> Option<DbStats> {
        self.stats().ok()
    }

    /// PostgreSQL: whether this replica holds a read lease now, and how
    /// many leases it took anew so far (for `/metrics`). `None`: no leases
    /// (SQLite).
    fn read_lease(&self) -> Option<(bool, u64)> {
        None
    }

    /// Whether the backend stores TTLs and leases ([`Lifetime`], and the
    /// operations `Expire`, `Grant` and `Revoke`).
    fn supports_expiry(&self) -> bool {
        false
    }

    /// Whether the backend stores leases (with TTLs: see
    /// [`Reads::supports_expiry`]).
    fn supports_leases(&self) -> bool {
        self.supports_expiry()
    }

    /// Whether deadlines are found by asking the backend ([`Reads::due`])
    /// rather than scheduled in memory from [`Reads::expiry_state`]: where
    /// several processes write the same database (PostgreSQL), on its clock.
    fn polls_deadlines(&self) -> bool {
        false
    }

    /// Up to `limit` keys whose deadline has passed, soonest first.
    fn due(&self, _limit: usize) -> Result<Vec<Due>, StoreError> {
        Ok(Vec::new())
    }

    /// Up to `limit` leases whose deadline has passed (where the backend
    /// holds them: [`Reads::polls_deadlines`]).
    fn due_leases(&self, _limit: usize) -> Result<Vec<LeaseState>, StoreError> {
        Ok(Vec::new())
    }

    /// Lease `id` if it is live (where the backend holds leases).
    fn lease(&self, _id: u64) -> Result<Option<LeaseState>, StoreError> {
        Ok(None)
    }

    /// Every live lease, by id (where the backend holds leases).
    fn leases(&self) -> Result<Vec<LeaseState>, StoreError> {
        Ok(Vec::new())
    }

    /// Every stored deadline and lease, to schedule at start.
    fn expiry_state(&self) -> Result<ExpiryState, StoreError> {
        Ok(ExpiryState::default())
    }

    /// Up to `limit` keys attached to lease `id`, in byte order, and
    /// whether more remain.
    fn lease_keys(&self, _id: u64, _limit: usize) -> Result<(Vec<String>, bool), StoreError> {
        Ok((Vec::new(), false))
    }

    /// When lease `id` runs out, as this process last learnt it, without
    /// asking the database (a cached read may not): where the backend holds
    /// leases ([`Reads::polls_deadlines`]), for the deadline of a version
    /// on a lease ([`Versioned::deadline`]). `None`: not known.
    fn lease_due(&self, _id: u64) -> Option<i64> {
        None
    }

    /// Keys with a deadline and live leases, counted by the backend where
    /// it holds them ([`Reads::polls_deadlines`]), for `/metrics`: within a
    /// short bound, `None` past it or where this process schedules them.
    fn expiry_counts(&self) -> Option<(u64, u64)> {
        None
    }
}

/// Where [`Reads::latest_then`] hands its answer.
pub(crate) type LatestReply = Box<dyn FnOnce(Result<Fresh, StoreError>) + Send>;
/// Where [`Reads::version_then`] hands its answer.
pub(crate) type VersionReply = Box<dyn FnOnce(Result<Versioned, StoreError>) + Send>;

/// What [`Reads::latest_unless`] found.
pub(crate) enum Fresh {
    /// The known version is still the latest.
    Same,
    /// Another one is (or none: the key was purged).
    Changed(Option<Versioned>),
}

/// The writer thread's side of a backend: applies batches of operations.
/// Owned by the one writer thread of this process.
pub(crate) trait Committer: Send {
    /// Applies every operation of `ops` in one transaction and commits it.
    /// The outer `Err`: the transaction failed as a whole and nothing of it
    /// was committed (the writer then retries each operation alone).
    fn commit(&mut self, ops: &[&Op]) -> Result<Outcomes, StoreError>;

    /// Whether, after `commit` failed as a whole, each operation may be
    /// retried alone. Not when the outcome of the commit is unknown (the
    /// connection was lost while `COMMIT` was in flight): a retry could
    /// apply a write twice.
    fn may_retry_alone(&self) -> bool {
        true
    }

    /// How many of the groups `commit` returned, the newest ones, may not
    /// be answered yet. PostgreSQL holds a group until every other replica
    /// holding a read lease has dropped from its cache what the group
    /// replaced; meanwhile the writer commits the next groups.
    fn unsettled(&self) -> usize {
        0
    }

    /// Looks once (a round trip at most) whether the oldest unsettled
    /// groups may be answered now; [`Committer::unsettled`] then counts
    /// fewer.
    fn settle(&mut self) {}

    /// Called once when the writer stops, after its last commit.
    fn close(&mut self) {}
}

/// An opened backend: its two sides.
pub(crate) struct Backend {
    pub reads: Arc<dyn Reads>,
    pub committer: Box<dyn Committer>,
}

/// What the backend may need from the layers above it: PostgreSQL wakes
/// this process's watchers on other replicas' commits, and drops what they
/// wrote from the cache.
pub(crate) struct Hooks {
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub watchers: Arc<crate::watch::Watchers>,
    /// PostgreSQL drops from it what other replicas wrote.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub cache: Arc<crate::cache::LatestCache>,
}

/// The head of one key as stored (the `keys` row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyHead {
    pub key: String,
    pub latest: u64,
    pub ts_ms: i64,
    pub deleted: bool,
    pub first_kept: u64,
}

/// One stored version (a `versions` row), its value as JSON text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VersionRow {
    pub key: String,
    pub version: u64,
    pub ts_ms: i64,
    pub deleted: bool,
    pub value: String,
    /// A tombstone of an expiry.
    pub expired: bool,
    /// The store's revision of its write, and its place within it.
    pub revision: u64,
    pub seq: u64,
    /// Written where the key had no live version.
    pub created: bool,
}

/// One row of a whole-store dump, as `vkv copy`, `vkv check` and the
/// PostgreSQL backup read it: a dump is a stream of these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Record {
    Head(KeyHead),
    Version(VersionRow),
    /// A purged key (no head, no version) and the last version it had:
    /// its next put continues after it, so old ETags never match again.
    Purged {
        key: String,
        latest: u64,
    },
    /// A purge as a change of the feed: `key`, whose last version was
    /// `version`, purged by the write of `revision`, which removed changes
    /// up to revision `removed`.
    PurgeLog {
        revision: u64,
        key: String,
        version: u64,
        ts_ms: i64,
        removed: u64,
    },
    /// The store's revision counters: the last revision given, and the
    /// highest one retention removed. Last in a dump.
    Revision {
        current: u64,
        compacted: u64,
    },
    /// A key's deadline (after every key's records).
    Deadline(DeadlineRow),
    /// A lease (after every key's records).
    Lease(LeaseRow),
}

/// Counts of a store: keys (heads) and versions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Keys (rows of the heads table).
    pub keys: u64,
    /// Versions over all keys.
    pub versions: u64,
}

/// The read side of a whole-store dump: every query runs in one read-only
/// transaction, so the dump is one consistent snapshot even while a server
/// writes.
pub(crate) trait Export {
    /// The store's schema version (each backend numbers its own).
    fn schema_version(&self) -> i64;

    /// The totals the store's counters hold (kept by the writes), not
    /// counted.
    fn counters(&mut self) -> Result<Totals, StoreError>;

    /// Streams every record, key by key in byte order: the key's head (if
    /// it has one), then its versions in ascending order; then every
    /// purged key, every purge record, and the revision counters. Stops at
    /// the first error `visit` returns.
    fn for_each(
        &mut self,
        visit: &mut dyn FnMut(Record) -> Result<(), StoreError>,
    ) -> Result<(), StoreError>;
}

/// The write side of a whole-store load: everything from opening to
/// [`Import::finish`] is one transaction; dropped unfinished, nothing is
/// written.
pub(crate) trait Import {
    /// Whether the store holds no key and no version.
    fn is_empty(&mut self) -> Result<bool, StoreError>;

    /// Removes every key and version (to replace the contents).
    fn clear(&mut self) -> Result<(), StoreError>;

    /// Stores one record as it is (no version numbering, no retention).
    fn write(&mut self, record: &Record) -> Result<(), StoreError>;

    /// Counts what the store now holds, sets its counters to it and
    /// commits if it is `expect`; otherwise rolls back and says so.
    fn finish(self: Box<Self>, expect: Totals) -> Result<Totals, StoreError>;
}

/// Streams two ordered row sources as one dump: `heads` in key order,
/// `versions` in (key, version) order; a key's head comes before its
/// versions. For backends that read the two tables with two cursors.
pub(crate) fn merge_dump<E>(
    heads: impl Iterator<Item = Result<KeyHead, E>>,
    versions: impl Iterator<Item = Result<VersionRow, E>>,
    visit: &mut dyn FnMut(Record) -> Result<(), StoreError>,
) -> Result<(), StoreError>
where
    StoreError: From<E>,
{
    let mut heads = heads.peekable();
    let mut versions = versions.peekable();
    loop {
        let head_first = match (heads.peek(), versions.peek()) {
            (None, None) => return Ok(()),
            (Some(Ok(h)), Some(Ok(v))) => h.key.as_bytes() <= v.key.as_bytes(),
            (Some(_), None) | (Some(Err(_)), _) => true,
            (None, Some(_)) | (Some(Ok(_)), Some(Err(_))) => false,
        };
        let record = if head_first {
            heads.next().map(|h| h.map(Record::Head))
        } else {
            versions.next().map(|v| v.map(Record::Version))
        };
        match record {
            Some(Ok(r)) => visit(r)?,
            Some(Err(e)) => return Err(e.into()),
            None => return Ok(()),
        }
    }
}

/// Pumps every record of `source` into `dest` and finishes `dest` (one
/// transaction), checking the records read against the source's counters.
/// The totals loaded.
pub(crate) fn transfer(
    source: &mut dyn Export,
    mut dest: Box<dyn Import>,
) -> Result<Totals, StoreError> {
    let counters = source.counters()?;
    let mut read = Totals::default();
    source.for_each(&mut |record| {
        match &record {
            Record::Head(_) => read.keys += 1,
            Record::Version(_) => read.versions += 1,
            Record::Purged { .. }
            | Record::PurgeLog { .. }
            | Record::Revision { .. }
            | Record::Deadline(_)
            | Record::Lease(_) => {}
        }
        dest.write(&record)
    })?;
    if read != counters {
        return Err(StoreError::Internal(format!(
            "the source's counters say {} keys and {} versions, but {} keys and {} versions \
             were read",
            counters.keys, counters.versions, read.keys, read.versions
        )));
    }
    dest.finish(read)
}
