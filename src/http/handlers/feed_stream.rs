//! The change feed as a stream (`GET /changes` with `Accept:
//! text/event-stream` or `application/x-ndjson`): one connection carries
//! every change under a prefix as it commits, and a progress mark at least
//! every [`PROGRESS_EVERY`] while idle.
//!
//! No thread per stream: the connection loop holds the stream
//! (`State::Streaming` in `http/conn`) and sends the parts posted to it. A
//! part is made on a worker by `pump`: it reads the feed from the
//! database after the last revision sent, posts what it found, then parks
//! the request (the loop runs the next pump at the progress deadline) and
//! registers a feed waiter whose wake-up (a commit under the prefix, another
//! replica's notification) re-parks it with a deadline of now. Memory is
//! bounded by back-pressure: the loop runs a stream's parked pump only once
//! its unsent bytes are at most `STREAM_LOW_MARK`, so a catch-up reads the
//! next part only as its reader takes the last. A reader that takes
//! nothing for the read timeout is closed and counted as too slow (the
//! loop's hard bound, with its last part saying so, is only reached by
//! parts posted before it was held); at a stop, the watchers close and
//! every stream ends with its terminating chunk.
//!
//! Streams that caught up wait together: the streams of one server on one
//! prefix, format and `values` share a hub, one feed waiter for all of
//! them. Its wake-up has the `vkv-feed` thread read the feed once after the
//! hub's revision, format it once, and post to every caught-up stream what
//! it has not had (by revision), so a commit costs one read and one
//! formatting, not one per stream, and no worker. A stream behind the hub
//! reads the feed itself until it catches up; a caught-up stream whose
//! unsent bytes pass the low mark leaves the hub unposted, and once they
//! drained catches up from its last revision the same way, so it still
//! gets every change once and in order. Any error of the hub hands its
//! streams back to their own pumps, which report it.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use super::kv::lock;
use crate::http::api_error::ApiError;
use crate::http::completion::{Responder, STREAM_LOW_MARK, StreamPart};
use crate::http::metrics::Metrics;
use crate::http::wire::{ChangeEntry, ProgressMark};
use crate::watch::{FeedSubscription, FeedWatch};
use crate::{Change, ChangePage, Store, StoreError};

/// The longest a stream stays silent: then a progress mark.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(15);

/// Changes read per query while catching up (a part holds at least one
/// query's changes). At least a `/batch`'s most entries by default: a
/// query never splits a revision, and one larger than the page is read
/// whole by a query without a limit.
const PAGE: usize = 1000;

/// Changes read per query by a stream that left its hub for a full
/// socket: its reader is slower than the commits, and a thousand such
/// streams each hold a part on top of the low mark. (A revision larger
/// than this is read whole by a query without a limit.)
const PACED_PAGE: usize = 100;

/// Bytes past which a catch-up part is posted (it goes on in the next
/// part, once the reader took this one down to `STREAM_LOW_MARK`): one
/// query's changes, unless they are fewer bytes.
const PART_BYTES: usize = 16 << 10;

/// Changes the hub reads per query: it posts the same part to every
/// caught-up stream, each of which may hold it on top of the low mark.
/// (A larger revision comes whole; the hub is caught up, so what follows
/// it is little.)
const HUB_PAGE: usize = 50;
/// Bytes the hub formats before it posts them (it reads on at once).
const HUB_PART_BYTES: usize = 8 << 10;

/// How a stream is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// Server-Sent Events (`text/event-stream`).
    Sse,
    /// One JSON object per line (`application/x-ndjson`).
    Ndjson,
}

/// One stream: where it is, and the way to its connection.
struct Stream {
    store: Store,
    metrics: Arc<Metrics>,
    prefix: String,
    values: bool,
    format: Format,
    /// Held while a pump runs, so that pumps never interleave. `None` once
    /// the stream ended.
    state: Mutex<Option<Pumping>>,
    /// Where it waits once caught up (`None`: no `vkv-feed` thread; it
    /// waits on its own).
    hub: Option<Arc<Hub>>,
    /// Bytes posted to the connection and not yet written (see
    /// `StreamPart::backlog`): above [`STREAM_LOW_MARK`] the hub posts it
    /// nothing more, and it catches up on its own once drained.
    backlog: Arc<AtomicUsize>,
}

