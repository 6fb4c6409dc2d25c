//! What snapshots, checks and restores of a store produce, whatever the
//! backend: a snapshot file, a check's report, and why one could not be
//! taken or done.

use std::fmt;
use std::fs::File;
use std::path::PathBuf;

use crate::error::StoreError;

/// Why a backup could not be taken.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    /// Another backup is being taken (one at a time: each is a full copy on
    /// the database's disk).
    #[error("a backup is already being taken; retry when it is done")]
    Busy,
    /// The database could not be read or the copy written.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A finished snapshot: an open, already unlinked file (its space is freed
/// when the last handle closes, however the download ends).
#[derive(Debug)]
pub struct Snapshot {
    /// The snapshot, positioned at its start.
    pub file: File,
    /// Its size in bytes.
    pub len: u64,
}

/// The most problems listed one by one in a report.
const MAX_LISTED: usize = 50;

/// What a check of a store found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// The file checked.
    pub path: PathBuf,
    /// `PRAGMA user_version`.
    pub schema_version: i64,
    /// Rows in `keys`.
    pub keys: u64,
    /// Rows in `versions`.
    pub versions: u64,
    /// How many problems were found.
    pub problem_count: usize,
    /// The first problems, in words (at most 50).
    pub problems: Vec<String>,
}

impl CheckReport {
    /// Whether no problem was found.
    pub fn is_ok(&self) -> bool {
        self.problem_count == 0
    }

    pub(crate) fn problem(&mut self, text: String) {
        self.problem_count += 1;
        if self.problems.len() < MAX_LISTED {
            self.problems.push(text);
        }
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: schema version {}, {} keys, {} versions: ",
            self.path.display(),
            self.schema_version,
            self.keys,
            self.versions
        )?;
        if self.is_ok() {
            if crate::storage::location::is_postgres_url(&self.path) {
                return write!(f, "ok (versions dense, keys agree, counters agree)");
            }
            return write!(f, "ok (integrity_check ok, versions dense, counters agree)");
        }
        write!(f, "{} problem(s)", self.problem_count)?;
        for p in &self.problems {
            write!(f, "\n  - {p}")?;
        }
        if self.problem_count > self.problems.len() {
            write!(
                f,
                "\n  ... and {} more",
                self.problem_count - self.problems.len()
            )?;
        }
        Ok(())
    }
}

/// Why a file could not be checked at all.
#[derive(Debug, thiserror::Error)]
#[error("cannot check {}: {reason}", .path.display())]
pub struct CheckError {
    /// The file.
    pub path: PathBuf,
    /// Why.
    pub reason: String,
}

/// The check a restore runs on its copy of the snapshot before putting it
/// in place (`crate::check::check`, vkv's invariants, which live above
/// the storage).
pub(crate) type Verify<'a> = &'a dyn Fn(&std::path::Path) -> Result<CheckReport, CheckError>;

/// Why a restore was refused; nothing was changed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RestoreError {
    /// The snapshot cannot be read.
    #[error("cannot read snapshot {}: {reason}", .path.display())]
    Snapshot {
        /// The snapshot.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The snapshot has a non-empty `-wal` file: copying the file alone
    /// would lose the commits in it.
    #[error(
        "snapshot {} has a non-empty write-ahead log {}: copying the file alone would lose \
         commits; take snapshots with GET /backup",
        .path.display(), .wal.display()
    )]
    SnapshotHasWal {
        /// The snapshot.
        path: PathBuf,
        /// Its write-ahead log.
        wal: PathBuf,
    },
    /// The snapshot failed verification.
    #[error("snapshot {} failed verification: {report}", .path.display())]
    Invalid {
        /// The snapshot.
        path: PathBuf,
        /// What the check found.
        report: Box<CheckReport>,
    },
    /// The target exists and `force` was not given.
    #[error("{} already exists; pass --force to replace it", .path.display())]
    TargetExists {
        /// The target.
        path: PathBuf,
    },
    /// A running vkv holds the lock on the target file (by this name or
    /// another).
    #[error(
        "{} is in use by a running vkv ({}); stop it before restoring",
        .path.display(), crate::error::describe_holder(.file, *.pid)
    )]
    Locked {
        /// The target.
        path: PathBuf,
        /// Its real path (symlinks resolved).
        file: PathBuf,
        /// The process holding the lock, when the system says.
        pid: Option<u32>,
    },
    /// The target is not a file `restore` can replace (a PostgreSQL URL).
    #[error("{0}")]
    Unsupported(String),
    /// A file operation on the target side failed.
    #[error("cannot restore to {}: {reason}", .path.display())]
    Io {
        /// The file involved.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
}
