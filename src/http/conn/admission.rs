//! Letting connections in: accepting (an accept error such as EMFILE is
//! retried with a back-off and never stops the loop), making room at
//! `max_connections` by closing the connection idle or stalled mid-request
//! the longest, and refusing with `503` when none is. A new connection's
//! first bytes are read as it is let in, so a complete request is never
//! evicted by the connections accepted after it.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
#[cfg(feature = "tls")]
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use mio::net::TcpStream;
use mio::{Interest, Token};

use super::connection::{Conn, State, after};
use super::event_loop::{EventLoop, MAX_BACKOFF, MIN_BACKOFF};
use crate::http::encoder::encode;
use crate::http::message::HttpResponse;
use crate::http::output;
use crate::http::parser::{Framing, RequestParser};
use crate::http::transport::Transport;

/// What a refused connection may have sent that is read (and dropped)
/// before closing, so the close does not reset away the `503`.
const REFUSE_DRAIN: usize = 64 << 10;

impl EventLoop {
    pub(super) fn accept_all(&mut self) {
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
        let parser = RequestParser::new(self.parse_limits);
        let mut conn = Conn::new(sock, transport, peer, self.next_serial, parser, now);
        self.set_deadline(slot, &mut conn, after(now, first_wait));
        self.conns[slot] = Some(conn);
        self.live += 1;
        // A request that came with the connection is read now, before the
        // connections accepted after it in this turn can evict it as the
        // longest idle (a burst of more than `max_connections` would close
        // it unanswered). A read that finds nothing costs one syscall; the
        // registration's first event reads whatever comes later.
        self.with_conn(slot, None, |lp, slot, conn| {
            lp.read_socket(slot, conn, false)
        });
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

    pub(super) fn is_tls(&self) -> bool {
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
}
