//! The schedule of keys that expire: every key's deadline and every lease,
//! in memory, with a heap of what falls due next. The writer thread keeps
//! it in step with what commits (`writer::publish`); the expiry thread
//! (`expiry.rs`) takes what is due from it; `GET` reads a key's deadline
//! from it; keepalives only move a lease's deadline here (not a write: a
//! restart gives every lease its full TTL again).
//!
//! The schedule decides only *when* to ask: an expiry commits only if the
//! deadline it names is still the key's and has passed (checked inside the
//! write transaction), so a stale entry here can delay nothing and expire
//! nothing early.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use crate::storage::seam::{Due, ExpiryState, LeaseRow};
use crate::version::{Deadline, now_ms};

/// The shortest TTL (of a key or a lease).
pub const MIN_TTL: Duration = Duration::from_secs(1);
/// The longest TTL (of a key or a lease): 30 days.
pub const MAX_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// A lease as clients see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// Its id, never reused.
    pub id: u64,
    /// Its TTL: each keepalive sets its deadline this far ahead.
    pub ttl: Duration,
    /// When it runs out unless kept alive, milliseconds since the Unix
    /// epoch.
    pub expires_ms: i64,
}

/// What fell due: keys (with the deadline they are expired for) and
/// leases (taken out of the schedule: a keepalive now finds none).
#[derive(Debug, Default)]
pub(crate) struct Work {
    pub keys: Vec<Due>,
    pub leases: Vec<DueLease>,
}

/// A lease that fell due.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DueLease {
    pub id: u64,
    pub ttl_ms: i64,
    pub due_ms: i64,
}

impl Work {
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.leases.is_empty()
    }
}

/// Upper bounds of the expiry lag histogram, in milliseconds.
pub const LAG_BUCKETS_MS: [u64; 8] = [10, 50, 100, 250, 500, 1000, 2500, 5000];

/// Counters of expiries, for `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct ExpiryCounters {
    /// Keys expired (a TTL or a lease ran out, or its lease was revoked).
    pub expired: AtomicU64,
    /// Expiries by lag (commit time past the deadline), per bucket of
    /// [`LAG_BUCKETS_MS`], the last for the rest.
    lag: [AtomicU64; LAG_BUCKETS_MS.len() + 1],
    /// The sum of the lags, in milliseconds.
    lag_sum_ms: AtomicU64,
}

/// Expiry counters as `/metrics` shows them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExpiryStats {
    /// Keys with a deadline (their own or their lease's): the schedule's,
    /// or where the database holds deadlines, its count (`None` when it
    /// did not answer in time).
    pub keys_with_deadline: Option<u64>,
    /// Live leases, counted as `keys_with_deadline` is.
    pub leases: Option<u64>,
    /// Keys expired since start.
    pub expired: u64,
    /// Expiries past their deadline by at most each of
    /// [`LAG_BUCKETS_MS`] (cumulative, as Prometheus counts), then all.
    pub lag_buckets: Vec<u64>,
    /// The sum of the lags, in milliseconds.
    pub lag_sum_ms: u64,
}

impl ExpiryCounters {
    /// Counts an expiry `lag_ms` past its deadline.
    pub fn observe(&self, lag_ms: i64) {
        let lag = u64::try_from(lag_ms).unwrap_or(0);
        let bucket = LAG_BUCKETS_MS
            .iter()
            .position(|b| lag <= *b)
            .unwrap_or(LAG_BUCKETS_MS.len());
        self.lag[bucket].fetch_add(1, Ordering::Relaxed);
        self.lag_sum_ms.fetch_add(lag, Ordering::Relaxed);
    }

    /// The counters, with the schedule's counts `(keys, leases)`.
    pub fn stats(&self, (keys, leases): (usize, usize)) -> ExpiryStats {
        let mut total = 0;
        let lag_buckets = self
            .lag
            .iter()
            .map(|c| {
                total += c.load(Ordering::Relaxed);
                total
            })
            .collect();
        ExpiryStats {
            keys_with_deadline: Some(keys as u64),
            leases: Some(leases as u64),
            expired: self.expired.load(Ordering::Relaxed),
            lag_buckets,
            lag_sum_ms: self.lag_sum_ms.load(Ordering::Relaxed),
        }
    }
}

/// Every deadline and lease known, and the heap of what falls due.
#[derive(Default)]
pub(crate) struct Schedule {
    state: Mutex<State>,
    wake: Condvar,
    /// Keys with a deadline (so that a write of a permanent key needs no
    /// lock while no key has one).
    keys: AtomicUsize,
    /// Expiries and their lag.
    pub counters: ExpiryCounters,
    /// Set where the database holds deadlines and leases (they are polled,
    /// not scheduled here): then nothing is kept here.
    polled: std::sync::atomic::AtomicBool,
}