struct Pumping {
    responder: Responder,
    /// The last revision the stream covered (`None`: not read yet, from
    /// now on).
    after: Option<u64>,
    /// Whether the head went out.
    started: bool,
    /// Whether it waits in its hub (which then posts what commits).
    live: bool,
    /// It left its hub for a full socket and has not joined again: it reads
    /// [`PACED_PAGE`] changes a query.
    paced: bool,
}

impl Drop for Stream {
    fn drop(&mut self) {
        // The client left: nobody to answer.
        if let Some(p) = lock(&self.state).take() {
            p.responder.abandon();
        }
        self.metrics.streams.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Starts a stream on `responder` (on a worker).
pub fn start(
    store: Store,
    metrics: Arc<Metrics>,
    prefix: String,
    after: Option<u64>,
    values: bool,
    format: Format,
    responder: Responder,
) {
    metrics.streams.open.fetch_add(1, Ordering::Relaxed);
    let hub = Hub::of(&store, &metrics, &prefix, values, format);
    let stream = Arc::new(Stream {
        store,
        metrics,
        prefix,
        values,
        format,
        state: Mutex::new(Some(Pumping {
            responder,
            after,
            started: false,
            live: false,
            paced: false,
        })),
        hub,
        backlog: Arc::new(AtomicUsize::new(0)),
    });
    pump(stream, false);
}

/// Sends what the feed holds after the stream's revision, then waits for
/// more (see the module's description). `progress`: the stream was idle
/// for [`PROGRESS_EVERY`]: send a progress mark if nothing else.
fn pump(stream: Arc<Stream>, progress: bool) {
    let mut guard = lock(&stream.state);
    let Some(p) = guard.as_mut() else {
        return;
    };
    let epoch = stream.store.feed_epoch();
    let mut out = Vec::new();
    let mut events = 0u64;
    let sent_up_to = p.after.unwrap_or(0);
    let mut behind = false;
    loop {
        let page = stream.store.changes(
            &stream.prefix,
            p.after,
            if p.paced { PACED_PAGE } else { PAGE },
            stream.values,
        );
        let page = match page {
            Ok(page) => page,
            Err(e) => {
                let ended = finish(&stream, p, out, &e);
                if ended {
                    *guard = None;
                }
                return;
            }
        };
        if page.changes.is_empty() && progress && out.is_empty() {
            stream.format.progress(&mut out, page.revision);
            events += 1;
        }
        events += stream.format.changes(&mut out, &page);
        p.after = Some(match page.changes.last() {
            Some(last) if page.more => last.revision,
            _ => page.revision,
        });
        if !page.more {
            break;
        }
        if out.len() >= PART_BYTES {
            behind = true;
            break;
        }
    }
    stream
        .metrics
        .streams
        .events
        .fetch_add(events, Ordering::Relaxed);
    post(&stream, p, out, false, sent_up_to);
    let deadline = if behind {
        Some(Instant::now())
    } else {
        Instant::now().checked_add(PROGRESS_EVERY)
    };
    let subscription = Arc::new(Mutex::new(None));
    {
        let (stream, subscription) = (Arc::clone(&stream), Arc::clone(&subscription));
        // Dropped unrun if the client leaves: that drops the subscription.
        p.responder.park(deadline, move || {
            drop(lock(&subscription).take());
            pump(stream, true);
        });
    }
    if behind {
        return;
    }
    if let Some(hub) = &stream.hub
        && hub.join(&stream, p, epoch)
    {
        return;
    }
    drop(guard);
    let wake = {
        let stream = Arc::clone(&stream);
        move |_open: bool| again(stream)
    };
    match stream.store.subscribe_feed(&stream.prefix, epoch, wake) {
        Ok(FeedWatch::Pending(sub)) => *lock(&subscription) = Some(sub),
        Ok(FeedWatch::Changed) => again(stream),
        Err(e) => {
            let mut guard = lock(&stream.state);
            if let Some(p) = guard.as_mut()
                && finish(&stream, p, Vec::new(), &e)
            {
                *guard = None;
            }
        }
    }
}

/// Has the loop run a pump now (called by a feed waiter, on the thread
/// that woke it, which must not read the database).
fn again(stream: Arc<Stream>) {
    let guard = lock(&stream.state);
    if let Some(p) = guard.as_ref() {
        let next = Arc::clone(&stream);
        p.responder
            .park(Some(Instant::now()), move || pump(next, false));
    }
}

/// The caught-up streams of one server on one prefix, format and `values`
/// (see the module's description).
struct Hub {
    key: HubKey,
    store: Store,
    metrics: Arc<Metrics>,
    state: Mutex<HubState>,
}

/// A hub's identity: the server (its `Metrics`, one per server, held by
/// each of its streams), the prefix, `values` and the format.
#[derive(Clone, PartialEq, Eq, Hash)]
struct HubKey {
    server: usize,
    prefix: String,
    values: bool,
    format: Format,
}

#[derive(Default)]
struct HubState {
    /// Every change under the prefix up to this revision was read and
    /// posted to the live streams (`None`: no live stream).
    revision: Option<u64>,
    /// The streams waiting here (a stream that ended drops, and is pruned).
    live: Vec<Weak<Stream>>,
    /// A feed waiter is registered or a read is queued (always, while a
    /// stream is live).
    waiting: bool,
    /// The feed failed or the store stopped: no stream joins any more.
    closed: bool,
    subscription: Option<FeedSubscription>,
}

/// The hubs, by key (a hub lives while one of its streams does).
fn hubs() -> &'static Mutex<HashMap<HubKey, Weak<Hub>>> {
    static HUBS: OnceLock<Mutex<HashMap<HubKey, Weak<Hub>>>> = OnceLock::new();
    HUBS.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The `vkv-feed` thread's queue of hubs to read for (`None`: it could not
/// start; streams then wait on their own).
fn feed_thread() -> Option<&'static Sender<Weak<Hub>>> {
    static QUEUE: OnceLock<Option<Sender<Weak<Hub>>>> = OnceLock::new();
    QUEUE
        .get_or_init(|| {
            let (tx, rx) = std::sync::mpsc::channel::<Weak<Hub>>();
            let spawned = std::thread::Builder::new()
                .name("vkv-feed".into())
                .spawn(move || {
                    for hub in rx {
                        if let Some(hub) = hub.upgrade() {
                            let read =
                                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                                    hub.read()
                                }));
                            if read.is_err() {
                                log::error!("a change feed read panicked");
                                hub.release();
                            }
                        }
                    }
                });
            match spawned {
                Ok(_) => Some(tx),
                Err(e) => {
                    log::error!("cannot start the change feed thread: {e}");
                    None
                }
            }
        })
        .as_ref()
}

