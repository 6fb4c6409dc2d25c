//! The SQLite write side: the writer thread's read-write connection, and
//! how each operation is applied inside the batch's transaction.
//!
//! - Version numbers are assigned inside the transaction from the `keys`
//!   row, so they are dense per key with no lock besides SQLite's own
//!   (`BEGIN IMMEDIATE`: this connection is the only writer).
//! - A single write is refused (condition, missing key) before it writes
//!   anything; a batch runs in its own savepoint: all or nothing.
//! - Before each transaction the database path is checked to still lead to
//!   the file that was opened.
//! - Each operation that writes takes the store's next revision (counter
//!   `revision`, read and written in the same transaction); a batch's
//!   versions share one, numbered by `seq` in batch order. What retention
//!   removes raises counter `compacted` to the highest revision removed; a
//!   purge leaves a `purges` row, a change of its own that also names the
//!   highest revision it removed (so only readers of its key's prefix are
//!   told the history is gone).

use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde_json::value::RawValue;

use super::deadlines;
use super::file::DbFile;
use crate::error::StoreError;
use crate::rules;
use crate::storage::seam::{Committer, Done, Lifetime, Op, Outcomes, PutItem, Written};
use crate::version::{Versioned, now_ms};

/// The writer thread's connection to the SQLite file.
pub(crate) struct SqliteCommitter {
    conn: Connection,
    file: Arc<DbFile>,
    tables: Tables,
}

/// What the writer knows of its file between transactions (it is the
/// file's only writer), so that a put runs no statement that would find
/// nothing to do.
struct Tables {
    /// The writer's page cache between large groups (`PRAGMA cache_size`).
    cache_size: i64,
    /// Keep at most this many versions per key (0: all).
    max_versions: u64,
    /// Whether `deadlines` may hold a row: while it holds none, a put
    /// without a lifetime has no deadline to remove. Set when a deadline is
    /// written (kept if its transaction rolls back).
    deadlines: bool,
    /// Whether `purged` may hold a row: while it holds none, a key without
    /// a head was never purged. Set when a purge is written.
    purged: bool,
}

/// Pages a transaction may change before SQLite writes some of them to
/// the WAL ahead of the commit (8 MiB of 4 KiB pages).
const SPILL_PAGES: i64 = 2048;

/// Puts in a group from which its transaction gets [`LARGE_CACHE_KIB`] of
/// page cache.
const LARGE_GROUP: usize = 256;

/// The page cache of a large group's transaction, in KiB.
const LARGE_CACHE_KIB: i64 = 8192;

impl SqliteCommitter {
    /// The committer on `conn`, the read-write connection to `file`.
    pub fn new(conn: Connection, file: Arc<DbFile>, max_versions: u64) -> rusqlite::Result<Self> {
        let any = |table: &str| {
            conn.query_row(&format!("SELECT EXISTS (SELECT 1 FROM {table})"), [], |r| {
                r.get::<_, bool>(0)
            })
        };
        // A large transaction (a group of batches) keeps up to 8 MiB of
        // changed pages in memory before it writes any to the WAL, beyond
        // the page cache's 512 KiB: spilled pages are written twice and
        // read back.
        conn.pragma_update(None, "cache_spill", SPILL_PAGES)?;
        let cache_size = conn.query_row("PRAGMA cache_size", [], |r| r.get(0))?;
        let tables = Tables {
            cache_size,
            max_versions,
            deadlines: any("deadlines")?,
            purged: any("purged")?,
        };
        Ok(SqliteCommitter { conn, file, tables })
    }

    /// Sets the connection's page cache (`PRAGMA cache_size`: pages, or
    /// KiB when negative).
    fn cache_size(&self, size: i64) {
        if let Err(e) = self.conn.pragma_update(None, "cache_size", size) {
            log::warn!("cannot set the writer's page cache to {size}: {e}");
        }
    }
}

