//! The database file as opened: its lock file, and the checks that the path
//! still leads to it and that its directory takes writes.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use crate::error::{OpenError, StoreError};

/// The lock file of the database at `path`: `{path}.lock`.
pub(crate) fn lock_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".lock");
    PathBuf::from(p)
}

/// The database file as it was opened. SQLite goes on writing to a file
/// that was deleted (or whose directory was) through its open descriptors,
/// and those writes are lost for good at the next start: so no write is
/// committed once the path no longer leads to the file that was opened.
#[derive(Debug)]
pub(crate) struct DbFile {
    path: PathBuf,
    /// Device and inode when opened (`None`: not checked on this platform).
    id: Option<(u64, u64)>,
    /// The store's lock file, next to the database.
    lock: PathBuf,
    /// The lock file, held locked for the store's lifetime: a second
    /// process on the same file would serve from a cache that the first
    /// one's writes make stale.
    _held: File,
}

impl DbFile {
    /// Takes the lock of the database at `path` (refused while another
    /// process holds it). Call [`DbFile::remember`] once the file exists.
    pub fn lock(path: &Path) -> Result<DbFile, OpenError> {
        let lock = lock_path(path);
        let held = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock)
            .map_err(|e| OpenError::Database {
                path: path.to_path_buf(),
                reason: format!("cannot create lock file {}: {e}", lock.display()),
            })?;
        if held.try_lock().is_err() {
            return Err(OpenError::Locked {
                path: path.to_path_buf(),
                lock,
            });
        }
        Ok(DbFile {
            path: path.to_path_buf(),
            id: None,
            lock,
            _held: held,
        })
    }

    /// Remembers the file the path leads to now (after it was opened).
    pub fn remember(mut self) -> DbFile {
        self.id = file_id(&self.path).ok();
        self
    }

    /// `Ok` if a file next to the database can be opened for writing (an
    /// open and a close, nothing written): fails on a file system that went
    /// read-only, which SQLite notices only when a write needs new space.
    /// The lock file is opened, never the database: closing any descriptor
    /// of the database would drop SQLite's POSIX locks on it.
    pub fn check_writable(&self) -> Result<(), StoreError> {
        std::fs::OpenOptions::new()
            .write(true)
            .open(&self.lock)
            .map(drop)
            .map_err(|e| {
                StoreError::Unavailable(format!(
                    "the directory of database {} is not writable: {e}",
                    self.path.display()
                ))
            })
    }

    /// `Ok` while `path` still leads to the file that was opened (one
    /// `stat`).
    pub fn check(&self) -> Result<(), StoreError> {
        let Some(opened) = self.id else {
            return Ok(());
        };
        let path = self.path.display();
        match file_id(&self.path) {
            Ok(now) if now == opened => Ok(()),
            Ok(_) => Err(StoreError::Unavailable(format!(
                "database file {path} was replaced by another file while open; restart vkv"
            ))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(StoreError::Unavailable(format!(
                    "database file {path} is gone (deleted, or its directory removed) while \
                     open; writes are refused because they would be lost"
                )))
            }
            Err(e) => Err(StoreError::Unavailable(format!(
                "cannot check database file {path}: {e}"
            ))),
        }
    }
}

#[cfg(unix)]
fn file_id(path: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).map(|m| (m.dev(), m.ino()))
}

#[cfg(not(unix))]
fn file_id(_: &Path) -> std::io::Result<(u64, u64)> {
    Err(std::io::ErrorKind::Unsupported.into())
}
