//! The PostgreSQL write side: the writer thread's connection, and how one
//! group of operations becomes one transaction, whatever other replicas
//! write at the same time.
//!
//! One transaction, two round trips whatever the group's size (statements
//! sent together through [`PgConn::pipeline`]; a group that touches
//! leases locks them in a round trip of its own first):
//! 1. `BEGIN`, and lock the head row of
//!    every key the group touches, in key order (one `INSERT ... ON
//!    CONFLICT DO UPDATE ... RETURNING`, which also creates a placeholder
//!    head, `latest = 0`, for a key that has none, so a new key is locked
//!    too). Writers on other replicas touching the same keys wait here; key
//!    order means they cannot deadlock each other (and a deadlock or
//!    serialization failure the server reports anyway is retried);
//! 2. with the heads locked, every operation is decided here, in order, in
//!    memory: conditions, version numbers (head + 1: dense per key),
//!    tombstones, retention, a batch all or nothing; then one statement
//!    writes it all (new version rows, heads, rows retention drops, this
//!    replica's counters shard, placeholders nobody wrote, and a `NOTIFY`
//!    per key for the watchers of other replicas), sent together with the
//!    deadlines of puts with a TTL, the lease lock taken shared, the
//!    group's marker, the read of the lease holders and `COMMIT`.
//!
//! Revisions: each operation that writes takes the store's next revision;
//! the first statement that writes versions (or a purge) adds the number
//! the transaction has used so far to the one row of `vkv_revision`, and
//! holds that row's lock until `COMMIT`. A transaction of another replica
//! waits on it there, after taking its own head locks (so no deadlock),
//! and numbers its changes only after this one committed: revisions follow
//! commit order across replicas, and a reader that sees revision R sees
//! every change up to R. The statements behind it, to the `COMMIT`, were
//! sent with it: the server releases the row as soon as it has run them,
//! however long this process then waits for a CPU (which, on a saturated
//! host, held every replica's writes for seconds when the `COMMIT` was a
//! round trip of its own). Commits already serialize on PostgreSQL's
//! `NOTIFY` queue lock.
//! Revisions are decided in memory as offsets (1, 2, ...) and made absolute
//! once the counter answers.
//!
//! A purge is a statement of its own, staged after one that writes what
//! was decided before it, and sent with the rest. It keeps the key's head
//! row, with no version and `purged_latest` = the last version, so that the
//! next put continues the numbering (as in SQLite mode; readers filter
//! `latest > 0`). Every statement that writes is sent with the `COMMIT`: no
//! round trip of this process ever separates the revision row's update
//! from the `COMMIT`.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use postgres::types::ToSql;
use postgres::{Row, SimpleQueryMessage};
use serde_json::value::RawValue;

use super::client::{Answer, ConnectError};
use super::conn::{PgConn, Piped, Role, is_connection_error, is_retryable};
use super::deadlines::{self, Locked};
use super::dues::LeaseDues;
use super::lease::{LEASE_CHANNEL, LEASE_LOCK, Leases, Message};
use super::rows::db_int;
use crate::error::StoreError;
use crate::rules;
use crate::storage::seam::{Committer, Done, Due, Lifetime, Op, Outcomes, PutItem, Written};
use crate::version::{Deadline, Versioned, now_ms};

/// The channel replicas `NOTIFY` on.
pub(crate) const CHANNEL: &str = "vkv";

/// Attempts of one group when the server reports a deadlock or a
/// serialization failure.
const ATTEMPTS: u32 = 8;

/// The writer thread's connection to PostgreSQL, reconnected on demand.
pub(crate) struct PgCommitter {
    pub target: super::target::Target,
    pub conn: Option<PgConn>,
    /// This replica's row of the counters table.
    pub shard: i32,
    /// Keep at most this many versions per key (0: all).
    pub max_versions: u64,
    /// Set when the connection was lost while `COMMIT` was in flight.
    pub outcome_unknown: bool,
    /// Tells the `LISTEN` thread to stop.
    pub stop: Arc<std::sync::atomic::AtomicBool>,
    /// Disconnects when the `LISTEN` thread has ended.
    pub listening: Option<crossbeam_channel::Receiver<()>>,
    /// The read leases of every replica that this replica's writes wait
    /// for (`lease.rs`).
    pub leases: Arc<Leases>,
    /// The last write group this replica numbered.
    pub seq: u64,
    /// The committed groups whose answers wait for lease holders, oldest
    /// first (see [`Committer::unsettled`]).
    pub awaiting: VecDeque<Awaiting>,
    /// Answers are held until then after a reconnection to another
    /// server (see [`PgCommitter::connection`]).
    pub fence: Option<std::time::Instant>,
    /// Which server the writer was last connected to ([`server_started`]).
    pub server: Option<String>,
    /// Whose reads yield their connection slots, and when (`slots.rs`).
    pub slots: Arc<super::slots::Slots>,
    /// The read pool, emptied when this writer finds no free slot.
    pub pool: r2d2::Pool<super::conn::Manager>,
    /// The deadlines of leases as this replica knows them: what a
    /// committed group granted, kept alive, locked or revoked.
    pub dues: Arc<LeaseDues>,
}

/// A replica holding a read lease, as a write read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Holder {
    id: i64,
    /// Which lease: a lease taken anew (not extended) has another, and its
    /// holder saw every commit before it (`listen.rs`).
    epoch: i64,
}

/// A committed group whose answers wait: the lease holders, as its
/// transaction read them, that have not acknowledged it yet.
pub(crate) struct Awaiting {
    seq: u64,
    holders: Vec<Holder>,
}

/// Why an attempt failed.
enum TxError {
    Pg(postgres::Error),
    /// The connection failed while `COMMIT` was in flight.
    AtCommit(postgres::Error),
    /// A pipeline answered fewer statements than it sent (a bug): the
    /// outcome is unknown.
    Unanswered,
}

impl From<postgres::Error> for TxError {
    fn from(e: postgres::Error) -> Self {
        TxError::Pg(e)
    }
}

