//! The bound on a commit that does not return.
//!
//! A commit can block for good without failing: a PostgreSQL primary whose
//! synchronous standby is gone waits in `COMMIT` until one comes back (a
//! file system that hangs does the same to SQLite). The writer thread is
//! then stuck inside the backend, and everything queued behind it waits.
//! No caller may wait past the limit (the server's `--read-timeout`):
//! - a watchdog thread holds the replies of every group being committed or
//!   waiting to be answered (PostgreSQL answers a committed group once the
//!   other replicas' lease holders have acknowledged it); when the oldest
//!   has not been answered within the limit it answers them all itself,
//!   [`StoreError::Unavailable`] with a detail saying the outcome is
//!   unknown (the database may still commit them: never an
//!   acknowledgement, which only a returned commit gives);
//! - from then on the writer counts as stalled: new writes are refused at
//!   once (nothing written, so no pile-up behind the stuck commit), what was
//!   queued meanwhile is refused the same way, and `/health` says
//!   unavailable;
//! - when a group is answerable, the writer takes its replies back (or
//!   finds them answered), publishes what committed, and the stall is over,
//!   with no restart.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::reply::Reply;
use crate::error::StoreError;

/// How often a stalled writer's queue is emptied (writes queued just before
/// the stall was noticed).
const DRAIN_EVERY: Duration = Duration::from_millis(100);

/// The shared state of the writer thread and its watchdog.
pub(crate) struct Stall {
    limit: Duration,
    state: Mutex<State>,
    wake: Condvar,
    /// Set while a group has been in flight past the limit (read without
    /// the lock on every write).
    stalled: AtomicBool,
}

#[derive(Default)]
struct State {
    /// Oldest first.
    in_flight: VecDeque<InFlight>,
    /// The id of the next group armed.
    next: u64,
    stopped: bool,
    /// The watchdog waits with no deadline (it saw no commit in flight):
    /// the next commit must wake it. While it waits for a deadline, a new
    /// commit needs no wake-up (its own deadline is later, and the
    /// watchdog looks again when the earlier one passes), so the writer
    /// does not wake it once per group.
    idle: bool,
}

/// A group being committed, or committed and not answered yet.
struct InFlight {
    id: u64,
    since: Instant,
    /// Its replies; `None` once the watchdog has answered them.
    replies: Option<Vec<Reply>>,
}

impl Stall {
    /// A bound of `limit` on each commit.
    pub fn new(limit: Duration) -> Stall {
        Stall {
            limit,
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            stalled: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A commit starts: the watchdog holds `replies` until
    /// [`Stall::disarm`] with the id this answers.
    pub fn arm(&self, replies: Vec<Reply>) -> u64 {
        let mut state = self.lock();
        let id = state.next;
        state.next += 1;
        state.in_flight.push_back(InFlight {
            id,
            since: Instant::now(),
            replies: Some(replies),
        });
        if state.idle {
            drop(state);
            self.wake.notify_one();
        }
        id
    }

    /// Group `id` may be answered: its replies, unless the watchdog has
    /// answered them already. Ends a stall.
    pub fn disarm(&self, id: u64) -> Option<Vec<Reply>> {
        let replies = {
            let mut state = self.lock();
            let at = state.in_flight.iter().position(|f| f.id == id);
            at.and_then(|at| state.in_flight.remove(at))
                .and_then(|f| f.replies)
        };
        if self.stalled.swap(false, Ordering::AcqRel) {
            log::warn!("the stalled commit returned: writes are taken again");
        }
        replies
    }

    /// Why writes are refused now, if they are: a commit has been in flight
    /// past the limit.
    pub fn refusal(&self) -> Option<StoreError> {
        if !self.stalled.load(Ordering::Acquire) {
            return None;
        }
        let waited = self
            .lock()
            .in_flight
            .front()
            .map_or(self.limit, |f| f.since.elapsed());
        Some(StoreError::Unavailable(format!(
            "a commit has not returned for {} s (the database may be waiting for a synchronous \
             standby): writes are refused, and not made, until it returns",
            waited.as_secs()
        )))
    }

    /// Stops the watchdog.
    pub fn stop(&self) {
        self.lock().stopped = true;
        self.wake.notify_one();
    }

    /// The watchdog's loop, until [`Stall::stop`]: when the oldest group in
    /// flight passes the limit, answers the replies of every group in
    /// flight (the newer ones wait behind it), then, while the stall lasts,
    /// refuses what `drain` finds queued.
    pub fn watch(&self, drain: impl Fn(&StoreError)) {
        let mut state = self.lock();
        loop {
            if state.stopped {
                return;
            }
            let Some(flight) = state.in_flight.front() else {
                state.idle = true;
                state = self.wake.wait(state).unwrap_or_else(|p| p.into_inner());
                state.idle = false;
                continue;
            };
            let due = flight.since.checked_add(self.limit);
            let now = Instant::now();
            if let Some(due) = due.filter(|d| *d > now)
                && !self.stalled.load(Ordering::Acquire)
            {
                state = self
                    .wake
                    .wait_timeout(state, due - now)
                    .map_or_else(|p| p.into_inner().0, |(s, _)| s);
                continue;
            }
            let taken: Vec<Reply> = state
                .in_flight
                .iter_mut()
                .filter_map(|f| f.replies.take())
                .flatten()
                .collect();
            self.stalled.store(true, Ordering::Release);
            drop(state);
            if !taken.is_empty() {
                let replies = taken;
                log::warn!(
                    "a commit has not returned within {} s: its {} writes are answered \
                     'outcome unknown' and new writes are refused until it returns",
                    self.limit.as_secs_f64(),
                    replies.len()
                );
                let unknown = StoreError::OutcomeUnknown(format!(
                    "the commit did not return within {} s (the database may be waiting for a \
                     synchronous standby): the outcome of this write is unknown; read the key \
                     before writing it again",
                    self.limit.as_secs_f64()
                ));
                for reply in replies {
                    reply.send(Err(unknown.clone()));
                }
            }
            if let Some(refused) = self.refusal() {
                drain(&refused);
            }
            state = self.lock();
            if !state.in_flight.is_empty() && !state.stopped {
                state = self
                    .wake
                    .wait_timeout(state, DRAIN_EVERY)
                    .map_or_else(|p| p.into_inner().0, |(s, _)| s);
            }
        }
    }
}
