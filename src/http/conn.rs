//! The connection layer: an I/O thread serves every connection on a
//! readiness loop (epoll through `mio`: readiness only, no futures, no
//! executor, no async runtime). With several listeners (`--io-threads`),
//! each has a loop and thread of its own, serving the connections it
//! accepted; the loops share only the count of open connections.
//!
//! A connection is a small state machine and two buffers, not a thread:
//! - `Idle`: waiting for a request's first byte (`idle_timeout`);
//! - `Reading`: a request started; the whole of it must arrive within
//!   `read_timeout` (else `408`); bytes go through the pure
//!   [`RequestParser`];
//! - `Waiting`: handed to the [`Service`] (the worker pool) with a
//!   [`Responder`]; the answer comes back through the loop's mailbox;
//! - `Parked`: a long poll waiting for a commit, with its deadline in the
//!   loop's timers; if its client goes away (or had half-closed already
//!   when the request parked) the wait is dropped at once, which frees its
//!   watcher slot;
//! - `Writing`: the response (and a streamed file body) going out as the
//!   socket takes it (each write must progress within `read_timeout`);
//! - `Streaming`: an answer sent in parts as its producer posts them (the
//!   change feed's streams), parked between them; a reader with more than
//!   `STREAM_MAX_UNSENT` bytes unsent gets the producer's last part and is
//!   closed, one that takes nothing for `read_timeout` is closed;
//! - `Lingering`: after a closing answer (such as an early `413`), the write
//!   side is shut and what the client still sends is read and discarded for
//!   a bounded time, so that it sees the answer instead of a reset.
//!
//! Timers of every connection live in one binary heap (lazily updated).
//! At `max_connections` (counted over all loops), a new connection makes
//! room by closing the one of its loop idle or stalled mid-request the
//! longest (past a short grace); only when none is, it is answered `503`
//! and closed. Accept errors (EMFILE) are
//! retried with a back-off and never stop the loop. With the `tls` feature
//! each connection's transport is a rustls session on the same non-blocking
//! socket.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};

use super::completion::Reply;
use super::completion::{Event, Mailbox, Responder, StreamPart, Ticket};
use super::encoder::{CONTINUE, encode};
use super::message::HttpResponse;
use super::output::{self, Charge, Outgoing, OutputBudget, Sent};
use super::parser::{Framing, ParseLimits, Progress, RequestParser};
use super::transport::Transport;

pub use super::completion::Service;

/// Limits that bound what any one client can cost the server.
#[derive(Debug, Clone)]
pub struct ConnLimits {
    /// Connections open at once; beyond it the longest idle one is closed
    /// to make room, or the new one is answered `503`.
    pub max_connections: usize,
    /// How long an open connection may wait for the next request to start.
    pub idle_timeout: Duration,
    /// How long a whole request (head and body) may take from its first
    /// byte (`408` beyond); also how long a write may make no progress.
    pub read_timeout: Duration,
    /// Largest request body accepted (`413` beyond).
    pub max_body_bytes: usize,
    /// Longest request line accepted (`414` beyond).
    pub max_request_line: usize,
    /// Largest header section accepted, request line excluded (`431` beyond).
    pub max_header_bytes: usize,
    /// Most header fields accepted in one request (`431` beyond).
    pub max_headers: usize,
    /// At the connection limit, only a connection with nothing in flight
    /// for at least this long is closed to make room. Zero by default: a
    /// client that re-opens connections as fast as they are closed would
    /// otherwise keep every connection inside the grace and lock everyone
    /// out.
    pub evict_after: Duration,
    /// Bytes that answers not yet sent may hold in all (see
    /// `src/http/output.rs`); beyond it the connections whose writes have
    /// stalled the longest are closed.
    pub max_output_bytes: usize,
}

impl ConnLimits {
    /// The limits the request parser checks.
    pub fn parse_limits(&self) -> ParseLimits {
        ParseLimits {
            max_body_bytes: self.max_body_bytes,
            max_request_line: self.max_request_line,
            max_header_bytes: self.max_header_bytes,
            max_headers: self.max_headers,
        }
    }
}

impl Default for ConnLimits {
    /// 16,384 connections, 30 s idle, 10 s per request, 1 MiB bodies,
    /// 8 KiB request line, 16 KiB and 100 headers, eviction without grace,
    /// 64 MiB of unsent answers.
    fn default() -> Self {
        ConnLimits {
            max_connections: 16_384,
            idle_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(10),
            max_body_bytes: 1 << 20,
            max_request_line: 8 << 10,
            max_header_bytes: 16 << 10,
            max_headers: 100,
            evict_after: Duration::ZERO,
            max_output_bytes: 64 << 20,
        }
    }
}

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX - 2);
/// One read (and one file chunk) at most.
const CHUNK: usize = 64 << 10;
/// Bytes kept from a client whose request is being answered (pipelined
/// requests); beyond it the loop stops reading it until the answer is out.
const HOLD_CAP: usize = 64 << 10;
/// The most bytes a stream may have unsent (its reader does not keep up):
/// beyond it the stream is ended with a last event saying so.
const STREAM_MAX_UNSENT: usize = 1 << 20;
/// Lingering close: at most this long in all, and at most `LINGER_QUIET`
/// without a byte from the client.
const LINGER_MAX: Duration = Duration::from_secs(5);
const LINGER_QUIET: Duration = Duration::from_secs(1);
/// What a refused connection may have sent that is read (and dropped)
/// before closing, so the close does not reset away the `503`.
const REFUSE_DRAIN: usize = 64 << 10;
/// Requests of one connection the loop answers itself (cache hits,
/// pipelined) before it turns to the others: a client pipelining without
/// end must not starve the rest.
const ANSWER_BUDGET: u32 = 64;
const MIN_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_millis(500);

