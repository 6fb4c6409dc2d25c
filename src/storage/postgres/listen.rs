//! The `LISTEN` connection of a replica, on a thread of its own (blocking
//! iteration with a timeout: no async runtime of ours). Every write
//! transaction `NOTIFY`s each key it wrote (sent by PostgreSQL only at
//! commit, in commit order) and a marker for the group (`lease.rs`). This
//! thread:
//! - drops the keys other replicas wrote from the cache, then acknowledges
//!   their groups, which wait for that before they are answered;
//! - renews this replica's read lease (`lease.rs`);
//! - learns the new deadlines of leases kept alive through other replicas
//!   (`dues.rs`);
//! - wakes the watchers of the keys written. After the connection is lost
//!   and comes back, every parked watcher is re-checked, so a notification
//!   sent meanwhile is never missed, and the cache is emptied; change
//!   feeds are woken on every key another replica wrote (and all of them
//!   after a lost connection), and read the database from their revision.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use postgres::error::SqlState;
use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, Notification};

use super::apply::CHANNEL;
use super::conn::Role;
use super::lease::{LEASE_CHANNEL, LEASE_LOCK, Leases, Message};
use super::reads::PgReads;
use super::slots::Slots;
use super::target::Target;
use crate::cache::LatestCache;
use crate::storage::seam::Reads;
use crate::watch::Watchers;

/// How often the thread looks at the stop flag while idle.
const TICK: Duration = Duration::from_millis(250);

/// How long a renewal's notification is waited for before PostgreSQL is
/// made to look at its queue again.
const POKE: Duration = Duration::from_millis(20);

/// The most notifications handled at once.
const MAX_BATCH: usize = 4096;

/// What the listening thread works with.
pub(crate) struct Listener {
    pub target: Target,
    pub reads: Arc<PgReads>,
    pub watchers: Arc<Watchers>,
    pub cache: Arc<LatestCache>,
    pub leases: Arc<Leases>,
    pub stop: Arc<AtomicBool>,
    /// Whose reads yield their connection slots (`slots.rs`): this thread
    /// passes this replica's requests on and hears the others'.
    pub slots: Arc<Slots>,
}

/// Starts the thread on `first`, the listening connection (connected with
/// [`connect`] before the store serves anything, so that no commit of
/// another replica goes unseen); it stops when `stop` is set.
/// The answer disconnects when the thread has ended (its lease row gone on
/// a clean stop).
pub(crate) fn start(listener: Listener, first: Client) -> Result<Receiver<()>, String> {
    let (ended, stopped) = crossbeam_channel::bounded::<()>(0);
    std::thread::Builder::new()
        .name("vkv-pg-listen".into())
        .spawn(move || {
            let _ended = ended;
            listener.run(first);
        })
        .map_err(|e| format!("cannot start the listener thread: {e}"))?;
    Ok(stopped)
}

/// A connection that listens on both channels, named in
/// `pg_stat_activity`. This replica's lease row goes: writes that waited
/// for it while no one listened (it missed their notifications, so it can
/// never acknowledge them) stop waiting, and its next lease is taken anew.
pub(crate) fn connect(target: &Target, leases: &Leases) -> Result<Client, postgres::Error> {
    let mut c = target.connect()?;
    c.batch_execute(&format!(
        "{}; LISTEN {CHANNEL}; LISTEN {LEASE_CHANNEL};
         DELETE FROM vkv_replicas WHERE id = {}",
        Role::Listen.setup(),
        leases.me
    ))?;
    Ok(c)
}

