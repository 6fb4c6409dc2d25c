//! Whole-store dumps and loads of a PostgreSQL database, for `vkv copy`,
//! `vkv check` and `GET /backup`.
//!
//! - A dump runs in one `REPEATABLE READ READ ONLY` transaction: one
//!   snapshot of the database, however many replicas write meanwhile. Both
//!   tables are read through server-side cursors, 1,000 rows per fetch, so
//!   memory stays flat whatever the size.
//! - A load runs in one transaction that first locks the three tables
//!   against writers (`EXCLUSIVE`: reads go on), inserts 1,000 rows per
//!   statement (`unnest` of arrays), and commits only if the counts match.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::path::Path;

use postgres::{Client, Row};

use super::rows::key_text;
use super::schema;
use super::target::{Target, describe};
use crate::error::{OpenError, StoreError};
use crate::storage::seam::{
    DeadlineRow, Export, Import, KeyHead, LeaseRow, Record, Totals, VersionRow, merge_dump,
};
use crate::version::Deadline;

/// Rows per `FETCH` and per `INSERT`.
const CHUNK: usize = 1000;

fn connect(location: &Path) -> Result<(Client, String), OpenError> {
    let target = Target::of(location)?;
    let client = target.connect().map_err(|e| OpenError::Postgres {
        url: target.url.clone(),
        reason: describe(&e),
    })?;
    Ok((client, target.url))
}

struct PgExport {
    client: Client,
    /// `vkv_meta.schema_version`.
    schema: i64,
}

/// Opens the vkv database at the URL `location` for a dump.
pub(crate) fn open_export(location: &Path) -> Result<Box<dyn Export>, OpenError> {
    let (mut client, url) = connect(location)?;
    let fail = |reason: String| OpenError::Postgres {
        url: url.clone(),
        reason,
    };
    client
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .map_err(|e| fail(describe(&e)))?;
    let found: i32 = match client.query_one("SELECT schema_version FROM vkv_meta WHERE id = 1", &[])
    {
        Ok(row) => row.get(0),
        Err(e) if e.code() == Some(&postgres::error::SqlState::UNDEFINED_TABLE) => {
            return Err(fail("it holds no vkv schema (no table vkv_meta)".into()));
        }
        Err(e) => return Err(fail(describe(&e))),
    };
    if !(1..=schema::SCHEMA_VERSION).contains(&found) {
        return Err(fail(format!(
            "vkv schema version {found}; this vkv reads 1 to {}",
            schema::SCHEMA_VERSION
        )));
    }
    Ok(Box::new(PgExport {
        client,
        schema: i64::from(found),
    }))
}

impl Export for PgExport {
    fn schema_version(&self) -> i64 {
        self.schema
    }

    fn counters(&mut self) -> Result<Totals, StoreError> {
        let row = self.client.query_one(
            "SELECT coalesce(sum(keys), 0)::bigint, coalesce(sum(versions), 0)::bigint
             FROM vkv_counters",
            &[],
        )?;
        Ok(Totals {
            keys: row.try_get::<_, i64>(0)? as u64,
            versions: row.try_get::<_, i64>(1)? as u64,
        })
    }

