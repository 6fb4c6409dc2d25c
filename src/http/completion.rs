//! How an answer finds its way back to a connection without a thread
//! waiting for it.
//!
//! The connection loop hands every request to the [`Service`] with a
//! [`Responder`]: a ticket (which connection, which request) and a mailbox
//! (a channel plus a `mio::Waker`). Whoever finishes the request (a worker,
//! the writer thread after a commit, the writer waking a watcher) calls
//! [`Responder::send`]; the loop wakes, finds the connection and writes the
//! answer. A request that waits (a long poll) also tells the loop its
//! deadline with [`Responder::park`]: the loop runs the given closure when it
//! passes, and drops it (releasing what it holds, such as a watcher slot) if
//! the client goes away first.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, unbounded};

use super::message::{HttpRequest, HttpResponse};
use crate::wake::Wake;

/// What answers requests: the contract between the connection loop and
/// the handlers. The loop calls [`Service::handle`] once per request, on
/// its own thread, and acts on the [`Reply`]: writes a `Ready` answer at
/// once, runs a `Later` closure with the request's [`Responder`] (it only
/// hands it on), or passes `Defer`red work, which may block, to
/// [`Service::defer`] for a worker.
pub trait Service: Send + Sync + 'static {
    /// Takes `request` on the loop's thread: routes it, authorizes it and
    /// parses it once, and answers it now or says what is left to do.
    /// Must not block.
    fn handle(&self, request: &HttpRequest) -> Reply;

    /// Runs `work` for `request` off the loop's thread (a worker), the
    /// answer sent through `responder`; refused at once (`503`) when the
    /// workers' queue is full.
    fn defer(&self, request: HttpRequest, work: Deferred, responder: Responder);

    /// Counts an answer that the connection layer sent itself (a framing
    /// error, a timeout, the connection limit), by status.
    fn count(&self, _status: u16) {}

    /// Runs `task` off the loop's thread (a parked request's expiry, which
    /// reads the store). The default runs it in place.
    fn spawn(&self, task: Box<dyn FnOnce() + Send>) {
        task();
    }
}

/// Which request of which connection an answer is for. A stale ticket (the
/// connection closed, or moved on) is ignored by the loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ticket {
    /// The connection's slot in the loop.
    pub slot: usize,
    /// The request's number, unique in the loop.
    pub request: u64,
}

/// What runs when a parked request's deadline passes.
pub(crate) type Expiry = Box<dyn FnOnce() + Send>;

/// What a responder tells the loop.
pub(crate) enum Event {
    /// The answer.
    Answer(HttpResponse),
    /// The request waits until the deadline (`None`: no deadline), then the
    /// closure runs (on the loop's thread) and must answer.
    Park(Option<Instant>, Expiry),
    /// Bytes of a streamed answer (its head, then HTTP chunks, framed by
    /// the sender), sent as they are; `end`: the last ones, then the
    /// connection closes. When the bytes still unsent pass the loop's bound
    /// for a stream (a reader that does not keep up), `slow` is sent
    /// instead (framed, ending the stream), `dropped` runs, and the
    /// connection closes once it is out.
    Stream(StreamPart),
}

/// Bytes of a streamed answer (see [`Event::Stream`]).
pub(crate) struct StreamPart {
    pub bytes: Vec<u8>,
    pub end: bool,
    pub slow: Vec<u8>,
    pub dropped: Option<Box<dyn FnOnce() + Send>>,
}

/// The loop's inbox, shared with every responder.
pub(crate) struct Mailbox {
    queue: Sender<(Ticket, Event)>,
    waker: mio::Waker,
    /// Set by the first post after the loop last looked: later posts skip
    /// the wake-up syscall.
    woken: AtomicBool,
}

impl Wake for Mailbox {
    fn wake(&self) {
        if !self.woken.swap(true, Ordering::AcqRel) {
            let _ = self.waker.wake();
        }
    }
}

impl Mailbox {
    pub fn new(waker: mio::Waker) -> (Arc<Mailbox>, Receiver<(Ticket, Event)>) {
        let (queue, inbox) = unbounded();
        let mailbox = Mailbox {
            queue,
            waker,
            woken: AtomicBool::new(false),
        };
        (Arc::new(mailbox), inbox)
    }

    /// Queues `event` and wakes the loop, unless a wake-up is pending, or
    /// held to the end of the batch of answers this thread is sending
    /// ([`crate::wake::batch`]).
    fn post(self: &Arc<Self>, ticket: Ticket, event: Event) {
        if self.queue.send((ticket, event)).is_ok() && !self.woken.load(Ordering::Acquire) {
            crate::wake::wake(self);
        }
    }

    /// Wakes the loop (to see a flag).
    pub fn wake_now(&self) {
        self.woken.store(true, Ordering::Release);
        let _ = self.waker.wake();
    }

