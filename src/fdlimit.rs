//! The open-files limit (RLIMIT_NOFILE). Every client connection, parked
//! long polls included, holds a socket, so `--max-connections` is only
//! reachable if the process may open that many files. Distributions start
//! processes with a soft limit of 1024 and a much higher hard limit; vkv
//! raises its soft limit to the hard one at start (any process may) and
//! says so, and says when even that is below what the flags ask.
//!
//! `libc` for `getrlimit`/`setrlimit`: std has no wrapper, and libc is
//! already in the dependency tree (signal-hook, socket2), so it adds no
//! crate; rustix would add one.

use std::io;

/// Files vkv holds besides client sockets: stdio, the listener, the I/O
/// loop's poller and waker, the lock file, the signal pipe, a backup's
/// temporary file, with room to spare; plus [`PER_SQLITE_CONNECTION`] for
/// each SQLite connection.
const RESERVED: u64 = 32;
/// A SQLite connection in WAL mode holds the database, its `-wal` and its
/// `-shm` open.
const PER_SQLITE_CONNECTION: u64 = 3;

/// The limit before and after [`raise`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The soft limit vkv was started with.
    pub before: u64,
    /// The soft limit now in force.
    pub now: u64,
    /// The hard limit (`None`: unlimited).
    pub hard: Option<u64>,
}

/// Files the flags may make vkv hold at once: one socket per connection
/// (a parked long poll is a request on a connection, so `--max-watchers`
/// adds none), one SQLite connection per worker (the read pool) plus the
/// writer's, and [`RESERVED`].
pub fn needed(max_connections: u64, workers: u64) -> u64 {
    max_connections
        .saturating_add(
            workers
                .saturating_add(1)
                .saturating_mul(PER_SQLITE_CONNECTION),
        )
        .saturating_add(RESERVED)
}

/// The soft limit to ask for: the hard limit, or when that is unlimited the
/// kernel's ceiling for one process (`fs.nr_open`).
fn target(soft: u64, hard: Option<u64>, nr_open: Option<u64>) -> u64 {
    match hard {
        Some(h) => h.max(soft),
        None => nr_open.unwrap_or(soft).max(soft),
    }
}

/// Raises the soft open-files limit to the hard limit.
pub fn raise() -> io::Result<Limits> {
    let (soft, hard) = get()?;
    let want = target(soft, hard, nr_open());
    if want > soft {
        set(want, hard)?;
    }
    let (now, hard) = get()?;
    Ok(Limits {
        before: soft,
        now,
        hard,
    })
}

/// The start-up lines about the limit: what vkv got, and a warning when it
/// is below [`needed`] for these flags.
pub fn describe(limits: &Limits, needed: u64, max_connections: u64) -> (String, Option<String>) {
    let got = if limits.before < limits.now {
        format!(
            "open files limit {} (raised from {})",
            limits.now, limits.before
        )
    } else {
        format!("open files limit {}", limits.now)
    };
    let warning = (limits.now < needed).then(|| {
        let room = limits.now.saturating_sub(needed - max_connections);
        format!(
            "open files limit {} is below the {needed} that --max-connections {max_connections} \
             needs: about {room} clients can be connected at once, more are not accepted \
             until others close; raise the hard limit (ulimit -Hn, systemd LimitNOFILE=, \
             docker --ulimit nofile=) or lower --max-connections",
            limits.now
        )
    });
    (got, warning)
}

fn nr_open() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()?
        .trim()
        .parse()
        .ok()
}

// rlim_t is u64 on Linux but narrower on some targets: keep the conversions.
#[allow(clippy::useless_conversion)]
fn from_rlim(v: libc::rlim_t) -> Option<u64> {
    (v != libc::RLIM_INFINITY).then(|| u64::try_from(v).unwrap_or(u64::MAX))
}

fn get() -> io::Result<(u64, Option<u64>)> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `r` is a valid, writable rlimit for the call's duration.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let soft = from_rlim(r.rlim_cur).unwrap_or(u64::MAX);
    Ok((soft, from_rlim(r.rlim_max)))
}

#[allow(clippy::useless_conversion)]
fn set(soft: u64, hard: Option<u64>) -> io::Result<()> {
    let to_rlim = |v: u64| libc::rlim_t::try_from(v).unwrap_or(libc::RLIM_INFINITY);
    let r = libc::rlimit {
        rlim_cur: to_rlim(soft),
        rlim_max: hard.map_or(libc::RLIM_INFINITY, to_rlim),
    };
    // SAFETY: `r` is a valid rlimit; setrlimit only reads it.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &r) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needed_counts_connections_sqlite_files_and_a_reserve() {
        assert_eq!(needed(10_000, 4), 10_000 + 5 * 3 + 32);
        assert_eq!(needed(1, 1), 1 + 2 * 3 + 32);
        assert_eq!(needed(u64::MAX, u64::MAX), u64::MAX);
    }

    #[test]
    fn target_is_the_hard_limit_or_the_kernel_ceiling() {
        assert_eq!(target(1024, Some(524_288), Some(1 << 20)), 524_288);
        assert_eq!(target(1024, None, Some(1 << 20)), 1 << 20);
        assert_eq!(target(1024, None, None), 1024);
        // Never lower than what it already has.
        assert_eq!(target(4096, Some(1024), None), 4096);
    }

    #[test]
    fn describe_says_what_it_got_and_warns_only_when_short() {
        let raised = Limits {
            before: 1024,
            now: 20_000,
            hard: Some(20_000),
        };
        let (got, warning) = describe(&raised, needed(10_000, 4), 10_000);
        assert_eq!(got, "open files limit 20000 (raised from 1024)");
        assert_eq!(warning, None);

        let short = Limits {
            before: 256,
            now: 256,
            hard: Some(256),
        };
        let (got, warning) = describe(&short, needed(10_000, 4), 10_000);
        assert_eq!(got, "open files limit 256");
        let warning = warning.expect("a warning");
        assert!(warning.contains("below the 10047"), "{warning}");
        assert!(warning.contains("about 209 clients"), "{warning}");
    }

    #[test]
    fn raise_leaves_the_soft_limit_at_the_hard_limit() {
        let limits = raise().expect("getrlimit/setrlimit");
        assert!(limits.now >= limits.before);
        if let Some(hard) = limits.hard {
            assert_eq!(limits.now, hard);
        }
    }
}
