//! The storage seam: what the rest of vkv needs from a database, and the
//! one place that picks the backend.
//!
//! Above the seam, backend-agnostic: [`crate::Store`] (validation, the
//! cache, watchers), the group-commit writer thread (`writer.rs`: gathers
//! queued operations, hands them to [`Committer::commit`] as one batch,
//! publishes what committed, then answers), and the HTTP layer. Below it,
//! one implementation per backend:
//! - [`Reads`]: the request-path queries (latest, a version, history, key
//!   listing, totals, health), shared by every thread;
//! - [`Committer`]: the writer thread's connection, which applies one batch
//!   of operations in one transaction.
//!
//! Two backends:
//! - SQLite (`sqlite/`, the default): one file, one process, so the writer
//!   thread is the only writer and the cache is authoritative;
//! - PostgreSQL (`postgres/`, feature `postgres`, selected by a
//!   `postgres://` or `postgresql://` URL): any number of vkv processes on
//!   one database, so every read of a latest version is confirmed by the
//!   database ([`Reads::latest_unless`]) and watchers are woken by
//!   `NOTIFY` as well as by this process's own commits.

use std::path::Path;
use std::sync::Arc;

use serde_json::value::RawValue;

use crate::error::{OpenError, StoreError};
use crate::store::StoreConfig;
use crate::version::Versioned;

#[cfg(feature = "postgres")]
pub(crate) mod postgres;
pub(crate) mod sqlite;

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
}

/// One entry of a key listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// The key.
    pub key: String,
    /// Its latest version.
    pub version: u64,
    /// Commit time of the latest version, milliseconds since the epoch.
    pub timestamp_ms: i64,
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
    /// A no-op write (one row rewritten as it is) that commits like any
    /// other: whether writes work again after a failure.
    Probe,
}

/// What an operation did.
#[derive(Debug)]
pub(crate) enum Done {
    /// New versions, in order (a tombstone for a delete).
    Written(Vec<Written>),
    /// A purge removed this many versions.
    Purged { key: String, versions: u64 },
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
    /// byte order, and whether more remain.
    fn keys(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<KeyInfo>, bool), StoreError>;

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
    /// no thread waits meanwhile. Default: at once, on this thread.
    fn latest_then(&self, key: &str, known: Option<&Versioned>, then: LatestReply) {
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

    /// PostgreSQL: whether this replica holds a read lease now, and how
    /// many leases it took anew so far (for `/metrics`). `None`: no leases
    /// (SQLite).
    fn read_lease(&self) -> Option<(bool, u64)> {
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

/// Whether `db` names a PostgreSQL database (`postgres://` or
/// `postgresql://` URL) rather than a SQLite file.
pub fn is_postgres_url(db: &Path) -> bool {
    db.to_str()
        .is_some_and(|s| s.starts_with("postgres://") || s.starts_with("postgresql://"))
}

/// `db` as it may be shown in logs and `/db/stats`: a PostgreSQL URL with
/// its password masked, a file path as it is.
pub fn display_location(db: &Path) -> String {
    match db.to_str() {
        Some(url) if is_postgres_url(db) => mask_password(url),
        _ => db.display().to_string(),
    }
}

/// The URL with the password (in the user-info part or a `password=`
/// parameter) replaced by `***`.
fn mask_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{hosts}"),
            None => format!("{userinfo}@{hosts}"),
        },
        None => authority.to_string(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let params: Vec<String> = query
                .split('&')
                .map(|p| match p.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                    _ => p.to_string(),
                })
                .collect();
            format!("{path}?{}", params.join("&"))
        }
        None => tail.to_string(),
    };
    format!("{scheme}://{authority}{tail}")
}

/// Opens the backend `config` names (creating and migrating its schema).
pub(crate) fn open(config: &StoreConfig, hooks: Hooks) -> Result<Backend, OpenError> {
    if is_postgres_url(&config.path) {
        return open_postgres(config, hooks);
    }
    drop(hooks);
    sqlite::open(config)
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
    /// The totals the store's counters hold (kept by the writes), not
    /// counted.
    fn counters(&mut self) -> Result<Totals, StoreError>;

    /// Streams every record, key by key in byte order: the key's head (if
    /// it has one), then its versions in ascending order; then every
    /// purged key. Stops at the first error `visit` returns.
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

/// Opens the store at `location` for a dump (it must exist; it may be in
/// use by a running server).
pub(crate) fn open_export(location: &Path) -> Result<Box<dyn Export>, OpenError> {
    if is_postgres_url(location) {
        #[cfg(feature = "postgres")]
        return postgres::bulk::open_export(location);
        #[cfg(not(feature = "postgres"))]
        return Err(without_postgres(location));
    }
    sqlite::bulk::open_export(location)
}

/// Opens the store at `location` for a load (created and migrated if
/// needed; refused while a server holds it, where the backend can tell).
pub(crate) fn open_import(location: &Path) -> Result<Box<dyn Import>, OpenError> {
    if is_postgres_url(location) {
        #[cfg(feature = "postgres")]
        return postgres::bulk::open_import(location);
        #[cfg(not(feature = "postgres"))]
        return Err(without_postgres(location));
    }
    sqlite::bulk::open_import(location)
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

#[cfg(feature = "postgres")]
fn open_postgres(config: &StoreConfig, hooks: Hooks) -> Result<Backend, OpenError> {
    postgres::open(config, hooks)
}

#[cfg(not(feature = "postgres"))]
fn open_postgres(config: &StoreConfig, _: Hooks) -> Result<Backend, OpenError> {
    Err(without_postgres(&config.path))
}

/// The refusal of a PostgreSQL URL by a build without the feature.
#[cfg(not(feature = "postgres"))]
fn without_postgres(location: &Path) -> OpenError {
    OpenError::Unsupported(format!(
        "{}: this vkv was built without PostgreSQL support; rebuild with \
         `cargo build --release --features postgres`",
        display_location(location)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_masked_wherever_libpq_takes_them() {
        let cases = [
            (
                "postgres://vkv:s3cr%40t@db1:5432,db2:5433/kv?target_session_attrs=read-write",
                "postgres://vkv:***@db1:5432,db2:5433/kv?target_session_attrs=read-write",
            ),
            (
                "postgresql://vkv@db/kv?password=s3cret&connect_timeout=3",
                "postgresql://vkv@db/kv?password=***&connect_timeout=3",
            ),
            ("postgres://db/kv", "postgres://db/kv"),
            ("postgres://u:p@db", "postgres://u:***@db"),
        ];
        for (url, masked) in cases {
            assert_eq!(display_location(Path::new(url)), masked);
        }
        assert_eq!(display_location(Path::new("kv_store.db")), "kv_store.db");
        assert!(!is_postgres_url(Path::new("postgres.db")));
    }
}
