//! What a write does to a key, decided the same way by every backend.
//!
//! A backend reads (and locks) the key's head inside its transaction,
//! describes it as a [`Head`], and asks here whether the operation may go
//! ahead and which version it makes; it then writes what was decided. The
//! rules live above the storage seam so that SQLite and PostgreSQL cannot
//! disagree on them:
//! - a condition (`if_version`, `If-Match`) names the key's *live* version:
//!   its latest version unless that is a tombstone; 0 when the key has
//!   none (never written, deleted or purged). So `if_version=0` ("create
//!   only") holds after a delete as after a purge, and a failed condition
//!   reports the live version;
//! - version numbers never restart: the next version is the key's last
//!   version + 1, whether that was a value, a tombstone or purged;
//! - a put is a "create" when the key had no live version before it;
//! - a delete needs a live version; a purge needs any version (it also
//!   removes a deleted key's history).

use crate::error::StoreError;

/// A key's head as a write transaction sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Head {
    /// Never written (or every trace of it gone).
    Absent,
    /// Purged; its last version before the purge.
    Purged(u64),
    /// Its latest version is this tombstone.
    Deleted(u64),
    /// Its latest version is this value.
    Live(u64),
}

impl Head {
    /// The version a condition is compared with (0: no live version).
    pub fn live_version(self) -> u64 {
        match self {
            Head::Live(v) => v,
            Head::Absent | Head::Purged(_) | Head::Deleted(_) => 0,
        }
    }

    /// The last version the key had, kept or not (0: never written).
    fn last(self) -> u64 {
        match self {
            Head::Absent => 0,
            Head::Purged(v) | Head::Deleted(v) | Head::Live(v) => v,
        }
    }
}

/// The version a put or delete writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Next {
    /// Its number.
    pub version: u64,
    /// Whether the key had no live version before it (a put's "create").
    pub created: bool,
}

/// Refuses the operation if `expect` is set and is not the live version.
fn check(key: &str, expect: Option<u64>, head: Head) -> Result<(), StoreError> {
    let current = head.live_version();
    match expect {
        Some(expected) if expected != current => Err(StoreError::Conflict {
            key: key.to_string(),
            expected,
            current,
        }),
        _ => Ok(()),
    }
}

/// A put of `key`, whose head is `head`, under the condition `expect`.
pub(crate) fn put(key: &str, expect: Option<u64>, head: Head) -> Result<Next, StoreError> {
    check(key, expect, head)?;
    Ok(Next {
        version: next(key, head)?,
        created: head.live_version() == 0,
    })
}

/// A delete (a tombstone as the next version) under the condition
/// `expect`: the condition first, then a live version is needed.
pub(crate) fn delete(key: &str, expect: Option<u64>, head: Head) -> Result<Next, StoreError> {
    check(key, expect, head)?;
    match head {
        Head::Live(_) => Ok(Next {
            version: next(key, head)?,
            created: false,
        }),
        Head::Deleted(version) => Err(StoreError::Deleted {
            key: key.to_string(),
            version,
        }),
        Head::Absent | Head::Purged(_) => Err(StoreError::KeyNotFound(key.to_string())),
    }
}

/// A purge under the condition `expect`: the last version it removes (the
/// next put continues after it).
pub(crate) fn purge(key: &str, expect: Option<u64>, head: Head) -> Result<u64, StoreError> {
    check(key, expect, head)?;
    match head {
        Head::Live(v) | Head::Deleted(v) => Ok(v),
        Head::Absent | Head::Purged(_) => Err(StoreError::KeyNotFound(key.to_string())),
    }
}

/// The version after `head`'s last one.
fn next(key: &str, head: Head) -> Result<u64, StoreError> {
    head.last()
        .checked_add(1)
        .filter(|&v| v <= i64::MAX as u64)
        .ok_or_else(|| StoreError::InvalidKey(format!("key '{key}' has no version number left")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conflict(r: Result<impl std::fmt::Debug, StoreError>) -> Option<(u64, u64)> {
        match r {
            Err(StoreError::Conflict {
                expected, current, ..
            }) => Some((expected, current)),
            _ => None,
        }
    }

    #[test]
    fn conditions_name_the_live_version() {
        use Head::*;
        for head in [Absent, Purged(4), Deleted(4)] {
            let next = put("k", Some(0), head).ok();
            let version = head.last() + 1;
            assert_eq!(
                next,
                Some(Next {
                    version,
                    created: true
                }),
                "{head:?}"
            );
            assert_eq!(conflict(put("k", Some(4), head)), Some((4, 0)), "{head:?}");
        }
        assert_eq!(conflict(put("k", Some(0), Live(4))), Some((0, 4)));
        assert_eq!(
            put("k", Some(4), Live(4)).ok(),
            Some(Next {
                version: 5,
                created: false
            })
        );
        assert_eq!(
            put("k", None, Deleted(2)).map(|n| n.created).ok(),
            Some(true)
        );
    }

    #[test]
    fn deletes_and_purges_check_the_condition_first() {
        use Head::*;
        assert_eq!(conflict(delete("k", Some(9), Live(1))), Some((9, 1)));
        assert_eq!(conflict(purge("k", Some(9), Live(1))), Some((9, 1)));
        assert_eq!(conflict(delete("k", Some(3), Absent)), Some((3, 0)));
        assert_eq!(
            delete("k", Some(1), Live(1)).map(|n| n.version).ok(),
            Some(2)
        );
        assert!(matches!(
            delete("k", None, Deleted(3)),
            Err(StoreError::Deleted { version: 3, .. })
        ));
        assert!(matches!(
            delete("k", Some(0), Purged(3)),
            Err(StoreError::KeyNotFound(_))
        ));
        // Purge "only if deleted".
        assert_eq!(purge("k", Some(0), Deleted(3)).ok(), Some(3));
        assert!(matches!(
            purge("k", None, Purged(3)),
            Err(StoreError::KeyNotFound(_))
        ));
    }

    #[test]
    fn numbers_never_pass_what_the_databases_store() {
        let max = i64::MAX as u64;
        assert!(put("k", None, Head::Live(max)).is_err());
        assert_eq!(
            put("k", None, Head::Live(max - 1)).map(|n| n.version).ok(),
            Some(max)
        );
    }
}
