//! Typed errors of the store. The HTTP layer maps them to status codes in
//! one place (`http::api_error`); library users match on them directly.

use std::path::PathBuf;

/// Why a store operation failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The key has no version at all.
    #[error("key '{0}' not found")]
    KeyNotFound(String),
    /// The key exists but not at that version.
    #[error("version {version} of key '{key}' not found (latest is {latest})")]
    VersionNotFound {
        /// The key asked for.
        key: String,
        /// The version asked for.
        version: u64,
        /// The latest version the key has.
        latest: u64,
    },
    /// The latest version of the key is a deletion marker (tombstone).
    #[error("key '{key}' was deleted at version {version}")]
    Deleted {
        /// The key asked for.
        key: String,
        /// The version of the deletion marker.
        version: u64,
    },
    /// The latest version of the key is the tombstone of an expiry: its TTL
    /// or its lease ran out.
    #[error("key '{key}' expired at version {version}")]
    Expired {
        /// The key asked for.
        key: String,
        /// The version of the expiry's tombstone.
        version: u64,
    },
    /// No such lease: never granted, expired or revoked.
    #[error("lease {0} not found: never granted, expired or revoked")]
    LeaseNotFound(u64),
    /// A TTL or lease request the store cannot take: a TTL out of bounds,
    /// a TTL and a lease together, or a backend without TTLs.
    #[error("{0}")]
    InvalidLifetime(String),
    /// The version existed but was removed by the retention limit.
    #[error(
        "version {version} of key '{key}' was removed by retention or a purge (oldest kept is {oldest})"
    )]
    Gone {
        /// The key asked for.
        key: String,
        /// The version asked for.
        version: u64,
        /// The oldest version still kept.
        oldest: u64,
    },
    /// The change feed no longer holds every change after `after`:
    /// retention or a purge removed some. Re-list, then resume from the
    /// listing's revision (or from `oldest`).
    #[error(
        "changes after revision {after} were removed by retention or a purge; re-list the keys \
         and resume from the listing's revision (the oldest resumable is {oldest})"
    )]
    ChangesGone {
        /// The revision asked to resume after.
        after: u64,
        /// The smallest `after` the feed still answers without a gap.
        oldest: u64,
    },
    /// A conditional write found another latest version; nothing was written.
    #[error("key '{key}' is at version {current}, not {expected}")]
    Conflict {
        /// The key whose condition failed.
        key: String,
        /// The version the writer expected (0: "no live version").
        expected: u64,
        /// Its live version: the latest unless that is a deletion marker
        /// (0: none: never written, deleted or purged).
        current: u64,
    },
    /// Too many requests are already waiting for changes.
    #[error("too many watchers ({0} are waiting); retry later")]
    TooManyWatchers(usize),
    /// The key is empty, longer than [`crate::MAX_KEY_BYTES`] or not UTF-8.
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// The value is not valid JSON.
    #[error("invalid value: {0}")]
    InvalidValue(String),
    /// The disk (or SQLite's page limit) is full; nothing was written.
    #[error("storage full: {0}")]
    StorageFull(String),
    /// The database cannot be reached or written (read-only, vanished,
    /// locked, I/O error); nothing was written.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A write whose commit did not return in time, or whose connection
    /// failed while `COMMIT` was in flight: it may or may not have been
    /// committed. Read the key before writing it again; retrying blindly
    /// may write it twice.
    #[error("outcome unknown: {0}")]
    OutcomeUnknown(String),
    /// The database file is damaged (SQLite: "database disk image is
    /// malformed", or a failed check). Nothing more is written to it; it
    /// must be restored from a backup.
    #[error(
        "database is corrupt ({0}); vkv takes no more writes: stop it, run `vkv check` and restore a backup"
    )]
    Corrupt(String),
    /// The store is shutting down and takes no more writes.
    #[error("store is closed")]
    Closed,
    /// A bug or an unexpected database answer.
    #[error("internal error: {0}")]
    Internal(String),
}

