//! The fixed pool of worker threads behind a bounded queue.
//!
//! The connection loop hands over what may block ([`Service::defer`]) with
//! a [`Responder`]; a worker runs it and answers through it. The queue of
//! requests is bounded: when it is full the request is answered `503` at
//! once with `Retry-After`, so overload never grows memory or latency
//! without bound. Tasks the loop hands over (a parked request's expiry,
//! one per parked request at most) always queue: they must run, and never
//! on the loop's thread. A panic in a handler is caught, logged and
//! answered `500`; the worker lives on.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, SendError, Sender, unbounded};

use super::completion::{
    Deferred, Handler, Lane, Reply, Responder, Service, settle, wait_for_answer,
};
use super::message::{HttpRequest, HttpResponse};

/// Counts answers by status (for `/metrics`).
pub type Counter = Arc<dyn Fn(u16) + Send + Sync>;

enum Job {
    /// A request to answer: the work its handler deferred.
    Request(HttpRequest, Deferred, Responder),
    /// Work handed over by the connection loop (a long poll's expiry).
    Task(Box<dyn FnOnce() + Send>),
}

/// A fixed set of worker threads fed by one channel, with at most
/// `capacity` requests waiting in it.
pub struct WorkerPool {
    queue: Sender<Job>,
    /// Requests waiting for a worker.
    waiting: Arc<AtomicUsize>,
    capacity: usize,
    handler: Handler,
    threads: Vec<JoinHandle<()>>,
    counter: Option<Counter>,
}

impl WorkerPool {
    /// Starts `workers` threads (at least one) that run `handler`, with room
    /// for `queue_len` waiting requests.
    pub fn start(workers: usize, queue_len: usize, handler: Handler) -> std::io::Result<Self> {
        Self::start_counted(workers, queue_len, handler, None)
    }

    /// Like [`WorkerPool::start`]; answers the pool sends itself (queue
    /// full, a handler's panic) and those of the connection layer are
    /// counted with `counter`.
    pub fn start_counted(
        workers: usize,
        queue_len: usize,
        handler: Handler,
        counter: Option<Counter>,
    ) -> std::io::Result<Self> {
        Self::start_named("vkv-worker", workers, queue_len, handler, counter)
    }

    /// Like [`WorkerPool::start_counted`], its threads named `name-N`.
    pub fn start_named(
        name: &str,
        workers: usize,
        queue_len: usize,
        handler: Handler,
        counter: Option<Counter>,
    ) -> std::io::Result<Self> {
        let (queue, jobs) = unbounded::<Job>();
        let waiting = Arc::new(AtomicUsize::new(0));
        let mut threads = Vec::new();
        for i in 0..workers.max(1) {
            let jobs: Receiver<Job> = jobs.clone();
            let waiting = Arc::clone(&waiting);
            let counter = counter.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("{name}-{i}"))
                    .spawn(move || run_worker(&jobs, &waiting, counter.as_ref()))?,
            );
        }
        Ok(WorkerPool {
            queue,
            waiting,
            capacity: queue_len.max(1),
            handler,
            threads,
            counter,
        })
    }

    /// Runs `request` on a worker and waits for its response (for callers
    /// without a connection loop). Answers `503` with `Retry-After` at once
    /// when the queue is full or the pool stopped.
    pub fn dispatch(&self, request: HttpRequest) -> HttpResponse {
        let (responder, events) = Responder::channel();
        let work = self.work();
        self.defer(request, work, responder);
        wait_for_answer(&events)
    }

    /// The pool's handler, as work for a worker.
    fn work(&self) -> Deferred {
        let handler = Arc::clone(&self.handler);
        Deferred::new(Lane::Workers, move |request| handler(request))
    }

    /// Lets queued requests finish, then stops and joins every worker.
    pub fn shutdown(self) {
        drop(self.queue);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

impl Service for WorkerPool {
    /// Everything goes to a worker, which runs the handler.
    fn handle(&self, _request: &HttpRequest) -> Reply {
        Reply::Defer(self.work())
    }

    fn defer(&self, request: HttpRequest, work: Deferred, responder: Responder) {
        let room = self
            .waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.capacity).then_some(n + 1)
            })
            .is_ok();
        let response = if !room {
            HttpResponse::error(
                503,
                "server overloaded: request queue is full, retry shortly",
            )
            .with_header("Retry-After", "1")
        } else {
            match self.queue.send(Job::Request(request, work, responder)) {
                Ok(()) => return,
                Err(SendError(job)) => {
                    self.waiting.fetch_sub(1, Ordering::AcqRel);
                    let Job::Request(_, _, responder) = job else {
                        return;
                    };
                    let response = HttpResponse::error(503, "server is shutting down").closing();
                    self.count(response.status);
                    return responder.send(response);
                }
            }
        };
        self.count(response.status);
        responder.send(response);
    }

    fn count(&self, status: u16) {
        if let Some(counter) = &self.counter {
            counter(status);
        }
    }

    /// On a worker, queued whatever the requests waiting (the channel is
    /// unbounded; tasks are bounded by the parked requests). Only once the
    /// workers are gone does it run in place: its request waits for it.
    fn spawn(&self, task: Box<dyn FnOnce() + Send>) {
        if let Err(SendError(Job::Task(task))) = self.queue.send(Job::Task(task)) {
            task();
        }
    }
}

fn run_worker(jobs: &Receiver<Job>, waiting: &AtomicUsize, counter: Option<&Counter>) {
    for job in jobs.iter() {
        let (request, work, responder) = match job {
            Job::Request(request, work, responder) => {
                waiting.fetch_sub(1, Ordering::AcqRel);
                (request, work, responder)
            }
            Job::Task(task) => {
                if catch_unwind(AssertUnwindSafe(task)).is_err() {
                    log::error!("a task handed to the workers panicked");
                }
                continue;
            }
        };
        let reply = catch_unwind(AssertUnwindSafe(|| work.run(&request)));
        let reply = match reply {
            Ok(reply) => reply,
            Err(_) => {
                log::error!(
                    "handler panicked on {} {}: answered 500",
                    request.method,
                    request.target
                );
                if let Some(count) = counter {
                    count(500);
                }
                responder.send(HttpResponse::error(500, "internal error (logged)"));
                continue;
            }
        };
        // A panic here drops the responder, which answers 500.
        if catch_unwind(AssertUnwindSafe(|| settle(&request, reply, responder))).is_err() {
            log::error!(
                "handler panicked on {} {}: answered 500",
                request.method,
                request.target
            );
        }
    }
}
