//! Keys that expire, in SQLite: each key's deadline (`deadlines`), the
//! leases (`leases`), and the writes that end them (tombstones marked as
//! expiries), inside the writer's transaction. When a deadline is due is
//! decided above the seam (`crate::expiry`); here an expiry only commits if
//! the deadline it was asked for is still the key's and has passed.

use rusqlite::{Connection, OptionalExtension, params};

use crate::error::StoreError;
use crate::storage::seam::{DeadlineRow, ExpiryState, LeaseRow, Lifetime};
use crate::version::Deadline;

/// Refuses a put on a lease that is not stored (never granted, revoked or
/// expired).
pub(super) fn check_lease(tx: &Connection, lifetime: Lifetime) -> Result<(), Refused> {
    if let Lifetime::Lease(id) = lifetime {
        let found = tx
            .prepare_cached("SELECT 1 FROM leases WHERE id = ?1")?
            .query_row(params![id_sql(id)], |_| Ok(()))
            .optional()?;
        if found.is_none() {
            return Err(Refused::Store(StoreError::LeaseNotFound(id)));
        }
    }
    Ok(())
}

/// Why a deadline could not be set: a refusal, or SQLite's error.
pub(super) enum Refused {
    Store(StoreError),
    Sqlite(rusqlite::Error),
}

impl From<rusqlite::Error> for Refused {
    fn from(e: rusqlite::Error) -> Self {
        Refused::Sqlite(e)
    }
}

/// Sets `key`'s deadline after the write of `version` at `ts`: none for a
/// permanent version (the row goes), else its own or its lease's.
pub(super) fn set(
    tx: &Connection,
    key: &str,
    version: u64,
    lifetime: Lifetime,
    ts: i64,
) -> Result<Option<Deadline>, Refused> {
    let deadline = match lifetime {
        Lifetime::Permanent => {
            clear(tx, key)?;
            return Ok(None);
        }
        Lifetime::Ttl(ttl) => {
            let ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
            let due = ts.checked_add(ms).ok_or_else(|| {
                Refused::Store(StoreError::InvalidLifetime(format!(
                    "a TTL of {ms} ms is too long"
                )))
            })?;
            Deadline::At(due)
        }
        Lifetime::Lease(id) => Deadline::Lease(id),
    };
    let (due, lease) = match deadline {
        Deadline::At(due) => (Some(due), None),
        Deadline::Lease(id) => (None, Some(id_sql(id))),
    };
    tx.prepare_cached(
        "INSERT INTO deadlines (key, version, due_ms, lease) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (key) DO UPDATE SET version = excluded.version,
             due_ms = excluded.due_ms, lease = excluded.lease",
    )?
    .execute(params![key, version as i64, due, lease])?;
    Ok(Some(deadline))
}

/// Removes `key`'s deadline, if it has one.
pub(super) fn clear(tx: &Connection, key: &str) -> rusqlite::Result<()> {
    tx.prepare_cached("DELETE FROM deadlines WHERE key = ?1")?
        .execute(params![key])?;
    Ok(())
}

/// `key`'s own deadline, if it has one (`Some(None)`: its lease's).
pub(super) fn due_of(tx: &Connection, key: &str) -> rusqlite::Result<Option<Option<i64>>> {
    tx.prepare_cached("SELECT due_ms FROM deadlines WHERE key = ?1")?
        .query_row(params![key], |r| r.get(0))
        .optional()
}

/// A new lease of `ttl_ms`, granted at `ts`.
pub(super) fn grant(tx: &Connection, ttl_ms: i64, ts: i64) -> rusqlite::Result<LeaseRow> {
    tx.prepare_cached("INSERT INTO leases (ttl_ms, granted_ms) VALUES (?1, ?2)")?
        .execute(params![ttl_ms, ts])?;
    Ok(LeaseRow {
        id: tx.last_insert_rowid() as u64,
        ttl_ms,
        granted_ms: ts,
    })
}

/// Removes lease `id`; the keys attached to it, in byte order (their
/// deadlines go with their tombstones). `None`: no such lease.
pub(super) fn remove_lease(tx: &Connection, id: u64) -> rusqlite::Result<Option<Vec<String>>> {
    let removed = tx
        .prepare_cached("DELETE FROM leases WHERE id = ?1")?
        .execute(params![id_sql(id)])?;
    if removed == 0 {
        return Ok(None);
    }
    let keys = tx
        .prepare_cached("SELECT key FROM deadlines WHERE lease = ?1 ORDER BY key")?
        .query_map(params![id_sql(id)], |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(keys))
}

/// Every deadline and lease stored (on a read connection).
pub(super) fn load(conn: &Connection) -> rusqlite::Result<ExpiryState> {
    let deadlines = conn
        .prepare("SELECT key, version, due_ms, lease FROM deadlines")?
        .query_map([], |r| {
            let due: Option<i64> = r.get(2)?;
            let lease: Option<i64> = r.get(3)?;
            Ok(DeadlineRow {
                key: r.get(0)?,
                version: r.get::<_, i64>(1)? as u64,
                deadline: match (due, lease) {
                    (Some(due), _) => Deadline::At(due),
                    (None, lease) => Deadline::Lease(lease.unwrap_or(0) as u64),
                },
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let leases = conn
        .prepare("SELECT id, ttl_ms, granted_ms FROM leases")?
        .query_map([], |r| {
            Ok(LeaseRow {
                id: r.get::<_, i64>(0)? as u64,
                ttl_ms: r.get(1)?,
                granted_ms: r.get(2)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ExpiryState { deadlines, leases })
}

/// Up to `limit` keys on lease `id`, in byte order, and whether more
/// remain (on a read connection).
pub(super) fn lease_keys(
    conn: &Connection,
    id: u64,
    limit: usize,
) -> rusqlite::Result<(Vec<String>, bool)> {
    let mut keys = conn
        .prepare_cached("SELECT key FROM deadlines WHERE lease = ?1 ORDER BY key LIMIT ?2")?
        .query_map(params![id_sql(id), limit as i64 + 1], |r| r.get(0))?
        .collect::<Result<Vec<String>, _>>()?;
    let more = keys.len() > limit;
    keys.truncate(limit);
    Ok((keys, more))
}

/// Stores a dumped deadline as it is (a load).
pub(super) fn store(conn: &Connection, d: &DeadlineRow) -> rusqlite::Result<()> {
    let (due, lease) = match d.deadline {
        Deadline::At(due) => (Some(due), None),
        Deadline::Lease(id) => (None, Some(id_sql(id))),
    };
    conn.prepare_cached(
        "INSERT INTO deadlines (key, version, due_ms, lease) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![d.key, d.version as i64, due, lease])?;
    Ok(())
}

/// Stores a dumped lease as it is, its id kept (a load).
pub(super) fn store_lease(conn: &Connection, l: &LeaseRow) -> rusqlite::Result<()> {
    conn.prepare_cached("INSERT INTO leases (id, ttl_ms, granted_ms) VALUES (?1, ?2, ?3)")?
        .execute(params![id_sql(l.id), l.ttl_ms, l.granted_ms])?;
    Ok(())
}

/// A lease id as SQLite's integer (ids are stored as positive `i64`s).
fn id_sql(id: u64) -> i64 {
    i64::try_from(id).unwrap_or(-1)
}
