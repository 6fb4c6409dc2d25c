//! `GET /changes`: the change feed of a key prefix, answered at once or as
//! a long poll (`wait`).
//!
//! Every answer is one read of the feed from the database (one snapshot:
//! the changes and the store's revision they cover). A long poll that finds
//! nothing registers a feed waiter (`Store::subscribe_feed`) and parks its
//! request on the connection loop until its deadline, with no thread
//! waiting. A wake-up (a commit under the prefix, another replica's
//! notification, a stop) is only a hint: it re-parks the request with a
//! deadline of now, so the loop hands a read of the feed to a worker, which
//! answers or waits again.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::feed_stream as stream;
use super::kv::{AnswerOnce, json, lock};
use crate::http::api_error::ApiError;
use crate::http::completion::Reply;
use crate::http::message::{HttpRequest, HttpResponse};
use crate::http::metrics::Metrics;
use crate::http::query::{CHANGES_AFTER, LIMIT, PREFIX, Query, VALUES, WAIT};
use crate::http::wire::{ChangeEntry, ChangesGoneResponse, ChangesResponse, ErrorResponse};
use crate::watch::FeedWatch;
use crate::{ChangePage, Store, StoreError};

/// A page's length when `limit` is not given (the largest is [`LIMIT`]'s).
const DEFAULT_LIMIT: u64 = 100;

/// The changes under a prefix after a revision.
#[utoipa::path(
    get,
    path = "/changes",
    params(
        ("prefix" = Option<String>, Query, description = "Only changes of keys starting with this"),
        ("after" = Option<u64>, Query, description = "Only changes with a revision above this (the previous answer's next_after, or a /keys listing's revision); 0: from the oldest change kept. Without it: only changes from now on"),
        ("limit" = Option<u64>, Query, description = "At most about this many (default 100, max 1000); a page never ends inside a revision, so one batch larger than this comes whole"),
        ("values" = Option<bool>, Query, description = "false: leave the values out (default true)"),
        ("wait" = Option<u64>, Query, description = "Long poll: with no matching change after `after`, wait up to this many seconds (max 300) for one; then an empty list and the current revision"),
        ("Accept" = Option<String>, Header, description = "`text/event-stream` (Server-Sent Events) or `application/x-ndjson`: a stream of every change from `after` on, instead of one answer (`limit` and `wait` then do nothing)"),
        ("Last-Event-ID" = Option<String>, Header, description = "With a stream: resume after this revision (what a reconnecting EventSource sends); wins over `after`"),
    ),
    responses(
        (status = 200, description = "The changes in revision order, the store's revision the answer covers, and where to resume. With `Accept: text/event-stream`, a stream of Server-Sent Events instead: each change one event (`data:` the change object, `id:` its revision on the last event of each revision; a reconnecting EventSource's `Last-Event-ID` resumes after it), `event: progress` with `data: {\"revision\":N}` at least every 15 s while idle, `event: gone` (then the end) when history after the reader was removed, `event: slow` (then the end) for a reader more than 1 MiB behind. With `Accept: application/x-ndjson`, the same change objects one per line, progress lines `{\"revision\":N}`, and a last line with `detail` when the stream ends on an error or a slow reader",
         content(
            (ChangesResponse = "application/json"),
            (String = "text/event-stream"),
            (String = "application/x-ndjson"),
         )),
        (status = 410, description = "Changes after `after` were removed by retention or a purge: re-list with /keys and resume from its revision", body = ChangesGoneResponse),
        (status = 422, description = "Invalid parameter", body = ErrorResponse),
        (status = 503, description = "Too many watchers, or the database is unavailable", body = ErrorResponse),
    )
)]
pub fn changes(
    store: &Store,
    req: &HttpRequest,
    metrics: &Arc<Metrics>,
) -> Result<Reply, ApiError> {
    let query = Query::parse(req.query())?;
    let limit = query.integer(LIMIT)?.unwrap_or(DEFAULT_LIMIT);
    if let Some(format) = stream_format(req) {
        let values = query.get(VALUES.name).is_none() || query.boolean(VALUES)?;
        // A reconnecting EventSource resumes after the last id it saw.
        let resume = match req.header("last-event-id") {
            Some(id) => Some(id.trim().parse::<u64>().map_err(|_| {
                ApiError::unprocessable("Last-Event-ID must be a revision (a number)")
            })?),
            None => None,
        };
        let after = resume.or(query.integer(CHANGES_AFTER)?);
        let prefix = query.get(PREFIX.name).unwrap_or("").to_string();
        let (store, metrics) = (store.clone(), Arc::clone(metrics));
        return Ok(Reply::Later(Box::new(move |responder| {
            stream::start(store, metrics, prefix, after, values, format, responder)
        })));
    }
    let poll = Poll {
        store: store.clone(),
        prefix: query.get(PREFIX.name).unwrap_or("").to_string(),
        after: Mutex::new(query.integer(CHANGES_AFTER)?),
        limit: usize::try_from(limit).map_err(|_| ApiError::unprocessable("limit is too large"))?,
        values: query.get(VALUES.name).is_none() || query.boolean(VALUES)?,
        deadline: None,
    };
    let wait = query.integer(WAIT)?.unwrap_or(0);
    if wait == 0 {
        let after = *lock(&poll.after);
        let page = poll
            .store
            .changes(&poll.prefix, after, poll.limit, poll.values)?;
        return Ok(page_response(&page)?.into());
    }
    let poll = Arc::new(Poll {
        deadline: Instant::now().checked_add(Duration::from_secs(wait)),
        ..poll
    });
    Ok(Reply::Later(Box::new(move |responder| {
        let slot = Arc::new(AnswerOnce(Mutex::new(Some(responder))));
        attempt(poll, slot, false);
    })))
}

