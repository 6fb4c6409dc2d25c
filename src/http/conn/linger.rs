//! The lingering close: after a closing answer (such as an early `413`)
//! the write side is shut and what the client still sends is read and
//! discarded for a bounded time, so that it sees the answer instead of a
//! reset.

use std::net::Shutdown;
use std::time::{Duration, Instant};

use super::connection::{Conn, Keep, State, after};
use super::event_loop::EventLoop;

/// Lingering close: at most this long in all, and at most `LINGER_QUIET`
/// without a byte from the client.
const LINGER_MAX: Duration = Duration::from_secs(5);
pub(super) const LINGER_QUIET: Duration = Duration::from_secs(1);

impl EventLoop {
    /// Shuts the write side (after TLS `close_notify`), then discards what
    /// the client still sends, for a bounded time: closing with unread data
    /// makes the kernel reset the connection, which can destroy our last
    /// response (an early `413`) before the client reads it.
    pub(super) fn linger(&mut self, slot: usize, conn: &mut Conn) -> Keep {
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
}