    fn for_each(
        &mut self,
        visit: &mut dyn FnMut(Record) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        // bytea compares bytewise: the same order as SQLite's BINARY text.
        // No expiry tombstones before schema 6; versions numbered as the
        // migration to schema 5 numbers them before it.
        let expired = if self.schema >= 6 { "expired" } else { "false" };
        let dump = if self.schema >= 5 {
            format!(
                "DECLARE vkv_dump_heads NO SCROLL CURSOR FOR
                 SELECT key, latest, ts_ms, deleted, first_kept FROM vkv_keys
                 WHERE latest > 0 ORDER BY key;
             DECLARE vkv_dump_versions NO SCROLL CURSOR FOR
                 SELECT key, version, ts_ms, deleted, value, revision, seq, created, {expired}
                 FROM vkv_versions ORDER BY key, version;"
            )
        } else {
            OLD_DUMP.to_string()
        };
        self.client.batch_execute(&dump)?;
        let client = RefCell::new(&mut self.client);
        let heads = cursor(&client, "FETCH 1000 FROM vkv_dump_heads", |r| {
            Ok(KeyHead {
                key: key_text(r.try_get(0)?)?,
                latest: r.try_get::<_, i64>(1)? as u64,
                ts_ms: r.try_get(2)?,
                deleted: r.try_get(3)?,
                first_kept: r.try_get::<_, i64>(4)? as u64,
            })
        });
        let versions = cursor(&client, "FETCH 1000 FROM vkv_dump_versions", |r| {
            Ok(VersionRow {
                key: key_text(r.try_get(0)?)?,
                version: r.try_get::<_, i64>(1)? as u64,
                ts_ms: r.try_get(2)?,
                deleted: r.try_get(3)?,
                value: r.try_get(4)?,
                expired: r.try_get(8)?,
                revision: r.try_get::<_, i64>(5)?.max(0) as u64,
                seq: r.try_get::<_, i32>(6)?.max(0) as u64,
                created: r.try_get(7)?,
            })
        });
        merge_dump(heads, versions, visit)?;
        let purged = self.client.query(
            "SELECT key, purged_latest FROM vkv_keys
             WHERE latest = 0 AND purged_latest > 0 ORDER BY key",
            &[],
        )?;
        for r in purged {
            visit(Record::Purged {
                key: key_text(r.try_get(0)?)?,
                latest: r.try_get::<_, i64>(1)? as u64,
            })?;
        }
        if self.schema >= 6 {
            let leases = self.client.query(
                "SELECT id, ttl_ms, (extract(epoch FROM due) * 1000)::bigint - ttl_ms
                 FROM vkv_leases ORDER BY id",
                &[],
            )?;
            for r in leases {
                visit(Record::Lease(LeaseRow {
                    id: r.try_get::<_, i64>(0)? as u64,
                    ttl_ms: r.try_get(1)?,
                    granted_ms: r.try_get(2)?,
                }))?;
            }
            let deadlines = self.client.query(
                "SELECT key, version, (extract(epoch FROM due) * 1000)::bigint, lease
                 FROM vkv_deadlines ORDER BY key",
                &[],
            )?;
            for r in deadlines {
                let (due, lease): (Option<i64>, Option<i64>) = (r.try_get(2)?, r.try_get(3)?);
                visit(Record::Deadline(DeadlineRow {
                    key: key_text(r.try_get(0)?)?,
                    version: r.try_get::<_, i64>(1)? as u64,
                    deadline: match (due, lease) {
                        (Some(due), _) => Deadline::At(due),
                        (None, lease) => Deadline::Lease(lease.unwrap_or(0) as u64),
                    },
                }))?;
            }
        }
        let (current, compacted) = if self.schema >= 5 {
            for r in self.client.query(
                "SELECT revision, key, version, ts_ms, removed FROM vkv_purges ORDER BY revision",
                &[],
            )? {
                visit(Record::PurgeLog {
                    revision: r.try_get::<_, i64>(0)?.max(0) as u64,
                    key: key_text(r.try_get(1)?)?,
                    version: r.try_get::<_, i64>(2)?.max(0) as u64,
                    ts_ms: r.try_get(3)?,
                    removed: r.try_get::<_, i64>(4)?.max(0) as u64,
                })?;
            }
            let r = self.client.query_one(
                "SELECT value, compacted FROM vkv_revision WHERE id = 1",
                &[],
            )?;
            (r.try_get::<_, i64>(0)?, r.try_get::<_, i64>(1)?)
        } else {
            let r = self
                .client
                .query_one("SELECT count(*) FROM vkv_versions", &[])?;
            (r.try_get::<_, i64>(0)?, 0)
        };
        visit(Record::Revision {
            current: current.max(0) as u64,
            compacted: compacted.max(0) as u64,
        })?;
        Ok(())
    }
}

