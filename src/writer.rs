//! The single writer thread and its group commit.
//!
//! Every write goes through one thread that owns the only read-write SQLite
//! connection. It takes whatever operations are queued (up to `max_batch`),
//! applies them in one transaction, commits once
//! (one fsync for all of them), updates the cache, wakes watchers, and only
//! then answers each caller.
//! - Version numbers are assigned inside the transaction, so they are dense
//!   per key with no lock besides SQLite's own.
//! - A failed condition (`if_version`) or a missing key refuses only its
//!   own operation (checked before it writes anything): neighbours in the
//!   group still commit.
//! - If the transaction itself fails (disk full, I/O error), each operation
//!   is retried alone, so one bad write never fails its neighbours.
//! - A batch is one operation in its own savepoint: all or nothing.
//! - Before each transaction the database path is checked to still lead to
//!   the file that was opened, and the last failure is remembered until a
//!   transaction commits again (for `/health`).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, bounded};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde_json::value::RawValue;

use crate::cache::LatestCache;
use crate::error::StoreError;
use crate::version::{Versioned, now_ms};
use crate::watch::Watchers;

/// One put: the value for `key`, optionally only if its latest version is
/// `expect` (0: only if the key has no version).
#[derive(Debug)]
pub struct PutItem {
    /// The key.
    pub key: String,
    /// The JSON value.
    pub value: Box<RawValue>,
    /// The condition, if any.
    pub expect: Option<u64>,
}

/// A write operation.
#[derive(Debug)]
pub(crate) enum Op {
    Put(PutItem),
    Delete(String),
    Purge(String),
    Batch(Vec<PutItem>),
    /// A no-op write (one row rewritten as it is) that commits like any
    /// other: whether writes work again after a failure.
    Probe,
}

/// What an operation did.
#[derive(Debug)]
pub(crate) enum Done {
    /// New versions, in order (a tombstone for a delete).
    Written(Vec<Arc<Versioned>>),
    /// A purge removed this many versions.
    Purged { key: String, versions: u64 },
}

/// Where the writer sends an operation's outcome. A oneshot parks the
/// waiting thread at once (a crossbeam channel spins and yields first).
type Reply = oneshot::Sender<Result<Done, StoreError>>;

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

/// The database file as it was opened. SQLite goes on writing to a file
/// that was deleted (or whose directory was) through its open descriptors,
/// and those writes are lost for good at the next start: so no write is
/// committed once the path no longer leads to the file that was opened.
#[derive(Debug)]
pub(crate) struct DbFile {
    path: PathBuf,
    /// Device and inode when opened (`None`: not checked on this platform).
    id: Option<(u64, u64)>,
    /// The store's lock file, next to the database.
    lock: PathBuf,
}

impl DbFile {
    /// Remembers the file `path` leads to now; `lock` is the lock file.
    pub fn new(path: &Path, lock: &Path) -> DbFile {
        DbFile {
            path: path.to_path_buf(),
            id: file_id(path).ok(),
            lock: lock.to_path_buf(),
        }
    }

    /// `Ok` if a file next to the database can be opened for writing (an
    /// open and a close, nothing written): fails on a file system that went
    /// read-only, which SQLite notices only when a write needs new space.
    /// The lock file is opened, never the database: closing any descriptor
    /// of the database would drop SQLite's POSIX locks on it.
    pub fn check_writable(&self) -> Result<(), StoreError> {
        std::fs::OpenOptions::new()
            .write(true)
            .open(&self.lock)
            .map(drop)
            .map_err(|e| {
                StoreError::Unavailable(format!(
                    "the directory of database {} is not writable: {e}",
                    self.path.display()
                ))
            })
    }

    /// `Ok` while `path` still leads to the file that was opened (one
    /// `stat`).
    pub fn check(&self) -> Result<(), StoreError> {
        let Some(opened) = self.id else {
            return Ok(());
        };
        let path = self.path.display();
        match file_id(&self.path) {
            Ok(now) if now == opened => Ok(()),
            Ok(_) => Err(StoreError::Unavailable(format!(
                "database file {path} was replaced by another file while open; restart vkv"
            ))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(StoreError::Unavailable(format!(
                    "database file {path} is gone (deleted, or its directory removed) while \
                     open; writes are refused because they would be lost"
                )))
            }
            Err(e) => Err(StoreError::Unavailable(format!(
                "cannot check database file {path}: {e}"
            ))),
        }
    }
}

#[cfg(unix)]
fn file_id(path: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).map(|m| (m.dev(), m.ino()))
}