impl PgCommitter {
    fn connection(&mut self) -> Result<&mut PgConn, StoreError> {
        if self.conn.as_ref().is_none_or(|c| c.client.is_closed()) {
            self.conn = None;
            // Any failure to connect (refused, down, in recovery, not
            // accepting connections) is the database being unavailable.
            let connect = || {
                self.target
                    .open()
                    .and_then(|c| PgConn::open(c, Role::Writer).map_err(ConnectError::Pg))
            };
            // No free slot: this replica's reads and the others' yield
            // theirs (`slots.rs`), and this writer tries again.
            let pool = &self.pool;
            let me = self.leases.me;
            let opened = self.slots.connect(
                connect,
                || {
                    if let Some(mut c) = pool.try_get() {
                        let ask = Message::Yield { origin: me }.notify();
                        let _ = c.client.batch_execute(&ask);
                    }
                },
                || drop(std::iter::from_fn(|| pool.try_get()).collect::<Vec<_>>()),
            );
            let mut conn = opened.map_err(|e| {
                StoreError::Unavailable(format!("cannot connect to PostgreSQL: {e}"))
            })?;
            // Maybe a promoted standby, or the primary restarted after a
            // crash, which may have lost the last renewals of leases (they
            // commit without waiting for the disk or a standby): none of
            // those outlives a lease from now. The same server, still up
            // (the connection was ended, or cut), lost none: a renewal is
            // visible once committed.
            let server = server_started(&mut conn).ok();
            prepare_writer(&mut conn);
            if server.is_none() || server != self.server {
                self.fence = Some(std::time::Instant::now() + self.leases.lease);
            }
            self.server = server;
            self.conn = Some(conn);
        }
        self.conn
            .as_mut()
            .ok_or_else(|| StoreError::Internal("no connection".into()))
    }

    /// Asks once (one round trip) which holders of the groups in
    /// `awaiting` still hold the lease they held at that group's commit
    /// (same epoch: a lease taken anew after the commit saw the group) and
    /// have not acknowledged it in `vkv_acks`, and answers the groups left
    /// with none. An acknowledgement takes a holder's `LISTEN` thread a few
    /// hundred microseconds; a holder that died is waited for until its
    /// lease runs out (an extension is waited for again). While the
    /// database cannot be asked, it waits a lease and asks again (the stall
    /// watchdog answers the callers).
    fn ask_holders(&mut self) {
        let me = self.leases.me;
        let mut ids: Vec<i64> = self
            .awaiting
            .iter()
            .flat_map(|g| g.holders.iter().map(|h| h.id))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        if ids.is_empty() {
            return;
        }
        match self.connection().and_then(|c| leases_now(c, &ids, me)) {
            Ok(now) => {
                for group in &mut self.awaiting {
                    let seq = group.seq;
                    group
                        .holders
                        .retain(|h| now.iter().any(|(n, acked)| n == h && *acked < seq));
                }
            }
            // The connection was ended (by PostgreSQL, an operator, a
            // restart): the next turn asks again on a new one.
            Err(_) if self.conn.as_ref().is_some_and(|c| c.client.is_closed()) => {
                self.conn = None;
            }
            Err(e) => {
                log::warn!("cannot read the read leases ({e}); waiting a lease");
                std::thread::sleep(self.leases.lease);
            }
        }
    }

    /// Drops the oldest groups that wait for no holder any more, unless
    /// answers are held after a reconnection.
    fn release(&mut self) {
        if let Some(fence) = self.fence {
            if std::time::Instant::now() < fence {
                return;
            }
            self.fence = None;
        }
        while self.awaiting.front().is_some_and(|g| g.holders.is_empty()) {
            self.awaiting.pop_front();
        }
    }
}

/// Prepares the statements of a write transaction on the writer's new
/// connection `conn` (see [`PREPARED`]); one that fails is prepared when
/// first used.
pub(crate) fn prepare_writer(conn: &mut PgConn) {
    for sql in PREPARED {
        let _ = conn.statement(sql);
    }
}

/// When the server `conn` is connected to started: another server (a
/// promoted standby) or the same one restarted answers another time.
pub(crate) fn server_started(conn: &mut PgConn) -> Result<String, postgres::Error> {
    let rows = conn.simple("SELECT pg_postmaster_start_time()::text")?;
    Ok(rows
        .iter()
        .find_map(|m| match m {
            postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        })
        .unwrap_or_default())
}

/// The leases of `ids` that hold now, each with the last write group of
/// `origin` it acknowledged.
fn leases_now(
    conn: &mut PgConn,
    ids: &[i64],
    origin: i64,
) -> Result<Vec<(Holder, u64)>, StoreError> {
    let rows = conn.query(
        "SELECT r.id, r.epoch, coalesce(a.seq, 0)
         FROM vkv_replicas r LEFT JOIN vkv_acks a ON a.holder = r.id AND a.origin = $2
         WHERE r.lease_until > clock_timestamp() AND r.id = ANY($1)",
        &[&ids, &origin],
    )?;
    rows.iter()
        .map(|r| {
            let holder = Holder {
                id: r.try_get(0)?,
                epoch: r.try_get(1)?,
            };
            Ok((holder, r.try_get::<_, i64>(2)?.max(0) as u64))
        })
        .collect()
}

impl Committer for PgCommitter {
    fn commit(&mut self, ops: &[&Op]) -> Result<Outcomes, StoreError> {
        self.outcome_unknown = false;
        let (shard, max_versions) = (self.shard, self.max_versions);
        let (mut attempt, mut reconnected) = (0, false);
        loop {
            attempt += 1;
            self.seq += 1;
            let group = (self.leases.me, self.seq);
            let conn = self.connection()?;
            let result = transaction(conn, ops, shard, max_versions, group);
            let e = match result {
                Ok((outcomes, holders, leases)) => {
                    leases.learn_into(&self.dues, &outcomes);
                    // Answered only once no holder of a read lease can
                    // still serve what this group replaced.
                    self.awaiting.push_back(Awaiting {
                        seq: self.seq,
                        holders,
                    });
                    self.release();
                    return Ok(outcomes);
                }
                Err(TxError::AtCommit(e)) => {
                    self.outcome_unknown = true;
                    e
                }
                Err(TxError::Pg(e)) => {
                    // Leave the connection usable for the next attempt.
                    if !conn.client.is_closed() {
                        let _ = conn.client.batch_execute("ROLLBACK");
                    }
                    e
                }
                Err(TxError::Unanswered) => {
                    self.outcome_unknown = true;
                    self.conn = None;
                    return Err(StoreError::OutcomeUnknown(
                        "the connection to PostgreSQL answered fewer statements than sent: \
                         the outcome of this write is unknown; read the key before writing \
                         it again"
                            .into(),
                    ));
                }
            };
            if self.conn.as_ref().is_some_and(|c| c.client.is_closed()) {
                self.conn = None;
            }
            if self.outcome_unknown {
                return Err(StoreError::OutcomeUnknown(format!(
                    "the connection to PostgreSQL failed during COMMIT ({}): the outcome of \
                     this write is unknown; read the key before writing it again",
                    super::target::describe(&e)
                )));
            }
            // The connection died before `COMMIT` was sent (one the server
            // ended while it sat idle: a restart, a failover,
            // `pg_terminate_backend`): nothing of this attempt committed, so
            // it runs again on a new connection, once. (A failure during
            // `COMMIT` returned above: its outcome is unknown.)
            if is_connection_error(&e) && !reconnected {
                log::info!(
                    "write transaction retried on a new connection ({})",
                    super::target::describe(&e)
                );
                self.conn = None;
                reconnected = true;
                continue;
            }
            if is_retryable(&e) && attempt < ATTEMPTS {
                log::debug!("write transaction retried ({e})");
                std::thread::sleep(Duration::from_millis(u64::from(attempt)));
                continue;
            }
            return Err(e.into());
        }
    }

