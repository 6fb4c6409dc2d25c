//! The single writer thread and its group commit.
//!
//! Every write of this process goes through one thread that owns the
//! backend's write connection (a [`Committer`]). It takes whatever
//! operations are queued (up to `max_batch`), has the backend apply them in
//! one transaction and commit once (one fsync for all of them), updates the
//! cache, wakes watchers, and only then answers each caller. A backend may
//! hold a committed group's answers (PostgreSQL: until the replicas holding
//! read leases acknowledge it); the writer then commits the next groups
//! meanwhile and answers in commit order (`flight.rs`). This loop does
//! not know which backend runs; what happens inside the transaction
//! (version numbers, conditions, savepoints, retention) is the backend's.
//! - A failed condition (`if_version`) or a missing key refuses only its
//!   own operation: neighbours in the group still commit.
//! - If the transaction itself fails (disk full, I/O error), each operation
//!   is retried alone, so one bad write never fails its neighbours.
//! - The last failure is remembered until a transaction commits again (for
//!   `/health`).
//! - A commit that does not return is bounded (`stall.rs`): its callers
//!   are answered "outcome unknown" after the limit, and new writes are
//!   refused until it returns.

mod context;
mod flight;
pub(crate) mod reply;
mod stall;

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded};

use crate::cache::{LatestCache, WriteTicket};
use crate::error::StoreError;
use crate::storage::seam::{Committer, Done, Op};
pub(crate) use context::{WriteFault, WriterContext, WriterCounters};
use flight::{Flight, Group, Held};
use reply::{Pending, Reply};
use stall::Stall;

enum Msg {
    Op(Op, Reply),
    Stop,
}

/// Handle to the writer thread.
pub(crate) struct Writer {
    queue: Sender<Msg>,
    thread: std::sync::Mutex<Option<JoinHandle<()>>>,
    /// The bound on a commit, if there is one.
    stall: Option<Arc<Stall>>,
}

impl Writer {
    /// Starts the writer thread on `conn`.
    pub fn start(
        conn: Box<dyn Committer>,
        ctx: WriterContext,
        queue_len: usize,
    ) -> std::io::Result<Writer> {
        let (queue, rx) = bounded(queue_len.max(1));
        let stall = ctx.commit_timeout.map(|limit| Arc::new(Stall::new(limit)));
        if let Some(stall) = &stall {
            let (stall, rx, tx) = (Arc::clone(stall), rx.clone(), queue.clone());
            std::thread::Builder::new()
                .name("vkv-writer-watchdog".into())
                .spawn(move || stall.watch(|refused| refuse_queued(&rx, &tx, refused)))?;
        }
        let writer_stall = stall.clone();
        let thread = std::thread::Builder::new()
            .name("vkv-writer".into())
            .spawn(move || run(conn, &rx, &ctx, writer_stall.as_deref()))?;
        Ok(Writer {
            queue,
            thread: std::sync::Mutex::new(Some(thread)),
            stall,
        })
    }

    /// Why writes are refused now (a commit has not returned within the
    /// limit), if they are.
    pub fn refusal(&self) -> Option<StoreError> {
        self.stall.as_ref().and_then(|s| s.refusal())
    }

    /// Whether the queue is at most half full: an operation queued now
    /// will not wait for room (unless others fill the other half first).
    pub fn has_room(&self) -> bool {
        let capacity = self.queue.capacity().unwrap_or(usize::MAX);
        self.queue.len() < capacity / 2
    }

    /// Queues `op` and waits for its outcome; blocks while the queue is
    /// full (back-pressure).
    pub fn apply(&self, op: Op) -> Result<Done, StoreError> {
        self.submit(op)?.wait()
    }

    /// Queues `op` without waiting for its commit (blocks only while the
    /// queue is full).
    pub fn submit(&self, op: Op) -> Result<Pending, StoreError> {
        if let Some(refused) = self.refusal() {
            return Err(refused);
        }
        let (reply, outcome) = oneshot::channel();
        self.queue
            .send(Msg::Op(op, Reply::Wait(reply)))
            .map_err(|_| StoreError::Closed)?;
        Ok(Pending(outcome))
    }

