//! One process per database file: an exclusive `flock` on the database
//! file itself, held for as long as a store (or a restore) uses it.
//!
//! The lock is on the file, not on a name: a hard link or a symlink leads
//! to the same inode, so a second server started through another name is
//! refused too (a lock file next to each name was not: two servers then
//! acknowledged the same versions with different values). `flock` locks
//! are independent of the POSIX (`fcntl`) locks SQLite takes on the same
//! file, and the descriptor is kept open until the store is dropped:
//! closing any descriptor of the file would drop SQLite's POSIX locks.

use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::path::{Path, PathBuf};

/// An exclusive lock on a database file, released when dropped.
#[derive(Debug)]
pub(crate) struct DbLock {
    _file: File,
}

/// Why the lock was not taken.
#[derive(Debug)]
pub(crate) enum LockError {
    /// Another open description of the file holds the lock.
    Held(Holder),
    /// The file could not be opened (or created) or locked.
    Io(io::Error),
}

/// Who holds the lock on a file, as far as the system says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Holder {
    /// The file's real path (symlinks resolved).
    pub file: PathBuf,
    /// The process holding the lock, when `/proc/locks` names it.
    pub pid: Option<u32>,
}

impl DbLock {
    /// The open database file the lock is held on.
    pub fn file(&self) -> &File {
        &self._file
    }

    /// Opens `path` (creating an empty file if there is none: SQLite takes
    /// an empty file as a new database) and locks it without waiting.
    pub fn acquire(path: &Path) -> Result<DbLock, LockError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(LockError::Io)?;
        match file.try_lock() {
            Ok(()) => Ok(DbLock { _file: file }),
            Err(TryLockError::WouldBlock) => Err(LockError::Held(Holder {
                file: std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()),
                pid: holder_pid(&file),
            })),
            Err(TryLockError::Error(e)) => Err(LockError::Io(e)),
        }
    }
}

/// The pid `/proc/locks` gives for the `flock` on `file`'s inode.
#[cfg(target_os = "linux")]
fn holder_pid(file: &File) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    let m = file.metadata().ok()?;
    let id = format!(
        "{:02x}:{:02x}:{}",
        libc::major(m.dev()),
        libc::minor(m.dev()),
        m.ino()
    );
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    parse_holder(&locks, &id)
}

#[cfg(not(target_os = "linux"))]
fn holder_pid(_: &File) -> Option<u32> {
    None
}

/// In `/proc/locks` text, the pid of the granted `FLOCK` on the inode `id`
/// (`MAJOR:MINOR:INODE`, device numbers in hex as the kernel prints them).
fn parse_holder(locks: &str, id: &str) -> Option<u32> {
    locks.lines().find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        // "1: FLOCK ADVISORY WRITE 1234 00:2b:5678 0 EOF"; waiters have "->".
        match f.as_slice() {
            [_, "FLOCK", _, _, pid, dev_ino, ..] if *dev_ino == id => pid.parse().ok(),
            _ => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_through_any_name_is_refused_and_names_the_holder() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let a = dir.path().join("a.db");
        let first = DbLock::acquire(&a).unwrap_or_else(|e| panic!("{e:?}"));
        let hard = dir.path().join("hard.db");
        std::fs::hard_link(&a, &hard).unwrap_or_else(|e| panic!("{e}"));
        let soft = dir.path().join("soft.db");
        std::os::unix::fs::symlink(&a, &soft).unwrap_or_else(|e| panic!("{e}"));
        for name in [&a, &hard, &soft] {
            match DbLock::acquire(name) {
                Err(LockError::Held(h)) => {
                    assert_eq!(h.pid, Some(std::process::id()), "{name:?}");
                }
                other => panic!("{name:?}: {other:?}"),
            }
        }
        drop(first);
        assert!(DbLock::acquire(&soft).is_ok());
    }

    #[test]
    fn parses_proc_locks() {
        let text = "1: POSIX  ADVISORY  WRITE 99 00:2b:7 0 EOF\n\
                    2: FLOCK  ADVISORY  WRITE 1234 00:2b:7 0 EOF\n\
                    2: -> FLOCK  ADVISORY  WRITE 555 00:2b:7 0 EOF\n";
        assert_eq!(parse_holder(text, "00:2b:7"), Some(1234));
        assert_eq!(parse_holder(text, "00:2b:8"), None);
    }
}
