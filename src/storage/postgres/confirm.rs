//! Point reads share their round trips (after etcd's ReadIndex): a read of
//! a key's latest version (or of one version of it) joins the next *round*,
//! one query that answers every read queued before it was sent. One thread
//! per replica runs the rounds back to back; a reader does not wait on a
//! thread of its own (an HTTP GET hands over a callback and its worker is
//! free at once), so a round carries every read that arrived while the
//! previous one was in flight, however few workers there are. Every read is
//! answered by a query sent after it arrived, so it sees every commit
//! acknowledged before it began (on any replica), as with one query per
//! read, with one round trip (and one statement of PostgreSQL's CPU) per
//! round instead of per read.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use r2d2::Pool;

use super::conn::{Manager, with_pooled_until};
use super::dues::LeaseDues;
use super::rows::{ReadDeadline, db_int};
use crate::error::StoreError;
use crate::storage::seam::{Fresh, LatestReply, VersionReply};
use serde_json::value::RawValue;

use crate::version::{Deadline, Versioned};

/// The most reads one round carries (the rest wait for the next).
const MAX_ROUND: usize = 1024;

/// How much later than its query timeout a read may be answered, to spare
/// healthy rounds the statements that lower the bound.
const SLACK: Duration = Duration::from_millis(100);

/// One queued read.
struct Ask {
    key: String,
    what: What,
    /// When it was queued: its answer is due within the query timeout of
    /// that, however long it waited for a round.
    asked: Instant,
}

enum What {
    /// The latest version, unless it is still the one known (version,
    /// timestamp).
    Latest(Option<(u64, i64)>, LatestReply),
    /// This version.
    Version(u64, VersionReply),
}

#[derive(Default)]
struct Queue {
    asks: Vec<Ask>,
    stopped: bool,
    /// The rounds' thread sleeps on the condvar: the first ask after it
    /// fell asleep wakes it (and clears this). While it runs a round, asks
    /// skip the wake-up syscall (it looks at the queue again before it
    /// sleeps).
    idle: bool,
}

#[derive(Default)]
struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The rounds of point reads of one replica; stops its thread when dropped.
pub(crate) struct Confirmer {
    shared: Arc<Shared>,
}

impl Confirmer {
    /// Starts the thread that runs the rounds on connections of `pool`;
    /// each read is answered (503 if need be) within `timeout` of its ask
    /// (zero: no bound). The deadlines of leases the rounds read are learnt
    /// into `dues`.
    pub fn start(
        pool: Pool<Manager>,
        timeout: Duration,
        dues: Arc<LeaseDues>,
    ) -> std::io::Result<Confirmer> {
        let shared = Arc::new(Shared::default());
        let theirs = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("vkv-pg-reads".into())
            .spawn(move || run(&theirs, &pool, timeout, &dues))?;
        Ok(Confirmer { shared })
    }

    fn ask(&self, ask: Ask) {
        let mut q = self.shared.lock();
        if q.stopped {
            drop(q);
            return refuse(ask, StoreError::Closed);
        }
        q.asks.push(ask);
        // Only the first ask after the thread fell asleep wakes it (each
        // `notify_one` is a syscall, even with no one left waiting).
        let idle = std::mem::take(&mut q.idle);
        drop(q);
        if idle {
            self.shared.wake.notify_one();
        }
    }

    /// The latest version of `key`, or [`Fresh::Same`] if it is still
    /// `known` (version, timestamp), handed to `then` on the rounds' thread
    /// within the query timeout of `asked`.
    pub fn latest_then(
        &self,
        key: &str,
        known: Option<(u64, i64)>,
        asked: Instant,
        then: LatestReply,
    ) {
        self.ask(Ask {
            key: key.to_string(),
            what: What::Latest(known, then),
            asked,
        });
    }

    /// Version `version` of `key` (or why there is none), handed to `then`
    /// on the rounds' thread.
    pub fn version_then(&self, key: &str, version: u64, then: VersionReply) {
        self.ask(Ask {
            key: key.to_string(),
            what: What::Version(version, then),
            asked: Instant::now(),
        });
    }

    /// [`Confirmer::latest_then`], waiting for the answer.
    pub fn latest(&self, key: &str, known: Option<(u64, i64)>) -> Result<Fresh, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.latest_then(
            key,
            known,
            Instant::now(),
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
        );
        rx.recv()
            .map_err(|_| StoreError::Internal("a read round was dropped".into()))?
    }
}

impl Drop for Confirmer {
    fn drop(&mut self) {
        self.shared.lock().stopped = true;
        self.shared.wake.notify_one();
    }
}

fn refuse(ask: Ask, e: StoreError) {
    match ask.what {
        What::Latest(_, then) => then(Err(e)),
        What::Version(_, then) => then(Err(e)),
    }
}

