//! The expiry thread: takes the keys and leases that fell due from the
//! schedule (`deadlines.rs`) and submits their expiries to the writer as
//! ordinary operations, so they commit in the same group commits as every
//! other write and wake watchers the same way.
//!
//! It cannot stall other writes: keys go in operations of at most
//! [`CHUNK`] keys, and at most [`IN_FLIGHT`] of them are queued at once, so
//! a group commit carries at most that many tombstones besides the
//! clients' writes however many keys fall due together; the rest wait for
//! the next group. A lease's keys expire in one operation (one
//! transaction), as a revoke does.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use crate::deadlines::{DueLease, ExpiryCounters, Schedule, Work};
use crate::error::StoreError;
use crate::storage::seam::{Done, Due, Op, Reads};
use crate::writer::Writer;
use crate::writer::reply::Pending;

/// The most keys expired by one operation.
pub(crate) const CHUNK: usize = 512;
/// The most expiry operations queued to the writer at once.
const IN_FLIGHT: usize = 2;

/// One expiry operation queued, and what it was for.
enum Queued {
    Keys(Vec<Due>, Pending),
    Lease(DueLease, Pending),
}

/// How often deadlines are polled where the database holds them.
const POLL: Duration = Duration::from_millis(200);

/// Starts the expiry thread; it stops when the schedule is closed. With
/// `polled`, it asks the backend for the keys due (the database's
/// deadlines, which several processes share) instead of the schedule.
pub(crate) fn start(
    schedule: Arc<Schedule>,
    writer: Arc<Writer>,
    polled: Option<Arc<dyn Reads>>,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("vkv-expiry".into())
        .spawn(move || match polled {
            Some(reads) => poll(&schedule, &*reads, &writer),
            None => run(&schedule, &writer),
        })?;
    Ok(())
}

/// Where the database holds the deadlines: asks it for the keys due every
/// [`POLL`] (at once again after finding some), and expires them in
/// chunks. Every process does; each expiry commits only for a key whose
/// deadline is still there with its head locked, so one process expires
/// each key and the others find it done.
fn poll(schedule: &Schedule, reads: &dyn Reads, writer: &Writer) {
    let counters = &schedule.counters;
    loop {
        // Leases first: each in its own operation, its keys in one
        // transaction; one that a keepalive moved meanwhile is left alone.
        match reads.due_leases(CHUNK) {
            Ok(leases) => {
                let queued: Vec<Queued> = leases
                    .into_iter()
                    .filter_map(|l| {
                        let op = Op::Revoke {
                            id: l.id,
                            if_due: true,
                        };
                        let due = DueLease {
                            id: l.id,
                            ttl_ms: l.ttl_ms,
                            due_ms: l.due_ms,
                        };
                        writer.submit(op).ok().map(|p| Queued::Lease(due, p))
                    })
                    .collect();
                for q in queued {
                    finish(q, schedule, counters);
                }
            }
            Err(e) => log::warn!("cannot read the leases due ({e})"),
        }
        let pause = match reads.due(CHUNK * IN_FLIGHT) {
            Ok(keys) if !keys.is_empty() => {
                let queued: Vec<Queued> = keys
                    .chunks(CHUNK)
                    .filter_map(|chunk| match writer.submit(Op::Expire(chunk.to_vec())) {
                        Ok(pending) => Some(Queued::Keys(chunk.to_vec(), pending)),
                        Err(e) => {
                            log::warn!("expiry of {} keys not queued: {e}", chunk.len());
                            None
                        }
                    })
                    .collect();
                let failed = queued.len() < keys.len().div_ceil(CHUNK);
                for q in queued {
                    finish(q, schedule, counters);
                }
                if failed { POLL } else { Duration::ZERO }
            }
            Ok(_) => POLL,
            Err(e) => {
                log::warn!("cannot read the keys due ({e}); asking again in a second");
                Duration::from_secs(1)
            }
        };
        if !schedule.pause(pause) {
            break;
        }
    }
    log::debug!("expiry thread stopped");
}

fn run(schedule: &Schedule, writer: &Writer) {
    let counters = &schedule.counters;
    let mut queued: VecDeque<Queued> = VecDeque::new();
    // Wait for a deadline only with nothing queued; else take what is due
    // now and go on answering what was queued. `None`: closed.
    while let Some(work) = schedule.take_due(CHUNK, queued.is_empty()) {
        if work.is_empty() {
            if let Some(q) = queued.pop_front() {
                finish(q, schedule, counters);
            }
            continue;
        }
        submit(work, writer, schedule, &mut queued);
        while queued.len() >= IN_FLIGHT {
            if let Some(q) = queued.pop_front() {
                finish(q, schedule, counters);
            }
        }
    }
    for q in queued {
        finish(q, schedule, counters);
    }
    log::debug!("expiry thread stopped");
}

/// Queues the expiries of `work` to the writer.
fn submit(work: Work, writer: &Writer, schedule: &Schedule, queued: &mut VecDeque<Queued>) {
    let Work { keys, leases } = work;
    for lease in leases {
        match writer.submit(Op::Revoke {
            id: lease.id,
            if_due: false,
        }) {
            Ok(pending) => queued.push_back(Queued::Lease(lease, pending)),
            Err(e) => failed_lease(schedule, lease, &e),
        }
    }
    if !keys.is_empty() {
        match writer.submit(Op::Expire(keys.clone())) {
            Ok(pending) => queued.push_back(Queued::Keys(keys, pending)),
            Err(e) => failed_keys(schedule, &keys, &e),
        }
    }
}

/// Waits for a queued expiry; counts it, or schedules it again if it
/// failed.
fn finish(queued: Queued, schedule: &Schedule, counters: &ExpiryCounters) {
    match queued {
        Queued::Keys(keys, pending) => match pending.wait() {
            Ok(Done::Written(written)) => {
                // The tombstones come in the order of `keys`, some left out.
                let mut due = keys.iter();
                for w in &written {
                    if let Some(d) = due.find(|d| d.key == w.version.key) {
                        counters.observe(w.version.timestamp_ms - d.due_ms);
                    }
                }
            }
            Ok(_) => {}
            Err(e) => failed_keys(schedule, &keys, &e),
        },
        Queued::Lease(lease, pending) => match pending.wait() {
            Ok(Done::Written(written)) => {
                if let Some(w) = written.first() {
                    counters.observe(w.version.timestamp_ms - lease.due_ms);
                }
            }
            Ok(_) | Err(StoreError::LeaseNotFound(_)) => {}
            Err(e) => failed_lease(schedule, lease, &e),
        },
    }
}

fn failed_keys(schedule: &Schedule, keys: &[Due], e: &StoreError) {
    log::warn!(
        "expiry of {} keys failed ({e}); retrying in 1 s",
        keys.len()
    );
    schedule.retry_keys(keys);
}

fn failed_lease(schedule: &Schedule, lease: DueLease, e: &StoreError) {
    log::warn!("expiry of lease {} failed ({e}); retrying in 1 s", lease.id);
    schedule.retry_lease(lease.id, lease.ttl_ms);
}
