//! SQLite's errors as [`StoreError`]s: what a caller can do about each
//! (a full disk, a corrupt file, a file that cannot be written now).

use crate::error::StoreError;

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode as C;
        match e.sqlite_error_code() {
            Some(C::DiskFull) => StoreError::StorageFull(e.to_string()),
            Some(C::DatabaseCorrupt | C::NotADatabase) => StoreError::Corrupt(e.to_string()),
            Some(
                C::ReadOnly
                | C::CannotOpen
                | C::SystemIoFailure
                | C::DatabaseBusy
                | C::DatabaseLocked
                | C::PermissionDenied
                | C::FileLockingProtocolFailed,
            ) => StoreError::Unavailable(e.to_string()),
            _ => StoreError::Internal(e.to_string()),
        }
    }
}

impl StoreError {
    /// The error for `e`, a failure of the writer's connection, given the OS
    /// error (`errno`, 0 when unknown) SQLite recorded for it. SQLite reports
    /// a full disk as `SQLITE_FULL` when the log cannot grow, but as an I/O
    /// error (`SQLITE_IOERR_SHMSIZE` with `ENOSPC`) when the log's
    /// shared-memory index cannot: only the OS error tells them apart.
    pub(crate) fn from_sqlite_os(e: rusqlite::Error, errno: i32) -> StoreError {
        use std::io::ErrorKind as K;
        if errno == 0 || e.sqlite_error_code() != Some(rusqlite::ErrorCode::SystemIoFailure) {
            return e.into();
        }
        let os = std::io::Error::from_raw_os_error(errno);
        let detail = format!("{e} ({os})");
        match os.kind() {
            K::StorageFull | K::QuotaExceeded | K::FileTooLarge => StoreError::StorageFull(detail),
            _ => StoreError::Unavailable(detail),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::error::StoreError;

    fn io_error(extended: std::ffi::c_int) -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(extended),
            Some("disk I/O error".into()),
        )
    }

    #[test]
    fn a_full_disk_is_storage_full_whichever_way_sqlite_reports_it() {
        let full = rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(13), None);
        assert!(matches!(StoreError::from(full), StoreError::StorageFull(_)));
        // SQLITE_IOERR_SHMSIZE with ENOSPC, as observed when the WAL index
        // cannot grow on a full file system.
        let shm = StoreError::from_sqlite_os(io_error(4874), 28);
        assert!(matches!(&shm, StoreError::StorageFull(d) if d.contains("os error 28")));
        // EDQUOT is full too.
        let quota = StoreError::from_sqlite_os(io_error(778), 122);
        assert!(matches!(quota, StoreError::StorageFull(_)));
    }

    #[test]
    fn other_io_errors_are_unavailable_and_name_the_os_error() {
        // SQLITE_IOERR_WRITE with EROFS: a file system gone read-only.
        let ro = StoreError::from_sqlite_os(io_error(778), 30);
        assert!(
            matches!(&ro, StoreError::Unavailable(d) if d.contains("os error 30")),
            "{ro}"
        );
        // Without an OS error, the plain mapping.
        let unknown = StoreError::from_sqlite_os(io_error(778), 0);
        assert!(matches!(unknown, StoreError::Unavailable(_)));
        // Not an I/O error: the OS error (maybe stale) is not consulted.
        let full = rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(13), None);
        assert!(matches!(
            StoreError::from_sqlite_os(full, 30),
            StoreError::StorageFull(_)
        ));
    }
}