/// The rounds' thread: takes what is queued, answers it with one query,
/// again, until stopped (answering what is still queued first).
fn run(shared: &Shared, pool: &Pool<Manager>, timeout: Duration, dues: &LeaseDues) {
    loop {
        let mut q = shared.lock();
        while q.asks.is_empty() && !q.stopped {
            q.idle = true;
            q = shared.wake.wait(q).unwrap_or_else(|p| p.into_inner());
        }
        if q.asks.is_empty() {
            return;
        }
        let take = q.asks.len().min(MAX_ROUND);
        let round: Vec<Ask> = q.asks.drain(..take).collect();
        drop(q);
        // A panicking callback must not stop the rounds. The answers'
        // wake-ups are done once, after the round.
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            crate::wake::batch(|| answer_round(pool, round, timeout, dues));
        }));
        if ran.is_err() {
            log::error!("a read round panicked");
        }
    }
}

/// What the query found for one read.
#[derive(Clone)]
struct Found {
    /// The version row: `None` if there is none (or, for a latest read,
    /// `Some` with no value when the known version is still the latest).
    row: Option<Row>,
    /// For a version read that found no row: the key's head (latest,
    /// oldest kept), if it has a version.
    head: Option<(u64, u64)>,
}

/// A version row as a round read it.
#[derive(Clone)]
struct Row {
    version: u64,
    timestamp_ms: i64,
    /// `None`: the version known is still the latest.
    value: Option<String>,
    deleted: bool,
    revision: u64,
    expired: bool,
    /// The deadline the version set, if it is still the key's.
    deadline: ReadDeadline,
}

/// Answers `round`. A read whose time is up (it waited for a round stuck
/// on a locked table) is refused at once; the others get what is left of
/// the oldest one's time, for the pool and the query together.
fn answer_round(pool: &Pool<Manager>, round: Vec<Ask>, timeout: Duration, dues: &LeaseDues) {
    let mut round = round;
    // When the oldest read of the round must be answered by.
    let mut due = None;
    if !timeout.is_zero() {
        let (late, in_time): (Vec<Ask>, Vec<Ask>) = round
            .into_iter()
            .partition(|a| a.asked.elapsed() >= timeout);
        for ask in late {
            refuse(
                ask,
                StoreError::Unavailable(format!(
                    "PostgreSQL did not answer within the query timeout ({} ms)",
                    timeout.as_millis()
                )),
            );
        }
        round = in_time;
        if round.is_empty() {
            return;
        }
        let oldest = round
            .iter()
            .map(|a| a.asked)
            .min()
            .unwrap_or_else(Instant::now);
        due = oldest.checked_add(timeout);
    }
    let found = match query_round(pool, &round, due, timeout) {
        Ok(found) => found,
        Err(e) => {
            for ask in round {
                refuse(ask, e.clone());
            }
            return;
        }
    };
    for (ask, found) in round.into_iter().zip(found) {
        let key = ask.key;
        // Before any answer: a version on a lease is answered with the
        // lease's deadline known.
        let row = found.row.map(|r| {
            let deadline = r.deadline.learn(dues);
            (r, deadline)
        });
        match ask.what {
            What::Latest(_, then) => then(match row {
                None => Ok(Fresh::Changed(None)),
                Some((Row { value: None, .. }, _)) => Ok(Fresh::Same),
                Some((row, deadline)) => {
                    row_version(key, row, deadline).map(|v| Fresh::Changed(Some(v)))
                }
            }),
            What::Version(wanted, then) => then(match (row, found.head) {
                (Some((row, deadline)), _) if row.value.is_some() => {
                    row_version(key, row, deadline)
                }
                (_, head) => Err(StoreError::version_miss(&key, wanted, head)),
            }),
        }
    }
}