/// `now + d`, or `None` (no deadline) if that overflows.
fn after(now: Instant, d: Duration) -> Option<Instant> {
    now.checked_add(d)
}

/// What the handle shares with the loop threads.
struct Control {
    /// Each loop's inbox, to wake it.
    mailboxes: Vec<Arc<Mailbox>>,
    stopping: AtomicBool,
    /// Connections open on all loops (`max_connections` bounds it).
    open: AtomicUsize,
    /// Unsent answers of all loops (`max_output_bytes` bounds it).
    output: Arc<OutputBudget>,
}

impl Control {
    /// Counts one more connection, if that stays within `max`.
    fn reserve(&self, max: usize) -> bool {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok()
    }
}

/// A running HTTP/1.x server: I/O threads (one by default) that each serve
/// the connections of their own listening socket.
pub struct HttpServer {
    control: Arc<Control>,
    addr: SocketAddr,
    threads: Vec<JoinHandle<()>>,
}

impl HttpServer {
    /// Starts serving `listener` with `service`. Returns once the loop runs.
    pub fn start(
        listener: std::net::TcpListener,
        limits: ConnLimits,
        service: Arc<dyn Service>,
    ) -> io::Result<HttpServer> {
        Self::launch(
            vec![listener],
            limits,
            service,
            #[cfg(feature = "tls")]
            None,
        )
    }

    /// Starts serving HTTPS on `listener`: like [`HttpServer::start`], with
    /// every connection wrapped in a TLS session of `tls`.
    #[cfg(feature = "tls")]
    pub fn start_tls(
        listener: std::net::TcpListener,
        limits: ConnLimits,
        service: Arc<dyn Service>,
        tls: Arc<rustls::ServerConfig>,
    ) -> io::Result<HttpServer> {
        Self::launch(vec![listener], limits, service, Some(tls))
    }

