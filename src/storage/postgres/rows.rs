//! vkv's values as PostgreSQL's columns, and back.

use postgres::Row;
use serde_json::value::RawValue;

use super::dues::LeaseDues;
use crate::error::StoreError;
use crate::version::{Deadline, Versioned};

/// A version number as PostgreSQL's `bigint` (numbers past it match
/// nothing).
pub(crate) fn db_int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A stored key as text (keys are UTF-8; `bytea` so that any of them,
/// NUL included, is stored).
pub(crate) fn key_text(bytes: Vec<u8>) -> Result<String, StoreError> {
    String::from_utf8(bytes).map_err(|e| {
        StoreError::Internal(format!(
            "a stored key is not UTF-8: {:?}",
            String::from_utf8_lossy(e.as_bytes())
        ))
    })
}

/// A row with `version, ts_ms, value, deleted, revision, expired` from
/// column `at` on.
pub(crate) fn versioned(key: &str, r: &Row, at: usize) -> Result<Versioned, StoreError> {
    let value: String = r.try_get(at + 2)?;
    Ok(Versioned {
        key: key.to_string(),
        version: r.try_get::<_, i64>(at)? as u64,
        timestamp_ms: r.try_get(at + 1)?,
        deleted: r.try_get(at + 3)?,
        revision: r.try_get::<_, i64>(at + 4)?.max(0) as u64,
        expired: r.try_get(at + 5)?,
        value: RawValue::from_string(value)
            .map_err(|e| StoreError::Internal(format!("stored value is not JSON: {e}")))?,
        deadline: None,
    })
}

/// A version's deadline as a read joined it from `vkv_deadlines` (and the
/// lease's row): the key's own (`due`, ms), or its lease's id and that
/// lease's deadline then.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReadDeadline {
    pub deadline: Option<Deadline>,
    /// The lease's deadline as read (none once it was removed).
    pub lease_due: Option<i64>,
}

impl ReadDeadline {
    /// From the columns `due_ms, lease, lease_due_ms` (all null: none).
    pub fn of(due: Option<i64>, lease: Option<i64>, lease_due: Option<i64>) -> ReadDeadline {
        let deadline = match (due, lease) {
            (Some(due), _) => Some(Deadline::At(due)),
            (None, Some(id)) => Some(Deadline::Lease(id.max(0) as u64)),
            (None, None) => None,
        };
        ReadDeadline {
            deadline,
            lease_due: lease_due.filter(|_| lease.is_some()),
        }
    }

    /// The deadline, the lease's learnt into `dues` first.
    pub fn learn(self, dues: &LeaseDues) -> Option<Deadline> {
        if let (Some(Deadline::Lease(id)), Some(due)) = (self.deadline, self.lease_due) {
            dues.learn(id, due);
        }
        self.deadline
    }
}