/// The stream asked for in `Accept`, if any (`HEAD` gets the JSON page).
fn stream_format(req: &HttpRequest) -> Option<stream::Format> {
    if req.method == "HEAD" {
        return None;
    }
    let accept = req.header("accept")?;
    if accept.contains("text/event-stream") {
        Some(stream::Format::Sse)
    } else if accept.contains("application/x-ndjson") {
        Some(stream::Format::Ndjson)
    } else {
        None
    }
}

/// One long poll.
struct Poll {
    store: Store,
    prefix: String,
    /// Where the next read starts: `None` until the first read (then the
    /// revision it covered); moved on past reads that found nothing.
    after: Mutex<Option<u64>>,
    limit: usize,
    values: bool,
    /// `None`: too far away to compute (never expires).
    deadline: Option<Instant>,
}

/// Reads the feed and answers, or (nothing yet, before the deadline) waits
/// for a wake-up; `last`: the deadline passed, answer whatever is read.
/// Runs on a worker.
fn attempt(poll: Arc<Poll>, slot: Arc<AnswerOnce>, last: bool) {
    if lock(&slot).is_none() {
        return; // answered meanwhile
    }
    let epoch = poll.store.feed_epoch();
    let after = *lock(&poll.after);
    let page = match poll
        .store
        .changes(&poll.prefix, after, poll.limit, poll.values)
    {
        Ok(page) => page,
        Err(e) => return send(&slot, ApiError::from(e).into_response()),
    };
    let expired = last || poll.deadline.is_some_and(|d| Instant::now() >= d);
    if !page.changes.is_empty() || expired {
        return send(&slot, respond(&page));
    }
    // Nothing under the prefix up to this revision: later reads start there.
    *lock(&poll.after) = Some(page.revision);
    let subscription = Arc::new(Mutex::new(None));
    {
        let guard = lock(&slot);
        let Some(responder) = guard.as_ref() else {
            return;
        };
        let (poll, slot, subscription) = (
            Arc::clone(&poll),
            Arc::clone(&slot),
            Arc::clone(&subscription),
        );
        // Dropped unrun if the client leaves: that drops the subscription.
        responder.park(poll.deadline, move || {
            drop(lock(&subscription).take());
            attempt(poll, slot, true);
        });
    }
    let wake = {
        let (poll, slot) = (Arc::clone(&poll), Arc::clone(&slot));
        move |_open: bool| read_again(poll, slot)
    };
    match poll.store.subscribe_feed(&poll.prefix, epoch, wake) {
        Ok(FeedWatch::Pending(sub)) => *lock(&subscription) = Some(sub),
        Ok(FeedWatch::Changed) => read_again(poll, slot),
        // Stopping: the answer is what was read.
        Err(StoreError::Closed) => send(&slot, respond(&page)),
        Err(e) => send(&slot, ApiError::from(e).into_response()),
    }
}

/// Has the loop hand a read of the feed to a worker now (the request
/// parked again, with a deadline of now). Called on the thread that woke
/// the feed, which must not read the database itself.
fn read_again(poll: Arc<Poll>, slot: Arc<AnswerOnce>) {
    let guard = lock(&slot);
    if let Some(responder) = guard.as_ref() {
        let slot = Arc::clone(&slot);
        responder.park(Some(Instant::now()), move || attempt(poll, slot, false));
    }
}

fn send(slot: &AnswerOnce, response: HttpResponse) {
    if let Some(responder) = lock(slot).take() {
        responder.send(response);
    }
}

fn respond(page: &ChangePage) -> HttpResponse {
    page_response(page).unwrap_or_else(ApiError::into_response)
}

/// The JSON answer of a page.
pub(crate) fn page_response(page: &ChangePage) -> Result<HttpResponse, ApiError> {
    let next_after = match page.changes.last() {
        Some(last) if page.more => last.revision,
        _ => page.revision,
    };
    json(&ChangesResponse {
        changes: page.changes.iter().map(ChangeEntry::from).collect(),
        revision: page.revision,
        next_after,
    })
}