impl StoreError {
    /// Why version `wanted` of `key` cannot be read, given the key's head
    /// as stored (`(latest, oldest kept)`, `None` for a key with no
    /// version): older than what is kept is gone, otherwise it was never
    /// written. Every backend answers a missed version read with this.
    pub(crate) fn version_miss(key: &str, wanted: u64, head: Option<(u64, u64)>) -> StoreError {
        match head {
            None => StoreError::KeyNotFound(key.to_string()),
            Some((_, oldest)) if wanted < oldest => StoreError::Gone {
                key: key.to_string(),
                version: wanted,
                oldest,
            },
            Some((latest, _)) => StoreError::VersionNotFound {
                key: key.to_string(),
                version: wanted,
                latest,
            },
        }
    }

    /// Whether the operation was refused by the store's own rules (missing
    /// key, failed condition, invalid input) rather than failed by the
    /// database. Refusals write nothing and leave other writes unaffected.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            StoreError::KeyNotFound(_)
                | StoreError::VersionNotFound { .. }
                | StoreError::Deleted { .. }
                | StoreError::Expired { .. }
                | StoreError::LeaseNotFound(_)
                | StoreError::InvalidLifetime(_)
                | StoreError::Gone { .. }
                | StoreError::ChangesGone { .. }
                | StoreError::Conflict { .. }
                | StoreError::InvalidKey(_)
                | StoreError::InvalidValue(_)
        )
    }
}

impl From<r2d2::Error> for StoreError {
    fn from(e: r2d2::Error) -> Self {
        StoreError::Unavailable(e.to_string())
    }
}

/// Why a store could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// SQLite refused the file (not a database, corrupt, unreadable).
    #[error("cannot open database {path}: {reason}")]
    Database {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        reason: String,
    },
    /// The file is damaged (`PRAGMA quick_check` found problems).
    #[error(
        "database {path} is corrupt and is not served: {reason}; run `vkv check` and restore a backup"
    )]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// What the check found.
        reason: String,
    },
    /// The file was written by a newer vkv.
    #[error(
        "database {path} has schema version {found}, newer than this vkv supports ({supported}); upgrade vkv"
    )]
    NewerSchema {
        /// The database file.
        path: PathBuf,
        /// `PRAGMA user_version` found in the file.
        found: i64,
        /// The newest schema version this build knows.
        supported: i64,
    },
    /// The file is a SQLite database but not a vkv one.
    #[error("database {path} is not a vkv database: {reason}")]
    Foreign {
        /// The database file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Another process holds the lock on the database file (under this
    /// name or another: a hard link or a symlink is the same file).
    #[error(
        "database {} is in use by another vkv process: {}",
        .path.display(), describe_holder(.file, *.pid)
    )]
    Locked {
        /// The database file, as named.
        path: PathBuf,
        /// Its real path (symlinks resolved).
        file: PathBuf,
        /// The process holding the lock, when the system says.
        pid: Option<u32>,
    },
    /// The database URL names a backend this build does not include.
    #[error("{0}")]
    Unsupported(String),
    /// PostgreSQL refused to serve the store (unreachable, wrong password,
    /// no such database, too old a server, a schema newer than this vkv).
    #[error("cannot open PostgreSQL database {url}: {reason}")]
    Postgres {
        /// The URL, its password masked.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// A bulk load (`vkv copy`) into a PostgreSQL database that running
    /// replicas serve: they would go on answering from their caches what
    /// the load replaced (it notifies nobody).
    #[error(
        "PostgreSQL database {url} is served by running vkv replicas: {}; stop them \
         before copying into it (a stopped replica's read lease runs out within \
         --read-lease)",
        .replicas.join("; ")
    )]
    Served {
        /// The URL, its password masked.
        url: String,
        /// Each replica seen: its lease row, or its `LISTEN` connection.
        replicas: Vec<String>,
    },
    /// Starting a background thread failed.
    #[error("cannot start the writer thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// "pid N holds the lock on FILE", for error messages.
pub(crate) fn describe_holder(file: &std::path::Path, pid: Option<u32>) -> String {
    match pid {
        Some(pid) => format!("pid {pid} holds the lock on {}", file.display()),
        None => format!("another process holds the lock on {}", file.display()),
    }
}