/// The dump's cursors on a schema older than 5: versions numbered in
/// commit order as the migration to schema 5 numbers them.
const OLD_DUMP: &str = "DECLARE vkv_dump_heads NO SCROLL CURSOR FOR
        SELECT key, latest, ts_ms, deleted, first_kept FROM vkv_keys
        WHERE latest > 0 ORDER BY key;
    DECLARE vkv_dump_versions NO SCROLL CURSOR FOR
        SELECT key, version, ts_ms, deleted, value,
            row_number() OVER (ORDER BY t, key, version), 0,
            (NOT deleted AND NOT coalesce(prev_version = version - 1 AND NOT prev_deleted, false)),
            false
        FROM (
            SELECT key, version, ts_ms, deleted, value,
                max(ts_ms) OVER (PARTITION BY key ORDER BY version) AS t,
                lag(version) OVER (PARTITION BY key ORDER BY version) AS prev_version,
                lag(deleted) OVER (PARTITION BY key ORDER BY version) AS prev_deleted
            FROM vkv_versions
        ) o
        ORDER BY key, version;";

/// The rows of a declared cursor, fetched a chunk at a time through the
/// shared client.
fn cursor<'a, T>(
    client: &'a RefCell<&mut Client>,
    fetch: &'static str,
    decode: impl Fn(&Row) -> Result<T, StoreError> + 'a,
) -> impl Iterator<Item = Result<T, StoreError>> + 'a {
    let mut buf: VecDeque<Row> = VecDeque::new();
    let mut done = false;
    std::iter::from_fn(move || {
        if buf.is_empty() && !done {
            match client.borrow_mut().query(fetch, &[]) {
                Ok(rows) => {
                    done = rows.len() < CHUNK;
                    buf.extend(rows);
                }
                Err(e) => {
                    done = true;
                    return Some(Err(e.into()));
                }
            }
        }
        buf.pop_front().map(|r| decode(&r))
    })
}

struct PgImport {
    client: Client,
    url: String,
    heads: Vec<KeyHead>,
    versions: Vec<VersionRow>,
    finished: bool,
}

/// Opens the database at the URL `location` for a load: migrates its
/// schema, begins the transaction and locks the tables against writers.
pub(crate) fn open_import(location: &Path) -> Result<Box<dyn Import>, OpenError> {
    let (mut client, url) = connect(location)?;
    schema::migrate(&mut client, &url)?;
    let pg = |e: postgres::Error| OpenError::Postgres {
        url: url.clone(),
        reason: describe(&e),
    };
    // vkv_replicas too: a replica starting meanwhile waits (its LISTEN
    // connection clears its row first) until the load is committed.
    client
        .batch_execute(
            "BEGIN;
             LOCK TABLE vkv_keys, vkv_versions, vkv_counters, vkv_purges, vkv_revision
                 IN EXCLUSIVE MODE;
             LOCK TABLE vkv_replicas IN EXCLUSIVE MODE;",
        )
        .map_err(pg)?;
    let replicas = serving_replicas(&mut client).map_err(pg)?;
    if !replicas.is_empty() {
        return Err(OpenError::Served { url, replicas });
    }
    Ok(Box::new(PgImport {
        client,
        url,
        heads: Vec::new(),
        versions: Vec::new(),
        finished: false,
    }))
}

