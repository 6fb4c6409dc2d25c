//! The SQLite file: opening the read-write connection, recognising a vkv
//! file, and migrating its schema.
//!
//! Schema (version 1):
//! - `versions(key, version, ts_ms, value, deleted)`, primary key
//!   `(key, version)`, one row per stored version (`deleted` marks a
//!   tombstone). A rowid table on purpose: `WITHOUT ROWID` stores the key
//!   once, but its rows spill to overflow pages above ~1 KB, and measured
//!   1 KB values took 4.7 KB each on disk against 1.4 KB here (54-byte
//!   values: 94 against 110 bytes);
//! - `keys(key, latest, ts_ms, deleted, first_kept)`: the head of every key,
//!   so that the next version number, key listings and retention need no
//!   aggregate query;
//! - `counters(name, value)`: `keys` and `versions` totals, updated in the
//!   same transaction as the writes, so `/db/stats` never scans.
//!
//! Version 2 adds `purged(key, latest)`: the last version of each purged
//! key, so that its numbering continues after the purge (no ETag or
//! `if_version` from before a purge matches after it); the row goes when
//! the key is written again.
//!
//! Version 3 adds `keys_live`, an index of the keys whose latest version is
//! not a tombstone, so that listing live keys does not step over deleted
//! ones (`/keys?limit=1` with 100,000 deleted keys before the first live
//! one: a scan of all of them). Partial and not covering: an update of a
//! live key leaves it unchanged; only a delete or a re-creation writes it.
//!
//! Version 4 adds the store's revision (the change feed): each version
//! row gets `revision` (its write's), `seq` (its place within a `/batch`,
//! which shares one revision) and `created` (written where the key had no
//! live version); `versions_revision` indexes `(revision, seq)`;
//! `purges(revision, key, version, ts_ms, removed)` records each purge as
//! a change (the key, its last version, the highest revision it removed);
//! counters `revision` (the last one given) and `compacted` (the highest
//! revision retention removed). Existing versions are numbered in commit order: by timestamp
//! (never going back within a key), then key, then version.
//! Version 5 adds what keys that expire need: `versions.expired` marks the
//! tombstone of an expiry (a TTL or a lease ran out); `leases(id, ttl_ms,
//! granted_ms)`, ids never reused (`AUTOINCREMENT`), so an old holder's
//! keepalive never renews another lease; `deadlines(key, version, due_ms,
//! lease)`: the deadline of each key that has one, its own (`due_ms`) or
//! its lease's, and the version that set it.

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;

use crate::error::OpenError;
use crate::storage::seam::SyncMode;

/// The schema version this build writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = 5;

/// The vkv application id stamped into the file header, so that a foreign
/// SQLite file is recognised as such.
pub const APPLICATION_ID: i64 = 0x766b_7631; // "vkv1"