    fn may_retry_alone(&self) -> bool {
        !self.outcome_unknown
    }

    fn unsettled(&self) -> usize {
        self.awaiting.len()
    }

    fn settle(&mut self) {
        self.ask_holders();
        self.release();
    }

    /// Stops the `LISTEN` thread and waits (boundedly) for it to remove
    /// this replica's lease row, so that other replicas' writers do not
    /// wait out a lease that no process holds any more.
    fn close(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        if let Some(listening) = self.listening.take() {
            let _ = listening.recv_timeout(LISTENER_STOP);
        }
    }
}

/// How long a stop waits for the `LISTEN` thread: a tick of its loop and
/// the round trip that removes the lease row.
const LISTENER_STOP: std::time::Duration = std::time::Duration::from_secs(2);

/// A key's head as this transaction sees it (locked).
#[derive(Clone)]
struct Head {
    latest: u64,
    ts_ms: i64,
    deleted: bool,
    first_kept: u64,
    /// `first_kept` as stored: rows below a higher one are to be removed.
    stored_first_kept: u64,
    /// A key with no version: the last version it had before a purge (0:
    /// never purged). Its numbering continues after it, so that no ETag or
    /// `if_version` from before the purge matches after it.
    purged: u64,
    /// Changed since it was locked (or last written).
    dirty: bool,
}

/// A version row to insert.
struct NewRow<'a> {
    key: &'a str,
    version: u64,
    value: &'a str,
    deleted: bool,
    /// Its revision as an offset within the transaction (1: the first).
    rel: u64,
    /// Its place in its batch.
    seq: i32,
    created: bool,
    /// The tombstone of an expiry.
    expired: bool,
}

/// What the group has decided so far and not yet written.
struct Stage<'a> {
    heads: HashMap<&'a str, Head>,
    rows: Vec<NewRow<'a>>,
    keys_delta: i64,
    /// Keys to `NOTIFY` about.
    notify: BTreeSet<&'a str>,
    /// Puts with a TTL or a lease: key, version, TTL in milliseconds or
    /// lease. Each sets the key's deadline at the flush (on the database's
    /// clock) if it is still the key's latest then.
    ttls: Vec<(&'a str, u64, Option<i64>, Option<i64>)>,
    /// The leases locked by this transaction that a put may attach a key
    /// to: they exist and have not run out.
    live_leases: BTreeSet<i64>,
    /// Leases revoked by this transaction.
    revoked: BTreeSet<i64>,
    ts: i64,
    max_versions: u64,
    /// Revision offsets used by the operations decided so far, and those
    /// reserved in `vkv_revision` so far.
    rels: u64,
    reserved: u64,
    /// The counter's value before this transaction's first reservation.
    base: Option<u64>,
    /// The deadline each key got from this transaction, and the version
    /// that set it.
    deadlines: HashMap<&'a str, (u64, Deadline)>,
    /// The write statements decided, in order, to be sent with the
    /// `COMMIT` ([`flush_and_commit`]).
    pending: Vec<Pending<'a>>,
}

/// What a committed group tells of leases' deadlines.
struct LeaseNews {
    /// Leases it locked, live, and their deadlines then.
    locked: Vec<(u64, i64)>,
    /// Leases it revoked.
    revoked: Vec<u64>,
}

impl LeaseNews {
    /// Learns them into `dues`, with the leases `outcomes` granted or kept
    /// alive.
    fn learn_into(self, dues: &LeaseDues, outcomes: &Outcomes) {
        for (id, due) in self.locked {
            dues.learn(id, due);
        }
        for done in outcomes.iter().flatten() {
            match done {
                Done::Granted(row) => dues.learn(row.id, row.granted_ms.saturating_add(row.ttl_ms)),
                Done::Kept(state) => dues.learn(state.id, state.due_ms),
                _ => {}
            }
        }
        for id in self.revoked {
            dues.forget(id);
        }
    }
}