    /// Starts one I/O loop per listener (sockets bound to one address
    /// with `SO_REUSEPORT`: the kernel spreads new connections over them).
    /// `max_connections` bounds all loops together.
    pub(crate) fn launch(
        listeners: Vec<std::net::TcpListener>,
        limits: ConnLimits,
        service: Arc<dyn Service>,
        #[cfg(feature = "tls")] tls: Option<Arc<rustls::ServerConfig>>,
    ) -> io::Result<HttpServer> {
        let first = listeners
            .first()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no listener"))?;
        let addr = first.local_addr()?;
        let mut parts = Vec::with_capacity(listeners.len());
        for listener in listeners {
            listener.set_nonblocking(true)?;
            let mut listener = TcpListener::from_std(listener);
            let poll = Poll::new()?;
            poll.registry()
                .register(&mut listener, LISTENER, Interest::READABLE)?;
            let waker = Waker::new(poll.registry(), WAKER)?;
            let (mailbox, inbox) = Mailbox::new(waker);
            parts.push((poll, listener, mailbox, inbox));
        }
        let control = Arc::new(Control {
            mailboxes: parts.iter().map(|p| Arc::clone(&p.2)).collect(),
            stopping: AtomicBool::new(false),
            open: AtomicUsize::new(0),
            output: OutputBudget::new(limits.max_output_bytes),
        });
        let mut threads = Vec::with_capacity(parts.len());
        for (i, (poll, listener, mailbox, inbox)) in parts.into_iter().enumerate() {
            let event_loop = EventLoop {
                poll,
                listener: Some(listener),
                parse_limits: limits.parse_limits(),
                limits: limits.clone(),
                service: Arc::clone(&service),
                #[cfg(feature = "tls")]
                tls: tls.clone(),
                control: Arc::clone(&control),
                mailbox,
                inbox,
                conns: Vec::new(),
                free: Vec::new(),
                live: 0,
                timers: BinaryHeap::new(),
                next_serial: 0,
                scratch: vec![0; CHUNK],
                accept_retry: None,
                backoff: MIN_BACKOFF,
                stop_deadline: None,
                resume: Vec::new(),
            };
            let name = if i == 0 {
                "vkv-io".to_string()
            } else {
                format!("vkv-io-{i}")
            };
            match std::thread::Builder::new()
                .name(name)
                .spawn(move || event_loop.run())
            {
                Ok(thread) => threads.push(thread),
                Err(e) => {
                    // The loops already running stop with the handle.
                    drop(HttpServer {
                        control,
                        addr,
                        threads,
                    });
                    return Err(e);
                }
            }
        }
        Ok(HttpServer {
            control,
            addr,
            threads,
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many connections are open.
    pub fn open_connections(&self) -> usize {
        self.control.open.load(Ordering::Acquire)
    }

    /// Stops accepting, closes idle connections, answers parked requests
    /// (their deadline is brought forward), lets requests in flight finish
    /// and their responses be written (each with `Connection: close`), and
    /// waits for all that at most `read_timeout`; what is still open then
    /// is cut.
    pub fn shutdown(mut self) {
        self.stop();
        for thread in std::mem::take(&mut self.threads) {
            let _ = thread.join();
        }
    }

    fn stop(&self) {
        self.control.stopping.store(true, Ordering::Release);
        for mailbox in &self.control.mailboxes {
            mailbox.wake_now();
        }
    }
}

impl Drop for HttpServer {
    /// Stops the loop without waiting for it (it ends within `read_timeout`).
    fn drop(&mut self) {
        self.stop();
    }
}

/// Where a connection is in its request cycle.
enum State {
    /// Between requests.
    Idle,
    /// A request has started arriving.
    Reading,
    /// The request is with the service.
    Waiting,
    /// The request waits for an event; the closure answers it at the
    /// deadline. Dropping it (the client left) releases what it holds.
    Parked(Box<dyn FnOnce() + Send>),
    /// The response is going out.
    Writing,
    /// A streamed answer: parts go out as they come (`Event::Stream`);
    /// between them the producer may park (its closure runs at the
    /// deadline, or when the server stops, and is dropped if the client
    /// leaves).
    Streaming(Option<Box<dyn FnOnce() + Send>>),
    /// Write side shut; discarding input until quiet or `until`.
    Lingering { until: Instant },
}

struct Conn {
    sock: TcpStream,
    transport: Transport,
    peer: SocketAddr,
    /// This connection's number (a stale timer names another).
    serial: u64,
    state: State,
    parser: RequestParser,
    /// Bytes received and not yet consumed by the parser.
    inbuf: Vec<u8>,
    /// Bytes to send, from `out_pos`.
    out: Vec<u8>,
    out_pos: usize,
    /// What goes out after `out`: a file, or large parts sent in place.
    rest: Option<Outgoing>,
    /// The answer's share of the output budget, once a write stalled.
    charge: Option<Charge>,
    /// The request in flight: its number (tickets name it) and framing.
    request: u64,
    framing: Framing,
    close_after: bool,
    deadline: Option<Instant>,
    /// The earliest entry this connection has in the timer heap.
    timer_at: Option<Instant>,
    /// When it was accepted or last finished an answer. Bytes of a partial
    /// request do not move it: a client trickling a byte into a request
    /// that never completes ranks by when it began. Eviction closes the
    /// connection with the oldest.
    idle_since: Instant,
    peer_closed: bool,
    /// Reading stopped at `HOLD_CAP`: read again once the buffer drains.
    read_paused: bool,
    /// Requests the loop may still answer itself before yielding.
    budget: u32,
    /// Out of budget: parked in `EventLoop::resume` until the loop's next
    /// turn, with its bytes unread (readiness is edge-triggered).
    yielded: bool,
    /// The parser is running: an answer written meanwhile must not start
    /// parsing again (the running parse goes on; no recursion).
    in_parse: bool,
    /// A stream's output has been blocked since then.
    stalled_since: Option<Instant>,
}

impl Conn {
    fn wants_output(&self) -> bool {
        self.out_pos < self.out.len() || self.rest.is_some() || self.transport.wants_write()
    }
}

/// Whether to keep a connection after handling an event.
type Keep = bool;

struct EventLoop {
    poll: Poll,
    listener: Option<TcpListener>,
    limits: ConnLimits,
    parse_limits: ParseLimits,
    service: Arc<dyn Service>,
    #[cfg(feature = "tls")]
    tls: Option<Arc<rustls::ServerConfig>>,
    control: Arc<Control>,
    /// This loop's inbox: responders post to `mailbox`, the loop reads
    /// `inbox`.
    mailbox: Arc<Mailbox>,
    inbox: Receiver<(Ticket, Event)>,
    /// Connections by slot (the slot is the mio token).
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    live: usize,
    /// (deadline, slot, connection serial), earliest first; entries whose
    /// connection moved on are skipped when they come up.
    timers: BinaryHeap<Reverse<(Instant, usize, u64)>>,
    next_serial: u64,
    scratch: Vec<u8>,
    accept_retry: Option<Instant>,
    backoff: Duration,
    stop_deadline: Option<Instant>,
    /// Connections that used up their answer budget: (slot, serial) to go
    /// on with on the next turn.
    resume: Vec<(usize, u64)>,
}

impl EventLoop {
    fn run(mut self) {
        // Events taken per turn: the listener is looked at once per turn,
        // so a smaller batch lets a new client in sooner when thousands of
        // connections are ready at once (each may cost a write of tens of
        // KiB); 256 instead of 1,024 took a fresh client's worst wait behind
        // 1,500 of them from about 150 ms to under 100
        // (scripts/unread_answers.py).
        let mut events = Events::with_capacity(256);
        loop {
            let timeout = self.next_wake();
            if let Err(e) = self.poll.poll(&mut events, timeout)
                && e.kind() != io::ErrorKind::Interrupted
            {
                log::error!("I/O loop poll failed: {e}; stopping");
                return;
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept_all(),
                    WAKER => {}
                    Token(slot) => {
                        let readable =
                            event.is_readable() || event.is_read_closed() || event.is_error();
                        self.with_conn(slot, None, |lp, slot, conn| {
                            conn.budget = ANSWER_BUDGET;
                            let mut keep = true;
                            if event.is_writable() && conn.wants_output() {
                                keep = lp.flush(slot, conn);
                            }
                            if keep && readable {
                                // Edge-triggered: a read that empties the
                                // socket may end the reading (new bytes
                                // bring a new event), unless the peer's
                                // FIN or an error is already in.
                                let until_would_block = event.is_read_closed() || event.is_error();
                                keep = lp.read_socket(slot, conn, until_would_block);
                            }
                            keep
                        });
                    }
                }
            }
            self.drain_inbox();
            for (slot, serial) in std::mem::take(&mut self.resume) {
                self.with_conn(slot, Some(serial), |lp, slot, conn| lp.resume(slot, conn));
            }
            let now = Instant::now();
            self.fire_timers(now);
            if self.accept_retry.is_some_and(|at| at <= now) {
                self.accept_retry = None;
                self.accept_all();
            }
            if self.control.stopping.load(Ordering::Acquire) && self.stop_step(now) {
                return;
            }
        }
    }

    /// How long the poll may sleep: until the next timer, accept retry or
    /// the stop deadline.
    fn next_wake(&self) -> Option<Duration> {
        if !self.resume.is_empty() {
            return Some(Duration::ZERO);
        }
        let next = [
            self.timers.peek().map(|Reverse((at, _, _))| *at),
            self.accept_retry,
            self.stop_deadline,
        ]
        .into_iter()
        .flatten()
        .min()?;
        Some(next.saturating_duration_since(Instant::now()))
    }

    /// Runs `f` on the connection in `slot` (if it is there, and is the
    /// connection `serial` when given), then keeps or closes it.
    fn with_conn(
        &mut self,
        slot: usize,
        serial: Option<u64>,
        f: impl FnOnce(&mut Self, usize, &mut Conn) -> Keep,
    ) {
        let Some(mut conn) = self.conns.get_mut(slot).and_then(Option::take) else {
            return;
        };
        if serial.is_some_and(|s| s != conn.serial) {
            self.conns[slot] = Some(conn);
            return;
        }
        if f(self, slot, &mut conn) {
            self.conns[slot] = Some(conn);
        } else {
            self.release(slot, conn);
        }
    }

    fn release(&mut self, slot: usize, mut conn: Conn) {
        let _ = self.poll.registry().deregister(&mut conn.sock);
        // Dropping the connection drops a parked wait: its watcher slot is
        // freed at once.
        drop(conn);
        self.free.push(slot);
        self.live -= 1;
        self.control.open.fetch_sub(1, Ordering::AcqRel);
    }

    fn close(&mut self, slot: usize) {
        if let Some(conn) = self.conns.get_mut(slot).and_then(Option::take) {
            self.release(slot, conn);
        }
    }

    fn accept_all(&mut self) {
        loop {
            let Some(listener) = &self.listener else {
                return;
            };
            match listener.accept() {
                Ok((sock, peer)) => {
                    self.backoff = MIN_BACKOFF;
                    self.admit(sock, peer);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                // One client's handshake went wrong: nothing to wait for.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionAborted | io::ErrorKind::Interrupted
                    ) =>
                {
                    log::warn!("accept failed: {e}; continuing");
                }
                // Typically out of descriptors (EMFILE/ENFILE) or memory:
                // retrying at once would spin, so back off (a timer; the loop
                // goes on serving); the pending clients stay queued.
                Err(e) => {
                    log::warn!("accept failed: {e}; retrying in {:?}", self.backoff);
                    self.accept_retry = after(Instant::now(), self.backoff);
                    self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                    return;
                }
            }
        }
    }

    fn admit(&mut self, mut sock: TcpStream, peer: SocketAddr) {
        // At the limit, room is made on this loop (each loop closes only
        // its own connections).
        let max = self.limits.max_connections;
        let admitted = self.control.reserve(max) || (self.evict_one() && self.control.reserve(max));
        if !admitted {
            return self.refuse(sock);
        }
        let transport = match self.transport() {
            Ok(t) => t,
            Err(e) => {
                self.control.open.fetch_sub(1, Ordering::AcqRel);
                return log::warn!("cannot start a TLS session: {e}");
            }
        };
        let _ = sock.set_nodelay(true);
        output::bound_kernel_queue(&sock);
        let slot = self.free.pop().unwrap_or_else(|| {
            self.conns.push(None);
            self.conns.len() - 1
        });
        let interest = Interest::READABLE | Interest::WRITABLE;
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut sock, Token(slot), interest)
        {
            log::warn!("cannot register a connection: {e}");
            self.free.push(slot);
            self.control.open.fetch_sub(1, Ordering::AcqRel);
            return;
        }
        let now = Instant::now();
        self.next_serial += 1;
        // A TLS handshake must be done within the read timeout.
        let first_wait = if transport.handshaking() {
            self.limits.read_timeout.min(self.limits.idle_timeout)
        } else {
            self.limits.idle_timeout
        };
        let mut conn = Conn {
            sock,
            transport,
            peer,
            serial: self.next_serial,
            state: State::Idle,
            parser: RequestParser::new(self.parse_limits),
            inbuf: Vec::new(),
            out: Vec::new(),
            out_pos: 0,
            rest: None,
            charge: None,
            request: 0,
            framing: Framing::default(),
            close_after: false,
            deadline: None,
            timer_at: None,
            idle_since: now,
            peer_closed: false,
            read_paused: false,
            budget: ANSWER_BUDGET,
            yielded: false,
            in_parse: false,
            stalled_since: None,
        };
        self.set_deadline(slot, &mut conn, after(now, first_wait));
        self.conns[slot] = Some(conn);
        self.live += 1;
        // Bytes that came with the connection are reported by the
        // registration's first event.
    }

    fn transport(&self) -> io::Result<Transport> {
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            let session =
                rustls::ServerConnection::new(Arc::clone(tls)).map_err(io::Error::other)?;
            return Ok(Transport::Tls(Box::new(session)));
        }
        Ok(Transport::Plain)
    }

