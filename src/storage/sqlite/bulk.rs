//! Whole-store dumps and loads of a SQLite file, for `vkv copy`, `vkv
//! check` and backups: a dump reads both tables in one read transaction
//! (WAL: a consistent snapshot while a server goes on writing); a load
//! writes in one `BEGIN IMMEDIATE` transaction under the file's lock, so a
//! copy is all or nothing and never lands in a file a server is using.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, params};

use super::file::DbFile;
use super::schema::{self, open_err};
use crate::error::{OpenError, StoreError};
use crate::storage::seam::{
    Export, Import, KeyHead, Record, SyncMode, Totals, VersionRow, merge_dump,
};

/// A dump of the file at a path.
struct SqliteExport {
    conn: Connection,
    /// The file's schema version (purged keys are kept from version 2).
    schema: i64,
}

/// Opens the existing vkv file `path` read-only for a dump.
pub(crate) fn open_export(path: &Path) -> Result<Box<dyn Export>, OpenError> {
    match fs::metadata(path) {
        Ok(m) if m.is_file() => {}
        Ok(_) => return Err(open_err(path, "not a regular file")),
        Err(e) => return Err(open_err(path, e)),
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| open_err(path, e))?;
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(|e| open_err(path, e))?;
    let schema = schema::recognise(&conn, path)?;
    if schema == 0 {
        return Err(OpenError::Foreign {
            path: path.to_path_buf(),
            reason: "it is empty (no vkv schema)".into(),
        });
    }
    // Deferred: the snapshot is taken at the first read, and every later
    // query of this dump sees that same snapshot.
    conn.execute_batch("BEGIN").map_err(|e| open_err(path, e))?;
    Ok(Box::new(SqliteExport { conn, schema }))
}

impl Export for SqliteExport {
    fn schema_version(&self) -> i64 {
        self.schema
    }

    fn counters(&mut self) -> Result<Totals, StoreError> {
        let mut stmt = self.conn.prepare("SELECT name, value FROM counters")?;
        let mut rows = stmt.query([])?;
        let mut totals = Totals::default();
        while let Some(r) = rows.next()? {
            let (name, value): (String, i64) = (r.get(0)?, r.get(1)?);
            match name.as_str() {
                "keys" => totals.keys = value as u64,
                "versions" => totals.versions = value as u64,
                _ => {}
            }
        }
        Ok(totals)
    }

