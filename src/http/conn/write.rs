//! Writing answers: events from the mailbox (an answer, a part of a
//! stream, a park) delivered to their connection, responses encoded and
//! written as the socket takes them (a large body from where it is, see
//! `output.rs`), the output budget charged when a write stalls, and the
//! next request started once an answer is out.

use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::connection::{CHUNK, Conn, Keep, State, after};
use super::event_loop::EventLoop;
use crate::http::completion::{Event, StreamPart};
use crate::http::encoder::encode;
use crate::http::message::HttpResponse;
use crate::http::output::{Outgoing, Sent};

/// The most bytes a stream may have unsent (its reader does not keep up):
/// beyond it the stream is ended with a last event saying so.
const STREAM_MAX_UNSENT: usize = 1 << 20;

impl EventLoop {
    pub(super) fn drain_inbox(&mut self) {
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
    pub(super) fn respond(&mut self, slot: usize, conn: &mut Conn, response: HttpResponse) -> Keep {
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
    pub(super) fn stream(&mut self, slot: usize, conn: &mut Conn, part: StreamPart) -> Keep {
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
    pub(super) fn flush(&mut self, slot: usize, conn: &mut Conn) -> Keep {
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
    pub(super) fn charge_output(&mut self, conn: &mut Conn) {
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
    pub(super) fn written(&mut self, slot: usize, conn: &mut Conn) -> Keep {
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
}
