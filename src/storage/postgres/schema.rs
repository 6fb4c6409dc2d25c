//! The PostgreSQL schema, created and migrated at start in one transaction
//! under an advisory lock, so that replicas starting at once against an
//! empty database do not race (the second waits, then finds it done).
//!
//! Schema (version 6), the SQLite one's counterpart:
//! - `vkv_versions(key, version, ts_ms, value, deleted)`, primary key
//!   `(key, version)`. Keys are `bytea`: PostgreSQL's `text` cannot hold a
//!   NUL character, which a key may contain, and `bytea` compares bytewise,
//!   the order `/keys` promises;
//! - `vkv_keys(key, latest, ts_ms, deleted, first_kept)`: the head of every
//!   key. Writers lock a key's row to number its versions. Version 2 adds
//!   `purged_latest`: a purged key keeps its row with `latest = 0` and its
//!   last version here, so the next put continues after it (readers only
//!   see rows with `latest > 0`). Version 3 adds `vkv_keys_live`, an index
//!   of the keys not deleted, for `/keys`;
//! - `vkv_counters(shard, keys, versions)`: totals in 64 rows; each replica
//!   adds to its own shard in its write transactions, and `/db/stats` sums
//!   them, so no single hot row serializes the writes of every replica;
//! - `vkv_replicas(id, lease_until, epoch)` (version 4): each replica's
//!   read lease, until when on the primary's clock, and which lease
//!   (`epoch` changes when a lease is taken anew, not when extended;
//!   `lease.rs`); `vkv_acks(holder, origin, seq)`: the last write group
//!   of `origin` each holder dropped from its cache;
//! - version 5, the change feed: `vkv_versions` gets `revision` (the
//!   store's revision of its write), `seq` (its place within a `/batch`)
//!   and `created`, indexed by `(revision, seq)`; `vkv_purges(revision,
//!   key, version, ts_ms, removed)` records each purge as a change (and the
//!   highest revision it removed); `vkv_revision`, one row: `value` (the
//!   last revision given) and `compacted` (the highest revision retention
//!   removed). Writers update it in
//!   their transaction, so its row lock orders commits across replicas
//!   (`apply.rs`). Existing versions are numbered in commit order;
//! - `vkv_deadlines(key, version, due, lease)` (version 6): the deadline
//!   of each key that expires, its own (`due`, on the database's clock,
//!   `clock_timestamp()`) or its lease's, and the version that set it;
//!   `vkv_leases(id, ttl_ms, due)`: leases, their deadline on the same
//!   clock (a keepalive through any replica moves it);
//!   `vkv_versions.expired` marks the tombstone of an expiry. Every replica
//!   polls the deadlines that passed; the one whose writer locks the key's
//!   head (or the lease's row) first expires it, the others then find
//!   nothing left;
//! - `vkv_meta(id, schema_version)`: one row.

use postgres::Client;

use crate::error::OpenError;

/// The schema version this build writes.
pub const SCHEMA_VERSION: i32 = 6;

/// The oldest PostgreSQL accepted (`server_version_num`).
pub const MIN_SERVER_VERSION: i32 = 120_000;

/// Shards of the counters table.
pub const COUNTER_SHARDS: i32 = 64;

/// The advisory lock key migrations take ("vkv1").
const MIGRATION_LOCK: i64 = 0x766b_7631;

