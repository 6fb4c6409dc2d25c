//! Watchers: callers waiting for a key to pass a version.
//!
//! A watcher registers a channel under its key; the writer thread, after a
//! commit and after updating the cache, sends each new version to the
//! key's watchers and forgets them. Registration is bounded. Closing the
//! registry (on shutdown) drops every channel, which wakes every watcher.
//!
//! The change feed's long polls wait here too, on a key prefix rather than
//! a key: every change handed to [`Watchers::notify`] or
//! [`Watchers::notify_change`] (and every hint of another replica's write,
//! [`Watchers::hint`]) wakes the feed waiters whose prefix it matches. A
//! feed wake-up is only a hint: the feed reads the database again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crossbeam_channel::{Receiver, Sender, bounded};

use crate::error::StoreError;
use crate::version::Versioned;

/// A callback watcher: the new version, or `None` when the registry closes.
pub type OnChange = Box<dyn FnOnce(Option<Arc<Versioned>>) + Send>;

/// How a watcher is told: a channel a thread waits on, or a callback (the
/// HTTP long poll, which no thread waits for).
enum Waiter {
    Channel(Sender<Arc<Versioned>>),
    Call(OnChange),
}

impl Waiter {
    fn deliver(self, version: Option<&Arc<Versioned>>) {
        match (self, version) {
            (Waiter::Channel(tx), Some(v)) => {
                let _ = tx.send(Arc::clone(v));
            }
            // Dropping the sender disconnects the channel: that wakes it.
            (Waiter::Channel(_), None) => {}
            (Waiter::Call(call), v) => {
                let ran =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| call(v.cloned())));
                if ran.is_err() {
                    log::error!("a watcher callback panicked");
                }
            }
        }
    }
}

/// Per key: (id, the latest version the watcher saw when it registered, how
/// to tell it).
type Waiters = HashMap<String, Vec<(u64, u64, Waiter)>>;

/// A change feed waiter: `then(true)` on a change under its prefix,
/// `then(false)` when the registry closes.
pub(crate) type OnFeed = Box<dyn FnOnce(bool) + Send>;

/// A waiting change feed: (id, prefix, how to tell it).
struct FeedWaiter {
    id: u64,
    prefix: String,
    then: OnFeed,
}

impl FeedWaiter {
    fn deliver(self, open: bool) {
        let then = self.then;
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| then(open))).is_err() {
            log::error!("a change feed callback panicked");
        }
    }
}

/// What [`Watchers::subscribe_feed`] found.
pub(crate) enum FeedWatch {
    /// Something changed since the feed read (`epoch` moved): read again.
    Changed,
    /// Registered; dropping it unregisters.
    Pending(FeedSubscription),
}

/// A registered change feed wait; dropping it unregisters.
pub(crate) struct FeedSubscription {
    watchers: Arc<Watchers>,
    id: u64,
}

impl Drop for FeedSubscription {
    fn drop(&mut self) {
        self.watchers.unregister_feed(self.id);
    }
}

/// The registry of waiting watchers.
pub struct Watchers {
    waiters: Mutex<Waiters>,
    feeds: Mutex<Vec<FeedWaiter>>,
    /// Bumped by every change and hint, before feed waiters are woken:
    /// a feed that read the database at one epoch and registers at
    /// another may have missed a wake-up, and reads again.
    epoch: AtomicU64,
    count: AtomicUsize,
    next_id: AtomicU64,
    max: usize,
    closed: AtomicBool,
}

/// A registered wait; dropping it unregisters.
pub struct Subscription {
    watchers: Arc<Watchers>,
    key: String,
    id: u64,
    /// Receives the first version committed after registration; disconnects
    /// when the store shuts down.
    changes: Receiver<Arc<Versioned>>,
}

impl Subscription {
    /// The first version committed after the wait was registered, once it
    /// comes within `timeout`; `None` if none did, or the store shut down.
    pub fn next(&self, timeout: std::time::Duration) -> Option<Arc<Versioned>> {
        self.changes.recv_timeout(timeout).ok()
    }
}