const MIGRATIONS: &[&str] = &[
    // 0 -> 1
    "CREATE TABLE versions (
        key TEXT NOT NULL,
        version INTEGER NOT NULL,
        ts_ms INTEGER NOT NULL,
        value TEXT NOT NULL,
        deleted INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (key, version)
    );
    CREATE TABLE keys (
        key TEXT PRIMARY KEY NOT NULL,
        latest INTEGER NOT NULL,
        ts_ms INTEGER NOT NULL,
        deleted INTEGER NOT NULL DEFAULT 0,
        first_kept INTEGER NOT NULL DEFAULT 1
    ) WITHOUT ROWID;
    CREATE TABLE counters (
        name TEXT PRIMARY KEY NOT NULL,
        value INTEGER NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO counters (name, value) VALUES ('keys', 0), ('versions', 0);",
    // 1 -> 2
    "CREATE TABLE purged (
        key TEXT PRIMARY KEY NOT NULL,
        latest INTEGER NOT NULL
    ) WITHOUT ROWID;",
    // 2 -> 3
    "CREATE INDEX IF NOT EXISTS keys_live ON keys (key) WHERE deleted = 0;",
    // 3 -> 4
    "ALTER TABLE versions ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE versions ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE versions ADD COLUMN created INTEGER NOT NULL DEFAULT 0;
    UPDATE versions SET revision = n.revision, created = n.created FROM (
        SELECT id, row_number() OVER (ORDER BY t, key, version) AS revision,
            (deleted = 0 AND NOT coalesce(prev_version = version - 1 AND prev_deleted = 0, 0))
                AS created
        FROM (
            SELECT rowid AS id, key, version, deleted,
                max(ts_ms) OVER (PARTITION BY key ORDER BY version) AS t,
                lag(version) OVER (PARTITION BY key ORDER BY version) AS prev_version,
                lag(deleted) OVER (PARTITION BY key ORDER BY version) AS prev_deleted
            FROM versions
        )
    ) AS n WHERE versions.rowid = n.id;
    CREATE UNIQUE INDEX versions_revision ON versions (revision, seq);
    CREATE TABLE purges (
        revision INTEGER PRIMARY KEY NOT NULL,
        key TEXT NOT NULL,
        version INTEGER NOT NULL,
        ts_ms INTEGER NOT NULL,
        removed INTEGER NOT NULL
    );
    CREATE INDEX purges_key ON purges (key, removed);
    INSERT INTO counters (name, value)
        VALUES ('revision', (SELECT coalesce(max(revision), 0) FROM versions)), ('compacted', 0);",
    // 4 -> 5
    "ALTER TABLE versions ADD COLUMN expired INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE leases (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ttl_ms INTEGER NOT NULL,
        granted_ms INTEGER NOT NULL
    );
    CREATE TABLE deadlines (
        key TEXT PRIMARY KEY NOT NULL,
        version INTEGER NOT NULL,
        due_ms INTEGER,
        lease INTEGER,
        CHECK ((due_ms IS NULL) <> (lease IS NULL))
    ) WITHOUT ROWID;
    CREATE INDEX deadlines_lease ON deadlines (lease) WHERE lease IS NOT NULL;",
];

pub(super) fn open_err(path: &Path, e: impl std::fmt::Display) -> OpenError {
    OpenError::Database {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Opens (creating if needed) the read-write connection, checks that the
/// file is a vkv database of a known schema, and migrates it.
pub fn open_writer(path: &Path, sync: SyncMode) -> Result<Connection, OpenError> {
    let conn = Connection::open(path).map_err(|e| open_err(path, e))?;
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(|e| open_err(path, e))?;
    let version = recognise(&conn, path)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(|e| open_err(path, e))?;
    conn.pragma_update(None, "synchronous", sync_pragma(sync))
        .map_err(|e| open_err(path, e))?;
    // 512 KiB of page cache for the writer (SQLite's default is 2 MiB), for
    // the same reason as the readers' (see `reads.rs`).
    conn.pragma_update(None, "cache_size", -512)
        .map_err(|e| open_err(path, e))?;
    migrate(&conn, version).map_err(|e| open_err(path, e))?;
    Ok(conn)
}

/// Checks that the file open on `conn` is a vkv database (or an empty
/// file) of a schema this build knows; returns its schema version (0: no
/// schema yet).
pub fn recognise(conn: &Connection, path: &Path) -> Result<i64, OpenError> {
    // The first statement that reads the file is where a corrupt or non-SQLite
    // file shows up ("file is not a database").
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| open_err(path, e))?;
    let app_id: i64 = conn
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .map_err(|e| open_err(path, e))?;
    if version > SCHEMA_VERSION {
        return Err(OpenError::NewerSchema {
            path: path.to_path_buf(),
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    let tables: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
        .map_err(|e| open_err(path, e))?;
    if app_id != APPLICATION_ID && (app_id != 0 || tables > 0) {
        return Err(OpenError::Foreign {
            path: path.to_path_buf(),
            reason: format!("application_id is {app_id:#x} and it has {tables} schema objects"),
        });
    }
    Ok(version)
}

/// Brings the schema from version `from` to [`SCHEMA_VERSION`], one
/// transaction per step; logs one line for all of them.
fn migrate(conn: &Connection, from: i64) -> rusqlite::Result<()> {
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(from as usize) {
        let tx = conn.unchecked_transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "application_id", APPLICATION_ID)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    match from {
        0 => log::info!("created database schema version {SCHEMA_VERSION}"),
        f if f < SCHEMA_VERSION => {
            log::info!("database upgraded from schema version {f} to {SCHEMA_VERSION}")
        }
        _ => {}
    }
    Ok(())
}

fn sync_pragma(sync: SyncMode) -> &'static str {
    match sync {
        SyncMode::Full => "FULL",
        SyncMode::Normal => "NORMAL",
    }
}
