//! The fixed pool of worker threads behind a bounded queue.
//!
//! The connection loop parses requests and hands them over
//! ([`Service::call`]) with a [`Responder`]; a worker runs the handler and
//! answers through it. The queue is bounded: when it is full the request is
//! answered `503` at once with `Retry-After`, so overload never grows memory
//! or latency without bound. A panic in a handler is caught, logged and
//! answered `500`; the worker lives on.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};

use super::completion::{Handler, Reply, Responder, Service, wait_for_answer};
use super::message::{HttpRequest, HttpResponse};

/// Counts answers by status (for `/metrics`).
pub type Counter = Arc<dyn Fn(u16) + Send + Sync>;

enum Job {
    /// A request to answer.
    Request(HttpRequest, Responder),
    /// Work handed over by the connection loop (a long poll's expiry).
    Task(Box<dyn FnOnce() + Send>),
}

/// A fixed set of worker threads fed by one bounded channel.
pub struct WorkerPool {
    queue: Sender<Job>,
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
        let (queue, jobs) = bounded::<Job>(queue_len.max(1));
        let mut threads = Vec::new();
        for i in 0..workers.max(1) {
            let jobs: Receiver<Job> = jobs.clone();
            let handler = Arc::clone(&handler);
            let counter = counter.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("{name}-{i}"))
                    .spawn(move || run_worker(&jobs, &handler, counter.as_ref()))?,
            );
        }
        Ok(WorkerPool {
            queue,
            threads,
            counter,
        })
    }

    /// Runs `request` on a worker and waits for its response (for callers
    /// without a connection loop). Answers `503` with `Retry-After` at once
    /// when the queue is full or the pool stopped.
    pub fn dispatch(&self, request: HttpRequest) -> HttpResponse {
        let (responder, events) = Responder::channel();
        self.call(request, responder);
        wait_for_answer(&events)
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
    fn call(&self, request: HttpRequest, responder: Responder) {
        let refused = match self.queue.try_send(Job::Request(request, responder)) {
            Ok(()) => return,
            Err(TrySendError::Full(Job::Request(_, responder))) => (
                responder,
                HttpResponse::error(
                    503,
                    "server overloaded: request queue is full, retry shortly",
                )
                .with_header("Retry-After", "1"),
            ),
            Err(TrySendError::Disconnected(Job::Request(_, responder))) => (
                responder,
                HttpResponse::error(503, "server is shutting down").closing(),
            ),
            Err(_) => return,
        };
        let (responder, response) = refused;
        self.count(response.status);
        responder.send(response);
    }

    fn count(&self, status: u16) {
        if let Some(counter) = &self.counter {
            counter(status);
        }
    }

    /// On a worker; in place when the queue is full or the pool stopped
    /// (an expiry must run: its request waits for it).
    fn spawn(&self, task: Box<dyn FnOnce() + Send>) {
        match self.queue.try_send(Job::Task(task)) {
            Ok(()) => {}
            Err(
                TrySendError::Full(Job::Task(task)) | TrySendError::Disconnected(Job::Task(task)),
            ) => {
                task();
            }
            Err(_) => {}
        }
    }
}

fn run_worker(jobs: &Receiver<Job>, handler: &Handler, counter: Option<&Counter>) {
    for job in jobs.iter() {
        let (request, responder) = match job {
            Job::Request(request, responder) => (request, responder),
            Job::Task(task) => {
                if catch_unwind(AssertUnwindSafe(task)).is_err() {
                    log::error!("a task handed to the workers panicked");
                }
                continue;
            }
        };
        let reply = catch_unwind(AssertUnwindSafe(|| handler(&request)));
        let later = match reply {
            Ok(Reply::Ready(response)) => {
                responder.send(response);
                continue;
            }
            Ok(Reply::Later(later)) => later,
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
        if catch_unwind(AssertUnwindSafe(|| later(responder))).is_err() {
            log::error!(
                "handler panicked on {} {}: answered 500",
                request.method,
                request.target
            );
        }
    }
}
