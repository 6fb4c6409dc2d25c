//! The deadlines of leases as this replica last learnt them, so that a GET
//! of a key on a lease shows when it expires without asking the database
//! (a cached read under a read lease asks it nothing). Learnt from this
//! replica's grants and keepalives once they commit, from other replicas'
//! keepalives (`k ID DUE` on the lease channel, `listen.rs`), and from
//! every read of a version on a lease or of a lease's row. A keepalive
//! only moves a lease's deadline later (its TTL from the database's clock
//! now), so the latest known is the largest learnt, whatever order the news
//! arrives in.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use crate::version::now_ms;

/// Leases past their deadline by this long are forgotten when the map is
/// pruned: revoked or expired by now (ids are never reused).
const FORGET_AFTER_MS: i64 = 60_000;

/// The map is pruned once it holds this many leases, then at twice what
/// was left.
const FIRST_PRUNE: usize = 1024;

/// Lease id to its deadline, milliseconds since the epoch.
pub(crate) struct LeaseDues {
    inner: Mutex<Dues>,
}

struct Dues {
    due: HashMap<u64, i64>,
    prune_at: usize,
}

impl Default for LeaseDues {
    fn default() -> Self {
        LeaseDues {
            inner: Mutex::new(Dues {
                due: HashMap::new(),
                prune_at: FIRST_PRUNE,
            }),
        }
    }
}

impl LeaseDues {
    fn lock(&self) -> MutexGuard<'_, Dues> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Lease `id` runs out at `due_ms` or later.
    pub fn learn(&self, id: u64, due_ms: i64) {
        let mut d = self.lock();
        let known = d.due.entry(id).or_insert(due_ms);
        *known = (*known).max(due_ms);
        if d.due.len() >= d.prune_at {
            let before = now_ms().saturating_sub(FORGET_AFTER_MS);
            d.due.retain(|_, due| *due > before);
            d.prune_at = (d.due.len() * 2).max(FIRST_PRUNE);
        }
    }

    /// Lease `id` is gone (revoked or expired through this replica).
    pub fn forget(&self, id: u64) {
        self.lock().due.remove(&id);
    }

    /// When lease `id` runs out, if known.
    pub fn due(&self, id: u64) -> Option<i64> {
        self.lock().due.get(&id).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_deadline_learnt_wins_and_old_leases_are_pruned() {
        let dues = LeaseDues::default();
        assert_eq!(dues.due(1), None);
        dues.learn(1, 5_000);
        dues.learn(1, 4_000);
        assert_eq!(dues.due(1), Some(5_000));
        dues.learn(1, 6_000);
        assert_eq!(dues.due(1), Some(6_000));
        dues.forget(1);
        assert_eq!(dues.due(1), None);
        // Long past their deadline: pruned once the map is full.
        let live = now_ms() + 60_000;
        dues.learn(7, live);
        for id in 100..100 + FIRST_PRUNE as u64 {
            dues.learn(id, 1_000);
        }
        assert_eq!(dues.due(7), Some(live));
        assert_eq!(dues.due(100), None);
        assert!(dues.lock().due.len() < FIRST_PRUNE);
    }
}