#[derive(Default)]
struct State {
    keys: HashMap<String, KeyEntry>,
    leases: HashMap<u64, LeaseEntry>,
    heap: BinaryHeap<Reverse<(i64, Target)>>,
    closed: bool,
}

struct KeyEntry {
    version: u64,
    deadline: Deadline,
    /// Handed to the expiry thread, not yet committed.
    taken: bool,
}

#[derive(Clone, Copy)]
struct LeaseEntry {
    ttl_ms: i64,
    due_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Target {
    Key(String),
    Lease(u64),
}

impl Schedule {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Schedules what a store holds at start: each key's deadline (those
    /// passed fall due at once), and each lease with its full TTL from
    /// now (keepalives are not stored).
    pub fn load(&self, stored: ExpiryState) {
        let now = now_ms();
        let mut st = self.lock();
        for lease in stored.leases {
            let due = now.saturating_add(lease.ttl_ms);
            st.leases.insert(
                lease.id,
                LeaseEntry {
                    ttl_ms: lease.ttl_ms,
                    due_ms: due,
                },
            );
            st.heap.push(Reverse((due, Target::Lease(lease.id))));
        }
        for row in stored.deadlines {
            if let Deadline::At(due) = row.deadline {
                st.heap.push(Reverse((due, Target::Key(row.key.clone()))));
            }
            st.keys.insert(
                row.key,
                KeyEntry {
                    version: row.version,
                    deadline: row.deadline,
                    taken: false,
                },
            );
        }
        self.keys.store(st.keys.len(), Ordering::Relaxed);
        drop(st);
        self.wake.notify_all();
    }

    /// Keeps nothing from now on: the database holds deadlines and leases.
    pub fn set_polled(&self) {
        self.polled.store(true, Ordering::Relaxed);
    }

    /// A committed version of `key`, and the key's deadline from it on.
    pub fn written(&self, key: &str, version: u64, deadline: Option<Deadline>) {
        if (deadline.is_none() && self.keys.load(Ordering::Relaxed) == 0)
            || self.polled.load(Ordering::Relaxed)
        {
            return;
        }
        let mut st = self.lock();
        match deadline {
            None => {
                st.keys.remove(key);
            }
            Some(deadline) => {
                st.keys.insert(
                    key.to_string(),
                    KeyEntry {
                        version,
                        deadline,
                        taken: false,
                    },
                );
                if let Deadline::At(due) = deadline {
                    self.push(&mut st, due, Target::Key(key.to_string()));
                }
            }
        }
        self.keys.store(st.keys.len(), Ordering::Relaxed);
    }

    /// `key` was purged.
    pub fn removed(&self, key: &str) {
        self.written(key, 0, None);
    }

    /// A lease was granted.
    pub fn granted(&self, row: &LeaseRow) -> Lease {
        let due = row.granted_ms.saturating_add(row.ttl_ms);
        if self.polled.load(Ordering::Relaxed) {
            return lease(row.id, row.ttl_ms, due);
        }
        let mut st = self.lock();
        st.leases.insert(
            row.id,
            LeaseEntry {
                ttl_ms: row.ttl_ms,
                due_ms: due,
            },
        );
        self.push(&mut st, due, Target::Lease(row.id));
        lease(row.id, row.ttl_ms, due)
    }

    /// Pushes a heap entry, waking the expiry thread if it is the next due.
    fn push(&self, st: &mut State, due: i64, target: Target) {
        let first = st.heap.peek().is_none_or(|Reverse((at, _))| due < *at);
        st.heap.push(Reverse((due, target)));
        if first {
            self.wake.notify_all();
        }
    }

    /// Keeps lease `id` alive: its deadline is its TTL from now. `None`:
    /// no such lease (never granted, revoked, or already expiring).
    pub fn keepalive(&self, id: u64) -> Option<Lease> {
        let now = now_ms();
        let mut st = self.lock();
        let entry = st.leases.get_mut(&id)?;
        entry.due_ms = now.saturating_add(entry.ttl_ms);
        let (ttl, due) = (entry.ttl_ms, entry.due_ms);
        // Later than any entry of it in the heap: the thread need not wake.
        st.heap.push(Reverse((due, Target::Lease(id))));
        Some(lease(id, ttl, due))
    }

    /// Lease `id`, if it is live.
    pub fn lease(&self, id: u64) -> Option<Lease> {
        let st = self.lock();
        st.leases.get(&id).map(|e| lease(id, e.ttl_ms, e.due_ms))
    }

    /// Every live lease, by id.
    pub fn leases(&self) -> Vec<Lease> {
        let st = self.lock();
        let mut all: Vec<Lease> = st
            .leases
            .iter()
            .map(|(id, e)| lease(*id, e.ttl_ms, e.due_ms))
            .collect();
        all.sort_by_key(|l| l.id);
        all
    }

