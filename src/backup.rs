//! Backups, restores and consistency checks of a vkv database file.
//!
//! - [`snapshot`] copies a live database without stopping it: SQLite's
//!   `VACUUM INTO` on a connection of its own runs in one read transaction,
//!   so the copy holds exactly the commits made before it began, while the
//!   writer goes on committing (WAL mode: readers and the writer do not
//!   block each other).
//! - [`check`] runs `PRAGMA integrity_check` and vkv's own invariants.
//! - [`restore`] puts a verified snapshot in place of a database file,
//!   atomically (rename), never under a running server.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, TryLockError};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags, OptionalExtension};

use crate::error::StoreError;
use crate::storage::sqlite::lock::{DbLock, LockError};
use crate::storage::sqlite::temp::{real_path, remove_stale_temp_files, temp_path};
use crate::storage::sqlite::{APPLICATION_ID, SCHEMA_VERSION};

/// Why a backup could not be taken.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    /// Another backup is being taken (one at a time: each is a full copy on
    /// the database's disk).
    #[error("a backup is already being taken; retry when it is done")]
    Busy,
    /// The database could not be read or the copy written.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A finished snapshot: an open, already unlinked file (its space is freed
/// when the last handle closes, however the download ends).
#[derive(Debug)]
pub struct Snapshot {
    /// The snapshot, positioned at its start.
    pub file: File,
    /// Its size in bytes.
    pub len: u64,
}

/// One snapshot at a time in this process.
static SNAPSHOTTING: Mutex<()> = Mutex::new(());
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

/// Takes a consistent snapshot of the vkv database at `db` (which may be in
/// use by a running store) into a temporary file next to it, and returns
/// it opened and unlinked.
pub fn snapshot(db: &Path) -> Result<Snapshot, BackupError> {
    let _one_at_a_time = match SNAPSHOTTING.try_lock() {
        Ok(guard) => guard,
        Err(TryLockError::Poisoned(p)) => p.into_inner(),
        Err(TryLockError::WouldBlock) => return Err(BackupError::Busy),
    };
    let start = Instant::now();
    if crate::storage::location::is_postgres_url(db) {
        // No file to copy: the store's dump, loaded into a new SQLite file
        // in the temporary directory (the same format either way).
        let tmp = temp_path(&std::env::temp_dir().join("vkv"), "backup");
        let cleanup = RemoveOnDrop(Some(tmp.clone()));
        let report = crate::copy::copy(db, &tmp, false).map_err(|e| match e {
            crate::copy::CopyError::Store { error, .. } => error,
            other => StoreError::Unavailable(other.to_string()),
        })?;
        let (file, len) = open_unlinked(&tmp, cleanup)?;
        log::info!(
            "backup snapshot of {}: {} keys, {} versions, {len} bytes in {} ms",
            report.from,
            report.totals.keys,
            report.totals.versions,
            start.elapsed().as_millis()
        );
        return Ok(Snapshot { file, len });
    }
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

/// The most problems listed one by one in a report.
const MAX_LISTED: usize = 50;

/// What [`check`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// The file checked.
    pub path: PathBuf,
    /// `PRAGMA user_version`.
    pub schema_version: i64,
    /// Rows in `keys`.
    pub keys: u64,
    /// Rows in `versions`.
    pub versions: u64,
    /// How many problems were found.
    pub problem_count: usize,
    /// The first problems, in words (at most 50).
    pub problems: Vec<String>,
}

impl CheckReport {
    /// Whether no problem was found.
    pub fn is_ok(&self) -> bool {
        self.problem_count == 0
    }

    pub(crate) fn problem(&mut self, text: String) {
        self.problem_count += 1;
        if self.problems.len() < MAX_LISTED {
            self.problems.push(text);
        }
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: schema version {}, {} keys, {} versions: ",
            self.path.display(),
            self.schema_version,
            self.keys,
            self.versions
        )?;
        if self.is_ok() {
            if crate::storage::location::is_postgres_url(&self.path) {
                return write!(f, "ok (versions dense, keys agree, counters agree)");
            }
            return write!(f, "ok (integrity_check ok, versions dense, counters agree)");
        }
        write!(f, "{} problem(s)", self.problem_count)?;
        for p in &self.problems {
            write!(f, "\n  - {p}")?;
        }
        if self.problem_count > self.problems.len() {
            write!(
                f,
                "\n  ... and {} more",
                self.problem_count - self.problems.len()
            )?;
        }
        Ok(())
    }
}

