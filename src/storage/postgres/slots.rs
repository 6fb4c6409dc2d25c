//! Connection slots when PostgreSQL has none free (`max_connections`
//! reached, error 53300): the writer and the `LISTEN` connection come
//! first, reads wait.
//!
//! A replica whose writer (or listener) cannot connect for want of a slot
//! yields its own read connections (each one given back is closed, none is
//! opened) and asks the other replicas to yield theirs for a moment (a
//! [`Message::Yield`](super::lease::Message) on the lease channel), then
//! tries again for a while. Without the asking, a replica whose read pool
//! filled the slots first would keep them for as long as it has reads,
//! and another replica's writes would fail until its load stopped.
//!
//! A read pool that cannot grow for want of a slot gives one of its
//! connections back as well (the next one returned to it is closed): slots
//! are short, and a replica whose writer holds no connection at all cannot
//! ask. Its writer tries again far more often than a pool grows, so it
//! takes the slot.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use postgres::error::SqlState;

use super::client::ConnectError;

/// How long a writer or listener tries again for a slot before it gives
/// up (its write then answers `503`).
const SLOT_WAIT: Duration = Duration::from_secs(2);

/// How long a replica's reads yield their slots when another replica asks.
/// Below the read pool's wait for a connection: a read held back by it is
/// late, not failed.
pub(crate) const ASKED_FOR: Duration = Duration::from_millis(500);

/// The longest pause between two tries.
const MAX_PAUSE: Duration = Duration::from_millis(50);

/// A replica's state of yielding: shared by its read pool's manager, its
/// writer and its `LISTEN` thread.
pub(crate) struct Slots {
    epoch: Instant,
    /// This replica's connections that are waiting for a slot.
    starving: AtomicUsize,
    /// Another replica asked for slots: yield until then (ms from `epoch`).
    asked_until: AtomicU64,
    /// A request to the other replicas, for the `LISTEN` thread to send.
    ask: AtomicBool,
    /// The read pool found no free slot: the next connection given back to
    /// it is closed.
    give_one: AtomicBool,
}

impl Default for Slots {
    fn default() -> Self {
        Slots {
            epoch: Instant::now(),
            starving: AtomicUsize::new(0),
            asked_until: AtomicU64::new(0),
            ask: AtomicBool::new(false),
            give_one: AtomicBool::new(false),
        }
    }
}

/// An error that may say the server has no free connection slot.
pub(crate) trait NoSlot {
    fn no_slot(&self) -> bool;
}

impl NoSlot for postgres::Error {
    fn no_slot(&self) -> bool {
        self.code() == Some(&SqlState::TOO_MANY_CONNECTIONS)
    }
}

impl NoSlot for ConnectError {
    fn no_slot(&self) -> bool {
        matches!(self, ConnectError::Pg(e) if e.no_slot())
    }
}

/// Decrements the starving count when a wait ends, however it ends.
struct Starving<'a>(&'a AtomicUsize);

impl Drop for Starving<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Slots {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether read connections give their slots up now: this replica's
    /// writer or listener waits for one, or another replica asked.
    pub fn yielding(&self) -> bool {
        self.starving.load(Ordering::Acquire) > 0
            || self.now_ms() < self.asked_until.load(Ordering::Acquire)
    }

    /// Whether a read connection given back now is closed: while yielding,
    /// or once after the pool found no free slot.
    pub fn close_returned(&self) -> bool {
        self.yielding() || self.give_one.swap(false, Ordering::AcqRel)
    }

    /// The read pool found no free slot to grow.
    pub fn pool_found_none(&self) {
        self.give_one.store(true, Ordering::Release);
    }

    /// Another replica asked for slots.
    pub fn asked(&self) {
        let until = self
            .now_ms()
            .saturating_add(u64::try_from(ASKED_FOR.as_millis()).unwrap_or(u64::MAX));
        self.asked_until.fetch_max(until, Ordering::AcqRel);
    }

    /// Whether a request to the other replicas is due (taken: the
    /// `LISTEN` thread sends it once).
    pub fn take_ask(&self) -> bool {
        self.ask.swap(false, Ordering::AcqRel)
    }

    /// Connects with `connect`; when the server has no free slot, yields
    /// this replica's read connections (`release` closes the idle ones),
    /// asks the other replicas to yield theirs (`ask`, and through the
    /// `LISTEN` thread), and tries again with short pauses for up to
    /// [`SLOT_WAIT`]. Any other error is returned at once.
    pub fn connect<T, E: NoSlot>(
        &self,
        mut connect: impl FnMut() -> Result<T, E>,
        ask: impl FnOnce(),
        mut release: impl FnMut(),
    ) -> Result<T, E> {
        let first = connect();
        match &first {
            Err(e) if e.no_slot() => {}
            _ => return first,
        }
        self.starving.fetch_add(1, Ordering::AcqRel);
        let _starving = Starving(&self.starving);
        ask();
        let started = Instant::now();
        let mut asked = started;
        self.ask.store(true, Ordering::Release);
        let mut pause = Duration::from_millis(5);
        loop {
            release();
            std::thread::sleep(pause);
            match connect() {
                Err(e) if e.no_slot() && started.elapsed() < SLOT_WAIT => {}
                done => return done,
            }
            // The other replicas yield for a moment only: ask again
            // before it ends.
            if asked.elapsed() >= ASKED_FOR / 2 {
                self.ask.store(true, Ordering::Release);
                asked = Instant::now();
            }
            pause = (pause * 2).min(MAX_PAUSE);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pool_that_found_no_slot_gives_one_connection_back() {
        let slots = Slots::default();
        assert!(!slots.close_returned());
        slots.pool_found_none();
        slots.pool_found_none();
        assert!(slots.close_returned());
        assert!(!slots.close_returned(), "one, however often it found none");
    }

    #[test]
    fn a_request_from_another_replica_yields_for_a_moment() {
        let slots = Slots::default();
        assert!(!slots.yielding());
        slots.asked();
        assert!(slots.yielding());
        assert!(!slots.take_ask(), "asked is not asking");
        assert!(slots.close_returned());
        let until = Instant::now() + ASKED_FOR * 4;
        while slots.yielding() {
            assert!(
                Instant::now() < until,
                "still yielding after {:?}",
                ASKED_FOR * 4
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