impl Hub {
    /// The hub of streams like this one, made if there is none.
    fn of(
        store: &Store,
        metrics: &Arc<Metrics>,
        prefix: &str,
        values: bool,
        format: Format,
    ) -> Option<Arc<Hub>> {
        feed_thread()?;
        let key = HubKey {
            server: Arc::as_ptr(metrics) as usize,
            prefix: prefix.to_string(),
            values,
            format,
        };
        let mut hubs = lock(hubs());
        if let Some(hub) = hubs.get(&key).and_then(Weak::upgrade)
            && !lock(&hub.state).closed
        {
            return Some(hub);
        }
        hubs.retain(|_, hub| hub.strong_count() > 0);
        let hub = Arc::new(Hub {
            key: key.clone(),
            store: store.clone(),
            metrics: Arc::clone(metrics),
            state: Mutex::new(HubState::default()),
        });
        hubs.insert(key, Arc::downgrade(&hub));
        Some(hub)
    }

    /// Has `stream` wait here, if it is caught up with the hub: it read the
    /// feed up to `p.after` at `epoch`. Whether it waits here (else it
    /// reads on, or waits on its own). Called with the stream's state held.
    fn join(self: &Arc<Hub>, stream: &Arc<Stream>, p: &mut Pumping, epoch: u64) -> bool {
        let Some(after) = p.after else {
            return false;
        };
        let mut st = lock(&self.state);
        if st.closed {
            p.live = false;
            return false;
        }
        if p.live {
            return true;
        }
        match st.revision {
            Some(revision) if after < revision => return false,
            Some(_) => {}
            None => st.revision = Some(after),
        }
        st.live.push(Arc::downgrade(stream));
        p.live = true;
        p.paced = false;
        if !st.waiting {
            st.waiting = true;
            drop(st);
            self.subscribe(epoch);
        }
        true
    }

