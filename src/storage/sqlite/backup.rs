//! Snapshots, restores and checks of a SQLite database file.
//!
//! - [`snapshot`] copies a live database without stopping it: SQLite's
//!   `VACUUM INTO` on a connection of its own runs in one read transaction,
//!   so the copy holds exactly the commits made before it began, while the
//!   writer goes on committing (WAL mode: readers and the writer do not
//!   block each other).
//! - [`check`] runs `PRAGMA integrity_check` and vkv's own invariants.
//! - [`restore`] puts a verified snapshot in place of a database file,
//!   atomically (rename), never under a running server.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags, OptionalExtension};

use crate::error::StoreError;
use crate::storage::maintenance::{CheckError, CheckReport, RestoreError, Snapshot};
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

    if r.schema_version >= 4 {
        check_revisions(conn, r)?;
    }
    if r.schema_version >= 5 {
        check_deadlines(conn, r)?;
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

/// The revisions of the change feed: unique (a version's revision and
/// place, and a purge's revision against the versions'), never decreasing
/// with the version within a key (versions of one batch share one), none above the store's revision counter.
fn check_revisions(conn: &Connection, r: &mut CheckReport) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare(
        "SELECT key, version, revision FROM (
             SELECT key, version, revision,
                 lag(revision) OVER (PARTITION BY key ORDER BY version) AS prev
             FROM versions
         ) WHERE revision < prev OR revision < 1 ORDER BY key, version LIMIT 100",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let (key, version, revision): (String, i64, i64) = (row.get(0)?, row.get(1)?, row.get(2)?);
        r.problem(format!(
            "key {key:?}: version {version} has revision {revision}, below the version before it"
        ));
    }
    let mut stmt = conn.prepare(
        "SELECT revision FROM (
             SELECT revision, seq FROM versions UNION ALL SELECT revision, 0 FROM purges
         ) GROUP BY revision, seq HAVING count(*) > 1 ORDER BY revision LIMIT 100",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let revision: i64 = row.get(0)?;
        r.problem(format!("revision {revision} is used twice"));
    }
    let counter = |name: &str| {
        conn.query_row(
            "SELECT value FROM counters WHERE name = ?1",
            [name],
            |row| row.get::<_, i64>(0),
        )
        .optional()
    };
    let highest: i64 = conn.query_row(
        "SELECT max(coalesce((SELECT max(revision) FROM versions), 0),
                    coalesce((SELECT max(revision) FROM purges), 0))",
        [],
        |row| row.get(0),
    )?;
    match (counter("revision")?, counter("compacted")?) {
        (Some(current), Some(compacted)) => {
            if highest > current {
                r.problem(format!(
                    "revision {highest} is stored, but the store's revision is {current}"
                ));
            }
            if compacted > current {
                r.problem(format!(
                    "the compacted revision {compacted} is above the store's revision {current}"
                ));
            }
        }
        _ => r.problem("counter \"revision\" or \"compacted\" is missing".to_string()),
    }
    Ok(())
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

/// Keys that expire (schema 4): a deadline belongs to a live key and to
/// the version that set it (every tombstone and purge removes it), a key on
/// a lease names a stored lease, and only tombstones are expiries.
fn check_deadlines(conn: &Connection, r: &mut CheckReport) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare(
        "SELECT d.key, d.version, k.latest, k.deleted FROM deadlines d
         LEFT JOIN keys k ON k.key = d.key
         WHERE k.key IS NULL OR k.deleted != 0 OR k.latest != d.version ORDER BY d.key",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let (key, version): (String, i64) = (row.get(0)?, row.get(1)?);
        let (latest, deleted): (Option<i64>, Option<bool>) = (row.get(2)?, row.get(3)?);
        r.problem(match (latest, deleted) {
            (None, _) => format!("key {key:?}: has a deadline but no row in the keys table"),
            (Some(_), Some(true)) => format!("key {key:?}: deleted, but still has a deadline"),
            (Some(latest), _) => format!(
                "key {key:?}: its deadline was set by version {version}, but its latest is {latest}"
            ),
        });
    }
    drop(rows);
    let mut stmt = conn.prepare(
        "SELECT key, lease FROM deadlines
         WHERE lease IS NOT NULL AND lease NOT IN (SELECT id FROM leases) ORDER BY key",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let (key, lease): (String, i64) = (row.get(0)?, row.get(1)?);
        r.problem(format!(
            "key {key:?}: attached to lease {lease}, which does not exist"
        ));
    }
    drop(rows);
    let mut stmt = conn.prepare(
        "SELECT key, version FROM versions WHERE expired != 0 AND deleted = 0 ORDER BY key, version",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let (key, version): (String, i64) = (row.get(0)?, row.get(1)?);
        r.problem(format!(
            "key {key:?}: version {version} is marked as an expiry but is not a tombstone"
        ));
    }
    Ok(())
}
