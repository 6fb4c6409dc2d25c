//! Reading a connection: bytes from the socket through the request
//! parser, each complete request handed to the service (or answered at
//! once, within a budget per turn), errors the connection layer finds
//! itself answered and the connection closed.

use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Instant;

use super::connection::{ANSWER_BUDGET, Conn, HOLD_CAP, Keep, State, after};
use super::event_loop::EventLoop;
use super::linger::LINGER_QUIET;
use crate::http::completion::{Reply, Responder, Ticket};
use crate::http::encoder::CONTINUE;
use crate::http::message::HttpResponse;
use crate::http::parser::{Framing, Progress};

impl EventLoop {
    pub(super) fn on_readable(&mut self, slot: usize, conn: &mut Conn) -> Keep {
        self.read_socket(slot, conn, true)
    }

    /// Reads and handles what the socket has: until it would block, or,
    /// unless `until_would_block`, until a read leaves it empty (saves the read
    /// that would only say so: one syscall per request).
    pub(super) fn read_socket(
        &mut self,
        slot: usize,
        conn: &mut Conn,
        until_would_block: bool,
    ) -> Keep {
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
    pub(super) fn on_peer_closed(&mut self, conn: &mut Conn) -> Keep {
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

    pub(super) fn on_bytes(&mut self, slot: usize, conn: &mut Conn, n: usize) -> Keep {
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
    pub(super) fn resume(&mut self, slot: usize, conn: &mut Conn) -> Keep {
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
    pub(super) fn parse(&mut self, slot: usize, conn: &mut Conn) -> Keep {
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
                    let reply = catch_unwind(AssertUnwindSafe(|| service.handle(&request)))
                        .unwrap_or_else(|_| {
                            log::error!("the service panicked: answered 500");
                            service.count(500);
                            HttpResponse::error(500, "internal error (logged)").into()
                        });
                    let work = match reply {
                        Reply::Ready(response) => {
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
                        Reply::Later(later) => {
                            // Handed on (a queued read): answered through
                            // the mailbox like a worker's answer.
                            let responder = self.responder(slot, conn);
                            if catch_unwind(AssertUnwindSafe(|| later(responder))).is_err() {
                                log::error!("answering on the loop panicked: answered 500");
                            }
                            return true;
                        }
                        Reply::Defer(work) => work,
                    };
                    let responder = self.responder(slot, conn);
                    // A panic drops the responder, which answers 500.
                    if catch_unwind(AssertUnwindSafe(|| service.defer(request, work, responder)))
                        .is_err()
                    {
                        log::error!("the service panicked: answered 500");
                    }
                    return true;
                }
            }
        }
    }

    /// The way back to `conn` for the request it has in flight.
    pub(super) fn responder(&self, slot: usize, conn: &Conn) -> Responder {
        let ticket = Ticket {
            slot,
            request: conn.request,
        };
        Responder::to_loop(Arc::clone(&self.mailbox), ticket)
    }

    /// Answers an error the connection layer found itself, then closes.
    pub(super) fn reject(
        &mut self,
        slot: usize,
        conn: &mut Conn,
        status: u16,
        detail: &str,
    ) -> Keep {
        self.service.count(status);
        if conn.transport.handshaking() {
            return false;
        }
        conn.framing = Framing::closing();
        self.respond(slot, conn, HttpResponse::error(status, detail))
    }
}
