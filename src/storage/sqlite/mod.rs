//! The SQLite backend: one file, served by one process (a `flock` on the
//! file keeps a second one out, whatever name it uses), so this process's
//! writer thread is the only writer and its cache is authoritative.
//!
//! - `schema.rs`: opening the file, recognising it, migrating it;
//! - `reads.rs`: the pool of read-only connections and the queries;
//! - `apply.rs`: the writer's connection and the per-operation logic;
//! - `file.rs`: the checks that the file is still there and writable;
//! - `lock.rs`: the exclusive lock on the file itself;
//! - `bulk.rs`: whole-store dumps and loads (`vkv copy`, checks, backups).

mod apply;
pub(crate) mod bulk;
mod file;
pub(crate) mod lock;
mod reads;
mod schema;

use std::sync::Arc;

pub use schema::{APPLICATION_ID, SCHEMA_VERSION};

use crate::error::OpenError;
use crate::storage::Backend;
use crate::store::StoreConfig;

/// Locks, opens (creating and migrating) the file `config.path`.
pub(crate) fn open(config: &StoreConfig) -> Result<Backend, OpenError> {
    let path = &config.path;
    let locked = file::DbFile::lock(path)?;
    // Under the lock: what a killed backup or restore left is stale.
    crate::backup::remove_stale_temp_files(path);
    let conn = schema::open_writer(path, config.sync)?;
    let file = Arc::new(locked.remember());
    let reads = reads::ReadPool::open(path, config.read_connections, Arc::clone(&file))?;
    Ok(Backend {
        reads: Arc::new(reads),
        committer: Box::new(apply::SqliteCommitter {
            conn,
            file,
            max_versions: config.max_versions,
        }),
    })
}
