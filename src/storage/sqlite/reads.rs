//! The SQLite read side: a pool of read-only connections (WAL: readers
//! never wait for the writer) and the request-path queries.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use r2d2::Pool;
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{OpenFlags, OptionalExtension, params};
use serde_json::value::RawValue;

use super::file::DbFile;
use super::schema::open_err;
use crate::change::{Change, ChangeOperation, ChangePage, Stored, cut_at_revision};
use crate::error::{OpenError, StoreError};
use crate::storage::seam::{
    DbStats, ExpiryState, KeyInfo, KeyPage, Reads, VersionInfo, feed_start,
};
use crate::version::Versioned;

/// The pool of read-only connections used by request threads.
pub(crate) struct ReadPool {
    pool: Pool<SqliteConnectionManager>,
    path: PathBuf,
    file: Arc<DbFile>,
}

impl ReadPool {
    /// Opens up to `size` read-only connections to `path` (lazily).
    pub fn open(path: &Path, size: u32, file: Arc<DbFile>) -> Result<Self, OpenError> {
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
            file,
        })
    }
}

impl ReadPool {
    /// The latest version of `key` (possibly a tombstone), if it has any.
    fn latest_inner(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        let conn = self.pool.get()?;
        let mut stmt = conn.prepare_cached(
            "SELECT version, ts_ms, value, deleted, expired, revision FROM versions WHERE key = ?1
             ORDER BY version DESC LIMIT 1",
        )?;
        let row = stmt.query_row(params![key], row_parts).optional()?;
        row.map(|parts| versioned(key, parts)).transpose()
    }

