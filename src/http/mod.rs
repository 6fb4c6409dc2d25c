//! The HTTP adapter over [`crate::Store`].
//!
//! `conn` owns sockets (the I/O loops on epoll: accept, framing, timeouts,
//! limits; a connection is a state machine, not a thread; `output` bounds
//! what unsent answers hold) and calls `completion::Service::handle` once
//! per request; `app` routes (`router`) to one handler per endpoint family
//! (`handlers`), which answers at once or defers what may block to
//! `workers`, the fixed pool behind a bounded queue;
//! `auth` checks bearer tokens when `--auth-tokens` is set; `cross_site`
//! refuses what a web page could make a browser send, and `cors` answers the
//! pages `--cors-origins` lists; `api_error` is
//! the one place errors become statuses; `tls` (feature `tls`) loads the
//! certificate that `conn` serves HTTPS with.

pub mod api_error;
pub mod app;
pub mod auth;
pub mod completion;
pub mod conn;
pub mod cors;
pub mod cross_site;
pub mod delimit;
pub mod encoder;
pub mod handlers;
pub mod lifetime;
pub mod message;
pub mod metrics;
mod output;
pub mod parser;
pub mod process;
pub mod query;
pub mod router;
pub mod server;
#[cfg(feature = "tls")]
pub mod tls;
pub mod transport;
pub mod wire;
pub mod workers;