impl Listener {
    fn run(&self, first: Client) {
        let (mut failing, mut renewals) = (false, 0u64);
        let mut first = Some(first);
        while !self.stop.load(Ordering::Acquire) {
            let fresh = first.is_none();
            let mut client = match first.take().map_or_else(|| self.reconnect(), Ok) {
                Ok(c) => c,
                Err(e) => {
                    if !failing {
                        log::warn!("PostgreSQL LISTEN connection failed ({e}); retrying");
                        failing = true;
                    }
                    std::thread::sleep(TICK);
                    continue;
                }
            };
            if failing {
                log::info!("PostgreSQL LISTEN connection is back; re-checking parked watchers");
                failing = false;
            }
            if fresh {
                // Whatever was committed while no one listened: nothing
                // cached is known to be current, and parked watchers may be
                // behind.
                self.cache.clear();
                for key in self.watchers.watched_keys() {
                    self.wake(&key);
                }
                // Change feeds read the database again: they resume from
                // their revision, so a lost notification loses nothing.
                self.watchers.hint(None);
            }
            let served = self.listen(&mut client, &mut renewals);
            self.leases.revoke();
            match served {
                Ok(()) => {
                    // Stopping: writers need not wait for this lease.
                    let me = self.leases.me;
                    let _ =
                        client.batch_execute(&format!("DELETE FROM vkv_replicas WHERE id = {me}"));
                }
                Err(e) => {
                    log::warn!("PostgreSQL LISTEN connection lost ({e}); reconnecting");
                    failing = true;
                }
            }
        }
        log::debug!("PostgreSQL listener stopped");
    }

    /// Connects again; without a free slot, as the writer does (`slots.rs`:
    /// the reads yield theirs, here and on the other replicas).
    fn reconnect(&self) -> Result<Client, postgres::Error> {
        let pool = &self.reads.pool;
        let ask = Message::Yield {
            origin: self.leases.me,
        }
        .notify();
        self.slots.connect(
            || connect(&self.target, &self.leases),
            || {
                if let Some(mut c) = pool.try_get() {
                    let _ = c.client.batch_execute(&ask);
                }
            },
            || drop(std::iter::from_fn(|| pool.try_get()).collect::<Vec<_>>()),
        )
    }

    /// Serves notifications and renews the lease until the connection
    /// fails or `stop` is set.
    /// `renewals` numbers renewals over the process's life: a lease taken
    /// anew after a reconnection has another epoch.
    fn listen(&self, client: &mut Client, renewals: &mut u64) -> Result<(), postgres::Error> {
        let leases = &self.leases;
        // The renewal in flight: its number and when it was sent.
        let mut renewal: Option<(u64, Instant)> = None;
        let wait = if leases.lease.is_zero() {
            TICK
        } else {
            TICK.min(leases.lease / 10)
        };
        while !self.stop.load(Ordering::Acquire) {
            // A renewal that never came back within a lease was lost.
            if leases.renewal_due() && renewal.is_none_or(|(_, t)| t.elapsed() > leases.lease) {
                *renewals += 1;
                let sent = Instant::now();
                match renew(client, leases, *renewals)? {
                    // An extension: granted now (see `renew`).
                    Some(true) => {
                        leases.grant(sent);
                        renewal = None;
                    }
                    Some(false) => renewal = Some((*renewals, sent)),
                    // The lease lock was not granted in time: writes wait
                    // behind the renewal, so it gives way and comes back.
                    None => renewal = None,
                }
            }
            // While a renewal is out, look often: PostgreSQL may hold back
            // its notification until a later one makes it read its queue
            // again (seen: hundreds of ms with two replicas under load), so
            // an empty notification makes it do so.
            if self.slots.take_ask() {
                let ask = Message::Yield { origin: leases.me }.notify();
                client.batch_execute(&unflushed(&ask))?;
            }
            let batch = next_batch(client, if renewal.is_some() { POKE } else { wait })?;
            if batch.is_empty() {
                if client.is_closed() {
                    // Seen as an error on the next round; make it one now.
                    client.simple_query("")?;
                }
                if renewal.is_some() {
                    client.batch_execute(&unflushed(&format!(
                        "SELECT pg_notify('{LEASE_CHANNEL}', '')"
                    )))?;
                }
                continue;
            }
            let done = self.handle(client, batch, renewal.map(|(n, _)| n))?;
            if done && let Some((_, sent)) = renewal.take() {
                leases.count_taken();
                if leases.taken() == 1 {
                    log::info!(
                        "read lease taken: cached latest versions are answered without \
                         asking the database"
                    );
                } else if !leases.held() {
                    // It had run out: reads asked the database meanwhile.
                    log::info!(
                        "read lease taken again after it ran out ({:?} to renew)",
                        sent.elapsed()
                    );
                }
                leases.grant(sent);
            }
        }
        Ok(())
    }

