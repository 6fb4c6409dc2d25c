//! What a connection still has to send, and the bound on all of it.
//!
//! - **Per connection**, an answer is all a connection holds: the loop does
//!   not parse a connection's next request until its answer is out, and
//!   reads at most 64 KiB of its input meanwhile. A client that pipelines
//!   requests and never reads holds one answer, not one per request.
//! - **Large answers are not copied.** A body over
//!   [`INLINE_MAX`](super::encoder::INLINE_MAX) is sent from where it is, as
//!   the socket takes it: a cached value ([`Part::Shared`]) slice by slice
//!   from the cache's own bytes, a file 64 KiB at a time. So the I/O thread
//!   spends on a large answer only what the socket takes, and a thousand
//!   clients reading one cached value hold one copy of it.
//! - **In the kernel**, a socket queues at most about 128 KiB not yet on
//!   the wire (`TCP_NOTSENT_LOWAT`). Without it Linux grows a socket's send
//!   buffer to 4 MiB, so `write` took whole answers (and the next ones,
//!   once the first was "out") that the client never read: 1,500 such
//!   clients pinned gigabytes of kernel memory, and copying it kept the I/O
//!   thread busy for seconds. Data in flight is not limited (the window
//!   still grows), only what waits behind it.
//! - **In total**, an answer still unsent after its first write is charged
//!   to the [`OutputBudget`] that every loop shares, until it is out or its
//!   connection closes: its own bytes, plus each shared piece once however
//!   many answers are sending it (the memory those answers keep alive).
//!   Over the budget, a loop closes its connections whose writes have made
//!   no progress for the longest (clients that are not reading) until the
//!   total is back under it, as Redis's `maxmemory-clients` does. An
//!   answer is always started: the budget is exceeded by at most the one
//!   being charged.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use mio::net::TcpStream;

use super::encoder::Tail;
use super::message::{FileBody, Part, SharedBytes};
use super::transport::Transport;

/// One read of a file body at most.
const FILE_CHUNK: usize = 64 << 10;
/// Bytes a socket may queue that are not yet sent (`TCP_NOTSENT_LOWAT`).
const KERNEL_UNSENT: u32 = 64 << 10;

/// Bounds what the kernel queues for `sock` behind the data in flight
/// (best effort: a kernel without the option queues as before).
pub(super) fn bound_kernel_queue(sock: &TcpStream) {
    let _ = socket2::SockRef::from(sock).set_tcp_notsent_lowat(KERNEL_UNSENT);
}

/// The part of an answer sent after the connection's output buffer.
pub(super) enum Outgoing {
    /// A file, read into the output buffer a chunk at a time.
    File { body: FileBody, left: u64 },
    /// Parts written from where they are; `pos` bytes of the first are out.
    Parts { parts: VecDeque<Part>, pos: usize },
}

/// What [`Outgoing::send`] did.
pub(super) enum Sent {
    /// Bytes went out (a part's).
    Wrote,
    /// The next chunk of a file is in the output buffer, to be written.
    Refilled,
    /// Nothing is left.
    Done,
    /// The socket takes no more for now.
    Blocked,
}

impl Outgoing {
    pub fn new(tail: Tail) -> Outgoing {
        match tail {
            Tail::File(body) => {
                let left = body.len();
                Outgoing::File { body, left }
            }
            Tail::Parts(parts) => Outgoing::Parts {
                parts: parts.into(),
                pos: 0,
            },
        }
    }

