//! Snapshots, restores and checks of a SQLite database file.
//!
//! - [`snapshot`] copies a live database without stopping it: SQLite's
//!   `VACUUM INTO` on a connection of its own runs in one read transaction,
//!   so the copy holds exactly the commits made before it began, while the
//!   writer goes on committing (WAL mode: readers and the writer do not
//!   block each other).
//! - [`check_file`] runs SQLite's own checks of a file (`PRAGMA
//!   integrity_check`, its format and schema); vkv's invariants are
//!   checked over its dump, as for every backend (`crate::check`).
//! - [`restore`] puts a verified snapshot in place of a database file,
//!   atomically (rename), never under a running server.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};

use crate::error::StoreError;
use crate::storage::maintenance::{CheckError, CheckReport, RestoreError, Snapshot, Verify};
use crate::storage::seam::{Export, transfer};
use crate::storage::sqlite::lock::{DbLock, LockError};
use crate::storage::sqlite::temp::{real_path, remove_stale_temp_files, temp_path};
use crate::storage::sqlite::{APPLICATION_ID, SCHEMA_VERSION};

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(suffix);
    PathBuf::from(p)
}

/// Removes a file when dropped, unless disarmed.
struct RemoveOnDrop(Option<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = fs::remove_file(&p);
            for suffix in ["-wal", "-shm", "-journal"] {
                let _ = fs::remove_file(sibling(&p, suffix));
            }
        }
    }
}

fn io_error(what: &str, path: &Path, e: &io::Error) -> StoreError {
    let text = format!("{what} {}: {e}", path.display());
    if e.kind() == io::ErrorKind::StorageFull {
        StoreError::StorageFull(text)
    } else {
        StoreError::Unavailable(text)
    }
}

/// Takes a consistent snapshot of the SQLite database at `db` (which may
/// be in use by a running store) into a temporary file next to it, and
/// returns it opened and unlinked.
pub(crate) fn snapshot(db: &Path) -> Result<Snapshot, StoreError> {
    let start = Instant::now();
    let tmp = temp_path(&real_path(db), "backup");
    let tmp_text = tmp
        .to_str()
        .ok_or_else(|| StoreError::Internal(format!("path {} is not UTF-8", tmp.display())))?;
    // Reserve the name (VACUUM INTO accepts an empty file).
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(|e| io_error("cannot create", &tmp, &e))?;
    let cleanup = RemoveOnDrop(Some(tmp.clone()));
    let conn = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(StoreError::from)?;
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(StoreError::from)?;
    conn.execute("VACUUM INTO ?1", [tmp_text])
        .map_err(StoreError::from)?;
    drop(conn);
    let (file, len) = open_unlinked(&tmp, cleanup)?;
    log::info!(
        "backup snapshot of {} taken: {len} bytes in {} ms",
        db.display(),
        start.elapsed().as_millis()
    );
    Ok(Snapshot { file, len })
}

/// A new SQLite database file of vkv's format holding the dump `source`
/// of the store shown as `shown` (any backend), opened and unlinked like a
/// snapshot: for stores that are not one file, so that a backup has one
/// format.
pub(crate) fn dump_to_snapshot(
    mut source: Box<dyn Export>,
    shown: &str,
) -> Result<Snapshot, StoreError> {
    let start = Instant::now();
    let tmp = temp_path(&std::env::temp_dir().join("vkv"), "backup");
    let cleanup = RemoveOnDrop(Some(tmp.clone()));
    let dest =
        super::bulk::open_import(&tmp).map_err(|e| StoreError::Unavailable(e.to_string()))?;
    let totals = transfer(source.as_mut(), dest)?;
    let (file, len) = open_unlinked(&tmp, cleanup)?;
    log::info!(
        "backup snapshot of {shown}: {} keys, {} versions, {len} bytes in {} ms",
        totals.keys,
        totals.versions,
        start.elapsed().as_millis()
    );
    Ok(Snapshot { file, len })
}

/// Opens the finished snapshot `tmp` and its length, then removes its name
/// (`cleanup` owns it): streamed later, the open handle keeps the data, and
/// nothing is left behind however the download ends.
fn open_unlinked(tmp: &Path, cleanup: RemoveOnDrop) -> Result<(File, u64), StoreError> {
    let file = File::open(tmp).map_err(|e| io_error("cannot open", tmp, &e))?;
    let len = file
        .metadata()
        .map_err(|e| io_error("cannot stat", tmp, &e))?
        .len();
    drop(cleanup);
    Ok((file, len))
}

/// SQLite's own checks of the file at `path`, before vkv's invariants are
/// walked over its dump (`crate::check`, the same walk for every backend):
/// a regular file SQLite can read, whose pages are sound (`PRAGMA
/// integrity_check`), a vkv database (`application_id`) of a schema this
/// vkv reads (`user_version`). Read-only: a running server may use it
/// meanwhile. Problems go into `report`; returns whether the dump can be
/// walked.
pub(crate) fn check_file(path: &Path, report: &mut CheckReport) -> Result<bool, CheckError> {
    let fail = |reason: String| CheckError {
        path: path.to_path_buf(),
        reason,
    };
    match fs::metadata(path) {
        Ok(m) if m.is_file() => {}
        Ok(_) => return Err(fail("not a regular file".into())),
        Err(e) => return Err(fail(e.to_string())),
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| fail(e.to_string()))?;
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(|e| fail(e.to_string()))?;
    match check_format(&conn, report) {
        Ok(walkable) => Ok(walkable),
        Err(e) => {
            report.problem(format!("check query failed: {e}"));
            Ok(false)
        }
    }
}