    /// Waits for a change under the prefix after the feed was read at
    /// `epoch`; then a read on the `vkv-feed` thread.
    fn subscribe(self: &Arc<Hub>, epoch: u64) {
        let hub = Arc::downgrade(self);
        let wake = move |_open: bool| {
            if let Some(hub) = hub.upgrade() {
                hub.queue();
            }
        };
        match self.store.subscribe_feed(&self.key.prefix, epoch, wake) {
            Ok(FeedWatch::Pending(sub)) => lock(&self.state).subscription = Some(sub),
            Ok(FeedWatch::Changed) => self.queue(),
            Err(_) => self.release(),
        }
    }

    /// Has the `vkv-feed` thread read the feed for this hub.
    fn queue(self: &Arc<Hub>) {
        match feed_thread() {
            Some(queue) if queue.send(Arc::downgrade(self)).is_ok() => {}
            _ => self.release(),
        }
    }

    /// Reads the feed after the hub's revision, formats it once, and posts
    /// to each live stream what it has not had; then waits again (or reads
    /// on at once if there is more). On the `vkv-feed` thread.
    fn read(self: &Arc<Hub>) {
        let from = {
            let mut st = lock(&self.state);
            match st.revision {
                Some(revision) if !st.closed => revision,
                _ => {
                    st.waiting = false;
                    return;
                }
            }
        };
        let epoch = self.store.feed_epoch();
        let mut out = Vec::new();
        // (revision, where its changes start in `out`, changes before it)
        let mut marks: Vec<(u64, usize, u64)> = Vec::new();
        let mut events = 0u64;
        let mut to = from;
        let mut more = false;
        loop {
            let page =
                match self
                    .store
                    .changes(&self.key.prefix, Some(to), HUB_PAGE, self.key.values)
                {
                    Ok(page) => page,
                    Err(_) => return self.release(),
                };
            for (i, c) in page.changes.iter().enumerate() {
                if marks.last().is_none_or(|m| m.0 != c.revision) {
                    marks.push((c.revision, out.len(), events));
                }
                let last_of_revision = page
                    .changes
                    .get(i + 1)
                    .is_none_or(|next| next.revision != c.revision);
                self.key.format.change(&mut out, c, last_of_revision);
                events += 1;
            }
            to = match page.changes.last() {
                Some(last) if page.more => last.revision,
                _ => page.revision,
            };
            if !page.more {
                break;
            }
            if out.len() >= HUB_PART_BYTES {
                more = true;
                break;
            }
        }
        let live = {
            let mut st = lock(&self.state);
            st.revision = Some(to);
            st.live.retain(|s| s.strong_count() > 0);
            st.live.clone()
        };
        let mut left = HashSet::new();
        let mut sent = 0u64;
        for weak in &live {
            let Some(stream) = weak.upgrade() else {
                continue;
            };
            match self.post_to(&stream, from, to, &out, &marks, events) {
                Some(n) => sent += n,
                None => {
                    left.insert(weak.as_ptr() as usize);
                }
            }
        }
        self.metrics
            .streams
            .events
            .fetch_add(sent, Ordering::Relaxed);
        {
            let mut st = lock(&self.state);
            if !left.is_empty() {
                st.live
                    .retain(|s| s.strong_count() > 0 && !left.contains(&(s.as_ptr() as usize)));
            }
            if st.live.is_empty() {
                // Nobody waits: the next stream to join starts it again.
                st.revision = None;
                st.waiting = false;
                st.subscription = None;
                return;
            }
        }
        if more {
            self.queue();
        } else {
            self.subscribe(epoch);
        }
    }

