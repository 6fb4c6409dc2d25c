//! The change feed's vocabulary: one committed change of a key, what kind
//! of change it was (decided in [`ChangeOperation::of`], the one place
//! that derives it from what storage keeps), and a page of changes.
//!
//! Every committed write takes the store's next revision, a number that
//! strictly increases in commit order: a put, a delete, a purge, and a
//! `/batch` as a whole (its versions share one revision, in batch order).

use serde_json::value::RawValue;

use crate::version::rfc3339_ms;

/// What a change did to its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeOperation {
    /// A version written where the key had no live one (never written,
    /// deleted or purged).
    Create,
    /// A version written over a live one.
    Update,
    /// A tombstone written.
    Delete,
    /// Every version of the key removed for good.
    Purge,
    /// The tombstone of an expiry: the key's TTL or lease ran out, or its
    /// lease was revoked.
    Expire,
}

/// How storage keeps a change, as the one function below reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stored {
    /// A purge record (not a version).
    pub purge: bool,
    /// A tombstone version.
    pub deleted: bool,
    /// The tombstone of an expiry.
    pub expired: bool,
    /// A version written where the key had no live one.
    pub created: bool,
}

impl ChangeOperation {
    /// Every operation, each once: whatever storage keeps names one of
    /// these (a unit test checks it), and the OpenAPI document's enum holds
    /// exactly these (`tests/api/docs.rs`).
    pub const ALL: [ChangeOperation; 5] = [
        ChangeOperation::Create,
        ChangeOperation::Update,
        ChangeOperation::Delete,
        ChangeOperation::Purge,
        ChangeOperation::Expire,
    ];

    /// The operation of a stored change: every path that names one (write
    /// answers, the feed) comes through here.
    pub(crate) fn of(s: Stored) -> ChangeOperation {
        if s.purge {
            ChangeOperation::Purge
        } else if s.expired {
            ChangeOperation::Expire
        } else if s.deleted {
            ChangeOperation::Delete
        } else if s.created {
            ChangeOperation::Create
        } else {
            ChangeOperation::Update
        }
    }

    /// The wire name: `create`, `update`, `delete`, `purge` or `expire`.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeOperation::Create => "create",
            ChangeOperation::Update => "update",
            ChangeOperation::Delete => "delete",
            ChangeOperation::Purge => "purge",
            ChangeOperation::Expire => "expire",
        }
    }
}

/// One committed change of a key.
#[derive(Debug, Clone)]
pub struct Change {
    /// The store's revision of the write.
    pub revision: u64,
    /// The key.
    pub key: String,
    /// The version written; for a purge, the last version the key had.
    pub version: u64,
    /// What the change did.
    pub operation: ChangeOperation,
    /// Commit time, milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// The value written (create and update, when values were asked for).
    pub value: Option<Box<RawValue>>,
}

impl Change {
    /// The commit time in RFC 3339 UTC.
    pub fn timestamp(&self) -> String {
        rfc3339_ms(self.timestamp_ms)
    }
}

/// A page of the change feed, read from one snapshot of the store.
#[derive(Debug, Clone, Default)]
pub struct ChangePage {
    /// The changes, in revision order (batch order within one).
    pub changes: Vec<Change>,
    /// The store's revision the page covers.
    pub revision: u64,
    /// Whether the page was cut short by its limit (it then ends at the
    /// end of a revision, never inside one).
    pub more: bool,
}

/// Cuts `rows` (in revision order; `limit` + 1 were asked for) to at most
/// `limit`, ending at the end of a revision, so that a reader resuming
/// after the last one never skips part of a batch; whether rows were left
/// out. Empty and `true` when the first revision alone is over `limit`.
pub(crate) fn cut_at_revision<T>(
    rows: &mut Vec<T>,
    limit: usize,
    revision: impl Fn(&T) -> u64,
) -> bool {
    let Some(first_out) = rows.get(limit).map(&revision) else {
        return false;
    };
    rows.truncate(limit);
    while rows.last().is_some_and(|r| revision(r) == first_out) {
        rows.pop();
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_end_at_the_end_of_a_revision() {
        let mut rows = vec![1, 2, 2, 3, 3, 3, 4];
        assert!(cut_at_revision(&mut rows, 5, |r| *r));
        assert_eq!(rows, vec![1, 2, 2]);
        let mut rows = vec![1, 2, 3];
        assert!(!cut_at_revision(&mut rows, 3, |r| *r));
        assert_eq!(rows, vec![1, 2, 3]);
        let mut rows = vec![5, 5, 5];
        assert!(cut_at_revision(&mut rows, 2, |r| *r));
        assert!(
            rows.is_empty(),
            "one revision over the limit: the caller reads it whole"
        );
    }

    #[test]
    fn operations_come_from_one_place() {
        let of = |purge, deleted, expired, created| {
            ChangeOperation::of(Stored {
                purge,
                deleted,
                expired,
                created,
            })
            .as_str()
        };
        assert_eq!(of(true, false, false, false), "purge");
        assert_eq!(of(false, true, false, false), "delete");
        assert_eq!(of(false, true, true, false), "expire");
        assert_eq!(of(false, false, false, true), "create");
        assert_eq!(of(false, false, false, false), "update");
        // Whatever storage keeps, the operation is one of ALL, and ALL
        // names each once.
        let mut seen = std::collections::BTreeSet::new();
        for bits in 0..16u8 {
            let op = ChangeOperation::of(Stored {
                purge: bits & 1 != 0,
                deleted: bits & 2 != 0,
                expired: bits & 4 != 0,
                created: bits & 8 != 0,
            });
            assert!(ChangeOperation::ALL.contains(&op), "{op:?}");
            seen.insert(op.as_str());
        }
        assert_eq!(seen.len(), ChangeOperation::ALL.len());
    }
}