#[cfg(not(unix))]
fn file_id(_: &Path) -> std::io::Result<(u64, u64)> {
    Err(std::io::ErrorKind::Unsupported.into())
}

/// What the writer thread needs besides its connection.
pub(crate) struct WriterContext {
    pub cache: Arc<LatestCache>,
    pub watchers: Arc<Watchers>,
    pub counters: Arc<WriterCounters>,
    pub fault: Arc<WriteFault>,
    pub file: Arc<DbFile>,
    pub max_batch: usize,
    /// Keep at most this many versions per key (0: all).
    pub max_versions: u64,
}

/// Handle to the writer thread.
pub(crate) struct Writer {
    queue: Sender<Msg>,
    thread: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl Writer {
    /// Starts the writer thread on `conn`.
    pub fn start(
        conn: Connection,
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
            .send(Msg::Op(op, reply))
            .map_err(|_| StoreError::Closed)?;
        Ok(Pending(outcome))
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

fn run(mut conn: Connection, rx: &Receiver<Msg>, ctx: &WriterContext) {
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
    // Leave the database file complete and the WAL empty on a clean stop:
    // SQLite only does this itself when the last connection to close can
    // write, and at exit the last one may be a read-only pool connection.
    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())) {
        log::warn!("final checkpoint failed (the WAL keeps the data): {e}");
    }
    log::debug!("writer stopped");
}

fn commit_and_answer(conn: &mut Connection, batch: Vec<(Op, Reply)>, ctx: &WriterContext) {
    if batch.is_empty() {
        return;
    }
    let committed = commit(conn, &batch, ctx).map_err(|e| e.into_store(conn));
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
                let _ = reply.send(result);
            }
        }
        Err(e) if batch.len() == 1 => {
            log::warn!("write failed: {e}");
            ctx.fault.set(Some(e.clone()));
            for (_, reply) in batch {
                let _ = reply.send(Err(e.clone()));
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
        Done::Written(versions) => {
            for v in versions {
                ctx.cache.insert_newer(Arc::clone(v));
                ctx.watchers.notify(v);
            }
        }
        Done::Purged { key, .. } => ctx.cache.remove(key),
    }
}

/// A failure inside a transaction. SQLite's error stays as it is until it
/// leaves the writer, so that the OS error behind it can still be read from
/// the connection (see [`StoreError::from_sqlite_os`]).
enum TxError {
    Sqlite(rusqlite::Error),
    Store(StoreError),
}

impl From<rusqlite::Error> for TxError {
    fn from(e: rusqlite::Error) -> Self {
        TxError::Sqlite(e)
    }
}

impl From<StoreError> for TxError {
    fn from(e: StoreError) -> Self {
        TxError::Store(e)
    }
}

impl TxError {
    fn into_store(self, conn: &Connection) -> StoreError {
        match self {
            TxError::Store(e) => e,
            TxError::Sqlite(e) => {
                // SAFETY: `conn` is the live connection this thread owns, and
                // sqlite3_system_errno only reads a field of it.
                let errno = unsafe { rusqlite::ffi::sqlite3_system_errno(conn.handle()) };
                StoreError::from_sqlite_os(e, errno)
            }
        }
    }
}

/// Totals to add to the counters table at commit.
#[derive(Default)]
struct Deltas {
    keys: i64,
    versions: i64,
}

/// Applies every operation in one transaction; the outer `Err` means the
/// transaction failed as a whole.
fn commit(
    conn: &mut Connection,
    batch: &[(Op, Reply)],
    ctx: &WriterContext,
) -> Result<Vec<Result<Done, StoreError>>, TxError> {
    ctx.file.check()?;
    let max_versions = ctx.max_versions;
    let mut tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let ts = now_ms();
    let mut results = Vec::with_capacity(batch.len());
    let mut total = Deltas::default();
    for (op, _) in batch {
        let mut d = Deltas::default();
        let result = if let Op::Batch(_) = op {
            // Several writes: a refusal midway must undo the earlier ones.
            let sp = tx.savepoint()?;
            let result = apply(&sp, op, ts, max_versions, &mut d);
            if result.is_ok() {
                sp.commit()?;
            } // else dropping the savepoint rolls it back
            result
        } else {
            // A single write is refused (condition, missing key) before it
            // writes anything, so it needs no savepoint of its own.
            apply(&tx, op, ts, max_versions, &mut d)
        };
        match result {
            Ok(done) => {
                total.keys += d.keys;
                total.versions += d.versions;
                results.push(Ok(done));
            }
            Err(TxError::Store(e)) if e.is_refusal() => results.push(Err(e)),
            Err(e) => return Err(e),
        }
    }
    if total.keys != 0 || total.versions != 0 {
        let mut bump =
            tx.prepare_cached("UPDATE counters SET value = value + ?2 WHERE name = ?1")?;
        bump.execute(params!["keys", total.keys])?;
        bump.execute(params!["versions", total.versions])?;
    }
    tx.commit()?;
    Ok(results)
}

