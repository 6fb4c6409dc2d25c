//! The LRU cache of the latest version of recently used keys.
//!
//! Invariant: the cache never holds a version older than one this process
//! knows was committed. Three mechanisms keep it:
//! - [`LatestCache::insert_committed`] never replaces a cached version by an
//!   older one (the single writer commits in order, so its own inserts are
//!   monotonic per key);
//! - a read-through (a GET that missed and read the database) may have read
//!   a version that a commit has since superseded, and the newer cached entry
//!   may even have been evicted meanwhile. So readers take a *ticket* before
//!   reading the database and insert only if no commit touched the key's
//!   stripe since ([`LatestCache::insert_if_unchanged`]). Stripes are bumped
//!   by the writer under the cache lock, so the check and the insert are
//!   atomic with respect to commits.
//! - when other processes write the same database (PostgreSQL replicas),
//!   this process's writer is not the only source of newer versions: a
//!   commit of another replica may land right after this writer's own, be
//!   acknowledged, and have its key dropped from the cache
//!   ([`LatestCache::invalidate`]) while this writer still waits to publish
//!   its older version. So the writer too takes a ticket per key before its
//!   transaction ([`LatestCache::write_ticket`]), and after the commit
//!   caches its version only if no other process's write of the key's
//!   stripe was seen since ([`LatestCache::insert_committed`]); otherwise
//!   it only drops what is older than its own version. The cache therefore
//!   never accepts a version older than one this process knows committed.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use lru::LruCache;

use crate::version::Versioned;

const STRIPES: usize = 64;

/// Stripes of the key space for other processes' writes: many, so that a
/// busy replica seldom refuses to cache its own write for another key's.
const FOREIGN_STRIPES: usize = 1024;

/// Counters and sizes of the cache, as `/cache/stats` shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct CacheStats {
    /// Keys cached now.
    pub size: usize,
    /// The most keys it holds.
    pub max_size: usize,
    /// Bytes the cached entries take now (keys, values and a fixed
    /// overhead per entry).
    pub bytes: usize,
    /// The most bytes it holds; a value larger than this is not cached.
    pub max_bytes: usize,
    /// Whether a bound is reached: `size == max_size`, or the last insert
    /// had to evict to stay within `max_bytes` (and nothing was removed
    /// since).
    pub is_full: bool,
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups that had to go to the database.
    pub misses: u64,
    /// Keys dropped to make room.
    pub evictions: u64,
}

/// What an entry is charged, besides its key (held twice: as the map's key
/// and in the value) and its value: the `Arc`'d `Versioned`, the map slot
/// and the LRU node, rounded up.
const ENTRY_OVERHEAD: usize = 160;

/// The bytes `v` is charged in the cache.
fn cost(v: &Versioned) -> usize {
    ENTRY_OVERHEAD
        .saturating_add(v.key.len().saturating_mul(2))
        .saturating_add(v.value.get().len())
}

struct Inner {
    lru: LruCache<String, Arc<Versioned>>,
    /// Sum of [`cost`] over the entries.
    bytes: usize,
    /// The last insert evicted to stay within a bound.
    at_bound: bool,
    hits: u64,
    misses: u64,
    evictions: u64,
}

impl Inner {
    /// The entry of `key` (of `version` if given), refreshing its recency
    /// and counting a hit when found.
    fn find(&mut self, key: &str, version: Option<u64>) -> Option<Arc<Versioned>> {
        let found = self
            .lru
            .get(key)
            .filter(|v| version.is_none_or(|n| v.version == n))
            .cloned();
        if found.is_some() {
            self.hits += 1;
        }
        found
    }
}

/// A proof that no commit touched a key between taking it and using it.
#[derive(Debug, Clone, Copy)]
pub struct Ticket {
    stripe: usize,
    seq: u64,
}

/// A proof that no other process's write of a key was seen between taking
/// it (before this process's own write transaction) and using it.
#[derive(Debug, Clone, Copy)]
pub struct WriteTicket {
    stripe: usize,
    seq: u64,
}

