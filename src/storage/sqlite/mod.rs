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
pub(crate) mod backup;
pub(crate) mod bulk;
mod deadlines;
mod errors;
mod file;
pub(crate) mod lock;
mod reads;
mod schema;
pub(crate) mod temp;

use std::sync::Arc;

pub use schema::{APPLICATION_ID, SCHEMA_VERSION};

use crate::error::OpenError;
use crate::storage::seam::Backend;
use crate::storage::seam::Options;

/// Files up to this size are checked (`PRAGMA quick_check`) before vkv
/// serves them, and refused if damaged; larger ones are checked in the
/// background right after start (`quick_check` of a 94 MB file took
/// 0.24-0.50 s on the development VM, file in the page cache), so that
/// start-up stays fast.
pub(crate) const SYNC_CHECK_MAX_BYTES: u64 = 8 << 20;

/// `PRAGMA quick_check`: every page readable and well-formed, every row
/// sane (not the cross-checks of indexes that `integrity_check` adds).
fn quick_check(conn: &rusqlite::Connection) -> Result<(), String> {
    let lines: Vec<String> = conn
        .prepare("PRAGMA quick_check(5)")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .map_err(|e| e.to_string())?;
    if lines.len() == 1 && lines[0] == "ok" {
        Ok(())
    } else {
        Err(format!("PRAGMA quick_check: {}", lines.join("; ")))
    }
}

/// Checks the file on a connection of its own; marks it corrupt if damaged
/// (health then unavailable, writes refused). Holds no strong reference:
/// a store closed meanwhile is not kept open by its check.
fn check_in_background(path: &std::path::Path, file: std::sync::Weak<file::DbFile>) {
    let shown = path.display().to_string();
    let path = path.to_path_buf();
    let spawned = std::thread::Builder::new()
        .name("vkv-check".into())
        .spawn(move || {
            let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
            let result = rusqlite::Connection::open_with_flags(&path, flags)
                .map_err(|e| e.to_string())
                .and_then(|c| quick_check(&c));
            match (result, file.upgrade()) {
                (Err(why), Some(file)) => file.mark_corrupt(&why),
                (Ok(()), _) => log::info!("background check of {}: ok", path.display()),
                (Err(_), None) => {}
            }
        });
    if let Err(e) = spawned {
        log::warn!("cannot start the background check of {shown}: {e}");
    }
}

/// Locks, opens (creating and migrating) the file `config.path`.
pub(crate) fn open(config: &Options) -> Result<Backend, OpenError> {
    let path = &config.path;
    let locked = file::DbFile::lock(path)?;
    // Under the lock: what a killed backup or restore left is stale.
    temp::remove_stale_temp_files(path);
    let conn = schema::open_writer(path, config.sync)?;
    let size = std::fs::metadata(path).map_or(0, |m| m.len());
    if size <= SYNC_CHECK_MAX_BYTES
        && let Err(why) = quick_check(&conn)
    {
        return Err(OpenError::Corrupt {
            path: path.to_path_buf(),
            reason: why,
        });
    }
    let file = Arc::new(locked.remember());
    if size > SYNC_CHECK_MAX_BYTES {
        check_in_background(path, Arc::downgrade(&file));
    }
    let reads = reads::ReadPool::open(path, config.read_connections, Arc::clone(&file))?;
    let committer = apply::SqliteCommitter::new(conn, file, config.max_versions).map_err(|e| {
        OpenError::Database {
            path: path.to_path_buf(),
            reason: format!("cannot read the deadlines and purges: {e}"),
        }
    })?;
    Ok(Backend {
        reads: Arc::new(reads),
        committer: Box::new(committer),
    })
}
