//! The HTTP adapter over [`crate::Store`].
//!
//! `conn` owns sockets (accept loop, one thread per connection, framing,
//! timeouts, limits); `workers` is the fixed pool behind a bounded queue;
//! `app` routes (`router`) to one handler per endpoint family (`handlers`);
//! `api_error` is the one place errors become statuses.

pub mod api_error;
pub mod app;
pub mod conn;
pub mod handlers;
pub mod message;
pub mod metrics;
pub mod query;
pub mod router;
pub mod server;
pub mod wire;
pub mod workers;

pub use server::{Server, ServerConfig};