    /// Posts to `stream` what of `out` (the changes after `from` up to
    /// `to`) it has not had; how many changes. `None`: it no longer waits
    /// here.
    fn post_to(
        &self,
        stream: &Arc<Stream>,
        from: u64,
        to: u64,
        out: &[u8],
        marks: &[(u64, usize, u64)],
        events: u64,
    ) -> Option<u64> {
        let mut guard = lock(&stream.state);
        let p = guard.as_mut()?;
        if !p.live {
            return None;
        }
        let after = p.after.unwrap_or(0);
        if after < from {
            // It would miss (after, from]: it reads the feed itself.
            p.live = false;
            p.paced = true;
            drop(guard);
            again(Arc::clone(stream));
            return None;
        }
        if after >= to {
            return Some(0);
        }
        if stream.backlog.load(Ordering::Relaxed) > STREAM_LOW_MARK {
            // Its reader is behind: it leaves, and once its output drained
            // (the loop holds the pump till then) it reads the feed after
            // `after` itself, then joins again.
            p.live = false;
            p.paced = true;
            drop(guard);
            again(Arc::clone(stream));
            return None;
        }
        let i = marks.partition_point(|m| m.0 <= after);
        let (start, before) = marks.get(i).map_or((out.len(), events), |m| (m.1, m.2));
        p.after = Some(to);
        let part = out.get(start..).unwrap_or_default().to_vec();
        post(stream, p, part, false, after);
        Some(events.saturating_sub(before))
    }

    /// Hands every live stream back to its own pump (which reports the
    /// error or the stop), and takes no more.
    fn release(&self) {
        let live = {
            let mut st = lock(&self.state);
            st.closed = true;
            st.waiting = false;
            st.subscription = None;
            std::mem::take(&mut st.live)
        };
        for stream in live.iter().filter_map(Weak::upgrade) {
            if let Some(p) = lock(&stream.state).as_mut() {
                p.live = false;
            }
            again(stream);
        }
    }
}

/// Posts `out` (with the head first if it has not gone out); `end`: the
/// terminating chunk too. `sent_up_to`: the revision the reader has with
/// everything posted before, named in the last part sent instead of this
/// one if the reader is too slow.
fn post(stream: &Stream, p: &mut Pumping, out: Vec<u8>, end: bool, sent_up_to: u64) {
    let mut bytes = Vec::with_capacity(out.len() + 128);
    if !p.started {
        bytes.extend_from_slice(stream.format.head().as_bytes());
        p.started = true;
    }
    if out.is_empty() && !end && bytes.is_empty() {
        return;
    }
    chunk(&mut bytes, &out);
    if end {
        bytes.extend_from_slice(b"0\r\n\r\n");
    }
    let mut slow = Vec::new();
    let mut last = Vec::new();
    stream.format.slow(&mut last, sent_up_to);
    chunk(&mut slow, &last);
    slow.extend_from_slice(b"0\r\n\r\n");
    let metrics = Arc::clone(&stream.metrics);
    p.responder.stream(StreamPart {
        bytes,
        end,
        slow,
        backlog: Some(Arc::clone(&stream.backlog)),
        dropped: Some(Box::new(move || {
            metrics.streams.dropped_slow.fetch_add(1, Ordering::Relaxed);
        })),
    });
}

/// Ends the stream on `e` (what came before is in `out`): a stop ends it
/// cleanly; history removed is `gone` (SSE: `event: gone`); any other
/// error says so in a last event. Before the head went out a plain error
/// answer is sent instead (NDJSON; SSE keeps `gone` an event, which an
/// `EventSource` reads). Whether the stream ended.
fn finish(stream: &Stream, p: &mut Pumping, mut out: Vec<u8>, e: &StoreError) -> bool {
    let sent = p.after.unwrap_or(0);
    match e {
        StoreError::Closed => {}
        StoreError::ChangesGone { .. } if p.started || stream.format == Format::Sse => {
            stream.format.gone(&mut out, e);
        }
        _ if !p.started => {
            // Nothing sent yet: a plain error answer.
            p.responder
                .take()
                .send(ApiError::from(e.clone()).into_response());
            return true;
        }
        _ => stream.format.error(&mut out, e),
    }
    post(stream, p, out, true, sent);
    true
}

