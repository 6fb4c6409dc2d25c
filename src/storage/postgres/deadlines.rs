//! Leases and the deadlines of keys on them, in PostgreSQL: the statements
//! the writer's transaction runs for them. Deadlines and leases are on the
//! database's clock (`clock_timestamp()`), so the replicas' clocks do not
//! matter, and a keepalive through any replica is a write every replica
//! sees.
//!
//! Lock order: a transaction that touches leases locks their rows (in id
//! order) before any key's head, and a transaction that locks heads only
//! touches a lease after locking it first; so a revoke (the lease, then its
//! keys' heads) and a put attaching a key (the lease, then the key's head)
//! cannot deadlock, and no key is attached to a lease while it is revoked.

use std::collections::{BTreeSet, HashMap};

use super::conn::PgConn;
use crate::storage::seam::{LeaseRow, LeaseState};

/// The leases a transaction locked.
#[derive(Default)]
pub(super) struct Locked {
    /// Each lease that exists, and whether its deadline has passed.
    pub due: HashMap<i64, bool>,
    /// Each lease that exists, and its deadline (ms since the epoch).
    pub due_ms: HashMap<i64, i64>,
    /// The keys on each lease to be revoked, in key order.
    pub keys: HashMap<i64, Vec<String>>,
}

/// Locks the rows of leases `ids` (in id order), and reads the keys on
/// those of `revoked`.
pub(super) fn lock(
    conn: &mut PgConn,
    ids: &[i64],
    revoked: &[i64],
) -> Result<Locked, postgres::Error> {
    let mut locked = Locked::default();
    let rows = conn.query(
        "SELECT id, due <= clock_timestamp(), (extract(epoch FROM due) * 1000)::bigint
         FROM vkv_leases WHERE id = ANY($1::bigint[])
         ORDER BY id FOR UPDATE",
        &[&ids],
    )?;
    for r in rows {
        let id = r.try_get(0)?;
        locked.due.insert(id, r.try_get(1)?);
        locked.due_ms.insert(id, r.try_get(2)?);
    }
    if !revoked.is_empty() {
        let rows = conn.query(
            "SELECT lease, key FROM vkv_deadlines WHERE lease = ANY($1::bigint[]) ORDER BY key",
            &[&revoked],
        )?;
        for r in rows {
            let key: Vec<u8> = r.try_get(1)?;
            // Keys are UTF-8; one that is not could not have been written.
            if let Ok(key) = String::from_utf8(key) {
                locked.keys.entry(r.try_get(0)?).or_default().push(key);
            }
        }
    }
    Ok(locked)
}

/// Of `keys`, those still on lease `id` (read with their heads locked).
pub(super) fn still_on(
    conn: &mut PgConn,
    id: i64,
    keys: &[&[u8]],
) -> Result<BTreeSet<Vec<u8>>, postgres::Error> {
    let rows = conn.query(
        "SELECT key FROM vkv_deadlines WHERE lease = $1 AND key = ANY($2::bytea[])",
        &[&id, &keys],
    )?;
    rows.iter().map(|r| r.try_get(0)).collect()
}

/// A new lease of `ttl_ms` (`None` if the insert answered no row).
pub(super) fn grant(conn: &mut PgConn, ttl_ms: i64) -> Result<Option<LeaseRow>, postgres::Error> {
    let rows = conn.query(
        "INSERT INTO vkv_leases (ttl_ms, due)
         VALUES ($1::bigint, clock_timestamp() + $1::bigint * interval '1 millisecond')
         RETURNING id, (extract(epoch FROM due) * 1000)::bigint",
        &[&ttl_ms],
    )?;
    rows.first()
        .map(|r| {
            let (id, due): (i64, i64) = (r.try_get(0)?, r.try_get(1)?);
            Ok(LeaseRow {
                id: id as u64,
                ttl_ms,
                granted_ms: due - ttl_ms,
            })
        })
        .transpose()
}

/// Moves the deadline of lease `id` to its TTL from now, if it has not
/// passed; its state then.
pub(super) fn keepalive(conn: &mut PgConn, id: i64) -> Result<Option<LeaseState>, postgres::Error> {
    let rows = conn.query(
        "UPDATE vkv_leases SET due = clock_timestamp() + ttl_ms * interval '1 millisecond'
         WHERE id = $1 AND due > clock_timestamp()
         RETURNING ttl_ms, (extract(epoch FROM due) * 1000)::bigint",
        &[&id],
    )?;
    rows.first()
        .map(|r| {
            Ok(LeaseState {
                id: id as u64,
                ttl_ms: r.try_get(0)?,
                due_ms: r.try_get(1)?,
            })
        })
        .transpose()
}

/// Removes lease `id` (its keys' deadlines go with their tombstones).
pub(super) fn remove(conn: &mut PgConn, id: i64) -> Result<(), postgres::Error> {
    conn.query("DELETE FROM vkv_leases WHERE id = $1", &[&id])?;
    Ok(())
}