/// One attempt at the group `ops`, numbered `group` (this replica's id,
/// sequence number) for the read leases; its outcomes (each version with
/// the deadline it set), the other replicas that held a read lease when it
/// committed (none when it wrote no key), and what it tells of leases.
fn transaction(
    conn: &mut PgConn,
    ops: &[&Op],
    shard: i32,
    max_versions: u64,
    group: (i64, u64),
) -> Result<(Outcomes, Vec<Holder>, LeaseNews), TxError> {
    let mut keys: BTreeSet<&str> = BTreeSet::new();
    let (mut lease_ids, mut revoked) = (BTreeSet::new(), Vec::new());
    let lease_of = |item: &PutItem| match item.lifetime {
        Lifetime::Lease(id) => Some(db_int(id)),
        _ => None,
    };
    for op in ops {
        match op {
            Op::Put(item) => {
                keys.insert(&item.key);
                lease_ids.extend(lease_of(item));
            }
            Op::Batch(items) => {
                keys.extend(items.iter().map(|i| i.key.as_str()));
                lease_ids.extend(items.iter().filter_map(lease_of));
            }
            Op::Delete { key, .. } | Op::Purge { key, .. } => {
                keys.insert(key);
            }
            Op::Expire(due) => keys.extend(due.iter().map(|d| d.key.as_str())),
            Op::Revoke { id, .. } => revoked.push(db_int(*id)),
            Op::Keepalive { id } => {
                lease_ids.insert(db_int(*id));
            }
            Op::Probe | Op::Grant { .. } => {}
        }
    }
    lease_ids.extend(revoked.iter().copied());
    let mut begin = "BEGIN".to_string();
    // Leases before heads (see `deadlines.rs`); a revoke adds the lease's
    // keys. Without leases, `BEGIN` goes with the head locks, in one round
    // trip.
    let locked = if lease_ids.is_empty() {
        Locked::default()
    } else {
        conn.client.batch_execute(&begin)?;
        let ids: Vec<i64> = lease_ids.into_iter().collect();
        let locked = deadlines::lock(conn, &ids, &revoked)?;
        begin.clear();
        locked
    };
    keys.extend(locked.keys.values().flatten().map(String::as_str));
    let heads = begin_and_lock_heads(conn, &begin, &keys)?;
    let mut stage = Stage {
        heads,
        rows: Vec::new(),
        keys_delta: 0,
        notify: BTreeSet::new(),
        ttls: Vec::new(),
        live_leases: locked
            .due
            .iter()
            .filter(|(_, due)| !**due)
            .map(|(id, _)| *id)
            .collect(),
        revoked: BTreeSet::new(),
        ts: now_ms(),
        max_versions,
        rels: 0,
        reserved: 0,
        pending: Vec::new(),
        base: None,
        deadlines: HashMap::new(),
    };
    let mut outcomes = Vec::with_capacity(ops.len());
    for &op in ops {
        let rel = stage.rels + 1;
        let outcome = match op {
            Op::Put(item) => stage.put(item, rel, 0).map(|v| Done::Written(vec![v])),
            Op::Batch(items) => stage.batch(items, rel),
            Op::Delete { key, expect } => stage.delete(key, *expect, rel),
            Op::Purge { key, expect } => {
                match stage.state(key).and_then(|h| rules::purge(key, *expect, h)) {
                    Ok(last) => {
                        // What is staged before it is written first; the
                        // versions it removed are counted once it ran.
                        stage.stage_flush(shard, false);
                        stage.pending.push(Pending::Purge(PurgeArgs {
                            key: key.as_bytes(),
                            shard,
                            last: db_int(last),
                            ts: stage.ts,
                            rel,
                            outcome: outcomes.len(),
                        }));
                        stage.reserved += 1;
                        stage.heads.insert(key, Head::purged(last));
                        stage.notify.insert(key);
                        Ok(Done::Purged {
                            key: key.clone(),
                            versions: 0,
                            revision: rel,
                        })
                    }
                    Err(e) => Err(e),
                }
            }
            Op::Probe => Ok(Done::Written(Vec::new())),
            Op::Expire(due) => expire(conn, &mut stage, due, rel).map_err(TxError::Pg)?,
            Op::Grant { ttl_ms } => match deadlines::grant(conn, *ttl_ms)? {
                Some(row) => Ok(Done::Granted(row)),
                None => Err(StoreError::Internal("a grant returned no lease".into())),
            },
            Op::Keepalive { id } => match deadlines::keepalive(conn, db_int(*id))? {
                Some(state) => Ok(Done::Kept(state)),
                None => Err(StoreError::LeaseNotFound(*id)),
            },
            Op::Revoke { id, if_due } => revoke(conn, &mut stage, &locked, *id, *if_due, rel)?,
        };
        // Only writes of versions or purges are changes: a probe, a lease
        // granted or kept alive, or expiries that found nothing due take no
        // revision.
        let changed = match &outcome {
            Ok(Done::Written(w)) => !w.is_empty(),
            Ok(Done::Purged { .. }) => true,
            _ => false,
        };
        if changed {
            stage.rels = rel;
        }
        outcomes.push(outcome);
    }
    // Other replicas learn the new deadlines of leases kept alive.
    let kept: String = outcomes
        .iter()
        .flatten()
        .filter_map(|done| match done {
            Done::Kept(state) => Some(format!(
                "{};",
                Message::Kept {
                    id: db_int(state.id),
                    due_ms: state.due_ms,
                }
                .notify()
            )),
            _ => None,
        })
        .collect();
    // A group that wrote keys commits with its marker after the keys'
    // notifications, and reads who held a read lease, under the lease lock
    // taken shared: no lease is granted between this read and the commit.
    // Taken here, in the statements the server runs to the end without
    // this process, and not at `BEGIN`: a replica frozen between its round
    // trips would hold it, and every replica's renewal would queue for it
    // exclusive, and every replica's writes behind the renewal.
    let tail = if stage.notify.is_empty() {
        format!("{kept} COMMIT")
    } else {
        let (origin, seq) = group;
        let marker = Message::Group {
            origin,
            seq,
            keys: stage.notify.len(),
        }
        .payload();
        format!(
            "{kept} SELECT pg_advisory_xact_lock_shared({LEASE_LOCK});
             SELECT pg_notify('{LEASE_CHANNEL}', '{marker}');
             SELECT id, epoch FROM vkv_replicas
                 WHERE lease_until > clock_timestamp() AND id <> {origin};
             COMMIT"
        )
    };
    let replies = flush_and_commit(conn, &mut stage, &mut outcomes, shard, &tail)?;
    let number = |row: &postgres::SimpleQueryRow, i| row.get(i).and_then(|v| v.parse().ok());
    let holders = replies
        .iter()
        .filter_map(|reply| match reply {
            SimpleQueryMessage::Row(row) if row.len() == 2 => Some(Holder {
                id: number(row, 0)?,
                epoch: number(row, 1)?,
            }),
            _ => None,
        })
        .collect();
    // Offsets to revisions, now that the counter answered; each version
    // with the deadline it set (cached with it: a GET shows it without a
    // query).
    let base = stage.base.unwrap_or(0);
    for done in outcomes.iter_mut().flatten() {
        match done {
            Done::Written(written) => {
                for w in written {
                    let set = stage.deadlines.get(w.version.key.as_str());
                    let deadline = set
                        .filter(|(version, _)| *version == w.version.version)
                        .map(|(_, d)| *d);
                    let v = Arc::make_mut(&mut w.version);
                    v.revision += base;
                    v.deadline = deadline;
                }
            }
            Done::Purged { revision, .. } => *revision += base,
            _ => {}
        }
    }
    let news = LeaseNews {
        locked: locked
            .due_ms
            .iter()
            .filter(|(id, _)| stage.live_leases.contains(id))
            .map(|(id, due)| (*id as u64, *due))
            .collect(),
        revoked: stage.revoked.iter().map(|id| *id as u64).collect(),
    };
    Ok((outcomes, holders, news))
}

/// Locks (creating placeholders for) the head rows of the keys `$1`, in
/// order.
const LOCK_HEADS: &str = "INSERT INTO vkv_keys (key, latest, ts_ms)
     SELECT k, 0, 0 FROM unnest($1::bytea[]) AS k ORDER BY k
     ON CONFLICT (key) DO UPDATE SET latest = vkv_keys.latest
     RETURNING key, latest, ts_ms, deleted, first_kept, purged_latest";

/// The statements of a write transaction, prepared when the connection
/// opens: prepared inside a transaction, each would cost a round trip
/// there, with the head locks held.
const PREPARED: [&str; 4] = [LOCK_HEADS, FLUSH, SET_DEADLINES, PURGE];

