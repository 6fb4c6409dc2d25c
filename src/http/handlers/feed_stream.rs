//! The change feed as a stream (`GET /changes` with `Accept:
//! text/event-stream` or `application/x-ndjson`): one connection carries
//! every change under a prefix as it commits, and a progress mark at least
//! every [`PROGRESS_EVERY`] while idle.
//!
//! No thread per stream: the connection loop holds the stream
//! (`State::Streaming` in `conn.rs`) and sends the parts posted to it. A
//! part is made on a worker by `pump`: it reads the feed from the
//! database after the last revision sent, posts what it found, then parks
//! the request (the loop runs the next pump at the progress deadline) and
//! registers a feed waiter whose wake-up (a commit under the prefix, another
//! replica's notification) re-parks it with a deadline of now. A reader
//! that falls more than the loop's bound behind gets the last part made
//! for that case and is closed; at a stop, the watchers close and every
//! stream ends with its terminating chunk.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::kv::lock;
use crate::http::api_error::ApiError;
use crate::http::completion::{Responder, StreamPart};
use crate::http::metrics::Metrics;
use crate::http::wire::{ChangeEntry, ProgressMark};
use crate::watch::FeedWatch;
use crate::{ChangePage, Store, StoreError};

/// The longest a stream stays silent: then a progress mark.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(15);

/// Changes read per query while catching up.
const PAGE: usize = 1000;

/// Bytes one part may hold before it is posted (a catch-up goes on in the
/// next part).
const PART_BYTES: usize = 256 << 10;

/// How a stream is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
}

struct Pumping {
    responder: Responder,
    /// The last revision the stream covered (`None`: not read yet, from
    /// now on).
    after: Option<u64>,
    /// Whether the head went out.
    started: bool,
}

impl Drop for Stream {
    fn drop(&mut self) {
        // The client left: nobody to answer.
        if let Some(p) = lock(&self.state).take() {
            p.responder.abandon();
        }
        self.metrics
            .streams
            .open
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
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
    metrics
        .streams
        .open
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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
        })),
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
        let page = stream
            .store
            .changes(&stream.prefix, p.after, PAGE, stream.values);
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
        .fetch_add(events, std::sync::atomic::Ordering::Relaxed);
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
    drop(guard);
    if behind {
        return;
    }
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
        dropped: Some(Box::new(move || {
            metrics
                .streams
                .dropped_slow
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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
        let n = page.changes.len();
        for (i, c) in page.changes.iter().enumerate() {
            let json = serde_json::to_vec(&ChangeEntry::from(c)).unwrap_or_default();
            match self {
                Format::Sse => {
                    out.extend_from_slice(b"data: ");
                    out.extend_from_slice(&json);
                    out.push(b'\n');
                    let last_of_revision = page
                        .changes
                        .get(i + 1)
                        .is_none_or(|next| next.revision != c.revision);
                    if last_of_revision {
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
        n as u64
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
