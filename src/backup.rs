//! Backups, restores and consistency checks of a store, whatever its
//! backend (the storage picks how: `storage/open.rs`).
//!
//! - [`snapshot`] copies a live store without stopping it, into one SQLite
//!   file of vkv's format (one backup format for every backend), one at a
//!   time per process (each is a full copy on the database's disk).
//! - [`restore`] puts a verified snapshot in place of a database file,
//!   atomically, never under a running server.
//! - `vkv check` is [`crate::check::check`].

use std::path::Path;
use std::sync::{Mutex, TryLockError};

pub use crate::storage::maintenance::{
    BackupError, CheckError, CheckReport, RestoreError, Snapshot,
};
use crate::storage::open;

/// One snapshot at a time in this process.
static SNAPSHOTTING: Mutex<()> = Mutex::new(());

/// Takes a consistent snapshot of the store at `location` (which may be in
/// use by running servers), returned as an open, already unlinked file.
pub fn snapshot(location: &Path) -> Result<Snapshot, BackupError> {
    let _one_at_a_time = match SNAPSHOTTING.try_lock() {
        Ok(guard) => guard,
        Err(TryLockError::Poisoned(p)) => p.into_inner(),
        Err(TryLockError::WouldBlock) => return Err(BackupError::Busy),
    };
    Ok(open::snapshot(location)?)
}

/// Replaces the database file `target` with the snapshot `snapshot`:
/// refused while a vkv holds `target`, or when it exists and `force` is
/// false; the copy is verified ([`crate::check::check`] must find nothing)
/// before it is renamed into place. Returns the verification's report.
pub fn restore(snapshot: &Path, target: &Path, force: bool) -> Result<CheckReport, RestoreError> {
    open::restore(snapshot, target, force, &crate::check::check)
}