impl Committer for SqliteCommitter {
    fn commit(&mut self, ops: &[&Op]) -> Result<Outcomes, StoreError> {
        // A damaged file takes no more writes: they could spread the damage.
        self.file.check_corrupt()?;
        // A large group (batches) gets a larger page cache for its
        // transaction, given back after it: with the writer's usual small
        // one, each put of it would read the index pages it just evicted.
        let puts: usize = ops.iter().map(|&op| versions_written(op)).sum();
        let large = puts >= LARGE_GROUP;
        if large {
            self.cache_size(-LARGE_CACHE_KIB);
        }
        let r = commit(&mut self.conn, ops, &self.file, &mut self.tables)
            .map_err(|e| e.into_store(&self.conn));
        if large {
            self.cache_size(self.tables.cache_size);
        }
        self.file.note(r)
    }

    fn close(&mut self) {
        // Leave the database file complete and the WAL empty on a clean
        // stop: SQLite only does this itself when the last connection to
        // close can write, and at exit the last one may be a read-only pool
        // connection.
        if let Err(e) = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        {
            log::warn!("final checkpoint failed (the WAL keeps the data): {e}");
        }
    }
}

/// A failure inside a transaction. SQLite's error stays as it is until it
/// leaves the writer, so that the OS error behind it can still be read from
/// the connection (see [`StoreError::from_sqlite_os`]).
enum TxError {
    Sqlite(rusqlite::Error),
    Store(StoreError),
    /// A write with no savepoint of its own was refused midway: the
    /// transaction is run again, every batch in a savepoint.
    Redo,
}

impl From<rusqlite::Error> for TxError {
    fn from(e: rusqlite::Error) -> Self {
        TxError::Sqlite(e)
    }
}

impl From<deadlines::Refused> for TxError {
    fn from(e: deadlines::Refused) -> Self {
        match e {
            deadlines::Refused::Store(e) => TxError::Store(e),
            deadlines::Refused::Sqlite(e) => TxError::Sqlite(e),
        }
    }
}

impl From<StoreError> for TxError {
    fn from(e: StoreError) -> Self {
        TxError::Store(e)
    }
}

impl TxError {
    fn into_store(self, conn: &Connection) -> StoreError {
        match self {
            TxError::Store(e) => e,
            TxError::Redo => StoreError::Internal("a transaction was to be run again".into()),
            TxError::Sqlite(e) => {
                // SAFETY: `conn` is the live connection this thread owns, and
                // sqlite3_system_errno only reads a field of it.
                let errno = unsafe { rusqlite::ffi::sqlite3_system_errno(conn.handle()) };
                StoreError::from_sqlite_os(e, errno)
            }
        }
    }
}

/// Totals to add to the counters table at commit.
#[derive(Default)]
struct Deltas {
    keys: i64,
    versions: i64,
    /// The highest revision removed (0: none).
    compacted: u64,
}

/// What kind of version [`put`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A value.
    Value,
    /// The tombstone of a delete.
    Delete,
    /// The tombstone of an expiry.
    Expire,
}

/// Applies every operation in one transaction; the outer `Err` means the
/// transaction failed as a whole.
fn commit(
    conn: &mut Connection,
    batch: &[&Op],
    file: &DbFile,
    cx: &mut Tables,
) -> Result<Outcomes, TxError> {
    file.check()?;
    match transaction(conn, batch, cx, false) {
        Err(TxError::Redo) => transaction(conn, batch, cx, true),
        done => done,
    }
}

/// About how many versions `op` writes (expiries and revokes count one).
fn versions_written(op: &Op) -> usize {
    match op {
        Op::Batch(items) => items.len(),
        _ => 1,
    }
}

/// Whether `op` writes several versions that a refusal midway must undo
/// (so it runs in a savepoint). A batch whose puts have no condition and
/// no lease is never refused (only an overflowing version number could:
/// then the transaction runs again with the savepoint, [`TxError::Redo`]),
/// and skips the savepoint's journal of every page it changes.
fn needs_savepoint(op: &Op, always: bool) -> bool {
    match op {
        Op::Revoke { .. } => true,
        Op::Batch(items) => {
            always
                || items
                    .iter()
                    .any(|i| i.expect.is_some() || matches!(i.lifetime, Lifetime::Lease(_)))
        }
        _ => false,
    }
}