/// Sends `begin` (statements without parameters; none if empty) and locks
/// (creating placeholders for) the head rows of `keys`, in order, in one
/// round trip. A failure of `begin` fails the locking too: it runs in the
/// transaction `begin` opened, aborted.
fn begin_and_lock_heads<'a>(
    conn: &mut PgConn,
    begin: &str,
    keys: &BTreeSet<&'a str>,
) -> Result<HashMap<&'a str, Head>, postgres::Error> {
    let mut heads = HashMap::with_capacity(keys.len());
    if keys.is_empty() {
        if !begin.is_empty() {
            conn.client.batch_execute(begin)?;
        }
        return Ok(heads);
    }
    let wanted: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
    let params: [&(dyn ToSql + Sync); 1] = [&wanted];
    let lock = Piped::Query(LOCK_HEADS, &params);
    let steps = if begin.is_empty() {
        vec![lock]
    } else {
        vec![Piped::Simple(begin), lock]
    };
    let mut rows = Vec::new();
    for answer in conn.pipeline(&steps)? {
        if let Answer::Rows(r) = answer? {
            rows = r;
        }
    }
    let by_bytes: HashMap<&[u8], &'a str> = keys.iter().map(|k| (k.as_bytes(), *k)).collect();
    for r in rows {
        let key: &[u8] = r.try_get(0)?;
        let Some(&k) = by_bytes.get(key) else {
            continue;
        };
        let first_kept = r.try_get::<_, i64>(4)?.max(1) as u64;
        heads.insert(
            k,
            Head {
                latest: r.try_get::<_, i64>(1)?.max(0) as u64,
                ts_ms: r.try_get(2)?,
                deleted: r.try_get(3)?,
                first_kept,
                stored_first_kept: first_kept,
                purged: r.try_get::<_, i64>(5)?.max(0) as u64,
                dirty: false,
            },
        );
    }
    Ok(heads)
}

impl Head {
    /// A key whose versions up to `last` were just purged.
    fn purged(last: u64) -> Head {
        Head {
            latest: 0,
            ts_ms: 0,
            deleted: false,
            first_kept: 1,
            stored_first_kept: 1,
            purged: last,
            dirty: false,
        }
    }
}

impl Head {
    /// What the write rules see of this head.
    fn state(&self) -> rules::Head {
        match (self.latest, self.deleted) {
            (0, _) if self.purged > 0 => rules::Head::Purged(self.purged),
            (0, _) => rules::Head::Absent,
            (v, true) => rules::Head::Deleted(v),
            (v, false) => rules::Head::Live(v),
        }
    }
}

/// Revokes lease `id` (locked, with the keys on it read, by
/// [`deadlines::lock`]): every key still on it expires, in this
/// transaction. `if_due`: only if its deadline has passed (a keepalive may
/// have moved it since it was found due).
fn revoke<'a>(
    conn: &mut PgConn,
    stage: &mut Stage<'a>,
    locked: &'a Locked,
    id: u64,
    if_due: bool,
    rel: u64,
) -> Result<Result<Done, StoreError>, postgres::Error> {
    let lease = db_int(id);
    match locked.due.get(&lease) {
        // Revoked earlier in this group too: only once.
        _ if stage.revoked.contains(&lease) => return Ok(Err(StoreError::LeaseNotFound(id))),
        None => return Ok(Err(StoreError::LeaseNotFound(id))),
        Some(false) if if_due => return Ok(Ok(Done::Written(Vec::new()))),
        Some(_) => {}
    }
    deadlines::remove(conn, lease)?;
    stage.live_leases.remove(&lease);
    stage.revoked.insert(lease);
    let keys: &'a [String] = locked.keys.get(&lease).map_or(&[], Vec::as_slice);
    let bytes: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
    let still = deadlines::still_on(conn, lease, &bytes)?;
    let on_lease = keys
        .iter()
        .map(String::as_str)
        .filter(|k| still.contains(k.as_bytes()));
    Ok(Ok(Done::Written(stage.expire_keys(on_lease, rel))))
}

/// Expires each key of `due` whose deadline has passed on the database's
/// clock, with its head locked: a replica that expired it first removed
/// its deadline, so no key gets two tombstones. A key written earlier in
/// this group keeps what that write set.
fn expire<'a>(
    conn: &mut PgConn,
    stage: &mut Stage<'a>,
    due: &'a [Due],
    rel: u64,
) -> Result<Result<Done, StoreError>, postgres::Error> {
    let keys: Vec<&[u8]> = due.iter().map(|d| d.key.as_bytes()).collect();
    let rows = conn.query(
        "SELECT key FROM vkv_deadlines WHERE key = ANY($1::bytea[]) AND due <= clock_timestamp()",
        &[&keys],
    )?;
    let passed: BTreeSet<Vec<u8>> = rows
        .iter()
        .map(|r| r.try_get::<_, Vec<u8>>(0))
        .collect::<Result<_, _>>()?;
    let passed_keys = due
        .iter()
        .map(|d| d.key.as_str())
        .filter(|k| passed.contains(k.as_bytes()));
    Ok(Ok(Done::Written(stage.expire_keys(passed_keys, rel))))
}

impl<'a> Stage<'a> {
    /// Writes an expiry's tombstone for each of `keys` at revision offset
    /// `rel`, numbered in order, except keys a write earlier in this group
    /// decided anew and keys not live (a key not live has no deadline:
    /// nothing to expire).
    fn expire_keys(&mut self, keys: impl Iterator<Item = &'a str>, rel: u64) -> Vec<Written> {
        let mut written = Vec::new();
        for key in keys {
            if self.heads.get(key).is_none_or(|h| h.dirty) {
                continue;
            }
            let outcome = self
                .state(key)
                .and_then(|h| rules::delete(key, None, h))
                .and_then(|next| {
                    let seq = i32::try_from(written.len()).unwrap_or(i32::MAX);
                    self.write(key, RawValue::NULL, next, (true, true), (rel, seq))
                });
            if let Ok(w) = outcome {
                written.push(w);
            }
        }
        written
    }

