//! What the writer thread shares with the rest of the store (its counters,
//! its last failure, the cache, watchers and schedule it keeps in step),
//! and how a committed operation is made visible to them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::cache::{LatestCache, WriteTicket};
use crate::deadlines::Schedule;
use crate::error::StoreError;
use crate::storage::seam::Done;
use crate::watch::Watchers;

/// Counters of the group commit, for metrics and benchmarks.
#[derive(Debug, Default)]
pub struct WriterCounters {
    /// Transactions committed.
    pub batches: AtomicU64,
    /// Operations committed, over all transactions.
    pub ops: AtomicU64,
}

/// The last failure of a write transaction (disk full, I/O error, file
/// gone), kept until a transaction commits again.
#[derive(Debug, Default)]
pub(crate) struct WriteFault(Mutex<Option<StoreError>>);

impl WriteFault {
    /// The failure, if the last transaction failed.
    pub fn get(&self) -> Option<StoreError> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(super) fn set(&self, fault: Option<StoreError>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = fault;
    }
}

/// What the writer thread needs besides its connection.
pub(crate) struct WriterContext {
    pub cache: Arc<LatestCache>,
    pub watchers: Arc<Watchers>,
    /// Keys' deadlines and leases, kept in step with what commits.
    pub schedule: Arc<Schedule>,
    pub counters: Arc<WriterCounters>,
    pub fault: Arc<WriteFault>,
    pub max_batch: usize,
    /// The longest a commit may take before its callers are answered
    /// "outcome unknown" (`None`: no bound).
    pub commit_timeout: Option<Duration>,
}

/// Makes a committed operation visible: cache first, then watchers. Runs
/// before the caller is answered, so after an ack every GET sees this
/// version or a newer one. `tickets`: the cache's, taken before the
/// transaction, one per version written.
pub(super) fn publish(done: &Done, tickets: &[WriteTicket], ctx: &WriterContext) {
    match done {
        Done::Written(written) => {
            for w in written {
                let v = &w.version;
                ctx.schedule.written(&v.key, v.version, w.deadline);
                if v.expired {
                    ctx.schedule
                        .counters
                        .expired
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
            for (w, ticket) in written.iter().zip(tickets) {
                ctx.cache.insert_committed(*ticket, Arc::clone(&w.version));
                ctx.watchers.notify(&w.version);
            }
            // Each op writes one version per key it names; were there more,
            // they would only stay out of the cache.
            for w in written.iter().skip(tickets.len()) {
                ctx.cache.remove(&w.version.key);
                ctx.watchers.notify(&w.version);
            }
        }
        Done::Purged { key, .. } => {
            ctx.schedule.removed(key);
            ctx.cache.remove(key);
            ctx.watchers.notify_change(key);
        }
        Done::Granted(lease) => {
            ctx.schedule.granted(lease);
        }
        Done::Kept(_) => {}
    }
}
