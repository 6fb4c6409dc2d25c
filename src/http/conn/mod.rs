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
//!
//! One file per job: `limits` (what a client may cost), `launch` (the
//! threads and the handle), `event_loop` (the loop, its timers and a
//! graceful stop), `connection` (a connection's state and buffers),
//! `admission` (accepting, eviction at the limit, refusal), `read`
//! (reading, parsing, handing a request to the service), `write` (answers
//! from the mailbox, writes, files and streams, the output budget) and
//! `linger` (the lingering close).
//!
//! [`RequestParser`]: crate::http::parser::RequestParser
//! [`Responder`]: crate::http::completion::Responder

mod admission;
mod connection;
mod event_loop;
mod launch;
mod limits;
mod linger;
mod read;
mod write;

pub use crate::http::completion::Service;
pub use launch::HttpServer;
pub use limits::ConnLimits;
