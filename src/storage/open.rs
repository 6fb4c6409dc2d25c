//! The one place that picks the backend, from the location: a
//! `postgres://` or `postgresql://` URL opens PostgreSQL (feature
//! `postgres`), anything else a SQLite file.

use std::path::Path;

#[cfg(not(feature = "postgres"))]
use super::location::display_location;
use super::location::is_postgres_url;
use super::maintenance::{CheckError, CheckReport, RestoreError, Snapshot, Verify};
#[cfg(feature = "postgres")]
use super::postgres;
use super::seam::{Backend, Export, Hooks, Import, Options};
use super::sqlite;
use crate::error::{OpenError, StoreError};

/// Opens the backend `config` names (creating and migrating its schema).
pub(crate) fn open(config: &Options, hooks: Hooks) -> Result<Backend, OpenError> {
    if is_postgres_url(&config.path) {
        return open_postgres(config, hooks);
    }
    drop(hooks);
    sqlite::open(config)
}

/// Opens the store at `location` for a dump (it must exist; it may be in
/// use by a running server).
pub(crate) fn open_export(location: &Path) -> Result<Box<dyn Export>, OpenError> {
    if is_postgres_url(location) {
        #[cfg(feature = "postgres")]
        return postgres::bulk::open_export(location);
        #[cfg(not(feature = "postgres"))]
        return Err(without_postgres(location));
    }
    sqlite::bulk::open_export(location)
}

/// Opens the store at `location` for a load (created and migrated if
/// needed; refused while a server holds it, where the backend can tell).
pub(crate) fn open_import(location: &Path) -> Result<Box<dyn Import>, OpenError> {
    if is_postgres_url(location) {
        #[cfg(feature = "postgres")]
        return postgres::bulk::open_import(location);
        #[cfg(not(feature = "postgres"))]
        return Err(without_postgres(location));
    }
    sqlite::bulk::open_import(location)
}

#[cfg(feature = "postgres")]
fn open_postgres(config: &Options, hooks: Hooks) -> Result<Backend, OpenError> {
    postgres::open(config, hooks)
}

#[cfg(not(feature = "postgres"))]
fn open_postgres(config: &Options, _: Hooks) -> Result<Backend, OpenError> {
    Err(without_postgres(&config.path))
}

/// The refusal of a PostgreSQL URL by a build without the feature.
#[cfg(not(feature = "postgres"))]
fn without_postgres(location: &Path) -> OpenError {
    OpenError::Unsupported(format!(
        "{}: this vkv was built without PostgreSQL support; rebuild with \
         `cargo build --release --features postgres`",
        display_location(location)
    ))
}

/// A consistent snapshot of the store at `location` as a SQLite file of
/// vkv's format (the one backup format): SQLite's own copy of a SQLite
/// file, else the store's dump loaded into a new file.
pub(crate) fn snapshot(location: &Path) -> Result<Snapshot, StoreError> {
    if is_postgres_url(location) {
        let source = open_export(location).map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let shown = super::location::display_location(location);
        return sqlite::backup::dump_to_snapshot(source, &shown);
    }
    sqlite::backup::snapshot(location)
}

/// Replaces the SQLite database `target` with the snapshot `snapshot`
/// once `verify` passes its copy (see [`sqlite::backup::restore`]); a
/// PostgreSQL store is loaded with `vkv copy` instead.
pub(crate) fn restore(
    snapshot: &Path,
    target: &Path,
    force: bool,
    verify: Verify<'_>,
) -> Result<CheckReport, RestoreError> {
    if is_postgres_url(target) {
        return Err(RestoreError::Unsupported(format!(
            "{}: `vkv restore` replaces a SQLite file; to load a snapshot into PostgreSQL, \
             use `vkv copy --from SNAPSHOT --to URL` (add --force to replace its contents)",
            super::location::display_location(target)
        )));
    }
    sqlite::backup::restore(snapshot, target, force, verify)
}

/// The backend's own checks of the store at `location`, before vkv's
/// invariants are walked over its dump (`crate::check`): a SQLite file's
/// `PRAGMA integrity_check`, format and schema; nothing more for
/// PostgreSQL (opening its dump checks the schema). Problems go into
/// `report`; returns whether the dump can be walked.
pub(crate) fn check_own(location: &Path, report: &mut CheckReport) -> Result<bool, CheckError> {
    if is_postgres_url(location) {
        return Ok(true);
    }
    sqlite::backup::check_file(location, report)
}