    /// The loop is about to read its inbox: the next post must wake it.
    pub fn rearm(&self) {
        self.woken.store(false, Ordering::Release);
    }
}

enum Target {
    Loop(Arc<Mailbox>, Ticket),
    Channel(Sender<Pending>),
}

/// Runs once, just before the answer is sent (metrics, a log line).
type Hook = Box<dyn FnOnce(&HttpResponse) + Send>;

/// Changes the answer before it is sent (headers every answer to a request
/// gets, such as CORS'), whoever makes it.
type Edit = Box<dyn FnOnce(&mut HttpResponse) + Send>;

/// The way back to the connection a request came from. Send exactly one
/// answer; dropped unanswered, it answers `500` (a bug, never a hang).
pub struct Responder {
    target: Option<Target>,
    hook: Option<Hook>,
    edit: Option<Edit>,
}

impl Responder {
    pub(crate) fn to_loop(mailbox: Arc<Mailbox>, ticket: Ticket) -> Self {
        Responder {
            target: Some(Target::Loop(mailbox, ticket)),
            hook: None,
            edit: None,
        }
    }

    /// A responder whose events arrive on a channel, for callers without a
    /// connection loop (tests, [`super::workers::WorkerPool::dispatch`]);
    /// [`wait_for_answer`] turns them into the answer.
    pub fn channel() -> (Responder, Receiver<Pending>) {
        let (tx, rx) = unbounded::<Pending>();
        let responder = Responder {
            target: Some(Target::Channel(tx)),
            hook: None,
            edit: None,
        };
        (responder, rx)
    }

    /// Runs `hook` with the answer just before it is sent.
    pub fn with_hook(mut self, hook: impl FnOnce(&HttpResponse) + Send + 'static) -> Self {
        self.hook = Some(match self.hook.take() {
            None => Box::new(hook),
            Some(first) => Box::new(move |r: &HttpResponse| {
                first(r);
                hook(r);
            }),
        });
        self
    }

    /// Has `edit` change the answer before it is sent (and before the
    /// hook sees it).
    pub fn with_edit(mut self, edit: impl FnOnce(&mut HttpResponse) + Send + 'static) -> Self {
        self.edit = Some(match self.edit.take() {
            None => Box::new(edit),
            Some(first) => Box::new(move |r: &mut HttpResponse| {
                first(r);
                edit(r);
            }),
        });
        self
    }

    /// Sends the answer.
    pub fn send(mut self, mut response: HttpResponse) {
        if let Some(edit) = self.edit.take() {
            edit(&mut response);
        }
        if let Some(hook) = self.hook.take() {
            hook(&response);
        }
        self.deliver(Event::Answer(response));
    }

    /// Sends part of a streamed answer (see [`Event::Stream`]): `bytes` as
    /// they are, framed by the caller; the first part also counts and logs
    /// the request as a `200` (hook and edit see an empty `200`). Ends the
    /// stream when `end`; the responder is then spent.
    pub(crate) fn stream(&mut self, mut part: StreamPart) {
        if let Some(edit) = self.edit.take() {
            // The headers every answer to this request gets (CORS'), into
            // the head the first part starts with.
            let mut head = HttpResponse::json(200, Vec::new());
            edit(&mut head);
            if let Some(end) = part.bytes.windows(4).position(|w| w == b"\r\n\r\n") {
                let mut extra = Vec::new();
                for (name, value) in &head.headers {
                    extra.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
                }
                part.bytes.splice(end + 2..end + 2, extra);
            }
        }
        if let Some(hook) = self.hook.take() {
            hook(&HttpResponse::json(200, Vec::new()));
        }
        let end = part.end;
        let event = Event::Stream(part);
        if end {
            self.deliver(event);
        } else {
            match &self.target {
                Some(Target::Loop(mailbox, ticket)) => mailbox.post(*ticket, event),
                Some(Target::Channel(tx)) => {
                    let _ = tx.send(Pending(event));
                }
                None => {}
            }
        }
    }

    /// Tells the connection that this request waits until `deadline`; then
    /// `on_expiry` runs on the loop's thread and must get the answer sent.
    /// If the client goes away first, `on_expiry` is dropped instead (so
    /// what it holds is released at once).
    pub fn park(&self, deadline: Option<Instant>, on_expiry: impl FnOnce() + Send + 'static) {
        let event = Event::Park(deadline, Box::new(on_expiry));
        match &self.target {
            Some(Target::Loop(mailbox, ticket)) => mailbox.post(*ticket, event),
            Some(Target::Channel(tx)) => {
                let _ = tx.send(Pending(event));
            }
            None => {}
        }
    }