    fn put(&mut self, item: &'a PutItem, rel: u64, seq: i32) -> Result<Written, StoreError> {
        let next = rules::put(&item.key, item.expect, self.state(&item.key)?)?;
        let deadline = match item.lifetime {
            Lifetime::Permanent => None,
            Lifetime::Ttl(ttl) => Some((
                Some(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)),
                None,
            )),
            Lifetime::Lease(id) if self.live_leases.contains(&db_int(id)) => {
                Some((None, Some(db_int(id))))
            }
            Lifetime::Lease(id) => return Err(StoreError::LeaseNotFound(id)),
        };
        let written = self.write(&item.key, &item.value, next, (false, false), (rel, seq))?;
        if let Some((ms, lease)) = deadline {
            self.ttls
                .push((&item.key, written.version.version, ms, lease));
        }
        Ok(written)
    }

    /// The rules' view of the locked head of `key`.
    fn state(&self, key: &str) -> Result<rules::Head, StoreError> {
        self.heads
            .get(key)
            .map(Head::state)
            .ok_or_else(|| StoreError::Internal(format!("key '{key}' was not locked")))
    }

    /// Stages `next`, the version the rules gave `key` (a tombstone if
    /// `deleted`, an expiry's if `expired`), at revision offset `rel`, place
    /// `seq` within it.
    fn write(
        &mut self,
        key: &'a str,
        value: &'a RawValue,
        next: rules::Next,
        (deleted, expired): (bool, bool),
        (rel, seq): (u64, i32),
    ) -> Result<Written, StoreError> {
        let head = self
            .heads
            .get_mut(key)
            .ok_or_else(|| StoreError::Internal(format!("key '{key}' was not locked")))?;
        let version = next.version;
        if head.latest == 0 {
            self.keys_delta += 1;
            head.first_kept = version;
            head.purged = 0;
        }
        head.latest = version;
        head.ts_ms = self.ts;
        head.deleted = deleted;
        head.dirty = true;
        if self.max_versions > 0 && version - head.first_kept + 1 > self.max_versions {
            head.first_kept = version - self.max_versions + 1;
        }
        self.rows.push(NewRow {
            key,
            version,
            value: value.get(),
            deleted,
            rel,
            seq,
            created: next.created,
            expired,
        });
        self.notify.insert(key);
        Ok(Written {
            version: Arc::new(Versioned {
                key: key.to_string(),
                version,
                timestamp_ms: self.ts,
                deleted,
                expired,
                revision: rel,
                value: value.to_owned(),
                deadline: None,
            }),
            created: next.created,
            deadline: None,
        })
    }

    /// Every item or none: on a refusal, the stage is put back as it was.
    fn batch(&mut self, items: &'a [PutItem], rel: u64) -> Result<Done, StoreError> {
        let saved: Vec<(&'a str, Option<Head>)> = items
            .iter()
            .map(|i| (i.key.as_str(), self.heads.get(i.key.as_str()).cloned()))
            .collect();
        let (rows, keys_delta, notify) = (self.rows.len(), self.keys_delta, self.notify.clone());
        let ttls = self.ttls.len();
        let written: Result<Vec<_>, _> = items
            .iter()
            .enumerate()
            .map(|(seq, i)| self.put(i, rel, i32::try_from(seq).unwrap_or(i32::MAX)))
            .collect();
        if written.is_err() {
            for (key, head) in saved.into_iter().rev() {
                if let Some(h) = head {
                    self.heads.insert(key, h);
                }
            }
            self.rows.truncate(rows);
            self.ttls.truncate(ttls);
            self.keys_delta = keys_delta;
            self.notify = notify;
        }
        written.map(Done::Written)
    }

    fn delete(&mut self, key: &'a str, expect: Option<u64>, rel: u64) -> Result<Done, StoreError> {
        let next = rules::delete(key, expect, self.state(key)?)?;
        self.write(key, RawValue::NULL, next, (true, false), (rel, 0))
            .map(|v| Done::Written(vec![v]))
    }
}

/// The statement that writes what a stage holds (see [`FlushArgs`]). Its
/// plan is made once per connection (generic plan), often while the tables
/// are still empty, when joining the arrays to a table by a hash join over
/// a scan of it looks cheapest: every join to a table also says `key =
/// ANY(...)`, so the plan looks keys up in the primary key however large
/// the table grows (tested by counting PostgreSQL's table scans).
const FLUSH: &str = "WITH trimmed AS (
         DELETE FROM vkv_versions v USING unnest($11::bytea[], $12::bigint[]) AS t(key, first_kept)
         WHERE v.key = t.key AND v.version < t.first_kept AND v.key = ANY($11::bytea[])
         RETURNING v.revision
     ), rev AS (
         UPDATE vkv_revision SET value = value + $20::bigint,
             compacted = greatest(compacted, (SELECT coalesce(max(revision), 0) FROM trimmed),
                 CASE WHEN $21::bigint > 0 THEN value + $21::bigint ELSE 0 END)
         WHERE id = 1 AND $20::bigint > 0
         RETURNING value - $20::bigint AS base
     ), ins AS (
         INSERT INTO vkv_versions (key, version, ts_ms, value, deleted, revision, seq, created,
             expired)
         SELECT k, v, t, val, d, (SELECT base FROM rev) + r, s, c, e
         FROM unnest($1::bytea[], $2::bigint[], $3::bigint[], $4::text[], $5::bool[],
                 $22::bigint[], $23::int[], $24::bool[], $25::bool[])
             AS x(k, v, t, val, d, r, s, c, e)
     ), deadlines AS (
         DELETE FROM vkv_deadlines WHERE key = ANY($6::bytea[])
     ), heads AS (
         UPDATE vkv_keys k SET latest = h.latest, ts_ms = h.ts_ms, deleted = h.deleted,
             first_kept = h.first_kept, purged_latest = h.purged
         FROM unnest($6::bytea[], $7::bigint[], $8::bigint[], $9::bool[], $10::bigint[],
                 $19::bigint[])
             AS h(key, latest, ts_ms, deleted, first_kept, purged)
         WHERE k.key = h.key AND k.key = ANY($6::bytea[])
     ), gone AS (
         DELETE FROM vkv_keys WHERE key = ANY($13::bytea[]) AND latest = 0
             AND purged_latest = 0
     ), counted AS (
         UPDATE vkv_counters SET keys = keys + $14,
             versions = versions + $15 - (SELECT count(*) FROM trimmed)
         WHERE shard = $16
     )
     SELECT count(pg_notify($17, n)), (SELECT base FROM rev) FROM unnest($18::text[]) AS n";

/// The statement that sets the deadlines of puts with a TTL or a lease
/// (see [`TtlArgs`]), run after [`FLUSH`] removed every written key's old
/// one.
const SET_DEADLINES: &str = "INSERT INTO vkv_deadlines (key, version, due, lease)
     SELECT k, v, clock_timestamp() + ms * interval '1 millisecond', l
     FROM unnest($1::bytea[], $2::bigint[], $3::bigint[], $4::bigint[]) AS t(k, v, ms, l)
     ON CONFLICT (key) DO UPDATE SET version = excluded.version, due = excluded.due,
         lease = excluded.lease
     RETURNING key, (extract(epoch FROM due) * 1000)::bigint";