    fn is_tls(&self) -> bool {
        #[cfg(feature = "tls")]
        return self.tls.is_some();
        #[cfg(not(feature = "tls"))]
        false
    }

    /// Makes room for a new connection: closes a lingering one, else the
    /// one idle or stalled mid-request since the longest (past the grace,
    /// none by default). Never one whose request is being answered.
    fn evict_one(&mut self) -> bool {
        let now = Instant::now();
        let mut victim: Option<(u8, Instant, usize)> = None;
        for (slot, conn) in self.conns.iter().enumerate() {
            let Some(conn) = conn else { continue };
            let stale = now.saturating_duration_since(conn.idle_since) >= self.limits.evict_after;
            let rank = match conn.state {
                State::Lingering { .. } => 0,
                State::Idle | State::Reading if stale => 1,
                _ => continue,
            };
            if victim.is_none_or(|(r, at, _)| (rank, conn.idle_since) < (r, at)) {
                victim = Some((rank, conn.idle_since, slot));
            }
        }
        let Some((_, _, slot)) = victim else {
            return false;
        };
        log::debug!("connection limit reached: closed the longest idle connection");
        self.close(slot);
        true
    }

    /// Answers `503` and closes, without waiting on the client. A TLS
    /// connection is only closed: answering would take a handshake.
    fn refuse(&mut self, mut sock: TcpStream) {
        self.service.count(503);
        if !self.is_tls() {
            let response = HttpResponse::error(503, "too many open connections, retry shortly")
                .with_header("Retry-After", "1");
            let mut bytes = Vec::new();
            encode(response, &Framing::closing(), &mut bytes);
            let _ = sock.write(&bytes);
        }
        // Discard what the client already sent (unread data turns our close
        // into a reset that can destroy the 503 before it is read), at most
        // REFUSE_DRAIN so a flooding client cannot hold the loop.
        let mut drained = 0;
        while drained < REFUSE_DRAIN {
            match sock.read(&mut self.scratch) {
                Ok(n) if n > 0 => drained += n,
                _ => break,
            }
        }
        let _ = sock.shutdown(Shutdown::Write);
    }

