//! The temporary files of backups and restores, next to the database file
//! (same file system: a rename is atomic and the space comes from the
//! database's disk), named so that the next holder of the database's lock
//! finds and removes what a killed vkv left.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

static TEMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// `{path}.{what}-{pid}-{n}.tmp`, next to `path` (same file system, so a
/// rename is atomic and the space comes from the database's disk). `path`
/// is the real file (symlinks resolved), so that whichever name a server
/// is started by, it finds the temporary files to clean up.
pub(crate) fn temp_path(path: &Path, what: &str) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    let n = TEMP_SEQ.fetch_add(1, Ordering::Relaxed);
    p.push(format!(".{what}-{}-{n}.tmp", std::process::id()));
    PathBuf::from(p)
}

/// `path` with symlinks resolved; `path` itself when it cannot be resolved
/// (it does not exist yet).
pub(crate) fn real_path(path: &Path) -> PathBuf {
    fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// What a temporary file name next to the database `db_name` says: its kind
/// (`backup` or `restore`) and the pid that made it. Also matches the
/// `-wal`, `-shm` and `-journal` files SQLite may leave next to one.
fn parse_temp_name<'a>(name: &'a str, db_name: &str) -> Option<(&'a str, u32)> {
    let rest = name.strip_prefix(db_name)?.strip_prefix('.')?;
    let rest = ["-wal", "-shm", "-journal"]
        .iter()
        .find_map(|s| rest.strip_suffix(s))
        .unwrap_or(rest);
    let rest = rest.strip_suffix(".tmp")?;
    let (kind, rest) = rest.split_once('-')?;
    let (pid, n) = rest.split_once('-')?;
    if !matches!(kind, "backup" | "restore") || n.parse::<u64>().is_err() {
        return None;
    }
    Some((kind, pid.parse().ok()?))
}

/// Whether a process `pid` exists (or, off Unix, may exist).
fn process_exists(pid: u32) -> bool {
    #[cfg(unix)]
    {
        let Ok(pid) = libc::pid_t::try_from(pid) else {
            return false;
        };
        // SAFETY: signal 0 checks for the process without signalling it.
        let alive = unsafe { libc::kill(pid, 0) } == 0;
        alive || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        true
    }
}

/// Removes the backup and restore temporary files a killed vkv left next
/// to the database `db`; the caller holds the database's lock. Every such
/// file is made under that lock (a backup by the server holding it, a
/// restore by `vkv restore` holding it), so none can still be in use: a
/// restore file is removed always, a backup file when the process that
/// made it is gone or is this one (a restarted container gets the same
/// pid). Returns how many bytes were freed; logs each file.
pub(crate) fn remove_stale_temp_files(db: &Path) -> u64 {
    let mut freed = 0;
    let mut names = vec![real_path(db)];
    if names[0] != db {
        names.push(db.to_path_buf());
    }
    for path in names {
        let (Some(dir), Some(db_name)) = (path.parent(), path.file_name()) else {
            continue;
        };
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        let Some(db_name) = db_name.to_str() else {
            continue;
        };
        let Ok(entries) = fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some((kind, pid)) = name.to_str().and_then(|n| parse_temp_name(n, db_name)) else {
                continue;
            };
            let stale = kind == "restore" || pid == std::process::id() || !process_exists(pid);
            if !stale {
                continue;
            }
            let len = entry.metadata().map_or(0, |m| m.len());
            match fs::remove_file(entry.path()) {
                Ok(()) => {
                    freed += len;
                    log::warn!(
                        "removed {}, left by an interrupted {kind} (pid {pid}): {len} bytes",
                        entry.path().display()
                    );
                }
                Err(e) => log::warn!("cannot remove {}: {e}", entry.path().display()),
            }
        }
    }
    freed
}
