//! The single writer thread and its group commit.
//!
//! Every write goes through one thread that owns the only read-write SQLite
//! connection. It takes whatever writes are queued (up to `max_batch`),
//! commits them in one transaction (one fsync for all of them), updates the
//! cache, and only then answers each caller. Version numbers are assigned
//! inside that transaction, so they are dense per key with no lock besides
//! SQLite's own. If a batch fails, each of its writes is retried alone, so
//! one bad write never fails its neighbours.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, bounded};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde_json::value::RawValue;

use crate::cache::LatestCache;
use crate::error::StoreError;
use crate::version::{PutOutcome, Versioned, now_ms};

/// One write waiting for the writer.
pub(crate) struct WriteOp {
    pub key: String,
    pub value: Box<RawValue>,
    pub reply: Sender<Result<PutOutcome, StoreError>>,
}

enum Msg {
    Put(WriteOp),
    Stop,
}

/// Counters of the group commit, for metrics and benchmarks.
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Transactions committed.
    pub batches: AtomicU64,
    /// Writes committed, over all batches.
    pub writes: AtomicU64,
}

/// Handle to the writer thread.
pub(crate) struct Writer {
    queue: Sender<Msg>,
    thread: std::sync::Mutex<Option<JoinHandle<()>>>,
    pub stats: Arc<WriterStats>,
}

impl Writer {
    /// Starts the writer thread on `conn`.
    pub fn start(
        conn: Connection,
        cache: Arc<LatestCache>,
        queue_len: usize,
        max_batch: usize,
    ) -> std::io::Result<Writer> {
        let (queue, rx) = bounded(queue_len.max(1));
        let stats = Arc::new(WriterStats::default());
        let thread_stats = Arc::clone(&stats);
        let thread = std::thread::Builder::new()
            .name("vkv-writer".into())
            .spawn(move || run(conn, &rx, &cache, &thread_stats, max_batch.max(1)))?;
        Ok(Writer {
            queue,
            thread: std::sync::Mutex::new(Some(thread)),
            stats,
        })
    }

    /// Queues a write; blocks while the queue is full (back-pressure).
    pub fn submit(&self, op: WriteOp) -> Result<(), StoreError> {
        self.queue
            .send(Msg::Put(op))
            .map_err(|_| StoreError::Closed)
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

fn run(
    mut conn: Connection,
    rx: &Receiver<Msg>,
    cache: &LatestCache,
    stats: &WriterStats,
    max_batch: usize,
) {
    let mut batch = Vec::with_capacity(max_batch);
    let mut stopping = false;
    while !stopping {
        match rx.recv() {
            Ok(Msg::Put(op)) => batch.push(op),
            Ok(Msg::Stop) | Err(_) => stopping = true,
        }
        // Take what else is queued: on stop, everything, so that no write
        // that was accepted is dropped.
        while stopping || batch.len() < max_batch {
            match rx.try_recv() {
                Ok(Msg::Put(op)) => batch.push(op),
                Ok(Msg::Stop) => stopping = true,
                Err(_) => break,
            }
            if batch.len() >= max_batch {
                commit_and_answer(&mut conn, &mut batch, cache, stats);
            }
        }
        commit_and_answer(&mut conn, &mut batch, cache, stats);
    }
    log::debug!("writer stopped");
}

fn commit_and_answer(
    conn: &mut Connection,
    batch: &mut Vec<WriteOp>,
    cache: &LatestCache,
    stats: &WriterStats,
) {
    if batch.is_empty() {
        return;
    }
    match commit(conn, batch) {
        Ok(outcomes) => {
            stats.batches.fetch_add(1, Ordering::Relaxed);
            stats
                .writes
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            for (op, outcome) in batch.drain(..).zip(outcomes) {
                answer(op, outcome, cache);
            }
        }
        Err(e) if batch.len() == 1 => {
            log::warn!("write failed: {e}");
            for op in batch.drain(..) {
                let _ = op.reply.send(Err(clone_err(&e)));
            }
        }
        Err(e) => {
            log::warn!("batch of {} failed ({e}); retrying one by one", batch.len());
            for op in std::mem::take(batch) {
                let mut single = vec![op];
                commit_and_answer(conn, &mut single, cache, stats);
            }
        }
    }
}

/// Caches the committed version, then acknowledges it: after the caller
/// sees the ack, every GET sees this version or a newer one.
fn answer(op: WriteOp, outcome: PutOutcome, cache: &LatestCache) {
    cache.insert_newer(Arc::new(Versioned {
        key: op.key,
        version: outcome.version,
        timestamp_ms: outcome.timestamp_ms,
        value: op.value,
    }));
    let _ = op.reply.send(Ok(outcome));
}

fn commit(conn: &mut Connection, batch: &[WriteOp]) -> Result<Vec<PutOutcome>, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let ts = now_ms();
    let mut outcomes = Vec::with_capacity(batch.len());
    let mut new_keys = 0i64;
    {
        let mut latest_q = tx.prepare_cached("SELECT latest FROM keys WHERE key = ?1")?;
        let mut insert_v = tx.prepare_cached(
            "INSERT INTO versions (key, version, ts_ms, value) VALUES (?1, ?2, ?3, ?4)",
        )?;
        let mut upsert_k = tx.prepare_cached(
            "INSERT INTO keys (key, latest, ts_ms) VALUES (?1, ?2, ?3)
             ON CONFLICT (key) DO UPDATE SET latest = excluded.latest, ts_ms = excluded.ts_ms",
        )?;
        for op in batch {
            let latest: Option<i64> = latest_q
                .query_row(params![op.key], |r| r.get(0))
                .optional()?;
            let version = latest.unwrap_or(0) + 1;
            if latest.is_none() {
                new_keys += 1;
            }
            insert_v.execute(params![op.key, version, ts, op.value.get()])?;
            upsert_k.execute(params![op.key, version, ts])?;
            outcomes.push(PutOutcome {
                key: op.key.clone(),
                version: version as u64,
                timestamp_ms: ts,
            });
        }
        let mut bump =
            tx.prepare_cached("UPDATE counters SET value = value + ?2 WHERE name = ?1")?;
        bump.execute(params!["keys", new_keys])?;
        bump.execute(params!["versions", batch.len() as i64])?;
    }
    tx.commit()?;
    Ok(outcomes)
}

fn clone_err(e: &StoreError) -> StoreError {
    match e {
        StoreError::StorageFull(s) => StoreError::StorageFull(s.clone()),
        StoreError::Unavailable(s) => StoreError::Unavailable(s.clone()),
        StoreError::Closed => StoreError::Closed,
        other => StoreError::Internal(other.to_string()),
    }
}