    /// Queues `op`; `then` runs on the writer thread with its outcome (at
    /// once with `Closed` if the writer has stopped). Blocks only while the
    /// queue is full.
    pub fn submit_then(&self, op: Op, then: Box<dyn FnOnce(Result<Done, StoreError>) + Send>) {
        if let Some(refused) = self.refusal() {
            Reply::Then(then).send(Err(refused));
            return;
        }
        if let Err(refused) = self.queue.send(Msg::Op(op, Reply::Then(then)))
            && let Msg::Op(_, reply) = refused.0
        {
            reply.send(Err(StoreError::Closed));
        }
    }

    /// Commits everything queued so far, stops the thread and waits for it.
    pub fn stop(&self) {
        let _ = self.queue.send(Msg::Stop);
        if self.refusal().is_some() {
            // Its thread is stuck in a commit that may never return: do not
            // wait for it (its callers have been answered).
            log::warn!("stopping while a commit has not returned: not waiting for it");
            return;
        }
        let handle = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

/// Refuses every operation queued now with `refused` (the writer is
/// stalled); a stop found among them is queued again for the writer.
fn refuse_queued(rx: &Receiver<Msg>, tx: &Sender<Msg>, refused: &StoreError) {
    let mut stop = false;
    while let Ok(msg) = rx.try_recv() {
        match msg {
            Msg::Op(_, reply) => reply.send(Err(refused.clone())),
            Msg::Stop => stop = true,
        }
    }
    if stop {
        let _ = tx.try_send(Msg::Stop);
    }
}

/// The first pause before the writer asks the backend again whether held
/// groups may be answered, when no new operation comes; it doubles, up to
/// [`MAX_PAUSE`]. A PostgreSQL lease holder acknowledges a group within a
/// few hundred microseconds.
const FIRST_PAUSE: Duration = Duration::from_micros(100);
const MAX_PAUSE: Duration = Duration::from_millis(2);

/// At most this many groups wait for their answers at once; past it, the
/// writer waits for the oldest before committing more.
const MAX_IN_FLIGHT: usize = 64;

fn run(
    mut conn: Box<dyn Committer>,
    rx: &Receiver<Msg>,
    ctx: &WriterContext,
    stall: Option<&Stall>,
) {
    let mut batch: Vec<(Op, Reply)> = Vec::with_capacity(ctx.max_batch);
    let mut flight = Flight::default();
    let mut stopping = false;
    // While groups are held: when to ask the backend again, and the pause
    // after that.
    let mut asking = Asking::new();
    while !(stopping && flight.is_empty()) {
        if !stopping && flight.len() < MAX_IN_FLIGHT {
            let first = match asking.next {
                None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                Some(at) => rx.recv_deadline(at),
            };
            match first {
                Ok(Msg::Op(op, reply)) => batch.push((op, reply)),
                Ok(Msg::Stop) | Err(RecvTimeoutError::Disconnected) => stopping = true,
                Err(RecvTimeoutError::Timeout) => {}
            }
            // Take what else is queued; on stop, everything, so that no
            // write that was accepted is dropped.
            loop {
                match rx.try_recv() {
                    Ok(Msg::Op(op, reply)) => batch.push((op, reply)),
                    Ok(Msg::Stop) => stopping = true,
                    Err(_) => break,
                }
                if batch.len() >= ctx.max_batch {
                    commit_group(&mut conn, &mut batch, ctx, stall, &mut flight);
                    flight.answer(conn.as_ref(), ctx, stall);
                }
            }
        } else if let Some(at) = asking.next {
            std::thread::sleep(at.saturating_duration_since(Instant::now()));
        }
        commit_group(&mut conn, &mut batch, ctx, stall, &mut flight);
        asking.turn(conn.as_mut());
        flight.answer(conn.as_ref(), ctx, stall);
    }
    conn.close();
    if let Some(stall) = stall {
        stall.stop();
    }
    log::debug!("writer stopped");
}

/// When the writer asks the backend again whether held groups may be
/// answered: [`FIRST_PAUSE`] after a group is first held, then after
/// doubling pauses while nothing is released, whether or not new groups
/// commit meanwhile (so that answers are not starved by a steady stream
/// of writes).
struct Asking {
    next: Option<Instant>,
    pause: Duration,
}

impl Asking {
    fn new() -> Asking {
        Asking {
            next: None,
            pause: FIRST_PAUSE,
        }
    }

    /// After a turn of the loop: asks if it is time.
    fn turn(&mut self, conn: &mut dyn Committer) {
        let held = conn.unsettled();
        if held == 0 {
            self.next = None;
            return;
        }
        let now = Instant::now();
        match self.next {
            None => {
                self.pause = FIRST_PAUSE;
                self.next = Some(now + self.pause);
            }
            Some(at) if now >= at => {
                conn.settle();
                let left = conn.unsettled();
                self.pause = if left < held {
                    FIRST_PAUSE
                } else {
                    (self.pause * 2).min(MAX_PAUSE)
                };
                self.next = (left > 0).then(|| Instant::now() + self.pause);
            }
            Some(_) => {}
        }
    }
}

/// Commits the group in `batch` (leaving it empty) and queues it in
/// `flight` for its answers.
fn commit_group(
    conn: &mut Box<dyn Committer>,
    batch: &mut Vec<(Op, Reply)>,
    ctx: &WriterContext,
    stall: Option<&Stall>,
    flight: &mut Flight,
) {
    if batch.is_empty() {
        return;
    }
    let (ops, replies): (Vec<Op>, Vec<Reply>) = std::mem::take(batch).into_iter().unzip();
    let refs: Vec<&Op> = ops.iter().collect();
    // Before the transaction: what another process commits on these keys
    // from now on must keep this group's versions out of the cache.
    let tickets: Vec<Vec<WriteTicket>> = ops.iter().map(|op| tickets(&ctx.cache, op)).collect();
    let replies = match stall {
        Some(stall) => Held::Watchdog(stall.arm(replies)),
        None => Held::Here(replies),
    };
    let outcome = conn.commit(&refs);
    match outcome {
        Ok(results) => {
            ctx.fault.set(None);
            // Health probes are not writes of the workload.
            let writes = ops.iter().filter(|op| !matches!(op, Op::Probe)).count();
            flight::count(ctx, writes);
            flight.push(Group {
                replies,
                outcome: Ok(results),
                tickets,
            });
        }
        Err(e) if ops.len() == 1 || !conn.may_retry_alone() => {
            log::warn!("write failed: {e}");
            ctx.fault.set(Some(e.clone()));
            flight.push(Group {
                replies,
                outcome: Err(e),
                tickets,
            });
        }
        Err(e) => {
            log::warn!("group of {} failed ({e}); retrying one by one", ops.len());
            // Answered "outcome unknown" by the watchdog meanwhile: nothing
            // is retried.
            let Some(replies) = replies.take(stall) else {
                ctx.fault.set(Some(e));
                return;
            };
            for one in ops.into_iter().zip(replies) {
                commit_group(conn, &mut vec![one], ctx, stall, flight);
            }
        }
    }
}

/// The cache's tickets for the keys `op` may write, in the order its
/// versions come back.
fn tickets(cache: &LatestCache, op: &Op) -> Vec<WriteTicket> {
    match op {
        Op::Put(item) => vec![cache.write_ticket(&item.key)],
        Op::Delete { key, .. } => vec![cache.write_ticket(key)],
        Op::Batch(items) => items.iter().map(|i| cache.write_ticket(&i.key)).collect(),
        // Their versions are not cached by the writer (only dropped).
        Op::Expire(_)
        | Op::Grant { .. }
        | Op::Revoke { .. }
        | Op::Keepalive { .. }
        | Op::Purge { .. }
        | Op::Probe => Vec::new(),
    }
}
