//! The database file as opened: its lock, and the checks that the path
//! still leads to it and that its file system takes writes.

use std::path::{Path, PathBuf};

use super::lock::{DbLock, LockError};
use crate::error::{OpenError, StoreError};

/// The database file as it was opened. SQLite goes on writing to a file
/// that was deleted (or whose directory was) through its open descriptors,
/// and those writes are lost for good at the next start: so no write is
/// committed once the path no longer leads to the file that was opened.
#[derive(Debug)]
pub(crate) struct DbFile {
    path: PathBuf,
    /// Device and inode when opened (`None`: not checked on this platform).
    id: Option<(u64, u64)>,
    /// The write-ahead log, next to the real file (SQLite resolves
    /// symlinks).
    wal: PathBuf,
    /// Why the file was found corrupt, once it was: sticky, since a
    /// damaged file does not heal.
    corrupt: std::sync::Mutex<Option<String>>,
    /// The lock on the file itself, held for the store's lifetime: a second
    /// process on the same file (by any name) would serve from a cache that
    /// the first one's writes make stale, and assign the same versions.
    _held: DbLock,
}

impl DbFile {
    /// Takes the lock of the database file at `path` (refused while another
    /// process holds it, under any name; an empty file is created if there
    /// is none). Call [`DbFile::remember`] once SQLite has opened it.
    pub fn lock(path: &Path) -> Result<DbFile, OpenError> {
        let held = DbLock::acquire(path).map_err(|e| match e {
            LockError::Held(h) => OpenError::Locked {
                path: path.to_path_buf(),
                file: h.file,
                pid: h.pid,
            },
            LockError::Io(e) => OpenError::Database {
                path: path.to_path_buf(),
                reason: e.to_string(),
            },
        })?;
        Ok(DbFile {
            path: path.to_path_buf(),
            id: None,
            wal: PathBuf::new(),
            corrupt: std::sync::Mutex::new(None),
            _held: held,
        })
    }

    /// Remembers the file the path leads to now (after it was opened).
    pub fn remember(mut self) -> DbFile {
        self.id = file_id(&self.path).ok();
        let mut wal = std::fs::canonicalize(&self.path)
            .unwrap_or_else(|_| self.path.clone())
            .into_os_string();
        wal.push("-wal");
        self.wal = wal.into();
        self
    }

    /// `Ok` if the database's write-ahead log can be opened for writing (an
    /// open and a close, nothing written): fails on a file system that went
    /// read-only, which SQLite notices only when a write needs new space.
    /// (`access(2)` and `statvfs` miss it: ext4's emergency read-only state
    /// after an error shows only when a file is opened for writing.) The
    /// log is opened, never the database: closing any descriptor of the
    /// database would drop SQLite's POSIX locks on it, and SQLite takes
    /// none on the log (its WAL locks are on `-shm`). No log yet (nothing
    /// to tell): `Ok`.
    pub fn check_writable(&self) -> Result<(), StoreError> {
        match std::fs::OpenOptions::new().write(true).open(&self.wal) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::Unavailable(format!(
                "database {} is not writable: {e}",
                self.path.display()
            ))),
        }
    }

    /// Records that the file is damaged (the first time, logged).
    pub fn mark_corrupt(&self, why: &str) {
        let mut c = self.corrupt.lock().unwrap_or_else(|p| p.into_inner());
        if c.is_none() {
            log::error!(
                "database {} is corrupt: {why}; refusing writes, /health is unavailable",
                self.path.display()
            );
            *c = Some(why.to_string());
        }
    }

    /// `Err(Corrupt)` once the file was found damaged.
    pub fn check_corrupt(&self) -> Result<(), StoreError> {
        match &*self.corrupt.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(why) => Err(StoreError::Corrupt(why.clone())),
            None => Ok(()),
        }
    }

    /// Passes `r` on, remembering a corruption it reports.
    pub fn note<T>(&self, r: Result<T, StoreError>) -> Result<T, StoreError> {
        if let Err(StoreError::Corrupt(why)) = &r {
            self.mark_corrupt(why);
        }
        r
    }

    /// `Ok` while the database's file system has room for a write
    /// ([`MIN_FREE_BYTES`]): a full disk fails every put with `507` while
    /// a small probe write may still fit in the log's reused space, so
    /// `/health` asks the file system (one `fstatvfs`).
    pub fn check_space(&self) -> Result<(), StoreError> {
        match free_bytes(self._held.file()) {
            Ok(free) if free < MIN_FREE_BYTES => Err(StoreError::StorageFull(format!(
                "{free} bytes free on the file system of {} (writes need at least {MIN_FREE_BYTES})",
                self.path.display()
            ))),
            // Unknown (not a Unix, or fstatvfs failed): the write path
            // reports a full disk when it meets one.
            _ => Ok(()),
        }
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

/// Below this much free space the database counts as full for `/health`:
/// a default-sized request body (1 MiB).
pub(crate) const MIN_FREE_BYTES: u64 = 1 << 20;

/// Bytes this process may still write on `file`'s file system (root may
/// use the blocks reserved for it).
#[cfg(unix)]
fn free_bytes(file: &std::fs::File) -> std::io::Result<u64> {
    use std::os::unix::io::AsRawFd;
    // SAFETY: fstatvfs writes only into `st`, a plain struct; the
    // descriptor is open for the call (borrowed from `file`).
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstatvfs(file.as_raw_fd(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: geteuid has no preconditions.
    let blocks = if unsafe { libc::geteuid() } == 0 {
        st.f_bfree
    } else {
        st.f_bavail
    };
    // Both are 32-bit on some targets.
    #[allow(clippy::useless_conversion)]
    Ok(u64::from(blocks).saturating_mul(u64::from(st.f_frsize)))
}

#[cfg(not(unix))]
fn free_bytes(_: &std::fs::File) -> std::io::Result<u64> {
    Err(std::io::ErrorKind::Unsupported.into())
}

#[cfg(not(unix))]
fn file_id(_: &Path) -> std::io::Result<(u64, u64)> {
    Err(std::io::ErrorKind::Unsupported.into())
}