impl Watchers {
    /// A registry holding at most `max` watchers.
    pub fn new(max: usize) -> Self {
        Watchers {
            waiters: Mutex::new(HashMap::new()),
            feeds: Mutex::new(Vec::new()),
            epoch: AtomicU64::new(0),
            count: AtomicUsize::new(0),
            next_id: AtomicU64::new(0),
            max,
            closed: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Waiters> {
        self.waiters.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a watcher on `key`, whose latest version was `seen` (0:
    /// none) when it looked: only a newer version wakes it.
    pub fn subscribe(self: &Arc<Self>, key: &str, seen: u64) -> Result<Subscription, StoreError> {
        let (tx, rx) = bounded(1);
        self.register(key, seen, Waiter::Channel(tx), rx)
    }

    /// Registers a watcher on `key` that is called instead of sent to (its
    /// subscription's channel never receives).
    pub fn subscribe_then(
        self: &Arc<Self>,
        key: &str,
        seen: u64,
        then: OnChange,
    ) -> Result<Subscription, StoreError> {
        self.register(key, seen, Waiter::Call(then), crossbeam_channel::never())
    }

    fn register(
        self: &Arc<Self>,
        key: &str,
        seen: u64,
        waiter: Waiter,
        rx: Receiver<Arc<Versioned>>,
    ) -> Result<Subscription, StoreError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut w = self.lock();
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        let n = self.count.load(Ordering::Acquire);
        if n >= self.max {
            return Err(StoreError::TooManyWatchers(n));
        }
        w.entry(key.to_string())
            .or_default()
            .push((id, seen, waiter));
        self.count.fetch_add(1, Ordering::AcqRel);
        Ok(Subscription {
            watchers: Arc::clone(self),
            key: key.to_string(),
            id,
            changes: rx,
        })
    }

    /// Writer path: hands `version` to every watcher of its key that saw
    /// an older one. (A commit of this process is always newer; a version
    /// read after another replica's `NOTIFY` may not be.)
    pub fn notify(&self, version: &Arc<Versioned>) {
        self.notify_change(&version.key);
        if self.count.load(Ordering::SeqCst) == 0 {
            return;
        }
        let woken = {
            let mut w = self.lock();
            let Some(list) = w.get_mut(&version.key) else {
                return;
            };
            let (woken, waiting): (Vec<_>, Vec<_>) = std::mem::take(list)
                .into_iter()
                .partition(|(_, seen, _)| *seen < version.version);
            if waiting.is_empty() {
                w.remove(&version.key);
            } else {
                *list = waiting;
            }
            self.count.fetch_sub(woken.len(), Ordering::AcqRel);
            woken
        };
        // Outside the lock: a callback may subscribe or read.
        for (_, _, waiter) in woken {
            waiter.deliver(Some(version));
        }
    }

    /// The feed's epoch, to take before reading the feed and hand to
    /// [`Watchers::subscribe_feed`].
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Registers a change feed waiter on `prefix` that read the feed at
    /// `epoch`; `Changed` (not registered) if a change came since.
    pub(crate) fn subscribe_feed(
        self: &Arc<Self>,
        prefix: &str,
        epoch: u64,
        then: OnFeed,
    ) -> Result<FeedWatch, StoreError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut feeds = self.lock_feeds();
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        let n = self.count.load(Ordering::SeqCst);
        if n >= self.max {
            return Err(StoreError::TooManyWatchers(n));
        }
        // Counted before the epoch is compared: a change whose
        // `notify_change` saw no watcher bumped the epoch before it looked.
        self.count.fetch_add(1, Ordering::SeqCst);
        if self.epoch.load(Ordering::SeqCst) != epoch {
            self.count.fetch_sub(1, Ordering::SeqCst);
            return Ok(FeedWatch::Changed);
        }
        feeds.push(FeedWaiter {
            id,
            prefix: prefix.to_string(),
            then,
        });
        Ok(FeedWatch::Pending(FeedSubscription {
            watchers: Arc::clone(self),
            id,
        }))
    }

    /// A change of `key` committed (a version, a purge): wakes the feed
    /// waiters whose prefix it matches.
    pub(crate) fn notify_change(&self, key: &str) {
        self.wake_feeds(|prefix| key.starts_with(prefix));
    }

    /// Bumps the epoch and wakes the feed waiters whose prefix `wakes`.
    fn wake_feeds(&self, wakes: impl Fn(&str) -> bool) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        if self.count.load(Ordering::SeqCst) == 0 {
            return;
        }
        let woken: Vec<FeedWaiter> = {
            let mut feeds = self.lock_feeds();
            let (woken, waiting) = std::mem::take(&mut *feeds)
                .into_iter()
                .partition(|f| wakes(&f.prefix));
            *feeds = waiting;
            self.count.fetch_sub(woken.len(), Ordering::SeqCst);
            woken
        };
        for f in woken {
            f.deliver(true);
        }
    }

    #[cfg_attr(not(feature = "postgres"), allow(dead_code))] // PostgreSQL notifications
    /// Another replica wrote `key` (or may have: `None` after a lost
    /// connection wakes every feed): feed waiters read the database again.
    pub(crate) fn hint(&self, key: Option<&str>) {
        match key {
            Some(key) => self.notify_change(key),
            None => self.wake_feeds(|_| true),
        }
    }

    fn lock_feeds(&self) -> MutexGuard<'_, Vec<FeedWaiter>> {
        self.feeds.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn unregister_feed(&self, id: u64) {
        let mut feeds = self.lock_feeds();
        let before = feeds.len();
        feeds.retain(|f| f.id != id);
        self.count.fetch_sub(before - feeds.len(), Ordering::SeqCst);
    }

    #[cfg_attr(not(feature = "postgres"), allow(dead_code))] // PostgreSQL notifications
    /// Whether any watcher waits on `key`.
    pub fn is_watched(&self, key: &str) -> bool {
        self.count.load(Ordering::Acquire) > 0 && self.lock().contains_key(key)
    }

    #[cfg_attr(not(feature = "postgres"), allow(dead_code))] // PostgreSQL notifications
    /// The keys watchers wait on now.
    pub fn watched_keys(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    /// Watchers waiting now.
    pub fn len(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// Wakes every watcher (their channels disconnect) and refuses new ones.
    pub fn close(&self) {
        let (all, feeds) = {
            let mut w = self.lock();
            let mut feeds = self.lock_feeds();
            self.closed.store(true, Ordering::Release);
            self.count.store(0, Ordering::SeqCst);
            (std::mem::take(&mut *w), std::mem::take(&mut *feeds))
        };
        for (_, _, waiter) in all.into_values().flatten() {
            waiter.deliver(None);
        }
        for f in feeds {
            f.deliver(false);
        }
    }

    fn unregister(&self, key: &str, id: u64) {
        let mut w = self.lock();
        if let Some(list) = w.get_mut(key) {
            let before = list.len();
            list.retain(|(i, _, _)| *i != id);
            self.count.fetch_sub(before - list.len(), Ordering::AcqRel);
            if list.is_empty() {
                w.remove(key);
            }
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.watchers.unregister(&self.key, self.id);
    }
}