/// The replicas that may serve this database from their caches, named:
/// every read lease held now, and every `LISTEN` connection of a vkv
/// (`application_name` `vkv-listen`, which `listen.rs` sets). A running
/// replica has one even without leases (it confirms reads by version
/// number only, which a copied store may repeat) or with its lease lapsed
/// (it serves its cache again once it renews). A replica with neither
/// empties its cache when its `LISTEN` connection comes back, before it
/// serves from it again.
fn serving_replicas(client: &mut Client) -> Result<Vec<String>, postgres::Error> {
    let mut named = Vec::new();
    for row in client.query(
        "SELECT id,
                to_char(lease_until AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')
         FROM vkv_replicas
         WHERE lease_until > clock_timestamp()
         ORDER BY id",
        &[],
    )? {
        let (id, until): (i64, String) = (row.get(0), row.get(1));
        named.push(format!("replica {id} holds a read lease until {until}"));
    }
    for row in client.query(
        "SELECT pid, coalesce(host(client_addr), 'a local socket'),
                to_char(backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')
         FROM pg_stat_activity
         WHERE datname = current_database() AND application_name = 'vkv-listen'
           AND pid <> pg_backend_pid()
         ORDER BY pid",
        &[],
    )? {
        let (pid, from, since): (i32, String, String) = (row.get(0), row.get(1), row.get(2));
        named.push(format!(
            "a vkv listening from {from} since {since} (server process {pid})"
        ));
    }
    Ok(named)
}

impl PgImport {
    fn flush(&mut self) -> Result<(), StoreError> {
        if !self.heads.is_empty() {
            let heads = std::mem::take(&mut self.heads);
            let keys: Vec<&[u8]> = heads.iter().map(|h| h.key.as_bytes()).collect();
            let latest = ints(heads.iter().map(|h| h.latest))?;
            let ts: Vec<i64> = heads.iter().map(|h| h.ts_ms).collect();
            let deleted: Vec<bool> = heads.iter().map(|h| h.deleted).collect();
            let first_kept = ints(heads.iter().map(|h| h.first_kept))?;
            self.client.execute(
                "INSERT INTO vkv_keys (key, latest, ts_ms, deleted, first_kept)
                 SELECT * FROM unnest($1::bytea[], $2::int8[], $3::int8[], $4::bool[], $5::int8[])",
                &[&keys, &latest, &ts, &deleted, &first_kept],
            )?;
        }
        if !self.versions.is_empty() {
            let rows = std::mem::take(&mut self.versions);
            let keys: Vec<&[u8]> = rows.iter().map(|v| v.key.as_bytes()).collect();
            let version = ints(rows.iter().map(|v| v.version))?;
            let ts: Vec<i64> = rows.iter().map(|v| v.ts_ms).collect();
            let values: Vec<&str> = rows.iter().map(|v| v.value.as_str()).collect();
            let deleted: Vec<bool> = rows.iter().map(|v| v.deleted).collect();
            let revision = ints(rows.iter().map(|v| v.revision))?;
            let seq: Vec<i32> = rows
                .iter()
                .map(|v| i32::try_from(v.seq).unwrap_or(i32::MAX))
                .collect();
            let created: Vec<bool> = rows.iter().map(|v| v.created).collect();
            let expired: Vec<bool> = rows.iter().map(|v| v.expired).collect();
            self.client.execute(
                "INSERT INTO vkv_versions (key, version, ts_ms, value, deleted, revision, seq,
                     created, expired)
                 SELECT * FROM unnest($1::bytea[], $2::int8[], $3::int8[], $4::text[], $5::bool[],
                     $6::int8[], $7::int4[], $8::bool[], $9::bool[])",
                &[
                    &keys, &version, &ts, &values, &deleted, &revision, &seq, &created, &expired,
                ],
            )?;
        }
        Ok(())
    }
}

fn ints(values: impl Iterator<Item = u64>) -> Result<Vec<i64>, StoreError> {
    values
        .map(|n| {
            i64::try_from(n)
                .map_err(|_| StoreError::Internal(format!("{n} does not fit in a bigint")))
        })
        .collect()
}

impl Import for PgImport {
    fn is_empty(&mut self) -> Result<bool, StoreError> {
        Ok(self
            .client
            .query_one(
                "SELECT NOT EXISTS (SELECT 1 FROM vkv_keys)
                     AND NOT EXISTS (SELECT 1 FROM vkv_versions)",
                &[],
            )?
            .try_get(0)?)
    }

    fn clear(&mut self) -> Result<(), StoreError> {
        self.client.batch_execute(
            "DELETE FROM vkv_versions; DELETE FROM vkv_keys; DELETE FROM vkv_purges;
             DELETE FROM vkv_deadlines; DELETE FROM vkv_leases;
             UPDATE vkv_counters SET keys = 0, versions = 0;
             UPDATE vkv_revision SET value = 0, compacted = 0;",
        )?;
        Ok(())
    }

    fn write(&mut self, record: &Record) -> Result<(), StoreError> {
        match record {
            Record::Head(h) => self.heads.push(h.clone()),
            Record::Version(v) => self.versions.push(v.clone()),
            Record::Deadline(d) => {
                let (due, lease) = match d.deadline {
                    Deadline::At(due) => (Some(due), None),
                    Deadline::Lease(id) => (None, Some(ints([id].into_iter())?[0])),
                };
                // After every key's records: its version row is flushed.
                self.flush()?;
                let version = ints([d.version].into_iter())?;
                self.client.execute(
                    "INSERT INTO vkv_deadlines (key, version, due, lease)
                     VALUES ($1, $2, to_timestamp($3::bigint / 1000.0), $4)",
                    &[&d.key.as_bytes(), &version[0], &due, &lease],
                )?;
            }
            Record::Lease(l) => {
                // Its id kept; its full TTL from the load, as after a restart.
                let id = ints([l.id].into_iter())?[0];
                self.client.execute(
                    "INSERT INTO vkv_leases (id, ttl_ms, due)
                     VALUES ($1, $2::bigint, clock_timestamp() + $2::bigint * interval '1 millisecond')",
                    &[&id, &l.ttl_ms],
                )?;
                self.client.execute(
                    "SELECT setval('vkv_leases_id_seq', greatest($1::bigint, \
                         (SELECT coalesce(max(id), 1) FROM vkv_leases)))",
                    &[&id],
                )?;
            }
            Record::Purged { key, latest } => {
                let latest = ints([*latest].into_iter())?;
                self.client.execute(
                    "INSERT INTO vkv_keys (key, latest, ts_ms, deleted, first_kept, purged_latest)
                     VALUES ($1, 0, 0, false, 1, $2)",
                    &[&key.as_bytes(), &latest[0]],
                )?;
            }
            Record::PurgeLog {
                revision,
                key,
                version,
                ts_ms,
                removed,
            } => {
                let n = ints([*revision, *version, *removed].into_iter())?;
                self.client.execute(
                    "INSERT INTO vkv_purges (revision, key, version, ts_ms, removed)
                     VALUES ($1, $2, $3, $4, $5)",
                    &[&n[0], &key.as_bytes(), &n[1], ts_ms, &n[2]],
                )?;
            }
            Record::Revision { current, compacted } => {
                let n = ints([*current, *compacted].into_iter())?;
                self.client.execute(
                    "UPDATE vkv_revision SET value = $1, compacted = $2 WHERE id = 1",
                    &[&n[0], &n[1]],
                )?;
            }
        }
        if self.heads.len() + self.versions.len() >= CHUNK {
            self.flush()?;
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>, expect: Totals) -> Result<Totals, StoreError> {
        self.flush()?;
        let row = self.client.query_one(
            "SELECT (SELECT count(*) FROM vkv_keys WHERE latest > 0),
                 (SELECT count(*) FROM vkv_versions)",
            &[],
        )?;
        let found = Totals {
            keys: row.try_get::<_, i64>(0)? as u64,
            versions: row.try_get::<_, i64>(1)? as u64,
        };
        if found != expect {
            return Err(StoreError::Internal(format!(
                "{} holds {} keys and {} versions after the load, expected {} and {}; \
                 nothing was committed",
                self.url, found.keys, found.versions, expect.keys, expect.versions
            )));
        }
        let totals = ints([found.keys, found.versions].into_iter())?;
        // The totals in shard 0, every other shard zero.
        self.client.execute(
            "UPDATE vkv_counters SET keys = CASE WHEN shard = 0 THEN $1::bigint ELSE 0 END,
                 versions = CASE WHEN shard = 0 THEN $2::bigint ELSE 0 END",
            &[&totals[0], &totals[1]],
        )?;
        self.client.batch_execute("COMMIT")?;
        self.finished = true;
        Ok(found)
    }
}

impl Drop for PgImport {
    fn drop(&mut self) {
        if !self.finished {
            let _ = self.client.batch_execute("ROLLBACK");
        }
    }
}