    fn for_each(
        &mut self,
        visit: &mut dyn FnMut(Record) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        // Two cursors in the same transaction, both in key byte order
        // (BINARY collation), merged.
        let mut heads = self
            .conn
            .prepare("SELECT key, latest, ts_ms, deleted, first_kept FROM keys ORDER BY key")?;
        // Numbered as the migration to schema 4 numbers them; no expiry
        // tombstones before schema 5.
        let expired = if self.schema >= 5 { "expired" } else { "0" };
        let mut versions = self.conn.prepare(&if self.schema >= 4 {
            format!(
                "SELECT key, version, ts_ms, deleted, value, revision, seq, created, {expired}
                 FROM versions ORDER BY key, version"
            )
        } else {
            OLD_VERSIONS.to_string()
        })?;
        let heads = heads.query_map([], |r| {
            Ok(KeyHead {
                key: r.get(0)?,
                latest: r.get::<_, i64>(1)? as u64,
                ts_ms: r.get(2)?,
                deleted: r.get(3)?,
                first_kept: r.get::<_, i64>(4)? as u64,
            })
        })?;
        let versions = versions.query_map([], |r| {
            Ok(VersionRow {
                key: r.get(0)?,
                version: r.get::<_, i64>(1)? as u64,
                ts_ms: r.get(2)?,
                deleted: r.get(3)?,
                value: r.get(4)?,
                revision: r.get::<_, i64>(5)?.max(0) as u64,
                seq: r.get::<_, i64>(6)?.max(0) as u64,
                created: r.get(7)?,
                expired: r.get(8)?,
            })
        })?;
        merge_dump(heads, versions, visit)?;
        if self.schema >= 2 {
            let mut purged = self
                .conn
                .prepare("SELECT key, latest FROM purged ORDER BY key")?;
            let mut rows = purged.query([])?;
            while let Some(r) = rows.next()? {
                visit(Record::Purged {
                    key: r.get(0)?,
                    latest: r.get::<_, i64>(1)? as u64,
                })?;
            }
        }
        if self.schema >= 5 {
            let state = super::deadlines::load(&self.conn)?;
            for lease in state.leases {
                visit(Record::Lease(lease))?;
            }
            for deadline in state.deadlines {
                visit(Record::Deadline(deadline))?;
            }
        }
        let (mut current, mut compacted) = (0, 0);
        if self.schema >= 4 {
            let mut purges = self.conn.prepare(
                "SELECT revision, key, version, ts_ms, removed FROM purges ORDER BY revision",
            )?;
            let mut rows = purges.query([])?;
            while let Some(r) = rows.next()? {
                visit(Record::PurgeLog {
                    revision: r.get::<_, i64>(0)?.max(0) as u64,
                    key: r.get(1)?,
                    version: r.get::<_, i64>(2)?.max(0) as u64,
                    ts_ms: r.get(3)?,
                    removed: r.get::<_, i64>(4)?.max(0) as u64,
                })?;
            }
            let mut counters = self.conn.prepare(
                "SELECT name, value FROM counters WHERE name IN ('revision', 'compacted')",
            )?;
            let mut rows = counters.query([])?;
            while let Some(r) = rows.next()? {
                let (name, value): (String, i64) = (r.get(0)?, r.get(1)?);
                match name.as_str() {
                    "revision" => current = value.max(0) as u64,
                    _ => compacted = value.max(0) as u64,
                }
            }
        } else {
            current = self
                .conn
                .query_row("SELECT count(*) FROM versions", [], |r| r.get::<_, i64>(0))?
                .max(0) as u64;
        }
        visit(Record::Revision { current, compacted })?;
        Ok(())
    }
}

/// The versions of a file of schema 3 or older, numbered in commit order
/// as the migration to schema 4 numbers them.
const OLD_VERSIONS: &str = "
    SELECT key, version, ts_ms, deleted, value,
        row_number() OVER (ORDER BY t, key, version) AS revision, 0,
        (deleted = 0 AND NOT coalesce(prev_version = version - 1 AND prev_deleted = 0, 0)), 0
    FROM (
        SELECT key, version, ts_ms, deleted, value,
            max(ts_ms) OVER (PARTITION BY key ORDER BY version) AS t,
            lag(version) OVER (PARTITION BY key ORDER BY version) AS prev_version,
            lag(deleted) OVER (PARTITION BY key ORDER BY version) AS prev_deleted
        FROM versions
    )
    ORDER BY key, version";

/// A load into the file at a path, inside one transaction.
struct SqliteImport {
    conn: Connection,
    path: PathBuf,
    /// The file did not exist before: removed again if the load fails.
    created: bool,
    finished: bool,
    _lock: DbFile,
}

/// Opens (creating and migrating) the vkv file `path` for a load, under its
/// lock: refused while a server uses it.
pub(crate) fn open_import(path: &Path) -> Result<Box<dyn Import>, OpenError> {
    let created = fs::symlink_metadata(path).is_err();
    let lock = DbFile::lock(path)?;
    let import = SqliteImport {
        conn: schema::open_writer(path, SyncMode::Full)?,
        path: path.to_path_buf(),
        created,
        finished: false,
        _lock: lock,
    };
    import
        .conn
        .execute_batch("BEGIN IMMEDIATE")
        .map_err(|e| open_err(path, e))?;
    Ok(Box::new(import))
}

impl Import for SqliteImport {
    fn is_empty(&mut self) -> Result<bool, StoreError> {
        Ok(self.conn.query_row(
            "SELECT NOT EXISTS (SELECT 1 FROM keys) AND NOT EXISTS (SELECT 1 FROM versions)",
            [],
            |r| r.get(0),
        )?)
    }

