//! The PostgreSQL read side: a pool of connections (r2d2, like the SQLite
//! side) and the request-path queries. Every query runs in its own
//! statement on the primary, so it sees every commit acknowledged before it
//! was sent, whichever replica made it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use r2d2::Pool;

use super::confirm::Confirmer;
use super::conn::{Manager, PgConn, with_pooled, with_pooled_until};
use super::dues::LeaseDues;
use super::lease::Leases;
use super::rows::{ReadDeadline, db_int, versioned};
use crate::change::{Change, ChangeOperation, ChangePage, Stored, cut_at_revision};
use crate::error::StoreError;
use crate::storage::seam::{
    DbStats, Due, Fresh, KeyInfo, KeyPage, LatestReply, LeaseState, Reads, VersionInfo,
    VersionReply, feed_start,
};
use crate::version::Versioned;

/// The read pool.
pub(crate) struct PgReads {
    pub pool: Pool<Manager>,
    /// The URL with its password masked, for `/db/stats`.
    pub location: String,
    /// Latest reads, in shared rounds.
    pub confirm: Confirmer,
    /// This replica's read lease.
    pub leases: Arc<Leases>,
    /// The deadlines of leases as this replica last learnt them.
    pub dues: Arc<LeaseDues>,
    /// The read connections' query timeout.
    pub query_timeout: Duration,
    /// Where the expiry thread's connection goes.
    pub target: super::target::Target,
    /// The expiry thread's own connection, so that its polls never take a
    /// read connection from requests (nor from `/metrics`, which only takes
    /// an idle one); opened when first needed, again after a failure.
    pub poller: std::sync::Mutex<Option<PgConn>>,
}

impl PgReads {
    /// `f` on the expiry thread's connection.
    fn with_poller<T>(
        &self,
        f: impl FnOnce(&mut PgConn) -> Result<T, postgres::Error>,
    ) -> Result<T, StoreError> {
        let mut slot = self.poller.lock().unwrap_or_else(|p| p.into_inner());
        if slot.as_ref().is_none_or(|c| c.client.is_closed()) {
            let client = self.target.open().map_err(|e| {
                StoreError::Unavailable(format!("cannot connect to PostgreSQL: {e}"))
            })?;
            *slot = Some(PgConn::open(
                client,
                super::conn::Role::Read(self.query_timeout),
            )?);
        }
        let conn = slot
            .as_mut()
            .ok_or_else(|| StoreError::Internal("no connection".into()))?;
        let result = f(conn);
        if result.is_err() {
            // Opened again for the next poll.
            *slot = None;
        }
        Ok(result?)
    }
    /// `f` on a pooled connection (see [`with_pooled`]).
    fn with_conn<T>(
        &self,
        f: impl FnMut(&mut PgConn) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        with_pooled(&self.pool, f)
    }
}

impl PgReads {
    /// The leases matching `filter` (which takes one bigint, `$1`).
    fn leases_where(&self, filter: &str, arg: i64) -> Result<Vec<LeaseState>, StoreError> {
        let found: Vec<LeaseState> = self.with_conn(|conn| {
            let rows = conn.client.query(
                &format!(
                    "SELECT id, ttl_ms, (extract(epoch FROM due) * 1000)::bigint FROM vkv_leases
                     WHERE {filter}"
                ),
                &[&arg],
            )?;
            rows.iter().map(lease_state).collect()
        })?;
        for lease in &found {
            self.dues.learn(lease.id, lease.due_ms);
        }
        Ok(found)
    }
}

/// A row of `id, ttl_ms, due_ms` as a lease.
fn lease_state(r: &postgres::Row) -> Result<LeaseState, StoreError> {
    Ok(LeaseState {
        id: r.try_get::<_, i64>(0)? as u64,
        ttl_ms: r.try_get(1)?,
        due_ms: r.try_get(2)?,
    })
}

impl Reads for PgReads {
    fn latest(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        match self.confirm.latest(key, None)? {
            Fresh::Changed(found) => Ok(found),
            Fresh::Same => Err(StoreError::Internal("no version was known".into())),
        }
    }

    fn cache_is_current(&self) -> bool {
        self.leases.held()
    }

    /// Point reads join the next shared round, answered on its thread.
    fn queues_reads(&self) -> bool {
        true
    }

    fn read_lease(&self) -> Option<(bool, u64)> {
        Some((self.leases.held(), self.leases.taken()))
    }

    fn supports_expiry(&self) -> bool {
        true
    }

    /// Deadlines are the database's, shared by every replica: each polls.
    fn polls_deadlines(&self) -> bool {
        true
    }

