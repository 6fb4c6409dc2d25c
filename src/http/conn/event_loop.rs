//! The loop itself: one thread waiting on epoll for its listener, its
//! connections and its mailbox, each turn handling what is ready, the
//! answers that came in, the connections that yielded and the timers due
//! (every connection's deadline in one binary heap, lazily updated); and a
//! graceful stop.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use mio::net::TcpListener;
use mio::{Events, Poll, Token};

use super::connection::{ANSWER_BUDGET, CHUNK, Conn, Keep, State, after};
use super::limits::ConnLimits;
use crate::http::completion::{Event, Mailbox, Service, Ticket};
use crate::http::output::OutputBudget;
use crate::http::parser::ParseLimits;

pub(super) const LISTENER: Token = Token(usize::MAX - 1);
pub(super) const WAKER: Token = Token(usize::MAX - 2);
/// The first wait before accepting again after an accept error, doubled
/// up to `MAX_BACKOFF`.
pub(super) const MIN_BACKOFF: Duration = Duration::from_millis(10);
pub(super) const MAX_BACKOFF: Duration = Duration::from_millis(500);

/// What the handle shares with the loop threads.
pub(super) struct Control {
    /// Each loop's inbox, to wake it.
    pub(super) mailboxes: Vec<Arc<Mailbox>>,
    pub(super) stopping: AtomicBool,
    /// Connections open on all loops (`max_connections` bounds it).
    pub(super) open: AtomicUsize,
    /// Unsent answers of all loops (`max_output_bytes` bounds it).
    pub(super) output: Arc<OutputBudget>,
}

impl Control {
    /// Counts one more connection, if that stays within `max`.
    pub(super) fn reserve(&self, max: usize) -> bool {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok()
    }
}

pub(super) struct EventLoop {
    pub(super) poll: Poll,
    pub(super) listener: Option<TcpListener>,
    pub(super) limits: ConnLimits,
    pub(super) parse_limits: ParseLimits,
    pub(super) service: Arc<dyn Service>,
    #[cfg(feature = "tls")]
    pub(super) tls: Option<Arc<rustls::ServerConfig>>,
    pub(super) control: Arc<Control>,
    /// This loop's inbox: responders post to `mailbox`, the loop reads
    /// `inbox`.
    pub(super) mailbox: Arc<Mailbox>,
    pub(super) inbox: Receiver<(Ticket, Event)>,
    /// Connections by slot (the slot is the mio token).
    pub(super) conns: Vec<Option<Conn>>,
    pub(super) free: Vec<usize>,
    pub(super) live: usize,
    /// (deadline, slot, connection serial), earliest first; entries whose
    /// connection moved on are skipped when they come up.
    pub(super) timers: BinaryHeap<Reverse<(Instant, usize, u64)>>,
    pub(super) next_serial: u64,
    pub(super) scratch: Vec<u8>,
    pub(super) accept_retry: Option<Instant>,
    pub(super) backoff: Duration,
    pub(super) stop_deadline: Option<Instant>,
    /// Connections that used up their answer budget: (slot, serial) to go
    /// on with on the next turn.
    pub(super) resume: Vec<(usize, u64)>,
}

impl EventLoop {
    /// A loop over `poll` (with `listener` and the mailbox's waker
    /// registered), serving the connections `listener` accepts.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        poll: Poll,
        listener: TcpListener,
        limits: &ConnLimits,
        service: Arc<dyn Service>,
        #[cfg(feature = "tls")] tls: Option<Arc<rustls::ServerConfig>>,
        control: Arc<Control>,
        mailbox: Arc<Mailbox>,
        inbox: Receiver<(Ticket, Event)>,
    ) -> EventLoop {
        EventLoop {
            poll,
            listener: Some(listener),
            parse_limits: limits.parse_limits(),
            limits: limits.clone(),
            service,
            #[cfg(feature = "tls")]
            tls,
            control,
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
        }
    }

    pub(super) fn run(mut self) {
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
    pub(super) fn with_conn(
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

    pub(super) fn close(&mut self, slot: usize) {
        if let Some(conn) = self.conns.get_mut(slot).and_then(Option::take) {
            self.release(slot, conn);
        }
    }

    pub(super) fn set_deadline(&mut self, slot: usize, conn: &mut Conn, deadline: Option<Instant>) {
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