fn check_format(conn: &Connection, r: &mut CheckReport) -> rusqlite::Result<bool> {
    let integrity: Vec<String> = match conn
        .prepare("PRAGMA integrity_check(100)")
        .and_then(|mut s| s.query_map([], |row| row.get(0))?.collect())
    {
        Ok(rows) => rows,
        Err(e) => {
            r.problem(format!("not a readable SQLite database: {e}"));
            return Ok(false);
        }
    };
    for line in integrity.iter().filter(|l| l.as_str() != "ok") {
        r.problem(format!("integrity_check: {line}"));
    }
    let app_id: i64 = conn.query_row("PRAGMA application_id", [], |row| row.get(0))?;
    r.schema_version = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if app_id != APPLICATION_ID {
        r.problem(format!(
            "not a vkv database: application_id is {app_id:#x}, expected {APPLICATION_ID:#x}"
        ));
        return Ok(false);
    }
    if !(1..=SCHEMA_VERSION).contains(&r.schema_version) {
        r.problem(format!(
            "unsupported schema version {} (this vkv supports 1 to {SCHEMA_VERSION})",
            r.schema_version
        ));
        return Ok(false);
    }
    Ok(true)
}

fn restore_io(path: &Path, what: &str, e: &io::Error) -> RestoreError {
    RestoreError::Io {
        path: path.to_path_buf(),
        reason: format!("{what}: {e}"),
    }
}

fn remove_if_present(path: &Path) -> Result<(), RestoreError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(restore_io(path, "cannot remove", &e)),
    }
}

/// Replaces the database `target` with the snapshot file `snapshot`:
/// refuses while a vkv holds the lock on `target`'s file (whatever name it
/// was started by), or when `target` exists and `force` is false; removes
/// temporary files an interrupted restore or backup left; copies the
/// snapshot next to the target, has `verify` check the copy (it must find
/// nothing), removes the target's stale `-wal`/`-shm` files and renames
/// the copy into place. Returns the report of the verification.
pub(crate) fn restore(
    snapshot: &Path,
    target: &Path,
    force: bool,
    verify: Verify<'_>,
) -> Result<CheckReport, RestoreError> {
    let unreadable = |reason: String| RestoreError::Snapshot {
        path: snapshot.to_path_buf(),
        reason,
    };
    match fs::metadata(snapshot) {
        Ok(m) if m.is_file() => {}
        Ok(_) => return Err(unreadable("not a regular file".into())),
        Err(e) => return Err(unreadable(e.to_string())),
    }
    let wal = sibling(snapshot, "-wal");
    if fs::metadata(&wal).is_ok_and(|m| m.len() > 0) {
        return Err(RestoreError::SnapshotHasWal {
            path: snapshot.to_path_buf(),
            wal,
        });
    }
    // A symlink is restored through: the file it leads to is replaced
    // (SQLite also keeps `-wal` and `-shm` next to the real file).
    let target = &real_path(target);
    let existed = fs::symlink_metadata(target).is_ok();
    // The same lock a running store holds, on the file itself (created
    // empty if missing, so that no server can start on it meanwhile): no
    // server can start on the target until the restore is done.
    let lock = DbLock::acquire(target).map_err(|e| match e {
        LockError::Held(h) => RestoreError::Locked {
            path: target.to_path_buf(),
            file: h.file,
            pid: h.pid,
        },
        LockError::Io(e) => restore_io(target, "cannot open", &e),
    })?;
    // The empty file made just for the lock goes if the restore fails.
    let mut created = RemoveOnDrop((!existed).then(|| target.to_path_buf()));
    if !force && existed {
        return Err(RestoreError::TargetExists {
            path: target.to_path_buf(),
        });
    }
    remove_stale_temp_files(target);
    let tmp = temp_path(target, "restore");
    let mut cleanup = RemoveOnDrop(Some(tmp.clone()));
    fs::copy(snapshot, &tmp).map_err(|e| restore_io(&tmp, "cannot copy the snapshot", &e))?;
    File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(|e| restore_io(&tmp, "cannot sync the copy", &e))?;
    // Verify the very bytes that will be put in place.
    let report = verify(&tmp).map_err(|e| unreadable(e.reason))?;
    if !report.is_ok() {
        let mut report = report;
        report.path = snapshot.to_path_buf();
        return Err(RestoreError::Invalid {
            path: snapshot.to_path_buf(),
            report: Box::new(report),
        });
    }
    for suffix in ["-wal", "-shm"] {
        // The check wrote nothing: any such file is empty.
        remove_if_present(&sibling(&tmp, suffix))?;
        // The old database's log would be replayed into the new file.
        remove_if_present(&sibling(target, suffix))?;
    }
    fs::rename(&tmp, target).map_err(|e| restore_io(target, "cannot rename the copy", &e))?;
    cleanup.0 = None;
    created.0 = None;
    if let Some(dir) = target.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        // Makes the rename itself durable.
        let _ = File::open(dir).and_then(|d| d.sync_all());
    }
    drop(lock);
    let mut report = report;
    report.path = target.to_path_buf();
    Ok(report)
}