fn apply(
    tx: &Connection,
    op: &Op,
    ts: i64,
    max_versions: u64,
    d: &mut Deltas,
) -> Result<Done, TxError> {
    match op {
        Op::Put(item) => Ok(Done::Written(vec![put(
            tx,
            item,
            false,
            ts,
            max_versions,
            d,
        )?])),
        Op::Batch(items) => items
            .iter()
            .map(|item| put(tx, item, false, ts, max_versions, d))
            .collect::<Result<Vec<_>, _>>()
            .map(Done::Written),
        Op::Delete(key) => {
            let head = head(tx, key)?.ok_or_else(|| StoreError::KeyNotFound(key.clone()))?;
            if head.deleted {
                return Err(StoreError::Deleted {
                    key: key.clone(),
                    version: head.latest,
                }
                .into());
            }
            let tombstone = PutItem {
                key: key.clone(),
                value: RawValue::NULL.to_owned(),
                expect: None,
            };
            Ok(Done::Written(vec![put(
                tx,
                &tombstone,
                true,
                ts,
                max_versions,
                d,
            )?]))
        }
        Op::Purge(key) => {
            head(tx, key)?.ok_or_else(|| StoreError::KeyNotFound(key.clone()))?;
            let n = tx
                .prepare_cached("DELETE FROM versions WHERE key = ?1")?
                .execute(params![key])?;
            tx.prepare_cached("DELETE FROM keys WHERE key = ?1")?
                .execute(params![key])?;
            d.keys -= 1;
            d.versions -= n as i64;
            Ok(Done::Purged {
                key: key.clone(),
                versions: n as u64,
            })
        }
        Op::Probe => {
            tx.prepare_cached("UPDATE counters SET value = value WHERE name = 'keys'")?
                .execute([])?;
            Ok(Done::Written(Vec::new()))
        }
    }
}

/// The `keys` row of a key.
struct Head {
    latest: u64,
    deleted: bool,
    first_kept: u64,
}

fn head(tx: &Connection, key: &str) -> Result<Option<Head>, TxError> {
    Ok(tx
        .prepare_cached("SELECT latest, deleted, first_kept FROM keys WHERE key = ?1")?
        .query_row(params![key], |r| {
            Ok(Head {
                latest: r.get::<_, i64>(0)? as u64,
                deleted: r.get(1)?,
                first_kept: r.get::<_, i64>(2)? as u64,
            })
        })
        .optional()?)
}

fn put(
    tx: &Connection,
    item: &PutItem,
    deleted: bool,
    ts: i64,
    max_versions: u64,
    d: &mut Deltas,
) -> Result<Arc<Versioned>, TxError> {
    let head = head(tx, &item.key)?;
    let current = head.as_ref().map_or(0, |h| h.latest);
    if let Some(expected) = item.expect
        && expected != current
    {
        return Err(StoreError::Conflict {
            key: item.key.clone(),
            expected,
            current,
        }
        .into());
    }
    let version = current + 1;
    let mut first_kept = head.as_ref().map_or(1, |h| h.first_kept);
    tx.prepare_cached(
        "INSERT INTO versions (key, version, ts_ms, value, deleted) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        item.key,
        version as i64,
        ts,
        item.value.get(),
        deleted
    ])?;
    d.versions += 1;
    if head.is_none() {
        d.keys += 1;
    }
    if max_versions > 0 && version - first_kept + 1 > max_versions {
        first_kept = version - max_versions + 1;
        let removed = tx
            .prepare_cached("DELETE FROM versions WHERE key = ?1 AND version < ?2")?
            .execute(params![item.key, first_kept as i64])?;
        d.versions -= removed as i64;
    }
    tx.prepare_cached(
        "INSERT INTO keys (key, latest, ts_ms, deleted, first_kept) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (key) DO UPDATE SET latest = excluded.latest, ts_ms = excluded.ts_ms,
             deleted = excluded.deleted, first_kept = excluded.first_kept",
    )?
    .execute(params![
        item.key,
        version as i64,
        ts,
        deleted,
        first_kept as i64
    ])?;
    Ok(Arc::new(Versioned {
        key: item.key.clone(),
        version,
        timestamp_ms: ts,
        deleted,
        value: item.value.clone(),
    }))
}
