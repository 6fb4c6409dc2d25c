//! The single writer thread and its group commit.
//!
//! Every write of this process goes through one thread that owns the
//! backend's write connection (a [`Committer`]). It takes whatever
//! operations are queued (up to `max_batch`), has the backend apply them in
//! one transaction and commit once (one fsync for all of them), updates the
//! cache, wakes watchers, and only then answers each caller. This loop does
//! not know which backend runs; what happens inside the transaction
//! (version numbers, conditions, savepoints, retention) is the backend's.
//! - A failed condition (`if_version`) or a missing key refuses only its
//!   own operation: neighbours in the group still commit.
//! - If the transaction itself fails (disk full, I/O error), each operation
//!   is retried alone, so one bad write never fails its neighbours.
//! - The last failure is remembered until a transaction commits again (for
//!   `/health`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, bounded};

use crate::cache::LatestCache;
use crate::error::StoreError;
use crate::storage::{Committer, Done, Op};
use crate::watch::Watchers;

/// Where the writer sends an operation's outcome: a oneshot that a caller
/// waits on (it parks the waiting thread at once, where a crossbeam channel
/// spins and yields first), or a callback run on the writer thread right
/// after the commit, so that no thread waits at all (an HTTP put).
pub(crate) enum Reply {
    Wait(oneshot::Sender<Result<Done, StoreError>>),
    Then(Box<dyn FnOnce(Result<Done, StoreError>) + Send>),
}

impl Reply {
    fn send(self, outcome: Result<Done, StoreError>) {
        match self {
            Reply::Wait(tx) => {
                let _ = tx.send(outcome);
            }
            Reply::Then(then) => {
                // A panicking callback must not take the writer down.
                let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| then(outcome)));
                if ran.is_err() {
                    log::error!("a commit callback panicked");
                }
            }
        }
    }
}

/// A queued operation whose outcome has not been awaited yet.
pub(crate) struct Pending(oneshot::Receiver<Result<Done, StoreError>>);

impl Pending {
    /// Waits for the commit (or the failure) of the operation.
    pub fn wait(self) -> Result<Done, StoreError> {
        self.0.recv().map_err(|_| StoreError::Closed)?
    }
}

enum Msg {
    Op(Op, Reply),
    Stop,
}

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

    fn set(&self, fault: Option<StoreError>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = fault;
    }
}

/// What the writer thread needs besides its connection.
pub(crate) struct WriterContext {
    pub cache: Arc<LatestCache>,
    pub watchers: Arc<Watchers>,
    pub counters: Arc<WriterCounters>,
    pub fault: Arc<WriteFault>,
    pub max_batch: usize,
}

/// Handle to the writer thread.
pub(crate) struct Writer {
    queue: Sender<Msg>,
    thread: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl Writer {
    /// Starts the writer thread on `conn`.
    pub fn start(
        conn: Box<dyn Committer>,
        ctx: WriterContext,
        queue_len: usize,
    ) -> std::io::Result<Writer> {
        let (queue, rx) = bounded(queue_len.max(1));
        let thread = std::thread::Builder::new()
            .name("vkv-writer".into())
            .spawn(move || run(conn, &rx, &ctx))?;
        Ok(Writer {
            queue,
            thread: std::sync::Mutex::new(Some(thread)),
        })
    }

    /// Queues `op` and waits for its outcome; blocks while the queue is
    /// full (back-pressure).
    pub fn apply(&self, op: Op) -> Result<Done, StoreError> {
        self.submit(op)?.wait()
    }

    /// Queues `op` without waiting for its commit (blocks only while the
    /// queue is full).
    pub fn submit(&self, op: Op) -> Result<Pending, StoreError> {
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
        if let Err(refused) = self.queue.send(Msg::Op(op, Reply::Then(then)))
            && let Msg::Op(_, reply) = refused.0
        {
            reply.send(Err(StoreError::Closed));
        }
    }

    /// Commits everything queued so far, stops the thread and waits for it.
    pub fn stop(&self) {
        let _ = self.queue.send(Msg::Stop);
        let handle = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

fn run(mut conn: Box<dyn Committer>, rx: &Receiver<Msg>, ctx: &WriterContext) {
    let mut batch: Vec<(Op, Reply)> = Vec::with_capacity(ctx.max_batch);
    let mut stopping = false;
    while !stopping {
        match rx.recv() {
            Ok(Msg::Op(op, reply)) => batch.push((op, reply)),
            Ok(Msg::Stop) | Err(_) => stopping = true,
        }
        // Take what else is queued; on stop, everything, so that no write
        // that was accepted is dropped.
        loop {
            match rx.try_recv() {
                Ok(Msg::Op(op, reply)) => batch.push((op, reply)),
                Ok(Msg::Stop) => stopping = true,
                Err(_) => break,
            }
            if batch.len() >= ctx.max_batch {
                commit_and_answer(&mut conn, std::mem::take(&mut batch), ctx);
            }
        }
        commit_and_answer(&mut conn, std::mem::take(&mut batch), ctx);
    }
    conn.close();
    log::debug!("writer stopped");
}

fn commit_and_answer(conn: &mut Box<dyn Committer>, batch: Vec<(Op, Reply)>, ctx: &WriterContext) {
    if batch.is_empty() {
        return;
    }
    let ops: Vec<&Op> = batch.iter().map(|(op, _)| op).collect();
    let committed = conn.commit(&ops);
    match committed {
        Ok(results) => {
            ctx.fault.set(None);
            ctx.counters.batches.fetch_add(1, Ordering::Relaxed);
            // Health probes are not writes of the workload.
            let ops = batch.iter().filter(|(op, _)| !matches!(op, Op::Probe));
            ctx.counters
                .ops
                .fetch_add(ops.count() as u64, Ordering::Relaxed);
            for ((_, reply), result) in batch.into_iter().zip(results) {
                if let Ok(done) = &result {
                    publish(done, ctx);
                }
                reply.send(result);
            }
        }
        Err(e) if batch.len() == 1 || !conn.may_retry_alone() => {
            log::warn!("write failed: {e}");
            ctx.fault.set(Some(e.clone()));
            for (_, reply) in batch {
                reply.send(Err(e.clone()));
            }
        }
        Err(e) => {
            log::warn!("group of {} failed ({e}); retrying one by one", batch.len());
            for one in batch {
                commit_and_answer(conn, vec![one], ctx);
            }
        }
    }
}

/// Makes a committed operation visible: cache first, then watchers. Runs
/// before the caller is answered, so after an ack every GET sees this
/// version or a newer one.
fn publish(done: &Done, ctx: &WriterContext) {
    match done {
        Done::Written(written) => {
            for w in written {
                ctx.cache.insert_newer(Arc::clone(&w.version));
                ctx.watchers.notify(&w.version);
            }
        }
        Done::Purged { key, .. } => ctx.cache.remove(key),
    }
}