    /// Sends the next piece: a part's bytes straight from where they are,
    /// or a file's next chunk read into `out` (empty when called), which
    /// the caller then writes.
    pub fn send(
        &mut self,
        transport: &mut Transport,
        sock: &mut TcpStream,
        out: &mut Vec<u8>,
    ) -> io::Result<Sent> {
        match self {
            Outgoing::File { body, left } => {
                if *left == 0 {
                    return Ok(Sent::Done);
                }
                let want = (*left).min(FILE_CHUNK as u64) as usize;
                out.resize(want, 0);
                match body.reader().read(&mut out[..want]) {
                    Ok(n) if n > 0 => {
                        out.truncate(n);
                        *left -= n as u64;
                        Ok(Sent::Refilled)
                    }
                    // The file ended before its announced length: the
                    // client must not take a short body as whole.
                    _ => Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "response body file shorter than announced",
                    )),
                }
            }
            Outgoing::Parts { parts, pos } => loop {
                let Some(part) = parts.front() else {
                    return Ok(Sent::Done);
                };
                let bytes = part.bytes().get(*pos..).unwrap_or_default();
                if bytes.is_empty() {
                    parts.pop_front();
                    *pos = 0;
                    continue;
                }
                return match transport.write(sock, bytes) {
                    Ok(0) => Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => {
                        *pos += n;
                        Ok(Sent::Wrote)
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Sent::Blocked),
                    Err(e) => Err(e),
                };
            },
        }
    }

    /// What the answer still holds in memory, to be charged: its own
    /// bytes, and the shared pieces.
    fn held(&self) -> (usize, Vec<Arc<dyn SharedBytes>>) {
        let mut own = 0;
        let mut shared = Vec::new();
        if let Outgoing::Parts { parts, pos } = self {
            for (i, part) in parts.iter().enumerate() {
                let skip = if i == 0 { *pos } else { 0 };
                match part {
                    Part::Owned(b) => own += b.len().saturating_sub(skip),
                    Part::Shared(s) => shared.push(Arc::clone(s)),
                }
            }
        }
        (own, shared)
    }
}

/// The bound on unsent answers held by all connections of all loops.
pub(super) struct OutputBudget {
    cap: usize,
    held: Mutex<Held>,
}

#[derive(Default)]
struct Held {
    /// Bytes charged: own bytes of every charged answer, plus each shared
    /// piece once.
    total: usize,
    /// Shared pieces by address: (answers holding it, its length).
    shared: HashMap<usize, (usize, usize)>,
}

impl OutputBudget {
    pub fn new(cap: usize) -> Arc<OutputBudget> {
        Arc::new(OutputBudget {
            cap,
            held: Mutex::new(Held::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Charges an answer that did not go out at once: `unsent` bytes of
    /// the connection's buffer, and what `rest` holds. Held until the
    /// charge is dropped.
    pub fn charge(self: &Arc<Self>, unsent: usize, rest: Option<&Outgoing>) -> Charge {
        let (own, shared) = rest.map(Outgoing::held).unwrap_or_default();
        let own = own.saturating_add(unsent);
        let mut held = self.lock();
        held.total = held.total.saturating_add(own);
        for piece in &shared {
            let (addr, len) = address(piece);
            let entry = held.shared.entry(addr).or_insert((0, len));
            entry.0 += 1;
            if entry.0 == 1 {
                held.total = held.total.saturating_add(len);
            }
        }
        Charge {
            budget: Arc::clone(self),
            own,
            shared,
        }
    }

    /// Whether what is charged is over the budget.
    pub fn over(&self) -> bool {
        self.lock().total > self.cap
    }
}

/// Where a shared piece's bytes are, and how many: the same bytes sent by
/// several answers are charged once.
fn address(piece: &Arc<dyn SharedBytes>) -> (usize, usize) {
    let b = piece.bytes();
    (b.as_ptr() as usize, b.len())
}

/// An answer's share of the [`OutputBudget`], given back when dropped (the
/// answer is out, or its connection closed). It holds the shared pieces it
/// charged, so their addresses stay theirs until then.
pub(super) struct Charge {
    budget: Arc<OutputBudget>,
    own: usize,
    shared: Vec<Arc<dyn SharedBytes>>,
}

impl Drop for Charge {
    fn drop(&mut self) {
        // The pieces are let go after the lock (the last holder frees them).
        let shared = std::mem::take(&mut self.shared);
        let mut held = self.budget.lock();
        held.total = held.total.saturating_sub(self.own);
        for piece in &shared {
            let (addr, _) = address(piece);
            if let Some(entry) = held.shared.get_mut(&addr) {
                entry.0 -= 1;
                if entry.0 == 0 {
                    let len = entry.1;
                    held.shared.remove(&addr);
                    held.total = held.total.saturating_sub(len);
                }
            }
        }
        drop(held);
        drop(shared);
    }
}