    fn due(&self, limit: usize) -> Result<Vec<Due>, StoreError> {
        let rows = self.with_poller(|conn| {
            conn.query(
                "SELECT key, (extract(epoch FROM due) * 1000)::bigint FROM vkv_deadlines
                 WHERE due <= clock_timestamp() ORDER BY due LIMIT $1",
                &[&(limit as i64)],
            )
        })?;
        rows.iter()
            .map(|r| {
                Ok(Due {
                    key: super::rows::key_text(r.try_get(0)?)?,
                    due_ms: r.try_get(1)?,
                })
            })
            .collect()
    }

    fn due_leases(&self, limit: usize) -> Result<Vec<LeaseState>, StoreError> {
        let rows = self.with_poller(|conn| {
            conn.query(
                "SELECT id, ttl_ms, (extract(epoch FROM due) * 1000)::bigint FROM vkv_leases
                 WHERE due <= clock_timestamp() ORDER BY due LIMIT $1",
                &[&(limit as i64)],
            )
        })?;
        rows.iter().map(lease_state).collect()
    }

    fn lease(&self, id: u64) -> Result<Option<LeaseState>, StoreError> {
        let found = self.leases_where("id = $1 AND due > clock_timestamp()", db_int(id))?;
        Ok(found.into_iter().next())
    }

    fn leases(&self) -> Result<Vec<LeaseState>, StoreError> {
        // $1 only to share the statement's shape: every id is above it.
        self.leases_where("due > clock_timestamp() AND id > $1 ORDER BY id", 0)
    }

    fn lease_due(&self, id: u64) -> Option<i64> {
        self.dues.due(id)
    }

    /// Counted at each scrape, within [`STATS_NOW_LIMIT`].
    fn expiry_counts(&self) -> Option<(u64, u64)> {
        let limit = self.query_timeout.min(STATS_NOW_LIMIT);
        let until = std::time::Instant::now() + limit;
        let counted = with_pooled_until(&self.pool, Some(until), |conn| {
            conn.within(limit, |conn| {
                let row = conn.query_opt(
                    "SELECT (SELECT count(*) FROM vkv_deadlines),
                         (SELECT count(*) FROM vkv_leases WHERE due > clock_timestamp())",
                    &[],
                )?;
                let row = row.ok_or_else(|| StoreError::Internal("no counts".into()))?;
                let count = |i| row.try_get::<_, i64>(i).map(|n| n.max(0) as u64);
                Ok((count(0)?, count(1)?))
            })
        });
        counted
            .inspect_err(|e| log::debug!("cannot count deadlines and leases: {e}"))
            .ok()
    }

    fn lease_keys(&self, id: u64, limit: usize) -> Result<(Vec<String>, bool), StoreError> {
        self.with_conn(|conn| {
            let rows = conn.query(
                "SELECT key FROM vkv_deadlines WHERE lease = $1 ORDER BY key LIMIT $2",
                &[&db_int(id), &(limit as i64 + 1)],
            )?;
            let mut keys = rows
                .iter()
                .map(|r| super::rows::key_text(r.try_get(0)?))
                .collect::<Result<Vec<_>, StoreError>>()?;
            let more = keys.len() > limit;
            keys.truncate(limit);
            Ok((keys, more))
        })
    }

    fn latest_unless(&self, key: &str, known: &Versioned) -> Result<Fresh, StoreError> {
        self.confirm
            .latest(key, Some((known.version, known.timestamp_ms)))
    }

    fn latest_then(&self, key: &str, known: Option<&Versioned>, asked: Instant, then: LatestReply) {
        let known = known.map(|k| (k.version, k.timestamp_ms));
        self.confirm.latest_then(key, known, asked, then);
    }

    fn version_then(&self, key: &str, version: u64, then: VersionReply) {
        self.confirm.version_then(key, version, then);
    }

    fn version(&self, key: &str, version: u64) -> Result<Versioned, StoreError> {
        self.with_conn(|conn| version_row(conn, key, version, &self.dues))
    }

