//! The SQLite layer: opening and migrating the file, the read pool, and the
//! queries. The writer thread (`writer.rs`) owns the only read-write
//! connection; everything here that runs on the request path is read-only.
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

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use r2d2::Pool;
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use serde_json::value::RawValue;

use crate::error::{OpenError, StoreError};
use crate::version::Versioned;

/// The schema version this build writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = 1;

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
];

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

impl SyncMode {
    fn pragma(self) -> &'static str {
        match self {
            SyncMode::Full => "FULL",
            SyncMode::Normal => "NORMAL",
        }
    }
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

fn open_err(path: &Path, e: impl std::fmt::Display) -> OpenError {
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
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(|e| open_err(path, e))?;
    conn.pragma_update(None, "synchronous", sync.pragma())
        .map_err(|e| open_err(path, e))?;
    // 512 KiB of page cache for the writer (SQLite's default is 2 MiB), for
    // the same reason as the readers' (see `ReadPool::open`).
    conn.pragma_update(None, "cache_size", -512)
        .map_err(|e| open_err(path, e))?;
    migrate(&conn, version).map_err(|e| open_err(path, e))?;
    Ok(conn)
}

fn migrate(conn: &Connection, from: i64) -> rusqlite::Result<()> {
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(from as usize) {
        let tx = conn.unchecked_transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "application_id", APPLICATION_ID)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
        log::info!("database migrated to schema version {}", i + 1);
    }
    Ok(())
}

/// The pool of read-only connections used by request threads.
#[derive(Clone)]
pub struct ReadPool {
    pool: Pool<SqliteConnectionManager>,
    path: PathBuf,
}

