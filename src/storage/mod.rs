//! The storage seam: what the rest of vkv needs from a database, and the
//! one place that picks the backend.
//!
//! Above the seam, backend-agnostic: [`crate::Store`] (validation, the
//! cache, watchers), the group-commit writer thread (`writer.rs`: gathers
//! queued operations, hands them to [`Committer::commit`] as one batch,
//! publishes what committed, then answers), and the HTTP layer. Below it,
//! one implementation per backend:
//! - [`Reads`]: the request-path queries (latest, a version, history, key
//!   listing, totals, health), shared by every thread;
//! - [`Committer`]: the writer thread's connection, which applies one batch
//!   of operations in one transaction.
//!
//! Two backends:
//! - SQLite (`sqlite/`, the default): one file, one process, so the writer
//!   thread is the only writer and the cache is authoritative;
//! - PostgreSQL (`postgres/`, feature `postgres`, selected by a
//!   `postgres://` or `postgresql://` URL): any number of vkv processes on
//!   one database, so a cached latest version is served only while the
//!   replica holds a read lease ([`Reads::cache_is_current`]), other reads
//!   of a latest version are confirmed by the database
//!   ([`Reads::latest_unless`]), and watchers are woken by `NOTIFY` as well
//!   as by this process's own commits.
//!
//! Files: `seam.rs` (the traits and their vocabulary), `open.rs` (the
//! backend for a location), `location.rs` (telling a URL from a file,
//! masking passwords), `sqlite/` and `postgres/` (the backends). Callers
//! import each item from the file that defines it.

pub(crate) mod location;
pub(crate) mod maintenance;
pub(crate) mod open;
#[cfg(feature = "postgres")]
pub(crate) mod postgres;
pub(crate) mod seam;
pub(crate) mod sqlite;