    fn clear(&mut self) -> Result<(), StoreError> {
        self.conn.execute_batch(
            "DELETE FROM versions; DELETE FROM keys; DELETE FROM purged; DELETE FROM purges;
                 DELETE FROM deadlines; DELETE FROM leases;
                 UPDATE counters SET value = 0 WHERE name IN ('revision', 'compacted');",
        )?;
        Ok(())
    }

    fn write(&mut self, record: &Record) -> Result<(), StoreError> {
        match record {
            Record::Head(h) => {
                self.conn
                    .prepare_cached(
                        "INSERT INTO keys (key, latest, ts_ms, deleted, first_kept)
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                    )?
                    .execute(params![
                        h.key,
                        sql_int(h.latest)?,
                        h.ts_ms,
                        h.deleted,
                        sql_int(h.first_kept)?
                    ])?;
            }
            Record::Purged { key, latest } => {
                self.conn
                    .prepare_cached("INSERT INTO purged (key, latest) VALUES (?1, ?2)")?
                    .execute(params![key, sql_int(*latest)?])?;
            }
            Record::Version(v) => {
                self.conn
                    .prepare_cached(
                        "INSERT INTO versions (key, version, ts_ms, value, deleted, revision, seq,
                             created, expired)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                    )?
                    .execute(params![
                        v.key,
                        sql_int(v.version)?,
                        v.ts_ms,
                        v.value,
                        v.deleted,
                        sql_int(v.revision)?,
                        sql_int(v.seq)?,
                        v.created,
                        v.expired
                    ])?;
            }
            Record::PurgeLog {
                revision,
                key,
                version,
                ts_ms,
                removed,
            } => {
                self.conn
                    .prepare_cached(
                        "INSERT INTO purges (revision, key, version, ts_ms, removed)
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                    )?
                    .execute(params![
                        sql_int(*revision)?,
                        key,
                        sql_int(*version)?,
                        ts_ms,
                        sql_int(*removed)?
                    ])?;
            }
            Record::Revision { current, compacted } => {
                let mut set = self
                    .conn
                    .prepare_cached("UPDATE counters SET value = ?2 WHERE name = ?1")?;
                set.execute(params!["revision", sql_int(*current)?])?;
                set.execute(params!["compacted", sql_int(*compacted)?])?;
            }
            Record::Deadline(d) => super::deadlines::store(&self.conn, d)?,
            Record::Lease(l) => super::deadlines::store_lease(&self.conn, l)?,
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>, expect: Totals) -> Result<Totals, StoreError> {
        let count = |sql: &str| -> Result<u64, StoreError> {
            Ok(self.conn.query_row(sql, [], |r| r.get::<_, i64>(0))? as u64)
        };
        let found = Totals {
            keys: count("SELECT count(*) FROM keys")?,
            versions: count("SELECT count(*) FROM versions")?,
        };
        if found != expect {
            // Dropping rolls back.
            return Err(StoreError::Internal(format!(
                "{} holds {} keys and {} versions after the load, expected {} and {}; \
                 nothing was committed",
                self.path.display(),
                found.keys,
                found.versions,
                expect.keys,
                expect.versions
            )));
        }
        let mut set = self
            .conn
            .prepare("UPDATE counters SET value = ?2 WHERE name = ?1")?;
        set.execute(params!["keys", sql_int(found.keys)?])?;
        set.execute(params!["versions", sql_int(found.versions)?])?;
        drop(set);
        self.conn.execute_batch("COMMIT")?;
        self.finished = true;
        Ok(found)
    }
}

impl Drop for SqliteImport {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let _ = self.conn.execute_batch("ROLLBACK");
        if self.created {
            for suffix in ["", "-wal", "-shm", "-journal"] {
                let mut p = self.path.as_os_str().to_owned();
                p.push(suffix);
                let _ = fs::remove_file(PathBuf::from(p));
            }
        }
    }
}

fn sql_int(n: u64) -> Result<i64, StoreError> {
    i64::try_from(n).map_err(|_| StoreError::Internal(format!("{n} does not fit in SQLite")))
}