    /// This responder, leaving a spent one in its place (which answers
    /// nothing, dropped).
    pub(crate) fn take(&mut self) -> Responder {
        Responder {
            target: self.target.take(),
            hook: self.hook.take(),
            edit: self.edit.take(),
        }
    }

    /// Drops the request without an answer (its client is gone).
    pub fn abandon(mut self) {
        self.target = None;
    }

    fn deliver(&mut self, event: Event) {
        match self.target.take() {
            Some(Target::Loop(mailbox, ticket)) => mailbox.post(ticket, event),
            Some(Target::Channel(tx)) => {
                let _ = tx.send(Pending(event));
            }
            None => {}
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        if self.target.is_some() {
            log::error!("a request was dropped without an answer: answered 500");
            let mut response = HttpResponse::error(500, "internal error (logged)");
            if let Some(edit) = self.edit.take() {
                let _ = catch_unwind(AssertUnwindSafe(|| edit(&mut response)));
            }
            if let Some(hook) = self.hook.take() {
                let _ = catch_unwind(AssertUnwindSafe(|| hook(&response)));
            }
            self.deliver(Event::Answer(response));
        }
    }
}

/// An event from a channel responder (see [`Responder::channel`]).
pub struct Pending(Event);

/// Waits (blocking) for the answer on a channel responder's events, running
/// a parked request's expiry when its deadline passes, as the loop would.
pub fn wait_for_answer(events: &Receiver<Pending>) -> HttpResponse {
    let mut parked: Option<(Option<Instant>, Expiry)> = None;
    loop {
        let next = match &parked {
            Some((Some(deadline), _)) => {
                events.recv_deadline(*deadline).map_err(|e| e.is_timeout())
            }
            _ => events.recv().map_err(|_| false),
        };
        match next.map(|e| e.0) {
            Ok(Event::Answer(r)) => return r,
            // A caller without a loop cannot take a stream.
            Ok(Event::Stream(_)) => {
                return HttpResponse::error(406, "a stream needs a connection");
            }
            Ok(Event::Park(deadline, expiry)) => parked = Some((deadline, expiry)),
            Err(true) => {
                if let Some((_, expiry)) = parked.take() {
                    expiry();
                }
            }
            Err(false) => return HttpResponse::error(500, "no answer (worker stopped)"),
        }
    }
}

/// What a worker runs for each request (a [`Service`] that defers every
/// request to its workers, as [`super::workers::WorkerPool`] is).
pub type Handler = Arc<dyn Fn(&HttpRequest) -> Reply + Send + Sync>;

/// A handler's answer: a response now, one that comes later without
/// holding a thread, or work that may block, for a worker.
pub enum Reply {
    /// The response.
    Ready(HttpResponse),
    /// Answered later: the closure gets the request's responder and hands
    /// it to whatever finishes the request (the writer's commit callback, a
    /// watcher, a queued read), then returns. No thread waits meanwhile.
    Later(Box<dyn FnOnce(Responder) + Send>),
    /// Work that may block (it reads or writes the store): run on a worker
    /// with the request, its result the answer.
    Defer(Deferred),
}

impl From<HttpResponse> for Reply {
    fn from(r: HttpResponse) -> Self {
        Reply::Ready(r)
    }
}

impl Reply {
    /// Blocks until the answer to `request` is there (for callers without
    /// a connection loop: tests, embedders); deferred work runs in place.
    pub fn wait(self, request: &HttpRequest) -> HttpResponse {
        let (responder, events) = Responder::channel();
        settle(request, self, responder);
        wait_for_answer(&events)
    }
}

/// Which threads run a [`Deferred`] work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// The worker pool.
    Workers,
    /// The threads of `/health` and `/metrics`, which answer while every
    /// worker waits on a sick database.
    Probes,
}

/// Work a handler hands to a worker, with what it already decided about
/// the request (its route, its parameters) so that nothing is done twice.
pub struct Deferred {
    /// Where it runs.
    pub lane: Lane,
    work: Box<dyn FnOnce(&HttpRequest) -> Reply + Send>,
}

impl Deferred {
    /// `work` to run on a worker of `lane`.
    pub fn new(lane: Lane, work: impl FnOnce(&HttpRequest) -> Reply + Send + 'static) -> Self {
        Deferred {
            lane,
            work: Box::new(work),
        }
    }

    /// Runs the work for `request` (on the worker that took it).
    pub fn run(self, request: &HttpRequest) -> Reply {
        (self.work)(request)
    }
}

/// Answers `request` through `responder` from `reply`, on the thread
/// that may block (a worker): deferred work runs here, in place.
pub fn settle(request: &HttpRequest, mut reply: Reply, responder: Responder) {
    loop {
        match reply {
            Reply::Ready(response) => return responder.send(response),
            Reply::Later(later) => return later(responder),
            Reply::Defer(work) => reply = work.run(request),
        }
    }
}
