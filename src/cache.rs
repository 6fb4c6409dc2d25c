//! The LRU cache of the latest version of recently used keys.
//!
//! Invariant: the cache never holds a version older than one the writer has
//! already put into it. Two mechanisms keep it:
//! - [`LatestCache::insert_newer`] never replaces a cached version by an
//!   older one (the single writer commits in order, so its own inserts are
//!   monotonic per key);
//! - a read-through (a GET that missed and read the database) may have read
//!   a version that a commit has since superseded, and the newer cached entry
//!   may even have been evicted meanwhile. So readers take a *ticket* before
//!   reading the database and insert only if no commit touched the key's
//!   stripe since ([`LatestCache::insert_if_unchanged`]). Stripes are bumped
//!   by the writer under the cache lock, so the check and the insert are
//!   atomic with respect to commits.

use std::hash::BuildHasher;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use lru::LruCache;

use crate::version::Versioned;

const STRIPES: usize = 64;

/// Counters and sizes of the cache, as `/cache/stats` shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct CacheStats {
    /// Keys cached now.
    pub size: usize,
    /// The most keys it holds.
    pub max_size: usize,
    /// Whether `size == max_size`.
    pub is_full: bool,
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups that had to go to the database.
    pub misses: u64,
    /// Keys dropped to make room.
    pub evictions: u64,
}

struct Inner {
    lru: LruCache<String, Arc<Versioned>>,
    hits: u64,
    misses: u64,
    evictions: u64,
}

/// A proof that no commit touched a key between taking it and using it.
#[derive(Debug, Clone, Copy)]
pub struct Ticket {
    stripe: usize,
    seq: u64,
}

/// Thread-safe LRU cache of the latest version per key.
pub struct LatestCache {
    inner: Mutex<Inner>,
    /// Commit counters per stripe of the key space (see module docs).
    stripes: [AtomicU64; STRIPES],
    hasher: std::collections::hash_map::RandomState,
    max_size: usize,
}

impl LatestCache {
    /// A cache of up to `max_size` keys; 0 disables caching.
    pub fn new(max_size: usize) -> Self {
        LatestCache {
            inner: Mutex::new(Inner {
                lru: LruCache::new(NonZeroUsize::new(max_size).unwrap_or(NonZeroUsize::MIN)),
                hits: 0,
                misses: 0,
                evictions: 0,
            }),
            stripes: std::array::from_fn(|_| AtomicU64::new(0)),
            hasher: Default::default(),
            max_size,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the LRU half-updated
        // in a way that breaks our invariant, so a poisoned lock is usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn stripe(&self, key: &str) -> usize {
        (self.hasher.hash_one(key) as usize) % STRIPES
    }

    /// The cached latest version of `key` (refreshing its recency), counting
    /// a hit or a miss. `version`: only a hit if the latest is that version.
    pub fn get(&self, key: &str, version: Option<u64>) -> Option<Arc<Versioned>> {
        let mut inner = self.lock();
        let found = inner
            .lru
            .get(key)
            .filter(|v| version.is_none_or(|n| v.version == n))
            .cloned();
        if found.is_some() {
            inner.hits += 1;
        } else {
            inner.misses += 1;
        }
        found
    }

    /// Takes a ticket for `key` before reading it from the database.
    pub fn ticket(&self, key: &str) -> Ticket {
        let stripe = self.stripe(key);
        Ticket {
            stripe,
            seq: self.stripes[stripe].load(Ordering::Acquire),
        }
    }

    /// Caches a version read from the database, unless a commit touched the
    /// key's stripe since `ticket` was taken (the read may be stale).
    pub fn insert_if_unchanged(&self, ticket: Ticket, entry: Arc<Versioned>) {
        if self.max_size == 0 {
            return;
        }
        let mut inner = self.lock();
        if self.stripes[ticket.stripe].load(Ordering::Acquire) != ticket.seq {
            return;
        }
        Self::put_newer(&mut inner, entry);
    }

    /// Writer path: records that `key` was committed and caches `entry`
    /// unless a newer version is already cached.
    pub fn insert_newer(&self, entry: Arc<Versioned>) {
        let stripe = self.stripe(&entry.key);
        let mut inner = self.lock();
        self.stripes[stripe].fetch_add(1, Ordering::AcqRel);
        if self.max_size > 0 {
            Self::put_newer(&mut inner, entry);
        }
    }

    /// Drops `key` from the cache (after a purge), invalidating readers.
    pub fn remove(&self, key: &str) {
        let stripe = self.stripe(key);
        let mut inner = self.lock();
        self.stripes[stripe].fetch_add(1, Ordering::AcqRel);
        inner.lru.pop(key);
    }

    fn put_newer(inner: &mut Inner, entry: Arc<Versioned>) {
        if let Some(cur) = inner.lru.get(&entry.key)
            && cur.version >= entry.version
        {
            return; // the cache never goes backwards
        }
        if let Some((old_key, _)) = inner.lru.push(entry.key.clone(), entry)
            && inner.lru.peek(&old_key).is_none()
        {
            inner.evictions += 1;
        }
    }

    /// Current counters and sizes.
    pub fn stats(&self) -> CacheStats {
        let inner = self.lock();
        let size = if self.max_size == 0 {
            0
        } else {
            inner.lru.len()
        };
        CacheStats {
            size,
            max_size: self.max_size,
            is_full: size >= self.max_size,
            hits: inner.hits,
            misses: inner.misses,
            evictions: inner.evictions,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::value::RawValue;

    fn v(key: &str, version: u64) -> Arc<Versioned> {
        Arc::new(Versioned {
            key: key.into(),
            version,
            timestamp_ms: 0,
            deleted: false,
            value: RawValue::from_string("1".into()).unwrap_or_else(|_| unreachable!()),
        })
    }

    #[test]
    fn never_goes_backwards() {
        let c = LatestCache::new(2);
        c.insert_newer(v("a", 3));
        c.insert_newer(v("a", 2));
        assert_eq!(c.get("a", None).map(|e| e.version), Some(3));
    }

    #[test]
    fn stale_read_through_is_refused_even_after_eviction() {
        let c = LatestCache::new(1);
        let t = c.ticket("a"); // reader starts, reads v1 from the database
        c.insert_newer(v("a", 2)); // writer commits v2 meanwhile
        c.insert_newer(v("b", 1)); // and v2 of "a" is evicted
        c.insert_if_unchanged(t, v("a", 1));
        assert!(c.get("a", None).is_none(), "stale v1 must not be cached");
        assert_eq!(c.stats().evictions, 1);
    }

    #[test]
    fn counts_hits_misses_evictions() {
        let c = LatestCache::new(2);
        c.insert_newer(v("a", 1));
        c.insert_newer(v("b", 1));
        c.insert_newer(v("c", 1)); // evicts a
        assert!(c.get("a", None).is_none());
        assert!(c.get("b", None).is_some());
        assert!(c.get("b", Some(2)).is_none());
        let s = c.stats();
        assert_eq!(
            (s.size, s.is_full, s.hits, s.misses, s.evictions),
            (2, true, 1, 2, 1)
        );
    }
}
