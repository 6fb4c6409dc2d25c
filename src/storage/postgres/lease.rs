//! Read leases: how a replica serves a key's latest version from its cache
//! with no round trip, and still never returns a version older than a
//! write acknowledged anywhere before the read began.
//!
//! The rules (docs/design.md, "Read leases", has the argument):
//! - A replica holds a lease while its `LISTEN` connection is up: a row of
//!   `vkv_replicas` says until when (the primary's clock: a lease after the
//!   primary received the renewal), renewed every third of the lease. It serves cached latest versions only until its
//!   own deadline, `lease * 0.9` after it *sent* the renewal (its clock may
//!   run a little fast).
//! - Every write transaction takes the lease lock shared; a renewal takes
//!   it exclusive. Before `COMMIT` a write reads who holds a lease, and
//!   `NOTIFY`s its keys and a marker `g ORIGIN SEQ KEYS`.
//! - A holder drops the keys of every marker from another replica from its
//!   cache, then acknowledges the group in `vkv_acks`.
//! - The write's answer waits, after the commit, until every holder it saw
//!   acknowledged it, or that holder's lease ran out, or it holds another
//!   lease (`epoch`) than the one the write saw: the writer reads the
//!   holders' rows again after 0.1, 0.2, 0.4 ... ms (at most 2 ms apart).
//! - A renewal that extends a lease still valid on the primary's clock
//!   counts at once: every write since that lease was taken saw it. One
//!   that takes a lease anew `NOTIFY`s `s ID N` and counts only once its own
//!   notification came back: every write committed before it was then seen
//!   (notifications arrive in commit order), so a replica whose lease had
//!   lapsed cannot keep a key a write it did not wait for changed.
//! - After its `LISTEN` connection is lost a replica holds no lease, deletes
//!   its row when it reconnects, and empties its cache before the next one
//!   (notifications were missed).
//! - Renewals and acknowledgements commit without waiting for the disk; a
//!   writer that reconnects (maybe to a promoted standby, which may have
//!   missed a renewal) holds its next answers for a lease.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The channel of markers and renewals.
pub(crate) const LEASE_CHANNEL: &str = "vkv_lease";

/// The advisory lock writes take shared and renewals exclusive ("vkvL").
pub(crate) const LEASE_LOCK: i64 = 0x766b_764c;

/// A replica's lease state.
pub(crate) struct Leases {
    /// This replica's id (random per process).
    pub me: i64,
    /// How long a lease lasts (zero: no leases; every latest read is
    /// confirmed by the database).
    pub lease: Duration,
    epoch: Instant,
    /// Nanoseconds after `epoch` until which the lease holds (0: none).
    deadline: AtomicU64,
    /// Leases taken anew (not extended): 1 after the first; each lapse or
    /// lost connection adds one.
    taken: AtomicU64,
}

impl Leases {
    pub fn new(lease: Duration) -> Leases {
        // Zero is "no replica" in no message, and ids stay positive.
        let me = (rand_u64() >> 1).max(1) as i64;
        Leases {
            me,
            lease,
            epoch: Instant::now(),
            deadline: AtomicU64::new(0),
            taken: AtomicU64::new(0),
        }
    }

    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Whether a cached latest version may be served now.
    pub fn held(&self) -> bool {
        self.nanos(Instant::now()) < self.deadline.load(Ordering::Acquire)
    }

    /// The lease holds until `sent + lease * 0.9`, `sent` being when its
    /// renewal was sent.
    pub fn grant(&self, sent: Instant) {
        let until = sent + self.lease.mul_f64(0.9);
        self.deadline.store(self.nanos(until), Ordering::Release);
    }

    /// A lease taken anew was granted (see [`Leases::taken`]).
    pub fn count_taken(&self) {
        self.taken.fetch_add(1, Ordering::Relaxed);
    }

    /// How many leases were taken anew (not extended) so far.
    pub fn taken(&self) -> u64 {
        self.taken.load(Ordering::Relaxed)
    }

    /// No lease from now on (until the next grant).
    pub fn revoke(&self) {
        self.deadline.store(0, Ordering::Release);
    }

    /// Whether a renewal is due: no lease, or less than two thirds left.
    pub fn renewal_due(&self) -> bool {
        let left = self
            .deadline
            .load(Ordering::Acquire)
            .saturating_sub(self.nanos(Instant::now()));
        !self.lease.is_zero() && Duration::from_nanos(left) < self.lease.mul_f64(0.6)
    }
}

/// A random number (std's hasher keys are random per process).
fn rand_u64() -> u64 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one((std::process::id(), Instant::now()))
}

/// A message on [`LEASE_CHANNEL`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Message {
    /// A write group of `origin` committed; its `keys` key notifications
    /// came just before.
    Group { origin: i64, seq: u64, keys: usize },
    /// Renewal `n` of `id` committed.
    Sync { id: i64, n: u64 },
    /// `origin` finds no free connection slot for its writer or listener:
    /// the others' reads yield theirs for a moment (`slots.rs`).
    Yield { origin: i64 },
    /// A keepalive of lease `id` committed: it now runs out at `due_ms`
    /// (`dues.rs`).
    Kept { id: i64, due_ms: i64 },
}

impl Message {
    pub fn parse(payload: &str) -> Option<Message> {
        let mut words = payload.split(' ');
        let kind = words.next()?;
        let id: i64 = words.next()?.parse().ok()?;
        match kind {
            "g" => Some(Message::Group {
                origin: id,
                seq: words.next()?.parse().ok()?,
                keys: words.next()?.parse().ok()?,
            }),
            "s" => Some(Message::Sync {
                id,
                n: words.next()?.parse().ok()?,
            }),
            "y" => Some(Message::Yield { origin: id }),
            "k" => Some(Message::Kept {
                id,
                due_ms: words.next()?.parse().ok()?,
            }),
            _ => None,
        }
    }

    /// The statement that sends it.
    pub fn notify(&self) -> String {
        format!("SELECT pg_notify('{LEASE_CHANNEL}', '{}')", self.payload())
    }

    pub fn payload(&self) -> String {
        match self {
            Message::Group { origin, seq, keys } => format!("g {origin} {seq} {keys}"),
            Message::Sync { id, n } => format!("s {id} {n}"),
            Message::Yield { origin } => format!("y {origin}"),
            Message::Kept { id, due_ms } => format!("k {id} {due_ms}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        for m in [
            Message::Group {
                origin: 7,
                seq: 12,
                keys: 3,
            },
            Message::Sync { id: 9, n: 4 },
            Message::Yield { origin: -3 },
            Message::Kept {
                id: 5,
                due_ms: 1_780_000_000_123,
            },
        ] {
            assert_eq!(Message::parse(&m.payload()), Some(m));
        }
        assert_eq!(Message::parse("g 7 x 1"), None);
        assert_eq!(Message::parse("k 5"), None);
        assert_eq!(Message::parse("a 9 7:12"), None);
        assert_eq!(Message::parse(""), None);
    }

    #[test]
    fn a_lease_holds_until_its_deadline_only() {
        let l = Leases::new(Duration::from_millis(200));
        assert!(!l.held() && l.renewal_due());
        l.grant(Instant::now());
        assert!(l.held() && !l.renewal_due());
        l.grant(Instant::now() - Duration::from_secs(1));
        assert!(!l.held());
        l.grant(Instant::now());
        l.revoke();
        assert!(!l.held());
        let off = Leases::new(Duration::ZERO);
        assert!(!off.renewal_due());
    }
}