/// [`commit`]'s transaction; `savepoints`: every batch in one.
fn transaction(
    conn: &mut Connection,
    batch: &[&Op],
    cx: &mut Tables,
    savepoints: bool,
) -> Result<Outcomes, TxError> {
    let mut tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let ts = now_ms();
    let mut results = Vec::with_capacity(batch.len());
    let mut total = Deltas::default();
    let start = counter(&tx, "revision")?;
    let mut revision = start;
    for &op in batch {
        let mut d = Deltas::default();
        let next = revision + 1;
        let result = if needs_savepoint(op, savepoints) {
            // Several writes: a refusal midway must undo the earlier ones.
            let sp = tx.savepoint()?;
            let result = apply(&sp, op, ts, next, cx, &mut d);
            if result.is_ok() {
                sp.commit()?;
            } // else dropping the savepoint rolls it back
            result
        } else {
            // A single write is refused (condition, missing key) before it
            // writes anything, so it needs no savepoint of its own.
            apply(&tx, op, ts, next, cx, &mut d)
        };
        match result {
            Ok(done) => {
                total.keys += d.keys;
                total.versions += d.versions;
                total.compacted = total.compacted.max(d.compacted);
                // Only writes of versions or purges are changes: a probe,
                // a lease granted or expiries that found nothing due take
                // no revision.
                let changed = match &done {
                    Done::Written(w) => !w.is_empty(),
                    Done::Purged { .. } => true,
                    _ => false,
                };
                if changed {
                    revision = next;
                }
                results.push(Ok(done));
            }
            // Earlier puts of this batch are written: only a savepoint
            // could undo them.
            Err(TxError::Store(e))
                if e.is_refusal() && matches!(op, Op::Batch(_)) && !savepoints =>
            {
                return Err(TxError::Redo);
            }
            Err(TxError::Store(e)) if e.is_refusal() => results.push(Err(e)),
            Err(e) => return Err(e),
        }
    }
    if total.keys != 0 || total.versions != 0 {
        let mut bump =
            tx.prepare_cached("UPDATE counters SET value = value + ?2 WHERE name = ?1")?;
        bump.execute(params!["keys", total.keys])?;
        bump.execute(params!["versions", total.versions])?;
    }
    if revision != start {
        tx.prepare_cached("UPDATE counters SET value = ?1 WHERE name = 'revision'")?
            .execute(params![revision as i64])?;
    }
    if total.compacted > 0 {
        tx.prepare_cached("UPDATE counters SET value = max(value, ?1) WHERE name = 'compacted'")?
            .execute(params![total.compacted as i64])?;
    }
    tx.commit()?;
    Ok(results)
}

/// A counter's value (0 if it has none).
fn counter(tx: &Connection, name: &str) -> Result<u64, TxError> {
    Ok(tx
        .prepare_cached("SELECT value FROM counters WHERE name = ?1")?
        .query_row(params![name], |r| r.get::<_, i64>(0))
        .optional()?
        .map_or(0, |n| n.max(0) as u64))
}

/// The highest revision among versions of `key` below `below` (all when
/// `None`), which are about to be removed.
fn highest_revision(tx: &Connection, key: &str, below: Option<u64>) -> Result<u64, TxError> {
    let below = below.map_or(i64::MAX, |b| b as i64);
    Ok(tx
        .prepare_cached("SELECT max(revision) FROM versions WHERE key = ?1 AND version < ?2")?
        .query_row(params![key, below], |r| r.get::<_, Option<i64>>(0))?
        .map_or(0, |n| n.max(0) as u64))
}

/// Where a version goes in the feed: its write's revision and its place in
/// that write.
#[derive(Clone, Copy)]
struct At {
    ts: i64,
    revision: u64,
    seq: u64,
}

