//! `vkv copy`: moves a whole store from one backend to another (SQLite file
//! to SQLite file today; PostgreSQL with the `postgres` feature), every
//! version with its number, timestamp and tombstone flag, and each key's
//! head (so retention bounds and version numbering carry over).
//!
//! The source is read in one read-only transaction (a consistent snapshot,
//! also while a server writes to it); the destination is written in one
//! transaction, which commits only if the counts it then holds are the
//! counts read from the source: a copy is whole or absent.

use std::fmt;
use std::path::Path;
use std::time::Instant;

use crate::error::{OpenError, StoreError};
use crate::storage;
use crate::storage::seam::{Record, Totals};

/// What a finished copy moved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyReport {
    /// The source, as it may be shown (passwords masked).
    pub from: String,
    /// The destination, likewise.
    pub to: String,
    /// Keys and versions copied (and found in the destination).
    pub totals: Totals,
    /// How long it took, in milliseconds.
    pub millis: u128,
}

impl fmt::Display for CopyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "copied {} keys and {} versions from {} to {} in {} ms (counts verified)",
            self.totals.keys, self.totals.versions, self.from, self.to, self.millis
        )
    }
}

/// Why a copy was refused or failed; the destination is unchanged.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CopyError {
    /// Source and destination are the same.
    #[error("--from and --to are the same store ({0})")]
    SameStore(String),
    /// The source or the destination could not be opened.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// The destination holds data and `force` was not given.
    #[error("{to} is not empty ({what}); pass --force to replace its contents")]
    NotEmpty {
        /// The destination.
        to: String,
        /// What it holds.
        what: String,
    },
    /// The source's counters disagree with the rows read from it.
    #[error(
        "{from}: its counters say {} keys and {} versions, but {} keys and {} versions were \
         read; run `vkv check` on it (nothing was copied)",
        .counters.keys, .counters.versions, .read.keys, .read.versions
    )]
    SourceCounts {
        /// The source.
        from: String,
        /// What its counters say.
        counters: Totals,
        /// What was read.
        read: Totals,
    },
    /// Reading or writing failed (nothing was committed).
    #[error("copy from {from} to {to} failed (nothing was written): {error}")]
    Store {
        /// The source.
        from: String,
        /// The destination.
        to: String,
        /// What failed.
        error: StoreError,
    },
}

/// Copies the store at `from` into the store at `to` (created if missing).
/// A destination that holds any key is refused unless `force`, which
/// replaces its contents.
pub fn copy(from: &Path, to: &Path, force: bool) -> Result<CopyReport, CopyError> {
    let start = Instant::now();
    let (from_name, to_name) = (
        storage::location::display_location(from),
        storage::location::display_location(to),
    );
    if same_store(from, to) {
        return Err(CopyError::SameStore(from_name));
    }
    let store_err = |error: StoreError| CopyError::Store {
        from: from_name.clone(),
        to: to_name.clone(),
        error,
    };
    let mut source = storage::open::open_export(from)?;
    let counters = source.counters().map_err(store_err)?;
    let mut dest = storage::open::open_import(to)?;
    if !dest.is_empty().map_err(store_err)? {
        if !force {
            return Err(CopyError::NotEmpty {
                to: to_name,
                what: "it holds keys".into(),
            });
        }
        dest.clear().map_err(store_err)?;
    }
    let mut read = Totals::default();
    source
        .for_each(&mut |record| {
            match &record {
                Record::Head(_) => read.keys += 1,
                Record::Version(_) => read.versions += 1,
                Record::Purged { .. }
                | Record::PurgeLog { .. }
                | Record::Revision { .. }
                | Record::Deadline(_)
                | Record::Lease(_) => {}
            }
            dest.write(&record)
        })
        .map_err(store_err)?;
    if read != counters {
        return Err(CopyError::SourceCounts {
            from: from_name,
            counters,
            read,
        });
    }
    let totals = dest.finish(read).map_err(store_err)?;
    Ok(CopyReport {
        from: from_name,
        to: to_name,
        totals,
        millis: start.elapsed().as_millis(),
    })
}

/// Whether two locations name the same store: the same text, or two paths
/// to the same existing file.
fn same_store(a: &Path, b: &Path) -> bool {
    if a == b {
        return true;
    }
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}