    fn set_deadline(&mut self, slot: usize, conn: &mut Conn, deadline: Option<Instant>) {
        conn.deadline = deadline;
        if let Some(at) = deadline
            && conn.timer_at.is_none_or(|t| t > at)
        {
            self.timers.push(Reverse((at, slot, conn.serial)));
            conn.timer_at = Some(at);
        }
    }

    fn fire_timers(&mut self, now: Instant) {
        while let Some(Reverse((at, slot, serial))) = self.timers.peek().copied() {
            if at > now {
                return;
            }
            self.timers.pop();
            self.with_conn(slot, Some(serial), |lp, slot, conn| {
                if conn.timer_at != Some(at) {
                    return true; // superseded by an earlier entry
                }
                conn.timer_at = None;
                match conn.deadline {
                    Some(d) if d <= now => lp.on_timeout(slot, conn),
                    Some(d) => {
                        lp.set_deadline(slot, conn, Some(d));
                        true
                    }
                    None => true,
                }
            });
        }
    }

    fn on_timeout(&mut self, slot: usize, conn: &mut Conn) -> Keep {
        match std::mem::replace(&mut conn.state, State::Waiting) {
            State::Reading if !conn.transport.handshaking() => {
                self.reject(slot, conn, 408, "request not received in time")
            }
            State::Parked(expire) => {
                conn.deadline = None;
                // It reads the store and answers through the responder, as
                // any completion does: on a worker, not on this thread.
                self.service.spawn(expire);
                true
            }
            State::Streaming(parked) => {
                conn.deadline = None;
                conn.state = State::Streaming(None);
                // A stream whose reader took nothing for a read timeout
                // while its producer waits: a dead peer, closed.
                if conn.wants_output()
                    && conn
                        .stalled_since
                        .is_some_and(|at| at.elapsed() >= self.limits.read_timeout)
                {
                    return false;
                }
                if let Some(expire) = parked {
                    self.service.spawn(expire);
                }
                true
            }
            State::Waiting => true,
            // Idle, a TLS handshake, a stalled write, the end of a linger.
            _ => false,
        }
    }