impl ReadPool {
    /// Opens up to `size` read-only connections to `path` (lazily).
    pub fn open(path: &Path, size: u32) -> Result<Self, OpenError> {
        let manager = SqliteConnectionManager::file(path)
            .with_flags(OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .with_init(|c| {
                c.busy_timeout(Duration::from_secs(5))?;
                // 256 KiB of page cache per reader instead of SQLite's
                // 2 MiB: the OS page cache serves the file anyway, and RSS
                // must stay flat as the database grows (2 MiB caches filling
                // took a 5-minute soak to +15% RSS; 128 KiB ones: +1.1%).
                c.pragma_update(None, "cache_size", -256)
            });
        // r2d2's default reaper pool has 3 threads; one is plenty here.
        let reaper = Arc::new(
            scheduled_thread_pool::ScheduledThreadPool::builder()
                .num_threads(1)
                .thread_name_pattern("vkv-r2d2-{}")
                .build(),
        );
        let pool = Pool::builder()
            .max_size(size.max(1))
            .min_idle(Some(1))
            .connection_timeout(Duration::from_secs(5))
            // r2d2 would run a validity query (parsed SQL) on every
            // check-out: a local SQLite file does not go stale like a
            // network connection, and a failing query reports itself.
            .test_on_check_out(false)
            .thread_pool(reaper)
            .build(manager)
            .map_err(|e| open_err(path, e))?;
        Ok(ReadPool {
            pool,
            path: path.to_path_buf(),
        })
    }

    /// The latest version of `key` (possibly a tombstone), if it has any.
    pub fn latest(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        let conn = self.pool.get()?;
        let mut stmt = conn.prepare_cached(
            "SELECT version, ts_ms, value, deleted FROM versions WHERE key = ?1
             ORDER BY version DESC LIMIT 1",
        )?;
        let row = stmt.query_row(params![key], row_parts).optional()?;
        row.map(|parts| versioned(key, parts)).transpose()
    }

    /// Version `version` of `key`, or why there is none.
    pub fn version(&self, key: &str, version: u64) -> Result<Versioned, StoreError> {
        let conn = self.pool.get()?;
        let mut stmt = conn.prepare_cached(
            "SELECT version, ts_ms, value, deleted FROM versions WHERE key = ?1 AND version = ?2",
        )?;
        let wanted = i64::try_from(version).unwrap_or(i64::MAX);
        if let Some(parts) = stmt.query_row(params![key, wanted], row_parts).optional()? {
            return versioned(key, parts);
        }
        let head: Option<(i64, i64)> = conn
            .prepare_cached("SELECT latest, first_kept FROM keys WHERE key = ?1")?
            .query_row(params![key], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        match head {
            None => Err(StoreError::KeyNotFound(key.to_string())),
            Some((_, first_kept)) if version < first_kept as u64 => Err(StoreError::Gone {
                key: key.to_string(),
                version,
                oldest: first_kept as u64,
            }),
            Some((latest, _)) => Err(StoreError::VersionNotFound {
                key: key.to_string(),
                version,
                latest: latest as u64,
            }),
        }
    }

    /// Up to `limit` versions of `key` below `before`, newest first, and
    /// whether older ones remain.
    pub fn history(
        &self,
        key: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Result<(Vec<VersionInfo>, bool), StoreError> {
        let conn = self.pool.get()?;
        let exists: Option<i64> = conn
            .prepare_cached("SELECT latest FROM keys WHERE key = ?1")?
            .query_row(params![key], |r| r.get(0))
            .optional()?;
        if exists.is_none() {
            return Err(StoreError::KeyNotFound(key.to_string()));
        }
        let before = before.map_or(i64::MAX, |b| i64::try_from(b).unwrap_or(i64::MAX));
        let mut stmt = conn.prepare_cached(
            "SELECT version, ts_ms, deleted, length(CAST(value AS BLOB)) FROM versions
             WHERE key = ?1 AND version < ?2 ORDER BY version DESC LIMIT ?3",
        )?;
        let mut rows = stmt
            .query_map(params![key, before, limit as i64 + 1], |r| {
                Ok(VersionInfo {
                    version: r.get::<_, i64>(0)? as u64,
                    timestamp_ms: r.get(1)?,
                    deleted: r.get(2)?,
                    size_bytes: r.get::<_, i64>(3)? as u64,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let more = rows.len() > limit;
        rows.truncate(limit);
        Ok((rows, more))
    }

    /// Up to `limit` live keys starting with `prefix` and after `after`, in
    /// byte order, and whether more remain. Index range scan: the cost is
    /// the page, not the table.
    pub fn keys(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<KeyInfo>, bool), StoreError> {
        let conn = self.pool.get()?;
        let lower = match after {
            Some(a) if a >= prefix => a,
            _ => prefix,
        };
        let inclusive = after.is_none_or(|a| a < prefix);
        let upper = prefix_upper_bound(prefix);
        let mut stmt = conn.prepare_cached(
            "SELECT key, latest, ts_ms FROM keys
             WHERE (key > ?1 OR (?2 AND key = ?1)) AND (?3 IS NULL OR key < ?3) AND deleted = 0
             ORDER BY key LIMIT ?4",
        )?;
        let mut rows = stmt
            .query_map(params![lower, inclusive, upper, limit as i64 + 1], |r| {
                Ok(KeyInfo {
                    key: r.get(0)?,
                    version: r.get::<_, i64>(1)? as u64,
                    timestamp_ms: r.get(2)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let more = rows.len() > limit;
        rows.truncate(limit);
        Ok((rows, more))
    }

    /// Totals from the counters table plus file sizes: O(1) in database size.
    pub fn stats(&self) -> Result<DbStats, StoreError> {
        let conn = self.pool.get()?;
        let mut stmt = conn.prepare_cached("SELECT name, value FROM counters")?;
        let mut rows = stmt.query([])?;
        let (mut keys, mut versions) = (0, 0);
        while let Some(r) = rows.next()? {
            let name: String = r.get(0)?;
            let value: i64 = r.get(1)?;
            match name.as_str() {
                "keys" => keys = value as u64,
                "versions" => versions = value as u64,
                _ => {}
            }
        }
        let journal_mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
        Ok(DbStats {
            total_keys: keys,
            total_versions: versions,
            file_size_bytes: file_size(&self.path),
            path: self.path.display().to_string(),
            journal_mode,
        })
    }

    /// Checks that the database answers a query.
    pub fn ping(&self) -> Result<(), StoreError> {
        let conn = self.pool.get()?;
        conn.query_row("SELECT count(*) FROM counters", [], |r| r.get::<_, i64>(0))?;
        Ok(())
    }
}

type RowParts = (i64, i64, String, bool);

fn row_parts(r: &rusqlite::Row<'_>) -> rusqlite::Result<RowParts> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
}

fn versioned(
    key: &str,
    (version, ts_ms, value, deleted): RowParts,
) -> Result<Versioned, StoreError> {
    Ok(Versioned {
        key: key.to_string(),
        version: version as u64,
        timestamp_ms: ts_ms,
        deleted,
        value: RawValue::from_string(value)
            .map_err(|e| StoreError::Internal(format!("stored value is not JSON: {e}")))?,
    })
}

/// The smallest text above every text that starts with `prefix` (`None`:
/// no bound). UTF-8 never contains 0xFF, so bumping the last byte of the
/// prefix gives it. The result may not be valid UTF-8, so it is bound as
/// raw bytes; SQLite compares TEXT bytewise (BINARY collation).
fn prefix_upper_bound(prefix: &str) -> Option<RawText> {
    let mut bytes = prefix.as_bytes().to_vec();
    *bytes.last_mut()? += 1;
    Some(RawText(bytes))
}

/// Text bound to SQLite as raw bytes, without a UTF-8 check.
struct RawText(Vec<u8>);

impl rusqlite::ToSql for RawText {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(rusqlite::types::ToSqlOutput::Borrowed(
            rusqlite::types::ValueRef::Text(&self.0),
        ))
    }
}

/// Size of the database file plus its WAL, 0 for what does not exist.
pub fn file_size(path: &Path) -> u64 {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    [path, Path::new(&wal)]
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum()
}