const MIGRATIONS: &[&str] = &[
    // 0 -> 1
    "CREATE TABLE vkv_versions (
        key bytea NOT NULL,
        version bigint NOT NULL,
        ts_ms bigint NOT NULL,
        value text NOT NULL,
        deleted boolean NOT NULL DEFAULT false,
        PRIMARY KEY (key, version)
    );
    CREATE TABLE vkv_keys (
        key bytea PRIMARY KEY,
        latest bigint NOT NULL,
        ts_ms bigint NOT NULL,
        deleted boolean NOT NULL DEFAULT false,
        first_kept bigint NOT NULL DEFAULT 1
    );
    CREATE TABLE vkv_counters (
        shard integer PRIMARY KEY,
        keys bigint NOT NULL DEFAULT 0,
        versions bigint NOT NULL DEFAULT 0
    );
    INSERT INTO vkv_counters (shard) SELECT generate_series(0, 63);",
    // 1 -> 2: a purged key keeps its head row (latest = 0) with the last
    // version it had, so that its numbering continues after the purge.
    "ALTER TABLE vkv_keys ADD COLUMN purged_latest bigint NOT NULL DEFAULT 0;",
    // 2 -> 3: `/keys` walks an index of the keys not deleted, so deleted
    // keys are never visited. Its predicate is on `deleted` only: a put
    // changes `latest`, and a column in an index (or its predicate) would
    // make every head update a non-HOT one.
    "CREATE INDEX vkv_keys_live ON vkv_keys (key) WHERE NOT deleted;",
    // 3 -> 4: read leases (`lease.rs`).
    "CREATE TABLE vkv_replicas (
        id bigint PRIMARY KEY,
        lease_until timestamptz NOT NULL,
        epoch bigint NOT NULL
    );
    CREATE TABLE vkv_acks (
        holder bigint NOT NULL,
        origin bigint NOT NULL,
        seq bigint NOT NULL,
        PRIMARY KEY (holder, origin)
    );",
    // 4 -> 5: the store's revision (the change feed).
    "ALTER TABLE vkv_versions ADD COLUMN revision bigint NOT NULL DEFAULT 0,
        ADD COLUMN seq integer NOT NULL DEFAULT 0,
        ADD COLUMN created boolean NOT NULL DEFAULT false;
    UPDATE vkv_versions v SET revision = n.revision, created = n.created FROM (
        SELECT key, version, row_number() OVER (ORDER BY t, key, version) AS revision,
            (NOT deleted AND NOT coalesce(prev_version = version - 1 AND NOT prev_deleted, false))
                AS created
        FROM (
            SELECT key, version, deleted,
                max(ts_ms) OVER (PARTITION BY key ORDER BY version) AS t,
                lag(version) OVER (PARTITION BY key ORDER BY version) AS prev_version,
                lag(deleted) OVER (PARTITION BY key ORDER BY version) AS prev_deleted
            FROM vkv_versions
        ) o
    ) n WHERE v.key = n.key AND v.version = n.version;
    CREATE UNIQUE INDEX vkv_versions_revision ON vkv_versions (revision, seq);
    CREATE TABLE vkv_purges (
        revision bigint PRIMARY KEY,
        key bytea NOT NULL,
        version bigint NOT NULL,
        ts_ms bigint NOT NULL,
        removed bigint NOT NULL
    );
    CREATE INDEX vkv_purges_key ON vkv_purges (key, removed);
    CREATE TABLE vkv_revision (
        id integer PRIMARY KEY CHECK (id = 1),
        value bigint NOT NULL,
        compacted bigint NOT NULL
    );
    INSERT INTO vkv_revision (id, value, compacted)
        SELECT 1, coalesce(max(revision), 0), 0 FROM vkv_versions;",
    // 5 -> 6: keys that expire.
    "ALTER TABLE vkv_versions ADD COLUMN expired boolean NOT NULL DEFAULT false;
    CREATE TABLE vkv_leases (
        id bigserial PRIMARY KEY,
        ttl_ms bigint NOT NULL,
        due timestamptz NOT NULL
    );
    CREATE INDEX vkv_leases_due ON vkv_leases (due);
    CREATE TABLE vkv_deadlines (
        key bytea PRIMARY KEY,
        version bigint NOT NULL,
        due timestamptz,
        lease bigint,
        CHECK ((due IS NULL) <> (lease IS NULL))
    );
    CREATE INDEX vkv_deadlines_due ON vkv_deadlines (due) WHERE due IS NOT NULL;
    CREATE INDEX vkv_deadlines_lease ON vkv_deadlines (lease) WHERE lease IS NOT NULL;",
];

/// Refuses a server older than [`MIN_SERVER_VERSION`] (`server` is its
/// `server_version_num`: 150004 is 15.4, 110022 is 11.22, 90624 9.6.24).
fn check_server_version(server: i32) -> Result<(), String> {
    if server < MIN_SERVER_VERSION {
        let (major, rest) = (server / 10_000, server % 10_000);
        // Before 10 the number was major, minor, patch: 90624 is 9.6.24.
        let version = if major >= 10 {
            format!("{major}.{rest}")
        } else {
            format!("{major}.{}.{}", rest / 100, rest % 100)
        };
        return Err(format!(
            "PostgreSQL {version} is too old; vkv needs 12 or newer"
        ));
    }
    Ok(())
}

/// Checks the server and brings the schema to [`SCHEMA_VERSION`]; a newer
/// schema is refused.
pub fn migrate(client: &mut Client, url: &str) -> Result<(), OpenError> {
    let fail = |reason: String| OpenError::Postgres {
        url: url.to_string(),
        reason,
    };
    let pg = |e: postgres::Error| fail(super::target::describe(&e));
    let server: i32 = client
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .map_err(pg)?
        .get(0);
    check_server_version(server).map_err(fail)?;
    let mut tx = client.transaction().map_err(pg)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .map_err(pg)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS vkv_meta (
            id integer PRIMARY KEY CHECK (id = 1),
            schema_version integer NOT NULL
        );
        INSERT INTO vkv_meta (id, schema_version) VALUES (1, 0) ON CONFLICT (id) DO NOTHING;",
    )
    .map_err(pg)?;
    let found: i32 = tx
        .query_one("SELECT schema_version FROM vkv_meta WHERE id = 1", &[])
        .map_err(pg)?
        .get(0);
    if found > SCHEMA_VERSION {
        return Err(fail(format!(
            "the database has vkv schema version {found}, newer than this vkv supports \
             ({SCHEMA_VERSION}); upgrade vkv"
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tx.batch_execute(sql).map_err(pg)?;
        let to = i as i32 + 1;
        tx.execute(
            "UPDATE vkv_meta SET schema_version = $1 WHERE id = 1",
            &[&to],
        )
        .map_err(pg)?;
    }
    tx.commit().map_err(pg)?;
    match found {
        0 => log::info!("created the PostgreSQL schema (vkv schema version {SCHEMA_VERSION})"),
        f if f < SCHEMA_VERSION => {
            log::info!("PostgreSQL schema upgraded from vkv schema version {f} to {SCHEMA_VERSION}")
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_older_than_12_are_refused_by_name() {
        assert_eq!(
            check_server_version(110_022),
            Err("PostgreSQL 11.22 is too old; vkv needs 12 or newer".to_string())
        );
        let old = check_server_version(90_624).map_err(|e| e.contains("PostgreSQL 9.6.24 "));
        assert_eq!(old, Err(true));
        assert_eq!(check_server_version(120_000), Ok(()));
        assert_eq!(check_server_version(150_004), Ok(()));
    }
}