    /// Takes lease `id` out of the schedule, to revoke it; whether it was
    /// live.
    pub fn take_lease(&self, id: u64) -> Option<Lease> {
        let mut st = self.lock();
        st.leases.remove(&id).map(|e| lease(id, e.ttl_ms, e.due_ms))
    }

    /// Puts back a lease taken out whose revocation failed: it falls due
    /// again in a second.
    pub fn retry_lease(&self, id: u64, ttl_ms: i64) {
        if self.polled.load(Ordering::Relaxed) {
            return; // the database still holds it: the next poll finds it
        }
        let due = now_ms().saturating_add(1000);
        let mut st = self.lock();
        st.leases.insert(
            id,
            LeaseEntry {
                ttl_ms,
                due_ms: due,
            },
        );
        self.push(&mut st, due, Target::Lease(id));
    }

    /// Hands keys whose expiry failed back: they fall due again in a
    /// second (unless written meanwhile).
    pub fn retry_keys(&self, keys: &[Due]) {
        let at = now_ms().saturating_add(1000);
        let mut st = self.lock();
        for due in keys {
            if let Some(e) = st.keys.get_mut(&due.key)
                && e.deadline == Deadline::At(due.due_ms)
            {
                e.taken = false;
                self.push(&mut st, at, Target::Key(due.key.clone()));
            }
        }
    }

    /// The deadline of `key` if `version` is the one that set it, in
    /// milliseconds since the epoch.
    pub fn deadline_of(&self, key: &str, version: u64) -> Option<i64> {
        if self.keys.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let st = self.lock();
        let entry = st.keys.get(key).filter(|e| e.version == version)?;
        match entry.deadline {
            Deadline::At(due) => Some(due),
            Deadline::Lease(id) => st.leases.get(&id).map(|l| l.due_ms),
        }
    }

    /// Keys with a deadline, and live leases.
    pub fn counts(&self) -> (usize, usize) {
        let st = self.lock();
        (st.keys.len(), st.leases.len())
    }

    /// Up to `max` keys and leases that are due now. If none is and
    /// `block`, waits until one is; `None` once closed.
    pub fn take_due(&self, max: usize, block: bool) -> Option<Work> {
        let mut st = self.lock();
        loop {
            if st.closed {
                return None;
            }
            let now = now_ms();
            let mut work = Work::default();
            while work.keys.len() + work.leases.len() < max {
                match st.heap.peek() {
                    Some(Reverse((at, _))) if *at <= now => {}
                    _ => break,
                }
                let Some(Reverse((_, target))) = st.heap.pop() else {
                    break;
                };
                take(&mut st, target, now, &mut work);
            }
            if !work.is_empty() || !block {
                return Some(work);
            }
            // Until the next deadline, a new earlier one, or a close.
            let wait = st.heap.peek().map_or(Duration::from_secs(60), |e| {
                let ms = e.0.0.saturating_sub(now).clamp(1, 60_000);
                Duration::from_millis(ms as u64)
            });
            st = self
                .wake
                .wait_timeout(st, wait)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Waits `pause`, or less if the schedule is closed meanwhile; whether
    /// it is still open.
    pub fn pause(&self, pause: Duration) -> bool {
        let st = self.lock();
        if st.closed {
            return false;
        }
        let st = self
            .wake
            .wait_timeout(st, pause)
            .unwrap_or_else(|p| p.into_inner())
            .0;
        !st.closed
    }

    /// Stops the expiry thread.
    pub fn close(&self) {
        self.lock().closed = true;
        self.wake.notify_all();
    }
}

/// Adds `target` to `work` if it is still due at `now` (an entry of a
/// deadline since moved or removed is dropped).
fn take(st: &mut State, target: Target, now: i64, work: &mut Work) {
    match target {
        Target::Key(key) => {
            if let Some(e) = st.keys.get_mut(&key)
                && let Deadline::At(due) = e.deadline
                && due <= now
                && !e.taken
            {
                e.taken = true;
                work.keys.push(Due { key, due_ms: due });
            }
        }
        Target::Lease(id) => {
            if st.leases.get(&id).is_some_and(|l| l.due_ms <= now)
                && let Some(l) = st.leases.remove(&id)
            {
                work.leases.push(DueLease {
                    id,
                    ttl_ms: l.ttl_ms,
                    due_ms: l.due_ms,
                });
            }
        }
    }
}

fn lease(id: u64, ttl_ms: i64, due_ms: i64) -> Lease {
    Lease {
        id,
        ttl: Duration::from_millis(u64::try_from(ttl_ms).unwrap_or(0)),
        expires_ms: due_ms,
    }
}
