//! The one place that picks the backend, from the location: a
//! `postgres://` or `postgresql://` URL opens PostgreSQL (feature
//! `postgres`), anything else a SQLite file.

use std::path::Path;

#[cfg(not(feature = "postgres"))]
use super::location::display_location;
use super::location::is_postgres_url;
#[cfg(feature = "postgres")]
use super::postgres;
use super::seam::{Backend, Export, Hooks, Import, Options};
use super::sqlite;
use crate::error::OpenError;

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
