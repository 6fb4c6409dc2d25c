//! [`Store`]: the versioned key-value store, usable without HTTP.
//!
//! ```no_run
//! let store = vkv::Store::open(vkv::StoreConfig::new("kv_store.db"))?;
//! let put = store.put("greeting", &"hello")?;
//! let got = store.get("greeting", None)?;
//! assert_eq!(got.version, put.version);
//! assert_eq!(got.value_as::<String>()?, "hello");
//! store.close();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crossbeam_channel::bounded;
use serde_json::value::RawValue;

use crate::cache::{CacheStats, LatestCache};
use crate::db::{self, DbStats, ReadPool, SyncMode};
use crate::error::{OpenError, StoreError};
use crate::key::validate_key;
use crate::value::check_depth;
use crate::version::{PutOutcome, Versioned};
use crate::writer::{WriteOp, Writer};

/// How to open a [`Store`].
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// The SQLite database file (created if missing).
    pub path: PathBuf,
    /// How many keys' latest versions the LRU cache holds (0 disables it).
    pub cache_size: usize,
    /// Commit durability.
    pub sync: SyncMode,
    /// Read-only connections in the pool.
    pub read_connections: u32,
    /// Writes that may wait for the writer before `put` blocks.
    pub write_queue: usize,
    /// The most writes committed in one transaction.
    pub max_batch: usize,
}

impl StoreConfig {
    /// Defaults for the database at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        StoreConfig {
            path: path.into(),
            cache_size: 100,
            sync: SyncMode::Full,
            read_connections: 4,
            write_queue: 4096,
            max_batch: 512,
        }
    }
}

/// Write-path statistics of the group commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterStats {
    /// Transactions committed.
    pub batches: u64,
    /// Writes committed over all batches (`writes / batches` is the mean
    /// batch size).
    pub writes: u64,
}

struct Inner {
    cache: Arc<LatestCache>,
    reads: ReadPool,
    writer: Writer,
    path: PathBuf,
    /// Held for the store's lifetime: a second process on the same file
    /// would serve from a cache that the first one's writes make stale.
    _lock: File,
}

/// A handle to an open store; cheap to clone and share between threads.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

fn lock_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".lock");
    PathBuf::from(p)
}

impl Store {
    /// Opens (or creates) the store described by `config`.
    pub fn open(config: StoreConfig) -> Result<Store, OpenError> {
        let path = config.path.clone();
        let lock = lock_path(&path);
        let lock_file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock)
            .map_err(|e| OpenError::Database {
                path: path.clone(),
                reason: format!("cannot create lock file {}: {e}", lock.display()),
            })?;
        if lock_file.try_lock().is_err() {
            return Err(OpenError::Locked { path, lock });
        }
        let conn = db::open_writer(&path, config.sync)?;
        let reads = ReadPool::open(&path, config.read_connections)?;
        let cache = Arc::new(LatestCache::new(config.cache_size));
        let writer = Writer::start(
            conn,
            Arc::clone(&cache),
            config.write_queue,
            config.max_batch,
        )?;
        Ok(Store {
            inner: Arc::new(Inner {
                cache,
                reads,
                writer,
                path,
                _lock: lock_file,
            }),
        })
    }

    /// Stores `value` (serialized as JSON) as the next version of `key`.
    /// Returns once the version is committed to disk.
    pub fn put<T: serde::Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
    ) -> Result<PutOutcome, StoreError> {
        let raw = serde_json::value::to_raw_value(value)
            .map_err(|e| StoreError::InvalidValue(e.to_string()))?;
        self.put_raw(key, raw)
    }

    /// Stores already-serialized JSON as the next version of `key`.
    pub fn put_raw(&self, key: &str, value: Box<RawValue>) -> Result<PutOutcome, StoreError> {
        validate_key(key)?;
        check_depth(value.get())?;
        let (reply, outcome) = bounded(1);
        self.inner.writer.submit(WriteOp {
            key: key.to_string(),
            value,
            reply,
        })?;
        outcome.recv().map_err(|_| StoreError::Closed)?
    }

    /// The latest version of `key` (`version: None`) or a given version.
    /// Latest reads go through the cache; a miss reads the database and
    /// caches what it found. Nothing is cached for a key that is missing.
    pub fn get(&self, key: &str, version: Option<u64>) -> Result<Arc<Versioned>, StoreError> {
        validate_key(key)?;
        let inner = &self.inner;
        if let Some(hit) = inner.cache.get(key, version) {
            return Ok(hit);
        }
        match version {
            Some(n) => Ok(Arc::new(inner.reads.version(key, n)?)),
            None => {
                let ticket = inner.cache.ticket(key);
                let found = inner
                    .reads
                    .latest(key)?
                    .ok_or_else(|| StoreError::KeyNotFound(key.to_string()))?;
                let found = Arc::new(found);
                inner.cache.insert_if_unchanged(ticket, Arc::clone(&found));
                Ok(found)
            }
        }
    }

    /// Cache counters and sizes.
    pub fn cache_stats(&self) -> CacheStats {
        self.inner.cache.stats()
    }

    /// Database totals (constant time).
    pub fn db_stats(&self) -> Result<DbStats, StoreError> {
        self.inner.reads.stats()
    }

    /// Group-commit counters.
    pub fn writer_stats(&self) -> WriterStats {
        let s = &self.inner.writer.stats;
        WriterStats {
            batches: s.batches.load(Ordering::Relaxed),
            writes: s.writes.load(Ordering::Relaxed),
        }
    }

    /// `Ok` when the database answers a query.
    pub fn health(&self) -> Result<(), StoreError> {
        self.inner.reads.ping()
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Commits every queued write and stops the writer. Later writes fail
    /// with [`StoreError::Closed`]; reads keep working.
    pub fn close(&self) {
        self.inner.writer.stop();
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.writer.stop();
    }
}