/// The parameters of [`FLUSH`]: what a stage decided and has not written.
struct FlushArgs<'a> {
    rk: Vec<&'a [u8]>,
    rv: Vec<i64>,
    rt: Vec<i64>,
    rval: Vec<&'a str>,
    rdel: Vec<bool>,
    hk: Vec<&'a [u8]>,
    hl: Vec<i64>,
    ht: Vec<i64>,
    hd: Vec<bool>,
    hf: Vec<i64>,
    tk: Vec<&'a [u8]>,
    tf: Vec<i64>,
    gone: Vec<&'a [u8]>,
    keys_delta: i64,
    inserted: i64,
    shard: i32,
    notify: Vec<String>,
    hp: Vec<i64>,
    reserve: i64,
    /// Revisions reserved by the statements before this one.
    reserved_before: u64,
    dropped: i64,
    rrel: Vec<i64>,
    rseq: Vec<i32>,
    rcre: Vec<bool>,
    rexp: Vec<bool>,
}

impl<'a> FlushArgs<'a> {
    /// What `stage` holds; `last`: also the placeholders no operation
    /// wrote (removed) and the notifications (sent).
    fn of(stage: &Stage<'a>, shard: i32, last: bool) -> Self {
        // Rows that retention drops within this same group are never
        // inserted (their revisions count as removed).
        let kept = |r: &&NewRow<'a>| {
            stage
                .heads
                .get(r.key)
                .is_none_or(|h| r.version >= h.first_kept)
        };
        let rows: Vec<&NewRow<'a>> = stage.rows.iter().filter(kept).collect();
        let reserved = stage.reserved;
        let dropped = stage
            .rows
            .iter()
            .filter(|r| !kept(r))
            .map(|r| db_int(r.rel - reserved))
            .max()
            .unwrap_or(0);
        let (mut hk, mut hl, mut ht, mut hd, mut hf, mut hp) =
            (vec![], vec![], vec![], vec![], vec![], vec![]);
        let (mut tk, mut tf, mut gone) = (vec![], vec![], vec![]);
        for (&key, h) in &stage.heads {
            if h.dirty {
                hk.push(key.as_bytes());
                hl.push(db_int(h.latest));
                ht.push(h.ts_ms);
                hd.push(h.deleted);
                hf.push(db_int(h.first_kept));
                hp.push(db_int(h.purged));
            }
            if h.first_kept > h.stored_first_kept {
                tk.push(key.as_bytes());
                tf.push(db_int(h.first_kept));
            }
            if last && h.latest == 0 && h.purged == 0 {
                gone.push(key.as_bytes());
            }
        }
        FlushArgs {
            rk: rows.iter().map(|r| r.key.as_bytes()).collect(),
            rv: rows.iter().map(|r| db_int(r.version)).collect(),
            rt: vec![stage.ts; rows.len()],
            rval: rows.iter().map(|r| r.value).collect(),
            rdel: rows.iter().map(|r| r.deleted).collect(),
            hk,
            hl,
            ht,
            hd,
            hf,
            tk,
            tf,
            gone,
            keys_delta: stage.keys_delta,
            inserted: rows.len() as i64,
            shard,
            notify: if last {
                stage.notify.iter().map(|k| hex(k.as_bytes())).collect()
            } else {
                Vec::new()
            },
            hp,
            reserve: db_int(stage.rels - reserved),
            reserved_before: reserved,
            dropped,
            rrel: rows.iter().map(|r| db_int(r.rel - reserved)).collect(),
            rseq: rows.iter().map(|r| r.seq).collect(),
            rcre: rows.iter().map(|r| r.created).collect(),
            rexp: rows.iter().map(|r| r.expired).collect(),
        }
    }

    fn params(&self) -> [&(dyn ToSql + Sync); 25] {
        [
            &self.rk,
            &self.rv,
            &self.rt,
            &self.rval,
            &self.rdel,
            &self.hk,
            &self.hl,
            &self.ht,
            &self.hd,
            &self.hf,
            &self.tk,
            &self.tf,
            &self.gone,
            &self.keys_delta,
            &self.inserted,
            &self.shard,
            &CHANNEL,
            &self.notify,
            &self.hp,
            &self.reserve,
            &self.dropped,
            &self.rrel,
            &self.rseq,
            &self.rcre,
            &self.rexp,
        ]
    }
}

/// The parameters of [`SET_DEADLINES`]: the puts of a stage with a TTL or
/// a lease that are still their key's latest.
struct TtlArgs<'a> {
    keys: Vec<&'a [u8]>,
    versions: Vec<i64>,
    ms: Vec<Option<i64>>,
    leases: Vec<Option<i64>>,
    /// Key, version and lease of each.
    set: Vec<(&'a str, u64, Option<i64>)>,
}

impl<'a> TtlArgs<'a> {
    /// Takes the puts with a TTL or a lease out of `stage`; none if no
    /// deadline is to be set.
    fn take(stage: &mut Stage<'a>) -> Option<Self> {
        let mut args = TtlArgs {
            keys: vec![],
            versions: vec![],
            ms: vec![],
            leases: vec![],
            set: vec![],
        };
        for (key, version, ms, lease) in stage.ttls.drain(..) {
            if stage.heads.get(key).is_some_and(|h| h.latest == version) {
                args.keys.push(key.as_bytes());
                args.versions.push(db_int(version));
                args.ms.push(ms);
                args.leases.push(lease);
                args.set.push((key, version, lease));
            }
        }
        (!args.keys.is_empty()).then_some(args)
    }

    fn params(&self) -> [&(dyn ToSql + Sync); 4] {
        [&self.keys, &self.versions, &self.ms, &self.leases]
    }

    /// Notes in `stage` the deadline each key got, from `rows`
    /// ([`SET_DEADLINES`]'s answer).
    fn learn(self, stage: &mut Stage<'a>, rows: &[Row]) -> Result<(), postgres::Error> {
        let mut due: HashMap<Vec<u8>, i64> = HashMap::with_capacity(rows.len());
        for r in rows {
            if let Some(ms) = r.try_get::<_, Option<i64>>(1)? {
                due.insert(r.try_get(0)?, ms);
            }
        }
        for (key, version, lease) in self.set {
            let deadline = match lease {
                Some(id) => Some(Deadline::Lease(id.max(0) as u64)),
                None => due.get(key.as_bytes()).map(|ms| Deadline::At(*ms)),
            };
            if let Some(d) = deadline {
                stage.deadlines.insert(key, (version, d));
            }
        }
        Ok(())
    }
}

