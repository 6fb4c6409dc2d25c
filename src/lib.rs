//! vkv: a versioned key-value store over SQLite (or PostgreSQL, feature
//! `postgres`), with an LRU cache of the latest versions and an HTTP/JSON
//! adapter.
//!
//! Every write of a key makes a new version (1, 2, 3, ...); every version
//! can be read back; a write is acknowledged only once it is committed.
//!
//! - [`Store`] is the whole store; embed it without HTTP. The crate root
//!   is the embedding API: [`Store`], [`StoreConfig`], the errors
//!   ([`StoreError`], [`OpenError`]) and the value types.
//! - [`server`] serves a store over HTTP (the adapter's plumbing behind it
//!   is private); the tools behind the `vkv` binary are reachable for it
//!   and the tests but hidden from the documentation (see
//!   `ARCHITECTURE.md`).

#![warn(missing_docs)]

// The embedding API is what the crate root re-exports: `Store`, its
// configuration, its errors and its value types. The modules behind it are
// private, so that nothing outside the crate can write to the cache, wake
// watchers or reach a database connection: the compiler enforces the
// single-writer rule.
mod cache;
mod change;
mod deadlines;
mod error;
mod expiry;
mod rules;
mod storage;
mod store;
mod version;
mod wake;
mod watch;
mod writer;

// Used by the `vkv` binary and the tests (HTTP server, subcommands, parsers
// under property tests); not part of the embedding API.
#[doc(hidden)]
pub mod backup;
#[doc(hidden)]
pub mod check;
#[doc(hidden)]
pub mod copy;
#[doc(hidden)]
pub mod duration;
/// The SQLite file format's identifiers and the storage types, at the path
/// tools and tests have used.
#[doc(hidden)]
pub mod db {
    pub use crate::storage::seam::{DbStats, KeyInfo, SyncMode, VersionInfo};
    pub use crate::storage::sqlite::{APPLICATION_ID, SCHEMA_VERSION};
}
// The HTTP adapter's plumbing is crate-private; the feature `internals`
// (on for vkv's own tests, examples and fuzz target) opens it to them.
#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod http;
#[cfg(not(feature = "internals"))]
#[allow(dead_code)]
mod http;

/// Serving a [`Store`] over HTTP, as the `vkv` binary does: bind with
/// [`Server::bind`](server::Server::bind), open the store, then
/// [`Listening::serve`](server::Listening::serve).
pub mod server {
    pub use crate::http::auth::{AuthTokens, TokenFileError};
    pub use crate::http::conn::ConnLimits;
    pub use crate::http::cross_site::parse_origin;
    pub use crate::http::server::{Listening, Server, ServerConfig};
    #[cfg(feature = "tls")]
    pub use crate::http::tls::{TlsConfig, TlsError, load as load_tls};
}
#[doc(hidden)]
pub mod key;
#[doc(hidden)]
pub mod value;

pub use cache::CacheStats;
pub use change::{Change, ChangeOperation, ChangePage};
pub use deadlines::{ExpiryStats, LAG_BUCKETS_MS, Lease, MAX_TTL, MIN_TTL};
pub use error::{OpenError, StoreError};
pub use key::MAX_KEY_BYTES;
#[doc(hidden)]
pub use storage::location::display_location;
pub use storage::seam::{DbStats, KeyInfo, KeyPage, Lifetime, SyncMode, Totals, VersionInfo};
pub use store::{PutItem, Store, StoreConfig, Watch, WriterStats};
pub use value::MAX_DEPTH;
pub use version::{Operation, PutOutcome, Versioned};
pub use watch::Subscription;