/// Why a file could not be checked at all.
#[derive(Debug, thiserror::Error)]
#[error("cannot check {}: {reason}", .path.display())]
pub struct CheckError {
    /// The file.
    pub path: PathBuf,
    /// Why.
    pub reason: String,
}

/// Checks the vkv database at `path` (read-only; a running server may use
/// it meanwhile): SQLite's `PRAGMA integrity_check`, then that it is a vkv
/// database of a supported schema, that every key's versions are dense
/// (`count == latest - first_kept + 1`, from `first_kept` to `latest`), that
/// the `keys` table agrees with `versions`, that the counters agree with
/// the real counts, and that every value is JSON.
pub fn check(path: &Path) -> Result<CheckReport, CheckError> {
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
    let mut report = CheckReport {
        path: path.to_path_buf(),
        ..CheckReport::default()
    };
    // One read transaction: a consistent view even while a server writes.
    let tx = conn
        .unchecked_transaction()
        .map_err(|e| fail(e.to_string()))?;
    if let Err(e) = run_checks(&tx, &mut report) {
        report.problem(format!("check query failed: {e}"));
    }
    Ok(report)
}

fn run_checks(conn: &Connection, r: &mut CheckReport) -> rusqlite::Result<()> {
    let integrity: Vec<String> = match conn
        .prepare("PRAGMA integrity_check(100)")
        .and_then(|mut s| s.query_map([], |row| row.get(0))?.collect())
    {
        Ok(rows) => rows,
        Err(e) => {
            r.problem(format!("not a readable SQLite database: {e}"));
            return Ok(());
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
        return Ok(());
    }
    if !(1..=SCHEMA_VERSION).contains(&r.schema_version) {
        r.problem(format!(
            "unsupported schema version {} (this vkv supports 1 to {SCHEMA_VERSION})",
            r.schema_version
        ));
        return Ok(());
    }
    let count = |sql: &str| conn.query_row(sql, [], |row| row.get::<_, i64>(0));
    let keys = count("SELECT count(*) FROM keys")?;
    let versions = count("SELECT count(*) FROM versions")?;
    r.keys = keys as u64;
    r.versions = versions as u64;

    // Dense versions per key, and the keys row's bounds.
    let mut stmt = conn.prepare(
        "SELECT k.key, k.latest, k.first_kept, count(v.version), min(v.version), max(v.version)
         FROM keys k LEFT JOIN versions v ON v.key = k.key GROUP BY k.key ORDER BY k.key",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let key: String = row.get(0)?;
        let (latest, first_kept, n): (i64, i64, i64) = (row.get(1)?, row.get(2)?, row.get(3)?);
        let (lo, hi): (Option<i64>, Option<i64>) = (row.get(4)?, row.get(5)?);
        let expected = latest - first_kept + 1;
        if n == 0 {
            r.problem(format!(
                "key {key:?}: no versions stored, but the keys table says latest {latest}"
            ));
            continue;
        }
        if n != expected {
            r.problem(format!(
                "key {key:?}: {n} versions stored, expected latest - first_kept + 1 = {expected} \
                 (first_kept {first_kept}, latest {latest})"
            ));
        }
        if lo != Some(first_kept) {
            r.problem(format!(
                "key {key:?}: oldest stored version is {}, the keys table says first_kept {first_kept}",
                lo.unwrap_or_default()
            ));
        }
        if hi != Some(latest) {
            r.problem(format!(
                "key {key:?}: newest stored version is {}, the keys table says latest {latest}",
                hi.unwrap_or_default()
            ));
        }
    }
    drop(rows);

    let mut stmt = conn.prepare(
        "SELECT key, count(*) FROM versions WHERE key NOT IN (SELECT key FROM keys)
         GROUP BY key ORDER BY key",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let (key, n): (String, i64) = (row.get(0)?, row.get(1)?);
        r.problem(format!(
            "key {key:?}: {n} versions stored but no row in the keys table"
        ));
    }
    drop(rows);

    let mut stmt = conn.prepare(
        "SELECT k.key, k.latest FROM keys k JOIN versions v ON v.key = k.key AND v.version = k.latest
         WHERE v.deleted != k.deleted OR v.ts_ms != k.ts_ms ORDER BY k.key",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let (key, latest): (String, i64) = (row.get(0)?, row.get(1)?);
        r.problem(format!(
            "key {key:?}: the keys table disagrees with version {latest} on deleted or timestamp"
        ));
    }
    drop(rows);

    for (name, real) in [("keys", keys), ("versions", versions)] {
        let counter: Option<i64> = conn
            .query_row(
                "SELECT value FROM counters WHERE name = ?1",
                [name],
                |row| row.get(0),
            )
            .optional()?;
        match counter {
            None => r.problem(format!("counter {name:?} is missing")),
            Some(c) if c != real => r.problem(format!(
                "counter {name:?} says {c}, but there are {real} rows in {name}"
            )),
            Some(_) => {}
        }
    }

    if r.schema_version >= 2 {
        // A purged key's row goes when it is written again.
        let mut stmt = conn.prepare(
            "SELECT p.key, p.latest, k.latest FROM purged p JOIN keys k ON k.key = p.key
             ORDER BY p.key",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let (key, purged, latest): (String, i64, i64) = (row.get(0)?, row.get(1)?, row.get(2)?);
            r.problem(format!(
                "key {key:?}: marked purged at version {purged} but has versions up to {latest}"
            ));
        }
    }

    let mut stmt = conn.prepare(
        "SELECT key, version FROM versions WHERE json_valid(value) = 0 ORDER BY key, version",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let (key, version): (String, i64) = (row.get(0)?, row.get(1)?);
        r.problem(format!("key {key:?}: version {version} is not valid JSON"));
    }
    Ok(())
}

/// Why a restore was refused; nothing was changed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RestoreError {
    /// The snapshot cannot be read.
    #[error("cannot read snapshot {}: {reason}", .path.display())]
    Snapshot {
        /// The snapshot.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The snapshot has a non-empty `-wal` file: copying the file alone
    /// would lose the commits in it.
    #[error(
        "snapshot {} has a non-empty write-ahead log {}: copying the file alone would lose \
         commits; take snapshots with GET /backup",
        .path.display(), .wal.display()
    )]
    SnapshotHasWal {
        /// The snapshot.
        path: PathBuf,
        /// Its write-ahead log.
        wal: PathBuf,
    },
    /// The snapshot failed verification.
    #[error("snapshot {} failed verification: {report}", .path.display())]
    Invalid {
        /// The snapshot.
        path: PathBuf,
        /// What the check found.
        report: Box<CheckReport>,
    },
    /// The target exists and `force` was not given.
    #[error("{} already exists; pass --force to replace it", .path.display())]
    TargetExists {
        /// The target.
        path: PathBuf,
    },
    /// A running vkv holds the lock on the target file (by this name or
    /// another).
    #[error(
        "{} is in use by a running vkv ({}); stop it before restoring",
        .path.display(), crate::error::describe_holder(.file, *.pid)
    )]
    Locked {
        /// The target.
        path: PathBuf,
        /// Its real path (symlinks resolved).
        file: PathBuf,
        /// The process holding the lock, when the system says.
        pid: Option<u32>,
    },
    /// A file operation on the target side failed.
    #[error("cannot restore to {}: {reason}", .path.display())]
    Io {
        /// The file involved.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
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
/// snapshot next to the target, verifies
/// the copy ([`check`] must find nothing), removes the target's stale
/// `-wal`/`-shm` files and renames the copy into place. Returns the report
/// of the verification.
pub fn restore(snapshot: &Path, target: &Path, force: bool) -> Result<CheckReport, RestoreError> {
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
    let report = check(&tmp).map_err(|e| unreadable(e.reason))?;
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
