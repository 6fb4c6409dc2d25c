//! One connection: where it is in its request cycle and what it holds.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::TcpStream;

use crate::http::output::{Charge, Outgoing};
use crate::http::parser::{Framing, RequestParser};
use crate::http::transport::Transport;

/// One read (and one file chunk) at most.
pub(super) const CHUNK: usize = 64 << 10;
/// Bytes kept from a client whose request is being answered (pipelined
/// requests); beyond it the loop stops reading it until the answer is out.
pub(super) const HOLD_CAP: usize = 64 << 10;
/// Requests of one connection the loop answers itself (cache hits,
/// pipelined) before it turns to the others: a client pipelining without
/// end must not starve the rest.
pub(super) const ANSWER_BUDGET: u32 = 64;

/// `now + d`, or `None` (no deadline) if that overflows.
pub(super) fn after(now: Instant, d: Duration) -> Option<Instant> {
    now.checked_add(d)
}

/// Where a connection is in its request cycle.
pub(super) enum State {
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

/// A connection: its socket, where it is in its request cycle, what it
/// has received and what it still has to send.
pub(super) struct Conn {
    pub(super) sock: TcpStream,
    pub(super) transport: Transport,
    pub(super) peer: SocketAddr,
    /// This connection's number (a stale timer names another).
    pub(super) serial: u64,
    pub(super) state: State,
    pub(super) parser: RequestParser,
    /// Bytes received and not yet consumed by the parser.
    pub(super) inbuf: Vec<u8>,
    /// Bytes to send, from `out_pos`.
    pub(super) out: Vec<u8>,
    pub(super) out_pos: usize,
    /// What goes out after `out`: a file, or large parts sent in place.
    pub(super) rest: Option<Outgoing>,
    /// The answer's share of the output budget, once a write stalled.
    pub(super) charge: Option<Charge>,
    /// The request in flight: its number (tickets name it) and framing.
    pub(super) request: u64,
    pub(super) framing: Framing,
    pub(super) close_after: bool,
    pub(super) deadline: Option<Instant>,
    /// The earliest entry this connection has in the timer heap.
    pub(super) timer_at: Option<Instant>,
    /// When it was accepted or last finished an answer. Bytes of a partial
    /// request do not move it: a client trickling a byte into a request
    /// that never completes ranks by when it began. Eviction closes the
    /// connection with the oldest.
    pub(super) idle_since: Instant,
    pub(super) peer_closed: bool,
    /// Reading stopped at `HOLD_CAP`: read again once the buffer drains.
    pub(super) read_paused: bool,
    /// Requests the loop may still answer itself before yielding.
    pub(super) budget: u32,
    /// Out of budget: parked in `EventLoop::resume` until the loop's next
    /// turn, with its bytes unread (readiness is edge-triggered).
    pub(super) yielded: bool,
    /// The parser is running: an answer written meanwhile must not start
    /// parsing again (the running parse goes on; no recursion).
    pub(super) in_parse: bool,
    /// A stream's output has been blocked since then.
    pub(super) stalled_since: Option<Instant>,
}

impl Conn {
    /// A connection just accepted, waiting for its first request.
    pub(super) fn new(
        sock: TcpStream,
        transport: Transport,
        peer: SocketAddr,
        serial: u64,
        parser: RequestParser,
        now: Instant,
    ) -> Conn {
        Conn {
            sock,
            transport,
            peer,
            serial,
            state: State::Idle,
            parser,
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
        }
    }

    pub(super) fn wants_output(&self) -> bool {
        self.out_pos < self.out.len() || self.rest.is_some() || self.transport.wants_write()
    }
}

/// Whether to keep a connection after handling an event.
pub(super) type Keep = bool;
