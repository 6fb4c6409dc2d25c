//! vkv: a versioned key-value store over SQLite, with an LRU cache of the
//! latest versions and an HTTP/JSON adapter.
//!
//! Every write of a key makes a new version (1, 2, 3, ...); every version
//! can be read back; a write is acknowledged only once it is committed.
//!
//! - [`Store`] is the whole store; embed it without HTTP.
//! - [`http`] adapts it to HTTP (see `ARCHITECTURE.md`).

#![warn(missing_docs)]

pub mod backup;
pub mod cache;
pub mod check;
pub mod copy;
/// The SQLite file format's identifiers and the storage types, at the path
/// tools and tests have used.
pub mod db {
    pub use crate::storage::sqlite::{APPLICATION_ID, SCHEMA_VERSION};
    pub use crate::storage::{DbStats, KeyInfo, SyncMode, VersionInfo};
}
pub mod error;
pub mod http;
pub mod key;
mod storage;
pub mod store;
pub mod value;
pub mod version;
pub mod watch;
mod writer;

pub use cache::CacheStats;
pub use error::{OpenError, StoreError};
pub use key::MAX_KEY_BYTES;
pub use storage::{
    DbStats, KeyInfo, SyncMode, Totals, VersionInfo, display_location, is_postgres_url,
};
pub use store::{PendingPut, PutItem, Store, StoreConfig, Watch, WriterStats};
pub use version::{Operation, PutOutcome, Versioned};