/// Appends `data` as one HTTP chunk (nothing for no data).
fn chunk(to: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    to.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
    to.extend_from_slice(data);
    to.extend_from_slice(b"\r\n");
}

impl Format {
    fn head(self) -> &'static str {
        match self {
            Format::Sse => {
                "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n\
                 X-Accel-Buffering: no\r\nTransfer-Encoding: chunked\r\n\r\n"
            }
            Format::Ndjson => {
                "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nCache-Control: no-cache\r\n\
                 X-Accel-Buffering: no\r\nTransfer-Encoding: chunked\r\n\r\n"
            }
        }
    }

    /// Appends the page's changes; how many. SSE: the `id` (the revision)
    /// on the last event of each revision, so a resumed stream never skips
    /// part of a batch.
    fn changes(self, out: &mut Vec<u8>, page: &ChangePage) -> u64 {
        for (i, c) in page.changes.iter().enumerate() {
            let last_of_revision = page
                .changes
                .get(i + 1)
                .is_none_or(|next| next.revision != c.revision);
            self.change(out, c, last_of_revision);
        }
        page.changes.len() as u64
    }

    /// Appends one change; `id`: it is the last of its revision.
    fn change(self, out: &mut Vec<u8>, c: &Change, id: bool) {
        let json = serde_json::to_vec(&ChangeEntry::from(c)).unwrap_or_default();
        match self {
            Format::Sse => {
                out.extend_from_slice(b"data: ");
                out.extend_from_slice(&json);
                out.push(b'\n');
                if id {
                    out.extend_from_slice(format!("id: {}\n", c.revision).as_bytes());
                }
                out.push(b'\n');
            }
            Format::Ndjson => {
                out.extend_from_slice(&json);
                out.push(b'\n');
            }
        }
    }

    fn progress(self, out: &mut Vec<u8>, revision: u64) {
        let json = serde_json::to_string(&ProgressMark { revision }).unwrap_or_default();
        match self {
            Format::Sse => out.extend_from_slice(
                format!("event: progress\ndata: {json}\nid: {revision}\n\n").as_bytes(),
            ),
            Format::Ndjson => out.extend_from_slice(format!("{json}\n").as_bytes()),
        }
    }

    fn gone(self, out: &mut Vec<u8>, e: &StoreError) {
        let oldest = match e {
            StoreError::ChangesGone { oldest, .. } => *oldest,
            _ => 0,
        };
        let json = serde_json::json!({"detail": e.to_string(), "oldest_revision": oldest});
        match self {
            Format::Sse => {
                out.extend_from_slice(format!("event: gone\ndata: {json}\n\n").as_bytes())
            }
            Format::Ndjson => out.extend_from_slice(format!("{json}\n").as_bytes()),
        }
    }

    fn error(self, out: &mut Vec<u8>, e: &StoreError) {
        let json = serde_json::json!({"detail": e.to_string()});
        match self {
            Format::Sse => {
                out.extend_from_slice(format!("event: error\ndata: {json}\n\n").as_bytes())
            }
            Format::Ndjson => out.extend_from_slice(format!("{json}\n").as_bytes()),
        }
    }

    /// The last part of a reader too slow to keep up: resume after
    /// `revision`, the last one it was sent.
    fn slow(self, out: &mut Vec<u8>, revision: u64) {
        let json = serde_json::json!({
            "detail": format!("the reader fell too far behind; resume after revision {revision}"),
            "revision": revision,
        });
        match self {
            Format::Sse => {
                out.extend_from_slice(format!("event: slow\ndata: {json}\n\n").as_bytes())
            }
            Format::Ndjson => out.extend_from_slice(format!("{json}\n").as_bytes()),
        }
    }
}