/// Thread-safe LRU cache of the latest version per key.
pub struct LatestCache {
    inner: Mutex<Inner>,
    /// Commit counters per stripe of the key space (see module docs).
    stripes: [AtomicU64; STRIPES],
    /// Counters of other processes' writes seen, per stripe (see module
    /// docs); bumped under the cache lock.
    foreign: Box<[AtomicU64]>,
    hasher: std::collections::hash_map::RandomState,
    max_size: usize,
    max_bytes: usize,
}

impl LatestCache {
    /// A cache of up to `max_size` keys taking up to `max_bytes`; either 0
    /// disables caching. Nothing is allocated up front: the map grows with
    /// what is cached (`lru`'s bounded constructor would reserve room for
    /// `max_size` keys at once).
    pub fn new(max_size: usize, max_bytes: usize) -> Self {
        let (max_size, max_bytes) = if max_size == 0 || max_bytes == 0 {
            (0, 0)
        } else {
            (max_size, max_bytes)
        };
        LatestCache {
            inner: Mutex::new(Inner {
                lru: LruCache::unbounded(),
                bytes: 0,
                at_bound: false,
                hits: 0,
                misses: 0,
                evictions: 0,
            }),
            stripes: std::array::from_fn(|_| AtomicU64::new(0)),
            foreign: (0..FOREIGN_STRIPES).map(|_| AtomicU64::new(0)).collect(),
            hasher: Default::default(),
            max_size,
            max_bytes,
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

    fn foreign_stripe(&self, key: &str) -> usize {
        (self.hasher.hash_one(key) as usize / STRIPES) % FOREIGN_STRIPES
    }

    /// The cached latest version of `key` (refreshing its recency), counting
    /// a hit or a miss. `version`: only a hit if the latest is that version.
    pub fn get(&self, key: &str, version: Option<u64>) -> Option<Arc<Versioned>> {
        let mut inner = self.lock();
        let found = inner.find(key, version);
        if found.is_none() {
            inner.misses += 1;
        }
        found
    }

    /// Like [`Cache::get`], but a miss is not counted: for a lookup that
    /// falls back to [`Cache::get`] on a miss (which counts it).
    pub fn hit(&self, key: &str, version: Option<u64>) -> Option<Arc<Versioned>> {
        self.lock().find(key, version)
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
        self.put_newer(&mut inner, entry);
    }

    /// Writer path, before its transaction: a ticket for `key`, to publish
    /// its committed version with ([`LatestCache::insert_committed`]).
    pub fn write_ticket(&self, key: &str) -> WriteTicket {
        let stripe = self.foreign_stripe(key);
        WriteTicket {
            stripe,
            seq: self.foreign[stripe].load(Ordering::Acquire),
        }
    }

    /// Writer path, after the commit: records that `entry`'s key was
    /// committed (invalidating readers' tickets) and caches `entry` unless a
    /// newer version is cached, or another process's write of the key's
    /// stripe was seen since `ticket` was taken; then only older versions
    /// are dropped (the other write may be newer than `entry`).
    pub fn insert_committed(&self, ticket: WriteTicket, entry: Arc<Versioned>) {
        let stripe = self.stripe(&entry.key);
        let mut inner = self.lock();
        self.stripes[stripe].fetch_add(1, Ordering::AcqRel);
        if self.foreign[ticket.stripe].load(Ordering::Acquire) != ticket.seq {
            if inner
                .lru
                .peek(&entry.key)
                .is_some_and(|cur| cur.version <= entry.version)
            {
                Self::drop_key(&mut inner, &entry.key);
            }
            return;
        }
        if self.max_size > 0 {
            self.put_newer(&mut inner, entry);
        }
    }

    /// Drops `key` from the cache (after a purge), invalidating readers.
    pub fn remove(&self, key: &str) {
        let stripe = self.stripe(key);
        let mut inner = self.lock();
        self.stripes[stripe].fetch_add(1, Ordering::AcqRel);
        Self::drop_key(&mut inner, key);
    }

    /// Another process wrote `key` (PostgreSQL): drops it, invalidating
    /// readers' tickets and this process's writes in flight on it.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub fn invalidate(&self, key: &str) {
        let (stripe, foreign) = (self.stripe(key), self.foreign_stripe(key));
        let mut inner = self.lock();
        self.stripes[stripe].fetch_add(1, Ordering::AcqRel);
        self.foreign[foreign].fetch_add(1, Ordering::AcqRel);
        Self::drop_key(&mut inner, key);
    }

    /// Drops every entry, invalidating every reader's ticket (PostgreSQL:
    /// after notifications of other replicas' writes may have been missed).
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub fn clear(&self) {
        let mut inner = self.lock();
        for stripe in self.stripes.iter().chain(self.foreign.iter()) {
            stripe.fetch_add(1, Ordering::AcqRel);
        }
        inner.lru.clear();
        inner.bytes = 0;
        inner.at_bound = false;
    }

    fn drop_key(inner: &mut Inner, key: &str) {
        if let Some(old) = inner.lru.pop(key) {
            inner.bytes = inner.bytes.saturating_sub(cost(&old));
            inner.at_bound = false;
        }
    }

    fn put_newer(&self, inner: &mut Inner, entry: Arc<Versioned>) {
        if let Some(cur) = inner.lru.get(&entry.key)
            && cur.version >= entry.version
        {
            return; // the cache never goes backwards
        }
        let charge = cost(&entry);
        if charge > self.max_bytes {
            // Too large to cache: an older version must not stay cached
            // in its place.
            Self::drop_key(inner, &entry.key);
            return;
        }
        if let Some((_, old)) = inner.lru.push(entry.key.clone(), entry) {
            inner.bytes = inner.bytes.saturating_sub(cost(&old));
        }
        inner.bytes = inner.bytes.saturating_add(charge);
        inner.at_bound = false;
        while inner.lru.len() > self.max_size || inner.bytes > self.max_bytes {
            let Some((_, old)) = inner.lru.pop_lru() else {
                break;
            };
            inner.bytes = inner.bytes.saturating_sub(cost(&old));
            inner.evictions += 1;
            inner.at_bound = true;
        }
    }

    /// Current counters and sizes.
    pub fn stats(&self) -> CacheStats {
        let inner = self.lock();
        let size = inner.lru.len();
        CacheStats {
            size,
            max_size: self.max_size,
            bytes: inner.bytes,
            max_bytes: self.max_bytes,
            is_full: size >= self.max_size || inner.at_bound,
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

    /// The writer's publication of a version it committed.
    fn commit(c: &LatestCache, v: Arc<Versioned>) {
        c.insert_committed(c.write_ticket(&v.key), v);
    }

    fn v(key: &str, version: u64) -> Arc<Versioned> {
        Arc::new(Versioned {
            key: key.into(),
            version,
            timestamp_ms: 0,
            deleted: false,
            expired: false,
            revision: version,
            value: RawValue::from_string("1".into()).unwrap_or_else(|_| unreachable!()),
            deadline: None,
        })
    }

    #[test]
    fn clearing_empties_it_and_refuses_reads_begun_before() {
        let c = LatestCache::new(10, 1 << 20);
        commit(&c, v("a", 1));
        let ticket = c.ticket("b");
        c.clear();
        assert!(c.get("a", None).is_none());
        assert_eq!(c.stats().bytes, 0);
        c.insert_if_unchanged(ticket, v("b", 1));
        assert!(
            c.get("b", None).is_none(),
            "a read begun before the clear was cached"
        );
        c.insert_if_unchanged(c.ticket("b"), v("b", 1));
        assert!(c.get("b", None).is_some());
    }

    #[test]
    fn a_write_overtaken_by_another_process_is_not_cached() {
        let c = LatestCache::new(10, 1 << 20);
        commit(&c, v("k", 1));
        // This writer's transaction for v2 begins...
        let ticket = c.write_ticket("k");
        // ...another replica commits v3, and its key is dropped here...
        c.invalidate("k");
        // ...before this writer publishes v2: never cached, and the v1
        // before it is gone.
        c.insert_committed(ticket, v("k", 2));
        assert!(
            c.get("k", None).is_none(),
            "v2 was cached after v3 committed"
        );
        // A read-through that found v3 since is kept.
        c.insert_if_unchanged(c.ticket("k"), v("k", 3));
        c.insert_committed(ticket, v("k", 2));
        assert_eq!(c.get("k", None).map(|e| e.version), Some(3));
        // Later writes, with tickets taken after, are cached again.
        commit(&c, v("k", 4));
        assert_eq!(c.get("k", None).map(|e| e.version), Some(4));
    }

    #[test]
    fn never_goes_backwards() {
        let c = LatestCache::new(2, 1 << 20);
        commit(&c, v("a", 3));
        commit(&c, v("a", 2));
        assert_eq!(c.get("a", None).map(|e| e.version), Some(3));
    }

    #[test]
    fn stale_read_through_is_refused_even_after_eviction() {
        let c = LatestCache::new(1, 1 << 20);
        let t = c.ticket("a"); // reader starts, reads v1 from the database
        commit(&c, v("a", 2)); // writer commits v2 meanwhile
        commit(&c, v("b", 1)); // and v2 of "a" is evicted
        c.insert_if_unchanged(t, v("a", 1));
        assert!(c.get("a", None).is_none(), "stale v1 must not be cached");
        assert_eq!(c.stats().evictions, 1);
    }

    fn sized(key: &str, version: u64, len: usize) -> Arc<Versioned> {
        let text = format!("\"{}\"", "x".repeat(len - 2));
        Arc::new(Versioned {
            key: key.into(),
            version,
            timestamp_ms: 0,
            deleted: false,
            expired: false,
            revision: version,
            value: RawValue::from_string(text).unwrap_or_else(|_| unreachable!()),
            deadline: None,
        })
    }

    #[test]
    fn bounded_in_bytes_evicting_least_recent() {
        let each = cost(&sized("a", 1, 1000));
        let c = LatestCache::new(100, 3 * each);
        for k in ["a", "b", "c"] {
            commit(&c, sized(k, 1, 1000));
        }
        assert_eq!(c.stats().bytes, 3 * each);
        assert!(c.get("a", None).is_some()); // b is now the least recent
        commit(&c, sized("d", 1, 1000));
        let s = c.stats();
        assert_eq!((s.size, s.bytes, s.evictions), (3, 3 * each, 1));
        assert!(c.get("b", None).is_none());
        // A bigger version of a cached key makes room for itself.
        commit(&c, sized("a", 2, 2000));
        let s = c.stats();
        assert!(s.bytes <= 3 * each, "{s:?}");
        assert_eq!(c.get("a", None).map(|e| e.version), Some(2));
        // A purge gives its bytes back.
        c.remove("a");
        assert_eq!(c.stats().bytes, each * c.stats().size);
    }

    #[test]
    fn a_value_too_large_to_cache_drops_the_older_version() {
        let c = LatestCache::new(100, 10_000);
        commit(&c, sized("k", 1, 100));
        commit(&c, sized("k", 2, 20_000));
        // Never the stale v1: the next read goes to the database.
        assert!(c.get("k", None).is_none());
        let t = c.ticket("k");
        c.insert_if_unchanged(t, sized("k", 2, 20_000));
        assert!(c.get("k", None).is_none());
        assert_eq!(c.stats().bytes, 0);
    }

    #[test]
    fn counts_hits_misses_evictions() {
        let c = LatestCache::new(2, 1 << 20);
        commit(&c, v("a", 1));
        commit(&c, v("b", 1));
        commit(&c, v("c", 1)); // evicts a
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