    /// Handles one batch of notifications, in order: drops the keys other
    /// replicas wrote from the cache, acknowledges their groups, wakes the
    /// watchers. Whether the renewal `renewal` came back in it.
    fn handle(
        &self,
        client: &mut Client,
        batch: Vec<Notification>,
        renewal: Option<u64>,
    ) -> Result<bool, postgres::Error> {
        let me = self.leases.me;
        // Keys seen since the last marker; the keys to drop; every key
        // written (for the watchers); the newest group of each replica.
        let (mut pending, mut stale, mut written) = (Vec::new(), Vec::new(), BTreeSet::new());
        let mut groups: BTreeMap<i64, u64> = BTreeMap::new();
        let mut synced = false;
        for n in batch {
            if n.channel() == CHANNEL {
                if let Some(key) = unhex(n.payload()) {
                    pending.push(key);
                }
                continue;
            }
            match Message::parse(n.payload()) {
                Some(Message::Group { origin, seq, keys }) => {
                    // A transaction's notifications are contiguous: its
                    // keys are the last `keys` seen.
                    let ours = pending.split_off(pending.len().saturating_sub(keys));
                    stale.append(&mut pending);
                    if origin == me {
                        written.extend(ours);
                    } else {
                        stale.extend(ours);
                        let g = groups.entry(origin).or_insert(0);
                        *g = (*g).max(seq);
                    }
                }
                Some(Message::Sync { id, n }) => synced |= id == me && Some(n) == renewal,
                Some(Message::Yield { origin }) if origin != me => self.slots.asked(),
                Some(Message::Yield { .. }) => {}
                Some(Message::Kept { id, due_ms }) => self.reads.dues.learn(id as u64, due_ms),
                None => {}
            }
        }
        // Keys of no marker (a writer of an older vkv): dropped too.
        stale.append(&mut pending);
        for key in &stale {
            self.cache.invalidate(key);
        }
        if !groups.is_empty() {
            // The writers waiting for it read `vkv_acks`. Lost with a
            // crash, an acknowledgement only makes a writer wait out the
            // lease: no need to wait for the disk.
            let rows: Vec<String> = groups
                .iter()
                .map(|(origin, seq)| format!("({me}, {origin}, {seq})"))
                .collect();
            client.batch_execute(&unflushed(&format!(
                "INSERT INTO vkv_acks (holder, origin, seq) VALUES {}
                     ON CONFLICT (holder, origin)
                     DO UPDATE SET seq = greatest(vkv_acks.seq, EXCLUDED.seq)",
                rows.join(", ")
            )))?;
        }
        for key in &stale {
            // Other replicas' changes: feeds under these keys read again.
            self.watchers.hint(Some(key));
        }
        written.extend(stale);
        for key in &written {
            self.wake(key);
        }
        Ok(synced)
    }
    /// Hands the latest version of `key` to its watchers, if it has any.
    fn wake(&self, key: &str) {
        if !self.watchers.is_watched(key) {
            return;
        }
        match self.reads.latest(key) {
            Ok(Some(v)) => self.watchers.notify(&Arc::new(v)),
            Ok(None) => {}
            Err(e) => log::warn!("cannot read key '{key}' for its watchers: {e}"),
        }
    }
}

/// The notifications that arrive within `wait`, and those right behind the
/// first.
fn next_batch(client: &mut Client, wait: Duration) -> Result<Vec<Notification>, postgres::Error> {
    let mut notifications = client.notifications();
    let Some(first) = notifications.timeout_iter(wait).next()? else {
        return Ok(Vec::new());
    };
    let mut batch = vec![first];
    let mut more = notifications.iter();
    while batch.len() < MAX_BATCH {
        match more.next()? {
            Some(n) => batch.push(n),
            None => break,
        }
    }
    Ok(batch)
}