    /// Version `version` of `key`, or why there is none.
    fn version_inner(&self, key: &str, version: u64) -> Result<Versioned, StoreError> {
        let conn = self.pool.get()?;
        let mut stmt = conn.prepare_cached(
            "SELECT version, ts_ms, value, deleted, expired, revision FROM versions
             WHERE key = ?1 AND version = ?2",
        )?;
        let wanted = i64::try_from(version).unwrap_or(i64::MAX);
        if let Some(parts) = stmt.query_row(params![key, wanted], row_parts).optional()? {
            return versioned(key, parts);
        }
        let head: Option<(i64, i64)> = conn
            .prepare_cached("SELECT latest, first_kept FROM keys WHERE key = ?1")?
            .query_row(params![key], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        Err(StoreError::version_miss(
            key,
            version,
            head.map(|(latest, first_kept)| (latest as u64, first_kept as u64)),
        ))
    }

    /// Up to `limit` versions of `key` below `before`, newest first, and
    /// whether older ones remain.
    fn history_inner(
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
            "SELECT version, ts_ms, deleted, length(CAST(value AS BLOB)), expired, revision, created
             FROM versions WHERE key = ?1 AND version < ?2 ORDER BY version DESC LIMIT ?3",
        )?;
        let mut rows = stmt
            .query_map(params![key, before, limit as i64 + 1], |r| {
                Ok(VersionInfo {
                    version: r.get::<_, i64>(0)? as u64,
                    timestamp_ms: r.get(1)?,
                    deleted: r.get(2)?,
                    size_bytes: r.get::<_, i64>(3)? as u64,
                    expired: r.get(4)?,
                    revision: r.get::<_, i64>(5)?.max(0) as u64,
                    created: r.get(6)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let more = rows.len() > limit;
        rows.truncate(limit);
        Ok((rows, more))
    }

    /// Up to `limit` live keys starting with `prefix` and after `after`, in
    /// byte order, and whether more remain, with the revision they show
    /// (one read transaction). Index range scan: the cost is the page, not
    /// the table.
    fn keys_inner(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
        values: bool,
    ) -> Result<KeyPage, StoreError> {
        let mut conn = self.pool.get()?;
        let tx = conn.transaction()?;
        let revision = counter(&tx, "revision")?;
        let lower = match after {
            Some(a) if a >= prefix => a,
            _ => prefix,
        };
        let inclusive = after.is_none_or(|a| a < prefix);
        let upper = prefix_upper_bound(prefix);
        let mut rows = {
            let mut stmt = tx.prepare_cached(
                // Through the index of live keys: deleted ones are never visited.
                "SELECT key, latest, ts_ms, CASE WHEN ?5 THEN
                     (SELECT value FROM versions v WHERE v.key = k.key AND v.version = k.latest)
                 END
                 FROM keys AS k INDEXED BY keys_live
                 WHERE (key > ?1 OR (?2 AND key = ?1)) AND (?3 IS NULL OR key < ?3) AND deleted = 0
                 ORDER BY key LIMIT ?4",
            )?;
            stmt.query_map(
                params![lower, inclusive, upper, limit as i64 + 1, values],
                |r| Ok((r.get(0)?, r.get::<_, i64>(1)?, r.get(2)?, r.get(3)?)),
            )?
            .collect::<Result<Vec<(String, i64, i64, Option<String>)>, _>>()?
        };
        tx.finish()?;
        let more = rows.len() > limit;
        rows.truncate(limit);
        let keys = rows
            .into_iter()
            .map(|(key, version, timestamp_ms, value)| {
                Ok(KeyInfo {
                    key,
                    version: version.max(0) as u64,
                    timestamp_ms,
                    value: value.map(json_text).transpose()?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(KeyPage {
            keys,
            more,
            revision,
        })
    }

    /// The feed's page (see [`Reads::changes`]): the counters, the versions
    /// and purge records above `after`, in one read transaction, through
    /// the index of revisions.
    fn changes_inner(
        &self,
        prefix: &str,
        after: Option<u64>,
        limit: usize,
        values: bool,
    ) -> Result<ChangePage, StoreError> {
        let mut conn = self.pool.get()?;
        let tx = conn.transaction()?;
        let revision = counter(&tx, "revision")?;
        let upper = prefix_upper_bound(prefix);
        // Removed under this prefix: by retention (anywhere), by purges of
        // its keys.
        let purged: i64 = tx
            .prepare_cached(
                "SELECT coalesce(max(removed), 0) FROM purges
                 WHERE key >= ?1 AND (?2 IS NULL OR key < ?2)",
            )?
            .query_row(params![prefix, upper], |r| r.get(0))?;
        let compacted = counter(&tx, "compacted")?.max(purged.max(0) as u64);
        let after = feed_start(after, revision, compacted)?;
        let query = |tx: &rusqlite::Transaction<'_>, after: u64, n: i64| {
            let mut stmt = tx.prepare_cached(
                "SELECT revision, seq, key, version, ts_ms, deleted, created, 0,
                     CASE WHEN ?4 AND deleted = 0 THEN value END, expired
                 FROM versions
                 WHERE revision > ?1 AND key >= ?2 AND (?3 IS NULL OR key < ?3)
                 UNION ALL
                 SELECT revision, 0, key, version, ts_ms, 0, 0, 1, NULL, 0 FROM purges
                 WHERE revision > ?1 AND key >= ?2 AND (?3 IS NULL OR key < ?3)
                 ORDER BY 1, 2 LIMIT ?5",
            )?;
            stmt.query_map(params![after as i64, prefix, upper, values, n], change_row)?
                .collect::<Result<Vec<RawChange>, _>>()
        };
        let mut rows = query(&tx, after, limit as i64 + 1)?;
        let more = cut_at_revision(&mut rows, limit, |r| r.0);
        if rows.is_empty() && more {
            // One revision (a batch) larger than the page: it comes whole.
            rows = query(&tx, after, i64::MAX)?;
            let first = rows.first().map_or(0, |r| r.0);
            rows.retain(|r| r.0 == first);
        }
        tx.finish()?;
        Ok(ChangePage {
            changes: rows
                .into_iter()
                .map(into_change)
                .collect::<Result<_, _>>()?,
            revision,
            more,
        })
    }

    /// Totals from the counters table plus file sizes: O(1) in database size.
    fn stats_inner(&self) -> Result<DbStats, StoreError> {
        let conn = self.pool.get()?;
        let mut stmt = conn.prepare_cached("SELECT name, value FROM counters")?;
        let mut rows = stmt.query([])?;
        let (mut keys, mut versions, mut revision) = (0, 0, 0);
        while let Some(r) = rows.next()? {
            let name: String = r.get(0)?;
            let value: i64 = r.get(1)?;
            match name.as_str() {
                "keys" => keys = value as u64,
                "versions" => versions = value as u64,
                "revision" => revision = value.max(0) as u64,
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
            revision,
        })
    }

    /// The database answers a query, the path still leads to the file that
    /// was opened, its file system is writable and has room for a write:
    /// one query, one `stat`, one `open` and one `fstatvfs`.
    fn check_inner(&self) -> Result<(), StoreError> {
        let conn = self.pool.get()?;
        conn.query_row("SELECT count(*) FROM counters", [], |r| r.get::<_, i64>(0))?;
        self.file.check()?;
        self.file.check_writable()?;
        self.file.check_space()
    }
}

/// Every read passes through [`DbFile::note`]: the first "malformed" error
/// marks the file corrupt (health unavailable, no more writes).
impl Reads for ReadPool {
    fn latest(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        self.file.note(self.latest_inner(key))
    }

    fn version(&self, key: &str, version: u64) -> Result<Versioned, StoreError> {
        self.file.note(self.version_inner(key, version))
    }

    fn history(
        &self,
        key: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Result<(Vec<VersionInfo>, bool), StoreError> {
        self.file.note(self.history_inner(key, before, limit))
    }

    fn keys(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
        values: bool,
    ) -> Result<KeyPage, StoreError> {
        self.file
            .note(self.keys_inner(prefix, after, limit, values))
    }

    fn changes(
        &self,
        prefix: &str,
        after: Option<u64>,
        limit: usize,
        values: bool,
    ) -> Result<ChangePage, StoreError> {
        self.file
            .note(self.changes_inner(prefix, after, limit, values))
    }

    fn stats(&self) -> Result<DbStats, StoreError> {
        self.file.note(self.stats_inner())
    }

    /// Unavailable once the file was found corrupt, else as below.
    fn check(&self) -> Result<(), StoreError> {
        self.file.check_corrupt()?;
        self.file.note(self.check_inner())
    }

    fn supports_expiry(&self) -> bool {
        true
    }

    fn expiry_state(&self) -> Result<ExpiryState, StoreError> {
        let load = || -> Result<ExpiryState, StoreError> {
            Ok(super::deadlines::load(&*self.pool.get()?)?)
        };
        self.file.note(load())
    }

    fn lease_keys(&self, id: u64, limit: usize) -> Result<(Vec<String>, bool), StoreError> {
        let read = || -> Result<(Vec<String>, bool), StoreError> {
            Ok(super::deadlines::lease_keys(&*self.pool.get()?, id, limit)?)
        };
        self.file.note(read())
    }
}

type RowParts = (i64, i64, String, bool, bool, i64);

fn row_parts(r: &rusqlite::Row<'_>) -> rusqlite::Result<RowParts> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
    ))
}

fn versioned(
    key: &str,
    (version, ts_ms, value, deleted, expired, revision): RowParts,
) -> Result<Versioned, StoreError> {
    Ok(Versioned {
        key: key.to_string(),
        version: version as u64,
        timestamp_ms: ts_ms,
        deleted,
        expired,
        revision: revision.max(0) as u64,
        value: RawValue::from_string(value)
            .map_err(|e| StoreError::Internal(format!("stored value is not JSON: {e}")))?,
        deadline: None,
    })
}

/// A counter's value in the read transaction `tx` (0 if it has none).
fn counter(tx: &rusqlite::Transaction<'_>, name: &str) -> Result<u64, StoreError> {
    Ok(tx
        .prepare_cached("SELECT value FROM counters WHERE name = ?1")?
        .query_row(params![name], |r| r.get::<_, i64>(0))
        .optional()?
        .map_or(0, |n| n.max(0) as u64))
}

/// A feed row: revision, seq, key, version, ts_ms, deleted, created,
/// purge, value, expired.
type RawChange = (
    u64,
    u64,
    String,
    u64,
    i64,
    bool,
    bool,
    bool,
    Option<String>,
    bool,
);

fn change_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawChange> {
    Ok((
        r.get::<_, i64>(0)?.max(0) as u64,
        r.get::<_, i64>(1)?.max(0) as u64,
        r.get(2)?,
        r.get::<_, i64>(3)?.max(0) as u64,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
        r.get(9)?,
    ))
}

fn into_change(
    (revision, _, key, version, timestamp_ms, deleted, created, purge, value, expired): RawChange,
) -> Result<Change, StoreError> {
    let operation = ChangeOperation::of(Stored {
        purge,
        deleted,
        expired,
        created,
    });
    Ok(Change {
        revision,
        key,
        version,
        operation,
        timestamp_ms,
        value: value.map(json_text).transpose()?,
    })
}

/// Stored JSON text as a value.
fn json_text(value: String) -> Result<Box<RawValue>, StoreError> {
    RawValue::from_string(value)
        .map_err(|e| StoreError::Internal(format!("stored value is not JSON: {e}")))
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
fn file_size(path: &Path) -> u64 {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    [path, Path::new(&wal)]
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum()
}
