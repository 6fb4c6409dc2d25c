//! The value types the store hands out: one stored version, and the outcome
//! of a write.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::value::RawValue;

/// One stored version of a key.
#[derive(Debug, Clone)]
pub struct Versioned {
    /// The key.
    pub key: String,
    /// Its version number, counted from 1 per key.
    pub version: u64,
    /// When the version was committed, in milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// Whether this version is a deletion marker (tombstone).
    pub deleted: bool,
    /// Whether this tombstone marks an expiry (its TTL or lease ran out)
    /// rather than a delete.
    pub expired: bool,
    /// The store's revision of the write that made it (see
    /// [`crate::Change`]); versions of one `/batch` share it.
    pub revision: u64,
    /// The value as JSON text, exactly as it was stored (`null` for a
    /// tombstone).
    pub value: Box<RawValue>,
    /// The key's deadline from this version on, where the backend keeps
    /// deadlines in the database (PostgreSQL): read or written with the
    /// version, so that a cached version knows it without a query. `None`
    /// for a version without one, and where deadlines are scheduled in this
    /// process (SQLite: `deadlines.rs` knows them).
    pub(crate) deadline: Option<Deadline>,
}

/// A key's deadline as stored: its own, or its lease's (whose deadline a
/// keepalive moves).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Deadline {
    /// Milliseconds since the Unix epoch.
    At(i64),
    /// The lease's.
    Lease(u64),
}

impl Versioned {
    /// The commit time in RFC 3339 UTC (`2026-11-26T09:30:22.123Z`).
    pub fn timestamp(&self) -> String {
        rfc3339_ms(self.timestamp_ms)
    }

    /// Deserializes the value into any type.
    pub fn value_as<T: serde::de::DeserializeOwned>(&self) -> serde_json::Result<T> {
        serde_json::from_str(self.value.get())
    }
}

/// Whether a write created the key or added a version to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// The key had no live version before the write: never written,
    /// deleted or purged (the numbering continues after a delete or a
    /// purge, so this is not always version 1).
    Create,
    /// The key had a live version before the write.
    Update,
}

impl Operation {
    /// The wire name: `create` or `update`.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "create",
            Operation::Update => "update",
        }
    }
}

/// What an acknowledged write committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutOutcome {
    /// The key written.
    pub key: String,
    /// The version the write created.
    pub version: u64,
    /// When it was committed, in milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// The store's revision of the write.
    pub revision: u64,
    /// `Create` if the key had no live version before (new, deleted or
    /// purged: the numbering continues, so this is not always version 1).
    pub operation: Operation,
}

impl PutOutcome {
    /// `create` if the key had no live version before the write, else
    /// `update`.
    pub fn operation(&self) -> Operation {
        self.operation
    }

    /// The commit time in RFC 3339 UTC.
    pub fn timestamp(&self) -> String {
        rfc3339_ms(self.timestamp_ms)
    }
}

/// Milliseconds since the epoch, now.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Formats milliseconds since the epoch as RFC 3339 UTC with milliseconds.
pub fn rfc3339_ms(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_millis(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(1_764_149_422_123), "2025-11-26T09:30:22.123Z");
    }
}