    fn on_readable(&mut self, slot: usize, conn: &mut Conn) -> Keep {
        self.read_socket(slot, conn, true)
    }

    /// Reads and handles what the socket has: until it would block, or,
    /// unless `until_would_block`, until a read leaves it empty (saves the read
    /// that would only say so: one syscall per request).
    fn read_socket(&mut self, slot: usize, conn: &mut Conn, until_would_block: bool) -> Keep {
        loop {
            if conn.yielded {
                return true;
            }
            let holding = !matches!(
                conn.state,
                State::Idle | State::Reading | State::Lingering { .. }
            );
            if holding && conn.inbuf.len() >= HOLD_CAP {
                conn.read_paused = true;
                return true;
            }
            match conn.transport.read(&mut conn.sock, &mut self.scratch) {
                Ok(0) => {
                    conn.peer_closed = true;
                    return self.on_peer_closed(conn);
                }
                Ok(n) => {
                    if !self.on_bytes(slot, conn, n) {
                        return false;
                    }
                    if !until_would_block
                        && n < self.scratch.len()
                        && conn.transport.short_read_drains()
                    {
                        return true;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
    }

    /// The client closed its side (or the connection).
    fn on_peer_closed(&mut self, conn: &mut Conn) -> Keep {
        match conn.state {
            // Answer what it asked, then close (a half-closed client still
            // reads).
            State::Waiting | State::Writing => true,
            // A stream nobody reads: dropped with what its producer holds.
            State::Streaming(_) => false,
            // Nothing in flight, or a long poll nobody will read: drop it
            // (a parked wait's watcher slot is freed with it).
            _ => false,
        }
    }

    fn on_bytes(&mut self, slot: usize, conn: &mut Conn, n: usize) -> Keep {
        let now = Instant::now();
        match conn.state {
            State::Lingering { until } => {
                let quiet = after(now, LINGER_QUIET).map_or(until, |q| q.min(until));
                self.set_deadline(slot, conn, Some(quiet));
                true
            }
            State::Idle | State::Reading => {
                if matches!(conn.state, State::Idle) {
                    conn.state = State::Reading;
                    self.set_deadline(slot, conn, after(now, self.limits.read_timeout));
                }
                conn.inbuf.extend_from_slice(&self.scratch[..n]);
                self.parse(slot, conn)
            }
            _ => {
                conn.inbuf.extend_from_slice(&self.scratch[..n]);
                true
            }
        }
    }

    /// Goes on with a connection that yielded: what it has buffered, then
    /// what it has sent since.
    fn resume(&mut self, slot: usize, conn: &mut Conn) -> Keep {
        conn.yielded = false;
        conn.budget = ANSWER_BUDGET;
        if matches!(conn.state, State::Reading) && !conn.inbuf.is_empty() {
            if !self.parse(slot, conn) {
                return false;
            }
            if conn.yielded {
                return true;
            }
        }
        self.on_readable(slot, conn)
    }

    /// Runs the parser over what is buffered (state `Reading`).
    fn parse(&mut self, slot: usize, conn: &mut Conn) -> Keep {
        loop {
            let (used, progress) = match conn.parser.feed(&conn.inbuf) {
                Ok(step) => step,
                Err(rejection) => {
                    conn.inbuf.clear();
                    return self.reject(slot, conn, rejection.status, rejection.detail);
                }
            };
            conn.inbuf.drain(..used);
            match progress {
                Progress::Incomplete => return true,
                Progress::SendContinue => {
                    conn.out.extend_from_slice(CONTINUE);
                    if !self.flush(slot, conn) {
                        return false;
                    }
                }
                Progress::Complete(mut request, framing) => {
                    request.remote = Some(conn.peer);
                    self.next_serial += 1;
                    conn.request = self.next_serial;
                    conn.framing = framing;
                    conn.state = State::Waiting;
                    conn.deadline = None;
                    let service = &self.service;
                    match catch_unwind(AssertUnwindSafe(|| service.answer_now(&request))) {
                        Ok(Some(Reply::Later(later))) => {
                            // Handed on (a queued read): answered through
                            // the mailbox like a worker's answer.
                            let responder = self.responder(slot, conn);
                            if catch_unwind(AssertUnwindSafe(|| later(responder))).is_err() {
                                log::error!("answering on the loop panicked: answered 500");
                            }
                            return true;
                        }
                        Ok(Some(Reply::Ready(response))) => {
                            conn.in_parse = true;
                            let keep = self.respond(slot, conn, response);
                            conn.in_parse = false;
                            if !keep {
                                return false;
                            }
                            // Written and more buffered: go on, within budget.
                            if !matches!(conn.state, State::Reading) {
                                return true;
                            }
                            conn.budget = conn.budget.saturating_sub(1);
                            if conn.budget == 0 {
                                conn.yielded = true;
                                self.resume.push((slot, conn.serial));
                                return true;
                            }
                            continue;
                        }
                        Ok(None) => {}
                        Err(_) => log::error!("answering on the loop panicked: sent to a worker"),
                    }
                    let responder = self.responder(slot, conn);
                    // A panic drops the responder, which answers 500.
                    if catch_unwind(AssertUnwindSafe(|| service.call(request, responder))).is_err()
                    {
                        log::error!("the service panicked: answered 500");
                    }
                    return true;
                }
            }
        }
    }

    /// The way back to `conn` for the request it has in flight.
    fn responder(&self, slot: usize, conn: &Conn) -> Responder {
        let ticket = Ticket {
            slot,
            request: conn.request,
        };
        Responder::to_loop(Arc::clone(&self.mailbox), ticket)
    }

    /// Answers an error the connection layer found itself, then closes.
    fn reject(&mut self, slot: usize, conn: &mut Conn, status: u16, detail: &str) -> Keep {
        self.service.count(status);
        if conn.transport.handshaking() {
            return false;
        }
        conn.framing = Framing::closing();
        self.respond(slot, conn, HttpResponse::error(status, detail))
    }

    fn drain_inbox(&mut self) {
        self.mailbox.rearm();
        while let Ok((ticket, event)) = self.inbox.try_recv() {
            self.with_conn(ticket.slot, None, |lp, slot, conn| {
                if conn.request != ticket.request
                    || !matches!(
                        conn.state,
                        State::Waiting | State::Parked(_) | State::Streaming(_)
                    )
                {
                    return true; // stale: that request is over
                }
                match event {
                    Event::Answer(response) => lp.respond(slot, conn, response),
                    Event::Stream(part) => lp.stream(slot, conn, part),
                    Event::Park(deadline, expire) if matches!(conn.state, State::Streaming(_)) => {
                        if lp.control.stopping.load(Ordering::Acquire) {
                            lp.service.spawn(expire);
                        } else {
                            conn.state = State::Streaming(Some(expire));
                            lp.set_deadline(slot, conn, deadline);
                        }
                        true
                    }
                    Event::Park(deadline, expire) => {
                        if conn.peer_closed {
                            // The client's FIN came with (or after) the
                            // request, before it parked: nobody reads the
                            // answer, and no later event would say so.
                            // Dropping the wait frees its watcher slot.
                            drop(expire);
                            return false;
                        }
                        if lp.control.stopping.load(Ordering::Acquire) {
                            // Stopping: answer it now.
                            lp.service.spawn(expire);
                        } else {
                            conn.state = State::Parked(expire);
                            lp.set_deadline(slot, conn, deadline);
                        }
                        true
                    }
                }
            });
        }
    }

    /// Starts writing `response` to the request in flight.
    fn respond(&mut self, slot: usize, conn: &mut Conn, response: HttpResponse) -> Keep {
        let mut framing = conn.framing;
        framing.close |=
            response.close || conn.peer_closed || self.control.stopping.load(Ordering::Acquire);
        conn.close_after = framing.close;
        conn.state = State::Writing;
        conn.rest = encode(response, &framing, &mut conn.out).map(Outgoing::new);
        self.set_deadline(slot, conn, after(Instant::now(), self.limits.read_timeout));
        self.flush(slot, conn)
    }

    /// Queues a part of a streamed answer (see `Event::Stream`).
    fn stream(&mut self, slot: usize, conn: &mut Conn, part: StreamPart) -> Keep {
        let parked = match std::mem::replace(&mut conn.state, State::Writing) {
            State::Streaming(parked) => parked,
            _ => None,
        };
        let unsent = conn.out.len() - conn.out_pos;
        let end = if unsent > STREAM_MAX_UNSENT {
            conn.out.extend_from_slice(&part.slow);
            if let Some(dropped) = part.dropped {
                dropped();
            }
            true
        } else {
            conn.out.extend_from_slice(&part.bytes);
            part.end
        };
        if end {
            // Out, then closed; what the producer held goes now.
            drop(parked);
            conn.close_after = true;
            self.set_deadline(slot, conn, after(Instant::now(), self.limits.read_timeout));
        } else {
            conn.state = State::Streaming(parked);
        }
        self.flush(slot, conn)
    }

    /// Writes what the socket takes; when a response is all out, moves on.
    fn flush(&mut self, slot: usize, conn: &mut Conn) -> Keep {
        let mut progressed = false;
        loop {
            match conn.transport.flush(&mut conn.sock) {
                Ok(true) => {}
                Ok(false) => break,
                Err(_) => return false,
            }
            if conn.out_pos < conn.out.len() {
                match conn
                    .transport
                    .write(&mut conn.sock, &conn.out[conn.out_pos..])
                {
                    Ok(0) => return false,
                    Ok(n) => {
                        conn.out_pos += n;
                        progressed = true;
                        conn.stalled_since = None;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => return false,
                }
                continue;
            }
            conn.out.clear();
            conn.out_pos = 0;
            if let Some(rest) = &mut conn.rest {
                match rest.send(&mut conn.transport, &mut conn.sock, &mut conn.out) {
                    Ok(Sent::Wrote) => progressed = true,
                    Ok(Sent::Refilled) => {}
                    Ok(Sent::Done) => conn.rest = None,
                    Ok(Sent::Blocked) => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        if e.kind() == io::ErrorKind::UnexpectedEof {
                            log::error!("{e}");
                        }
                        return false;
                    }
                }
                continue;
            }
            return if matches!(conn.state, State::Writing) {
                self.written(slot, conn)
            } else {
                true
            };
        }
        if matches!(conn.state, State::Streaming(_)) && conn.stalled_since.is_none() {
            conn.stalled_since = Some(Instant::now());
        }
        if matches!(conn.state, State::Writing) {
            if progressed {
                // A write must progress within the read timeout, not finish.
                conn.deadline = after(Instant::now(), self.limits.read_timeout);
            }
            if conn.charge.is_none() {
                self.charge_output(conn);
            }
        }
        true
    }

    /// Charges the answer `conn` could not send at once to the output
    /// budget; over it, closes the connections of this loop whose writes
    /// have stalled the longest until it is back under (see `output.rs`).
    fn charge_output(&mut self, conn: &mut Conn) {
        let unsent = conn.out.len() - conn.out_pos;
        let budget = Arc::clone(&self.control.output);
        conn.charge = Some(budget.charge(unsent, conn.rest.as_ref()));
        if !budget.over() {
            return;
        }
        // `conn` is out of the table while it is handled: never a victim.
        let mut stalled: Vec<(Option<Instant>, usize)> = self
            .conns
            .iter()
            .enumerate()
            .filter_map(|(slot, c)| {
                let c = c.as_ref()?;
                c.charge.as_ref()?;
                Some((c.deadline, slot))
            })
            .collect();
        stalled.sort_unstable();
        let mut closed = 0;
        for (_, slot) in stalled {
            if !budget.over() {
                break;
            }
            self.close(slot);
            closed += 1;
        }
        if closed > 0 {
            log::warn!(
                "unsent answers over --max-output-bytes ({} bytes): closed {closed} \
                 connection(s) not reading their answers",
                self.limits.max_output_bytes
            );
        }
    }

    /// The response is out: close, or wait for (or parse) the next request.
    fn written(&mut self, slot: usize, conn: &mut Conn) -> Keep {
        conn.charge = None;
        if conn.close_after {
            return self.linger(slot, conn);
        }
        let now = Instant::now();
        conn.idle_since = now;
        conn.state = State::Idle;
        if conn.out.capacity() > CHUNK {
            conn.out = Vec::new();
        }
        if conn.peer_closed {
            return false;
        }
        self.set_deadline(slot, conn, after(now, self.limits.idle_timeout));
        if !conn.inbuf.is_empty() {
            // Pipelined bytes already buffered start the next request now.
            conn.state = State::Reading;
            self.set_deadline(slot, conn, after(now, self.limits.read_timeout));
            if conn.in_parse {
                return true; // the parse that answered goes on
            }
            if !self.parse(slot, conn) {
                return false;
            }
        } else if conn.inbuf.capacity() > CHUNK {
            conn.inbuf = Vec::new();
        }
        if conn.read_paused && !conn.in_parse {
            conn.read_paused = false;
            return self.on_readable(slot, conn);
        }
        true
    }

    /// Shuts the write side (after TLS `close_notify`), then discards what
    /// the client still sends, for a bounded time: closing with unread data
    /// makes the kernel reset the connection, which can destroy our last
    /// response (an early `413`) before the client reads it.
    fn linger(&mut self, slot: usize, conn: &mut Conn) -> Keep {
        conn.transport.close_notify(&mut conn.sock);
        let _ = conn.sock.shutdown(Shutdown::Write);
        if conn.peer_closed {
            return false;
        }
        let now = Instant::now();
        let until = after(now, LINGER_MAX).unwrap_or(now);
        conn.state = State::Lingering { until };
        conn.inbuf = Vec::new();
        conn.read_paused = false;
        let quiet = after(now, LINGER_QUIET).map_or(until, |q| q.min(until));
        self.set_deadline(slot, conn, Some(quiet));
        self.on_readable(slot, conn)
    }

    /// One step of a graceful stop; true when the loop may end.
    fn stop_step(&mut self, now: Instant) -> bool {
        if self.stop_deadline.is_none() {
            // A read timeout too large for an Instant: an hour is the bound.
            self.stop_deadline = after(now, self.limits.read_timeout)
                .or_else(|| after(now, Duration::from_secs(3600)));
            if let Some(mut listener) = self.listener.take() {
                let _ = self.poll.registry().deregister(&mut listener);
            }
            for slot in 0..self.conns.len() {
                self.with_conn(slot, None, |lp, _, conn| {
                    match std::mem::replace(&mut conn.state, State::Waiting) {
                        State::Idle => false,
                        State::Parked(expire) => {
                            lp.service.spawn(expire);
                            true
                        }
                        // Its producer ends it (the store's watchers are
                        // closed by now).
                        State::Streaming(Some(expire)) => {
                            conn.state = State::Streaming(None);
                            lp.service.spawn(expire);
                            true
                        }
                        other => {
                            conn.state = other;
                            true
                        }
                    }
                });
            }
        }
        // Connections that went idle since (their answer said close) are
        // lingering; those still idle are closed now.
        for slot in 0..self.conns.len() {
            if self.conns[slot]
                .as_ref()
                .is_some_and(|c| matches!(c.state, State::Idle))
            {
                self.close(slot);
            }
        }
        self.live == 0 || self.stop_deadline.is_some_and(|d| now >= d)
    }
}