fn apply(
    tx: &Connection,
    op: &Op,
    ts: i64,
    revision: u64,
    cx: &mut Tables,
    d: &mut Deltas,
) -> Result<Done, TxError> {
    let at = At {
        ts,
        revision,
        seq: 0,
    };
    match op {
        Op::Put(item) => Ok(Done::Written(vec![put(tx, item, Kind::Value, at, cx, d)?])),
        Op::Batch(items) => items
            .iter()
            .enumerate()
            .map(|(seq, item)| {
                let at = At {
                    seq: seq as u64,
                    ..at
                };
                put(tx, item, Kind::Value, at, cx, d)
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Done::Written),
        Op::Delete { key, expect } => {
            let tombstone = PutItem {
                key: key.clone(),
                value: RawValue::NULL.to_owned(),
                expect: *expect,
                lifetime: Default::default(),
            };
            Ok(Done::Written(vec![put(
                tx,
                &tombstone,
                Kind::Delete,
                at,
                cx,
                d,
            )?]))
        }
        Op::Purge { key, expect } => {
            let last = rules::purge(key, *expect, head(tx, key, cx)?.state)?;
            cx.purged = true;
            // The numbering continues after a purge (like etcd revisions):
            // no ETag or `if_version` from before it can match after it.
            tx.prepare_cached(
                "INSERT INTO purged (key, latest) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET latest = excluded.latest",
            )?
            .execute(params![key, last as i64])?;
            let removed = highest_revision(tx, key, None)?;
            tx.prepare_cached(
                "INSERT INTO purges (revision, key, version, ts_ms, removed)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                revision as i64,
                key,
                last as i64,
                ts,
                removed as i64
            ])?;
            let n = tx
                .prepare_cached("DELETE FROM versions WHERE key = ?1")?
                .execute(params![key])?;
            tx.prepare_cached("DELETE FROM keys WHERE key = ?1")?
                .execute(params![key])?;
            deadlines::clear(tx, key)?;
            d.keys -= 1;
            d.versions -= n as i64;
            Ok(Done::Purged {
                key: key.clone(),
                versions: n as u64,
                revision,
            })
        }
        Op::Expire(due) => {
            // The expiries of one group share a revision, as a batch does.
            let mut written = Vec::new();
            for one in due {
                // Only the deadline asked for, if it is still the key's: a
                // write since then set another or none.
                if deadlines::due_of(tx, &one.key)? == Some(Some(one.due_ms)) && one.due_ms <= ts {
                    let at = At {
                        seq: written.len() as u64,
                        ..at
                    };
                    written.push(expiry(tx, &one.key, at, cx, d)?);
                }
            }
            Ok(Done::Written(written))
        }
        Op::Grant { ttl_ms } => Ok(Done::Granted(deadlines::grant(tx, *ttl_ms, ts)?)),
        Op::Revoke { id, .. } => {
            let keys = deadlines::remove_lease(tx, *id)?.ok_or(StoreError::LeaseNotFound(*id))?;
            keys.iter()
                .enumerate()
                .map(|(seq, key)| {
                    let at = At {
                        seq: seq as u64,
                        ..at
                    };
                    expiry(tx, key, at, cx, d)
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Done::Written)
        }
        // Keepalives are not writes here: the schedule keeps them.
        Op::Keepalive { .. } => {
            Err(StoreError::InvalidLifetime("a keepalive is not a write on SQLite".into()).into())
        }
        Op::Probe => {
            tx.prepare_cached("UPDATE counters SET value = value WHERE name = 'keys'")?
                .execute([])?;
            Ok(Done::Written(Vec::new()))
        }
    }
}

/// The tombstone of an expiry of `key` (which holds a live version: every
/// tombstone and purge removes a key's deadline).
fn expiry(
    tx: &Connection,
    key: &str,
    at: At,
    cx: &mut Tables,
    d: &mut Deltas,
) -> Result<Written, TxError> {
    let item = PutItem {
        key: key.to_string(),
        value: RawValue::NULL.to_owned(),
        expect: None,
        lifetime: Lifetime::Permanent,
    };
    put(tx, &item, Kind::Expire, at, cx, d)
}

/// A key's head: its `keys` row, if it has one, and what the write rules
/// see of it.
struct Head {
    /// The `keys` row: whether the key holds versions and which is the
    /// first kept (a purged key has none).
    row: Option<Row>,
    state: rules::Head,
}

/// The parts of a `keys` row a write needs besides its state.
struct Row {
    deleted: bool,
    first_kept: u64,
}

/// The head of `key`: its `keys` row, or else its `purged` row.
fn head(tx: &Connection, key: &str, cx: &Tables) -> Result<Head, TxError> {
    let row = tx
        .prepare_cached("SELECT latest, deleted, first_kept FROM keys WHERE key = ?1")?
        .query_row(params![key], |r| {
            Ok((
                r.get::<_, i64>(0)? as u64,
                r.get::<_, bool>(1)?,
                r.get::<_, i64>(2)? as u64,
            ))
        })
        .optional()?;
    Ok(match row {
        Some((latest, deleted, first_kept)) => Head {
            row: Some(Row {
                deleted,
                first_kept,
            }),
            state: if deleted {
                rules::Head::Deleted(latest)
            } else {
                rules::Head::Live(latest)
            },
        },
        None => Head {
            row: None,
            state: if cx.purged {
                purged_latest(tx, key)?.map_or(rules::Head::Absent, rules::Head::Purged)
            } else {
                rules::Head::Absent
            },
        },
    })
}

/// The last version of `key` before it was purged, if it was.
fn purged_latest(tx: &Connection, key: &str) -> Result<Option<u64>, TxError> {
    Ok(tx
        .prepare_cached("SELECT latest FROM purged WHERE key = ?1")?
        .query_row(params![key], |r| r.get::<_, i64>(0))
        .optional()?
        .map(|n| n as u64))
}

/// Writes the next version of `item.key` (a tombstone for a delete or an
/// expiry, under the rules of a delete), if `crate::rules` allows it, and
/// sets the key's deadline from `item.lifetime`.
fn put(
    tx: &Connection,
    item: &PutItem,
    kind: Kind,
    at: At,
    cx: &mut Tables,
    d: &mut Deltas,
) -> Result<Written, TxError> {
    let (ts, deleted) = (at.ts, kind != Kind::Value);
    // Refused before anything is written: a single put has no savepoint.
    deadlines::check_lease(tx, item.lifetime)?;
    let head = head(tx, &item.key, cx)?;
    let next = if deleted {
        rules::delete(&item.key, item.expect, head.state)?
    } else {
        rules::put(&item.key, item.expect, head.state)?
    };
    let version = next.version;
    let mut first_kept = head.row.as_ref().map_or(version, |h| h.first_kept);
    if let rules::Head::Purged(_) = head.state {
        tx.prepare_cached("DELETE FROM purged WHERE key = ?1")?
            .execute(params![item.key])?;
    }
    tx.prepare_cached(
        "INSERT INTO versions (key, version, ts_ms, value, deleted, expired, revision, seq, created)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        item.key,
        version as i64,
        ts,
        item.value.get(),
        deleted,
        kind == Kind::Expire,
        at.revision as i64,
        at.seq as i64,
        next.created
    ])?;
    let deadline = if item.lifetime == Lifetime::Permanent && !cx.deadlines {
        None
    } else {
        cx.deadlines |= item.lifetime != Lifetime::Permanent;
        deadlines::set(tx, &item.key, version, item.lifetime, ts)?
    };
    d.versions += 1;
    if head.row.is_none() {
        d.keys += 1;
    }
    let max_versions = cx.max_versions;
    if max_versions > 0 && version - first_kept + 1 > max_versions {
        first_kept = version - max_versions + 1;
        d.compacted = d
            .compacted
            .max(highest_revision(tx, &item.key, Some(first_kept))?);
        let removed = tx
            .prepare_cached("DELETE FROM versions WHERE key = ?1 AND version < ?2")?
            .execute(params![item.key, first_kept as i64])?;
        d.versions -= removed as i64;
    }
    if head.row.as_ref().is_some_and(|h| h.deleted == deleted) {
        // `deleted` left out of the SET list: SQLite then leaves the
        // partial index `keys_live` (WHERE deleted = 0) alone, one page
        // fewer to write per key in every commit.
        tx.prepare_cached(
            "UPDATE keys SET latest = ?2, ts_ms = ?3, first_kept = ?4 WHERE key = ?1",
        )?
        .execute(params![item.key, version as i64, ts, first_kept as i64])?;
    } else {
        tx.prepare_cached(
            "INSERT INTO keys (key, latest, ts_ms, deleted, first_kept) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (key) DO UPDATE SET latest = excluded.latest, ts_ms = excluded.ts_ms,
                 deleted = excluded.deleted, first_kept = excluded.first_kept",
        )?
        .execute(params![
            item.key,
            version as i64,
            ts,
            deleted,
            first_kept as i64
        ])?;
    }
    Ok(Written {
        version: Arc::new(Versioned {
            key: item.key.clone(),
            version,
            timestamp_ms: ts,
            deleted,
            expired: kind == Kind::Expire,
            revision: at.revision,
            value: item.value.clone(),
            deadline: None,
        }),
        created: next.created,
        deadline,
    })
}