/// A write statement of the transaction, staged until the `COMMIT`.
enum Pending<'a> {
    Flush(Box<FlushArgs<'a>>),
    Deadlines(TtlArgs<'a>),
    Purge(PurgeArgs<'a>),
}

impl Pending<'_> {
    fn sql(&self) -> &'static str {
        match self {
            Pending::Flush(_) => FLUSH,
            Pending::Deadlines(_) => SET_DEADLINES,
            Pending::Purge(_) => PURGE,
        }
    }

    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        match self {
            Pending::Flush(args) => args.params().to_vec(),
            Pending::Deadlines(args) => args.params().to_vec(),
            Pending::Purge(args) => args.params().to_vec(),
        }
    }
}

/// Removes every version of a key (whose latest was `$3`), leaving a head
/// without versions that remembers it (readers see no key; the next put
/// continues the numbering after it), and records the purge as the store's
/// next revision. Answers the versions removed, and that revision.
const PURGE: &str = "WITH p AS (
         DELETE FROM vkv_versions WHERE key = $1 RETURNING revision
     ), rev AS (
         UPDATE vkv_revision SET value = value + 1 WHERE id = 1 RETURNING value
     ), log AS (
         INSERT INTO vkv_purges (revision, key, version, ts_ms, removed)
         SELECT value, $1, $3, $4, (SELECT coalesce(max(revision), 0) FROM p) FROM rev
     ), k AS (
         UPDATE vkv_keys SET latest = 0, ts_ms = 0, deleted = false, first_kept = 1,
             purged_latest = $3
         WHERE key = $1
     ), c AS (
         UPDATE vkv_counters SET keys = keys - 1, versions = versions - (SELECT count(*) FROM p)
         WHERE shard = $2
     ), d AS (
         DELETE FROM vkv_deadlines WHERE key = $1
     )
     SELECT (SELECT count(*) FROM p), (SELECT value FROM rev)";

/// The parameters of [`PURGE`], and where its answer goes.
struct PurgeArgs<'a> {
    key: &'a [u8],
    shard: i32,
    last: i64,
    ts: i64,
    /// The purge's revision offset.
    rel: u64,
    /// Its operation's place among the group's outcomes.
    outcome: usize,
}

impl PurgeArgs<'_> {
    fn params(&self) -> [&(dyn ToSql + Sync); 4] {
        [&self.key, &self.shard, &self.last, &self.ts]
    }
}

impl Stage<'_> {
    /// Stages what is decided and not yet staged: one [`FLUSH`], and the
    /// deadlines of its puts with a TTL or a lease; `last`: also the
    /// placeholders no operation wrote, and the notifications.
    fn stage_flush(&mut self, shard: i32, last: bool) {
        let args = FlushArgs::of(self, shard, last);
        self.reserved = self.rels;
        self.pending.push(Pending::Flush(Box::new(args)));
        if let Some(ttls) = TtlArgs::take(self) {
            self.pending.push(Pending::Deadlines(ttls));
        }
        self.rows.clear();
        self.keys_delta = 0;
        for h in self.heads.values_mut() {
            h.dirty = false;
            h.stored_first_kept = h.first_kept;
        }
    }
}

/// Sends every write statement staged, then `tail` (statements that end
/// with `COMMIT`), all at once: the locks the writes take, the revision
/// row's among them, are released by the server as soon as it has run
/// them, however late this process reads the answer. Notes the answers in
/// `stage` (where revisions start, the deadlines set) and in `outcomes`
/// (the versions each purge removed); `tail`'s answer.
///
/// Any failure of `tail`, or of the connection before the answers came,
/// leaves the outcome unknown. An error the server reported for an earlier
/// statement aborted the transaction (the `COMMIT` behind it cannot commit
/// it), or closed the connection before it committed: nothing was written.
fn flush_and_commit(
    conn: &mut PgConn,
    stage: &mut Stage<'_>,
    outcomes: &mut Outcomes,
    shard: i32,
    tail: &str,
) -> Result<Vec<SimpleQueryMessage>, TxError> {
    stage.stage_flush(shard, true);
    let pending = std::mem::take(&mut stage.pending);
    let params: Vec<Vec<&(dyn ToSql + Sync)>> = pending.iter().map(Pending::params).collect();
    let mut steps: Vec<Piped<'_>> = pending
        .iter()
        .zip(&params)
        .map(|(p, params)| Piped::Query(p.sql(), params))
        .collect();
    steps.push(Piped::Simple(tail));
    let unsent = conn.client.is_closed();
    let mut answers = conn.pipeline(&steps)?.into_iter();
    let mut next = |last: bool| match answers.next() {
        Some(Ok(answer)) => Ok(answer),
        Some(Err(e)) if !last && (unsent || e.as_db_error().is_some()) => Err(TxError::Pg(e)),
        Some(Err(e)) => Err(TxError::AtCommit(e)),
        // `Client::pipeline` answers every step.
        None => Err(TxError::Unanswered),
    };
    let mut done = Vec::with_capacity(pending.len());
    for _ in &pending {
        done.push(match next(false)? {
            Answer::Rows(rows) => rows,
            Answer::Simple(_) => Vec::new(),
        });
    }
    let replies = match next(true)? {
        Answer::Simple(messages) => messages,
        Answer::Rows(_) => Vec::new(),
    };
    // Committed: what the statements answered.
    let int = |rows: &[Row], i| -> Result<Option<i64>, postgres::Error> {
        rows.first().map_or(Ok(None), |r| r.try_get(i))
    };
    for (step, rows) in pending.into_iter().zip(done) {
        match step {
            Pending::Flush(args) => {
                if args.reserve > 0
                    && let Some(base) = int(&rows, 1).map_err(TxError::AtCommit)?
                {
                    let first = (base.max(0) as u64).saturating_sub(args.reserved_before);
                    stage.base.get_or_insert(first);
                }
            }
            Pending::Deadlines(ttls) => ttls.learn(stage, &rows).map_err(TxError::AtCommit)?,
            Pending::Purge(purge) => {
                let removed = int(&rows, 0).map_err(TxError::AtCommit)?.unwrap_or(0);
                if let Some(revision) = int(&rows, 1).map_err(TxError::AtCommit)? {
                    let first = (revision.max(0) as u64).saturating_sub(purge.rel);
                    stage.base.get_or_insert(first);
                }
                if let Some(Ok(Done::Purged { versions, .. })) = outcomes.get_mut(purge.outcome) {
                    *versions = removed.max(0) as u64;
                }
            }
        }
    }
    Ok(replies)
}

/// Lower-case hex of `bytes` (a `NOTIFY` payload is text without NUL; a key
/// may hold any character).
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}