/// Renewal `n` of this replica's lease, under the lease lock taken
/// exclusive (no write is between reading the holders and its commit).
/// Whether it extended a lease still valid on the primary's clock: then it
/// counts at once, since every write since the lease was taken saw it and
/// waits for this replica (`lease.rs`). Else (a lease taken anew) it counts
/// once its notification is back: every earlier commit was seen. The
/// commit does not wait for the disk: a renewal lost in a crash is covered
/// by writers holding their answers for a lease after they reconnect
/// (`apply.rs`). Rows of replicas gone for an hour are removed.
///
/// The lease runs a lease from when the primary *received* the renewal
/// (`statement_timestamp()`, after this replica sent it, so past its own
/// deadline), not from when the renewal got the lock: a renewal of a
/// replica frozen right after sending it may wait for the lock, and must
/// not keep other replicas' writes waiting longer for it.
///
/// `None`: the lock was not granted within [`lock_wait`]. Every write
/// takes the lock shared with its `COMMIT`, in statements the server runs
/// without waiting for the writer, so it is held briefly; but new writes
/// queue behind a renewal waiting for it exclusive, so the renewal gives up
/// quickly rather than stall every replica's writes.
fn renew(client: &mut Client, leases: &Leases, n: u64) -> Result<Option<bool>, postgres::Error> {
    let (me, ms) = (leases.me, leases.lease.as_millis());
    let sync = Message::Sync { id: me, n }.payload();
    let wait = lock_wait(leases.lease).as_millis();
    let replies = client.simple_query(&unflushed(&format!(
        "SET LOCAL lock_timeout = {wait};
         SELECT pg_advisory_xact_lock({LEASE_LOCK});
         SELECT count(*) FROM vkv_replicas WHERE id = {me} AND lease_until > clock_timestamp();
         INSERT INTO vkv_replicas (id, lease_until, epoch)
             VALUES ({me}, statement_timestamp() + interval '{ms} milliseconds', {n})
             ON CONFLICT (id) DO UPDATE SET lease_until = EXCLUDED.lease_until,
                 epoch = CASE WHEN vkv_replicas.lease_until > clock_timestamp()
                     THEN vkv_replicas.epoch ELSE EXCLUDED.epoch END;
         DELETE FROM vkv_replicas WHERE lease_until < clock_timestamp() - interval '1 hour';
         DELETE FROM vkv_acks WHERE holder NOT IN (SELECT id FROM vkv_replicas);
         SELECT pg_notify('{LEASE_CHANNEL}', '{sync}')"
    )));
    let replies = match replies {
        Ok(replies) => replies,
        Err(e) if e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) => {
            // The string's explicit transaction is left aborted.
            client.batch_execute("ROLLBACK")?;
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    // The rows: the lock's (empty), the count, the notification's (empty).
    Ok(Some(replies.iter().any(
        |m| matches!(m, postgres::SimpleQueryMessage::Row(r) if r.get(0) == Some("1")),
    )))
}

/// How long a renewal waits for the lease lock: a tenth of the lease, at
/// least 10 ms and at most 100 ms.
fn lock_wait(lease: Duration) -> Duration {
    (lease / 10).clamp(Duration::from_millis(10), Duration::from_millis(100))
}

/// `statements` as one transaction whose commit does not wait for the disk
/// (or a synchronous standby): renewals, acknowledgements and pokes, whose
/// loss in a crash only makes writers wait (see `renew`).
fn unflushed(statements: &str) -> String {
    format!("BEGIN; SET LOCAL synchronous_commit = off; {statements}; COMMIT")
}

/// The key a payload names (hex of its bytes).
fn unhex(payload: &str) -> Option<String> {
    let bytes = payload.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    let raw = bytes
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(raw).ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn payloads_round_trip_any_key() {
        for key in ["a", "app/a b", "\u{0}nul", "é/ü/日本"] {
            let payload = super::super::apply::hex(key.as_bytes());
            assert_eq!(super::unhex(&payload).as_deref(), Some(key));
        }
        assert_eq!(super::unhex("zz"), None);
        assert_eq!(super::unhex("abc"), None);
    }
}