/// One statement for every distinct read of the round: a latest read
/// takes the key's newest row (its value only if it is not the one known);
/// a version read takes that row, or, when there is none, the key's head
/// (to tell a removed version from one never written). Reads asking the
/// same thing (a hot key read by many clients) share one lookup: the
/// statement answers them all from one snapshot either way. Each lateral
/// part has a `LIMIT` so that the planner keeps it a lookup per read
/// (without one it turned the head lookup into a hash join over every key).
fn query_round(
    pool: &Pool<Manager>,
    round: &[Ask],
    due: Option<Instant>,
    timeout: Duration,
) -> Result<Vec<Found>, StoreError> {
    let n = round.len();
    // (key, want, known version, known timestamp) of each distinct read,
    // and which of them each read of the round is.
    let mut distinct: HashMap<(&[u8], i64, i64, i64), usize> = HashMap::with_capacity(n);
    let mut which = Vec::with_capacity(n);
    // How many reads of the round share each distinct read.
    let mut uses: Vec<usize> = Vec::new();
    let (mut keys, mut wants, mut versions, mut stamps) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for ask in round {
        // want 0: the latest; -1 matches no known version: the value is
        // always sent.
        let (want, known) = match &ask.what {
            What::Latest(known, _) => (0, *known),
            What::Version(v, _) => (db_int(*v).max(1), None),
        };
        let read = (
            ask.key.as_bytes(),
            want,
            known.map_or(-1, |(v, _)| db_int(v)),
            known.map_or(0, |(_, ts)| ts),
        );
        let next = keys.len();
        let i = *distinct.entry(read).or_insert(next);
        if i == next {
            keys.push(read.0);
            wants.push(read.1);
            versions.push(read.2);
            stamps.push(read.3);
            uses.push(0);
        }
        uses[i] += 1;
        which.push(i);
    }
    // By `due`, the wait for a pooled connection included (the pool may be
    // taken by reads waiting on a locked table themselves). A read that
    // waited only milliseconds keeps the connection's own bound: no round
    // trips to lower it.
    let rows = with_pooled_until(pool, due, |conn| {
        let left = due.map_or(Duration::ZERO, |d| {
            d.saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1))
        });
        let limit = if left < timeout.saturating_sub(SLACK) {
            left
        } else {
            Duration::ZERO
        };
        conn.within(limit, |conn| {
            Ok(conn.query(
                "SELECT q.i, v.version, v.ts_ms,
             CASE WHEN v.version = q.version AND v.ts_ms = q.ts THEN NULL ELSE v.value END,
             v.deleted, h.latest, h.first_kept, v.revision, v.expired,
             d.due_ms, d.lease, d.lease_due_ms
         FROM unnest($1::bytea[], $2::bigint[], $3::bigint[], $4::bigint[]) WITH ORDINALITY
             AS q(key, want, version, ts, i)
         LEFT JOIN LATERAL (
             (SELECT version, ts_ms, value, deleted, revision, expired FROM vkv_versions
              WHERE key = q.key AND q.want = 0 ORDER BY version DESC LIMIT 1)
             UNION ALL
             (SELECT version, ts_ms, value, deleted, revision, expired FROM vkv_versions
              WHERE key = q.key AND q.want > 0 AND version = q.want)
         ) v ON true
         LEFT JOIN LATERAL (
             SELECT latest, first_kept FROM vkv_keys
             WHERE key = q.key AND q.want > 0 AND v.version IS NULL AND latest > 0
             LIMIT 1
         ) h ON true
         LEFT JOIN LATERAL (
             SELECT (extract(epoch FROM dl.due) * 1000)::bigint AS due_ms, dl.lease,
                 (SELECT (extract(epoch FROM l.due) * 1000)::bigint FROM vkv_leases l
                  WHERE l.id = dl.lease) AS lease_due_ms
             FROM vkv_deadlines dl
             WHERE dl.key = q.key AND dl.version = v.version
             LIMIT 1
         ) d ON true",
                &[&keys, &wants, &versions, &stamps],
            )?)
        })
    })?;
    let mut found: Vec<Option<Found>> = (0..keys.len()).map(|_| None).collect();
    for r in rows {
        let i: i64 = r.try_get(0)?;
        let Some(slot) = usize::try_from(i - 1).ok().and_then(|i| found.get_mut(i)) else {
            continue;
        };
        let row = match r.try_get::<_, Option<i64>>(1)? {
            None => None,
            Some(version) => Some(Row {
                version: version.max(0) as u64,
                timestamp_ms: r.try_get(2)?,
                value: r.try_get(3)?,
                deleted: r.try_get(4)?,
                revision: r.try_get::<_, i64>(7)?.max(0) as u64,
                expired: r.try_get(8)?,
                deadline: ReadDeadline::of(r.try_get(9)?, r.try_get(10)?, r.try_get(11)?),
            }),
        };
        let head = match r.try_get::<_, Option<i64>>(5)? {
            None => None,
            Some(latest) => Some((latest.max(0) as u64, r.try_get::<_, i64>(6)?.max(1) as u64)),
        };
        *slot = Some(Found { row, head });
    }
    // Each answer is cloned for all but the last read sharing it.
    which
        .into_iter()
        .map(|i| {
            uses[i] -= 1;
            if uses[i] == 0 {
                found[i].take()
            } else {
                found[i].clone()
            }
        })
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| StoreError::Internal(format!("a read round answered fewer than {n} reads")))
}

/// The version `row` holds (with its value), with its `deadline`.
fn row_version(key: String, row: Row, deadline: Option<Deadline>) -> Result<Versioned, StoreError> {
    let value = row
        .value
        .ok_or_else(|| StoreError::Internal("a version read without its value".into()))?;
    Ok(Versioned {
        key,
        version: row.version,
        timestamp_ms: row.timestamp_ms,
        deleted: row.deleted,
        expired: row.expired,
        revision: row.revision,
        value: RawValue::from_string(value)
            .map_err(|e| StoreError::Internal(format!("stored value is not JSON: {e}")))?,
        deadline,
    })
}