    fn history(
        &self,
        key: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Result<(Vec<VersionInfo>, bool), StoreError> {
        self.with_conn(|conn| {
            let exists = conn.query_opt(
                "SELECT 1 FROM vkv_keys WHERE key = $1 AND latest > 0",
                &[&key.as_bytes()],
            )?;
            if exists.is_none() {
                return Err(StoreError::KeyNotFound(key.to_string()));
            }
            let before = before.map_or(i64::MAX, db_int);
            let rows = conn.query(
                "SELECT version, ts_ms, deleted, octet_length(value)::bigint, revision, created,
                     expired
                 FROM vkv_versions WHERE key = $1 AND version < $2 ORDER BY version DESC LIMIT $3",
                &[&key.as_bytes(), &before, &(limit as i64 + 1)],
            )?;
            let mut out = rows
                .iter()
                .map(|r| {
                    Ok(VersionInfo {
                        version: r.try_get::<_, i64>(0)? as u64,
                        timestamp_ms: r.try_get(1)?,
                        deleted: r.try_get(2)?,
                        size_bytes: r.try_get::<_, i64>(3)? as u64,
                        expired: r.try_get(6)?,
                        revision: r.try_get::<_, i64>(4)?.max(0) as u64,
                        created: r.try_get(5)?,
                    })
                })
                .collect::<Result<Vec<_>, postgres::Error>>()?;
            let more = out.len() > limit;
            out.truncate(limit);
            Ok((out, more))
        })
    }

    fn keys(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
        values: bool,
    ) -> Result<KeyPage, StoreError> {
        let lower = match after {
            Some(a) if a >= prefix => a,
            _ => prefix,
        };
        let inclusive = after.is_none_or(|a| a < prefix);
        let upper = upper_bound(prefix);
        // One statement per shape of the range, each a plain range on the
        // index of live keys (a generic plan of one statement with optional
        // bounds could not use the index as a range: measured 2.4 ms of
        // PostgreSQL CPU per page on 18,500 keys). Its first row (no key)
        // is the store's revision: one statement, one snapshot.
        let lower = lower.as_bytes();
        let n = limit as i64 + 1;
        self.with_conn(|conn| {
            let rows = match (inclusive, &upper) {
                (true, Some(upper)) => conn.query(
                    "SELECT NULL::bytea, value, 0::bigint, NULL::text FROM vkv_revision
                 UNION ALL (
                 SELECT key, latest, ts_ms, CASE WHEN $4 THEN (SELECT value FROM vkv_versions v
                     WHERE v.key = k.key AND v.version = k.latest) END FROM vkv_keys k
                 WHERE key >= $1 AND key < $2 AND NOT deleted AND latest > 0
                 ORDER BY key LIMIT $3)",
                    &[&lower, upper, &n, &values],
                ),
                (false, Some(upper)) => conn.query(
                    "SELECT NULL::bytea, value, 0::bigint, NULL::text FROM vkv_revision
                 UNION ALL (
                 SELECT key, latest, ts_ms, CASE WHEN $4 THEN (SELECT value FROM vkv_versions v
                     WHERE v.key = k.key AND v.version = k.latest) END FROM vkv_keys k
                 WHERE key > $1 AND key < $2 AND NOT deleted AND latest > 0
                 ORDER BY key LIMIT $3)",
                    &[&lower, upper, &n, &values],
                ),
                (true, None) => conn.query(
                    "SELECT NULL::bytea, value, 0::bigint, NULL::text FROM vkv_revision
                 UNION ALL (
                 SELECT key, latest, ts_ms, CASE WHEN $3 THEN (SELECT value FROM vkv_versions v
                     WHERE v.key = k.key AND v.version = k.latest) END FROM vkv_keys k
                 WHERE key >= $1 AND NOT deleted AND latest > 0 ORDER BY key LIMIT $2)",
                    &[&lower, &n, &values],
                ),
                (false, None) => conn.query(
                    "SELECT NULL::bytea, value, 0::bigint, NULL::text FROM vkv_revision
                 UNION ALL (
                 SELECT key, latest, ts_ms, CASE WHEN $3 THEN (SELECT value FROM vkv_versions v
                     WHERE v.key = k.key AND v.version = k.latest) END FROM vkv_keys k
                 WHERE key > $1 AND NOT deleted AND latest > 0 ORDER BY key LIMIT $2)",
                    &[&lower, &n, &values],
                ),
            }?;
            let mut revision = 0;
            let mut keys = Vec::with_capacity(rows.len());
            for r in &rows {
                let Some(key) = r.try_get::<_, Option<Vec<u8>>>(0)? else {
                    revision = r.try_get::<_, i64>(1)?.max(0) as u64;
                    continue;
                };
                keys.push(KeyInfo {
                    key: text(key)?,
                    version: r.try_get::<_, i64>(1)? as u64,
                    timestamp_ms: r.try_get(2)?,
                    value: r.try_get::<_, Option<String>>(3)?.map(json).transpose()?,
                });
            }
            let more = keys.len() > limit;
            keys.truncate(limit);
            Ok(KeyPage {
                keys,
                more,
                revision,
            })
        })
    }

    fn changes(
        &self,
        prefix: &str,
        after: Option<u64>,
        limit: usize,
        values: bool,
    ) -> Result<ChangePage, StoreError> {
        let upper = upper_bound(prefix);
        self.with_conn(|conn| {
            // One snapshot for the counters and the changes.
            conn.simple("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")?;
            let read = changes_in(
                conn,
                prefix.as_bytes(),
                upper.as_deref(),
                after,
                limit,
                values,
            );
            let _ = conn.simple("COMMIT");
            read
        })
    }

    fn stats(&self) -> Result<DbStats, StoreError> {
        self.with_conn(|conn| self.stats_on(conn, None))
    }

    fn stats_now(&self) -> Option<DbStats> {
        let mut conn = self.pool.try_get()?;
        self.stats_on(&mut conn, Some(STATS_NOW_LIMIT)).ok()
    }

    /// The database answers reads of vkv's tables within a second (the
    /// query timeout if shorter), and it is a primary (a standby, or a
    /// former primary that came back as one, takes no writes).
    fn check(&self) -> Result<(), StoreError> {
        let limit = self.query_timeout.min(CHECK_LIMIT);
        let asked = std::time::Instant::now();
        // Within the limit, waiting for a pooled connection included: the
        // pool may be taken by reads that wait on the database themselves.
        // A pooled connection the server ended is replaced, as for reads:
        // the database being back is told at once.
        let replies = with_pooled_until(&self.pool, Some(asked + limit), |conn| {
            let left = limit
                .saturating_sub(asked.elapsed())
                .max(Duration::from_millis(1));
            Ok(conn.simple(&format!(
                "BEGIN; SET LOCAL statement_timeout = {};
                 SELECT pg_is_in_recovery(), EXISTS (SELECT 1 FROM vkv_keys),
                     EXISTS (SELECT 1 FROM vkv_versions);
                 COMMIT",
                left.as_millis()
            ))?)
        })?;
        let standby = replies
            .iter()
            .any(|m| matches!(m, postgres::SimpleQueryMessage::Row(r) if r.get(0) == Some("t")));
        if standby {
            return Err(StoreError::Unavailable(
                "PostgreSQL server is a standby (in recovery): it takes no writes".into(),
            ));
        }
        Ok(())
    }
}

/// The longest `/health` waits for the database.
const CHECK_LIMIT: Duration = Duration::from_secs(1);

/// The longest [`Reads::stats_now`] waits for the database.
const STATS_NOW_LIMIT: Duration = Duration::from_millis(250);

impl PgReads {
    /// The totals, read on `conn` (within `limit` if given).
    fn stats_on(&self, conn: &mut PgConn, limit: Option<Duration>) -> Result<DbStats, StoreError> {
        let row = conn.within(limit.unwrap_or(self.query_timeout), |conn| {
            Ok(conn.query_opt(
                "SELECT coalesce(sum(keys), 0)::bigint, coalesce(sum(versions), 0)::bigint,
                     (pg_total_relation_size('vkv_versions') + pg_total_relation_size('vkv_keys')
                      + pg_total_relation_size('vkv_counters'))::bigint,
                     (SELECT value FROM vkv_revision)
                 FROM vkv_counters",
                &[],
            )?)
        });
        let row = row?.ok_or_else(|| StoreError::Internal("no counters".into()))?;
        Ok(DbStats {
            total_keys: row.try_get::<_, i64>(0)?.max(0) as u64,
            total_versions: row.try_get::<_, i64>(1)?.max(0) as u64,
            file_size_bytes: row.try_get::<_, i64>(2)?.max(0) as u64,
            path: self.location.clone(),
            journal_mode: "postgresql".into(),
            revision: row.try_get::<_, Option<i64>>(3)?.unwrap_or(0).max(0) as u64,
        })
    }
}

/// The smallest byte string above every one that starts with `prefix`
/// (`None`: no bound; UTF-8 never contains 0xFF, so bumping the last byte
/// works).
fn upper_bound(prefix: &str) -> Option<Vec<u8>> {
    prefix.as_bytes().split_last().map(|(last, init)| {
        let mut b = init.to_vec();
        b.push(last.saturating_add(1));
        b
    })
}

fn text(key: Vec<u8>) -> Result<String, StoreError> {
    String::from_utf8(key)
        .map_err(|e| StoreError::Internal(format!("stored key is not UTF-8: {e}")))
}

fn json(value: String) -> Result<Box<serde_json::value::RawValue>, StoreError> {
    serde_json::value::RawValue::from_string(value)
        .map_err(|e| StoreError::Internal(format!("stored value is not JSON: {e}")))
}

/// The feed's page inside a read transaction on `conn` (see
/// [`Reads::changes`]).
fn changes_in(
    conn: &mut PgConn,
    prefix: &[u8],
    upper: Option<&[u8]>,
    after: Option<u64>,
    limit: usize,
    values: bool,
) -> Result<ChangePage, StoreError> {
    // Removed under this prefix: by retention (anywhere), by purges of its
    // keys.
    let counters = conn
        .query_opt(
            "SELECT value, greatest(compacted, (SELECT coalesce(max(removed), 0) FROM vkv_purges
                 WHERE key >= $1 AND ($2::bytea IS NULL OR key < $2)))
             FROM vkv_revision WHERE id = 1",
            &[&prefix, &upper],
        )?
        .ok_or_else(|| StoreError::Internal("no revision counter".into()))?;
    let revision = counters.try_get::<_, i64>(0)?.max(0) as u64;
    let compacted = counters.try_get::<_, i64>(1)?.max(0) as u64;
    let after = feed_start(after, revision, compacted)?;
    let mut query = |n: i64| -> Result<Vec<postgres::Row>, StoreError> {
        Ok(conn.query(
            "(SELECT revision, seq, key, version, ts_ms, deleted, created, false,
                 CASE WHEN $4 AND NOT deleted THEN value END, expired
             FROM vkv_versions
             WHERE revision > $1 AND key >= $2 AND ($3::bytea IS NULL OR key < $3)
             ORDER BY revision, seq LIMIT $5)
             UNION ALL
             (SELECT revision, 0, key, version, ts_ms, false, false, true, NULL, false
             FROM vkv_purges
             WHERE revision > $1 AND key >= $2 AND ($3::bytea IS NULL OR key < $3)
             ORDER BY revision LIMIT $5)
             ORDER BY 1, 2 LIMIT $5",
            &[&db_int(after), &prefix, &upper, &values, &n],
        )?)
    };
    let mut rows = query(limit as i64 + 1)?;
    let rev = |r: &postgres::Row| r.try_get::<_, i64>(0).map_or(0, |n| n.max(0) as u64);
    let more = cut_at_revision(&mut rows, limit, rev);
    if rows.is_empty() && more {
        // One revision (a batch) larger than the page: it comes whole.
        rows = query(i64::MAX)?;
        let first = rows.first().map_or(0, rev);
        rows.retain(|r| rev(r) == first);
    }
    let changes = rows
        .iter()
        .map(|r| {
            Ok(Change {
                revision: rev(r),
                key: text(r.try_get(2)?)?,
                version: r.try_get::<_, i64>(3)?.max(0) as u64,
                operation: ChangeOperation::of(Stored {
                    deleted: r.try_get(5)?,
                    expired: r.try_get(9)?,
                    created: r.try_get(6)?,
                    purge: r.try_get(7)?,
                }),
                timestamp_ms: r.try_get(4)?,
                value: r.try_get::<_, Option<String>>(8)?.map(json).transpose()?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(ChangePage {
        changes,
        revision,
        more,
    })
}

/// Version `version` of `key` with the deadline it set, if it is still
/// the key's (the lease's learnt into `dues`), or why there is none.
fn version_row(
    conn: &mut PgConn,
    key: &str,
    version: u64,
    dues: &LeaseDues,
) -> Result<Versioned, StoreError> {
    let row = conn.query_opt(
        "SELECT v.version, v.ts_ms, v.value, v.deleted, v.revision, v.expired,
             (extract(epoch FROM d.due) * 1000)::bigint, d.lease,
             (SELECT (extract(epoch FROM l.due) * 1000)::bigint FROM vkv_leases l
              WHERE l.id = d.lease)
         FROM vkv_versions v
         LEFT JOIN vkv_deadlines d ON d.key = v.key AND d.version = v.version
         WHERE v.key = $1 AND v.version = $2",
        &[&key.as_bytes(), &db_int(version)],
    )?;
    if let Some(r) = row {
        let mut found = versioned(key, &r, 0)?;
        let read = ReadDeadline::of(r.try_get(6)?, r.try_get(7)?, r.try_get(8)?);
        found.deadline = read.learn(dues);
        return Ok(found);
    }
    let head = conn.query_opt(
        "SELECT latest, first_kept FROM vkv_keys WHERE key = $1 AND latest > 0",
        &[&key.as_bytes()],
    )?;
    let head = match head {
        None => None,
        Some(h) => {
            let (latest, first_kept): (i64, i64) = (h.try_get(0)?, h.try_get(1)?);
            Some((latest as u64, first_kept as u64))
        }
    };
    Err(StoreError::version_miss(key, version, head))
}
