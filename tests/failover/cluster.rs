//! A real PostgreSQL primary with a real synchronous streaming standby, in
//! a temporary directory, for the failover test: `initdb`, then
//! `pg_basebackup -R` for the standby, `synchronous_standby_names = '*'` on
//! the primary (a commit returns only once the standby has flushed it), a
//! crash of the primary (SIGKILL to the postmaster and every backend) and
//! `pg_ctl promote` on the standby, as Patroni or pg_auto_failover would.
//!
//! PostgreSQL refuses to run as root: when the tests run as root, every
//! server command runs as the `postgres` user (`runuser`). Both servers are
//! stopped (immediate mode) and the directory removed on drop.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use crate::common::poll_until;

/// The PostgreSQL binaries: the newest /usr/lib/postgresql/*/bin, or the
/// directory of `pg_ctl` on PATH.
fn bin_dir() -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .filter(|p| p.join("pg_ctl").exists())
                .collect()
        })
        .unwrap_or_default();
    dirs.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    dirs.pop().unwrap_or_else(|| {
        panic!(
            "PostgreSQL binaries not found in /usr/lib/postgresql/*/bin: apt-get install postgresql"
        )
    })
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// One PostgreSQL server of the pair.
pub struct Node {
    pub data: PathBuf,
    pub port: u16,
}

/// A primary and its synchronous standby.
pub struct Cluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    pub password: String,
    pub primary: Node,
    pub standby: Node,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

impl Cluster {
    /// Starts a primary, takes a base backup of it, starts the standby
    /// streaming from it, and waits until the primary reports the standby
    /// as synchronous.
    pub fn start() -> Cluster {
        let bin = bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("vkv-failover-")
            .tempdir()
            .expect("tempdir");
        // The postgres user must reach and own the directory.
        let password = format!("pw{:x}", std::process::id() as u64 * 7919 + 17);
        let cluster = Cluster {
            bin,
            password,
            primary: Node {
                data: dir.path().join("primary"),
                port: free_port(),
            },
            standby: Node {
                data: dir.path().join("standby"),
                port: free_port(),
            },
            dir,
        };
        cluster.chown(cluster.dir.path());
        let pwfile = cluster.dir.path().join("pwfile");
        std::fs::write(&pwfile, format!("{}\n", cluster.password)).unwrap();
        cluster.chown(&pwfile);
        let sock = cluster.socket_dir();
        cluster.as_pg(
            "initdb",
            &[
                "-D",
                path(&cluster.primary.data),
                "-U",
                "postgres",
                "--pwfile",
                path(&pwfile),
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                // Only initdb's own fsyncs: the servers keep fsync on.
                "--no-sync",
            ],
        );
        let conf = format!(
            "\n# vkv failover test\nlisten_addresses = '127.0.0.1'\nport = {}\n\
             unix_socket_directories = '{sock}'\nsynchronous_standby_names = '*'\n\
             max_connections = 100\nfsync = on\n",
            cluster.primary.port,
        );
        append(&cluster.primary.data.join("postgresql.conf"), &conf);
        cluster.start_node(true);
        // The standby: a base backup over the primary's Unix socket
        // (`local replication all trust`), with -R writing its
        // primary_conninfo and standby.signal.
        cluster.as_pg(
            "pg_basebackup",
            &[
                "-D",
                path(&cluster.standby.data),
                "-h",
                &sock,
                "-p",
                &cluster.primary.port.to_string(),
                "-U",
                "postgres",
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
                "--no-sync",
            ],
        );
        // Once promoted, the standby is a primary without a standby of its
        // own: it must not wait for one (Patroni and pg_auto_failover drop
        // the synchronous requirement when the last standby is gone;
        // otherwise every commit on the new primary would hang).
        append(
            &cluster.standby.data.join("postgresql.conf"),
            "synchronous_standby_names = ''\n",
        );
        cluster.start_node(false);
        let ok = poll_until(Duration::from_secs(60), || {
            cluster
                .psql(
                    true,
                    "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'",
                )
                .is_some_and(|n| n == "1")
        });
        assert!(ok, "the standby never became synchronous");
        cluster
    }

    fn socket_dir(&self) -> String {
        path(self.dir.path()).to_string()
    }

    /// The libpq URL of the database `db` naming both servers, primary
    /// first, with `target_session_attrs=read-write` so that a client
    /// follows whichever one takes writes.
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://postgres:{}@127.0.0.1:{},127.0.0.1:{}/{db}?target_session_attrs=read-write&connect_timeout=2",
            self.password, self.primary.port, self.standby.port
        )
    }

    /// Creates database `db` on the primary (the standby replicates it).
    pub fn create_db(&self, db: &str) {
        self.psql(true, &format!("CREATE DATABASE {db}"))
            .unwrap_or_else(|| panic!("CREATE DATABASE {db} failed"));
    }

    fn node(&self, primary: bool) -> &Node {
        if primary {
            &self.primary
        } else {
            &self.standby
        }
    }

    fn start_node(&self, primary: bool) {
        let node = self.node(primary);
        let log = node.data.join("server.log");
        self.as_pg(
            "pg_ctl",
            &[
                "-D",
                path(&node.data),
                "-l",
                path(&log),
                "-w",
                "-t",
                "60",
                "-o",
                &format!("-p {}", node.port),
                "start",
            ],
        );
    }

    /// Runs one SQL statement on a node over its Unix socket; its single
    /// output line, or `None` if psql failed.
    pub fn psql(&self, primary: bool, sql: &str) -> Option<String> {
        let node = self.node(primary);
        let out = self.try_as_pg(
            "psql",
            &[
                "-h",
                &self.socket_dir(),
                "-p",
                &node.port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-Atq",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ],
        );
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Crashes the primary: SIGKILL to the postmaster and to each of its
    /// children, so nothing of it answers any more (as when its host
    /// dies). Returns once its port no longer accepts connections.
    pub fn kill_primary(&self) {
        self.kill(true);
    }

    /// Crashes the standby the same way. The primary still lists it in
    /// `synchronous_standby_names`: its commits wait until it is back.
    pub fn kill_standby(&self) {
        self.kill(false);
    }

    /// Starts the (killed) standby again; it recovers and streams from the
    /// primary. Returns once the primary reports it as synchronous.
    pub fn restart_standby(&self) {
        self.start_node(false);
        let ok = poll_until(Duration::from_secs(60), || {
            self.psql(
                true,
                "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'",
            )
            .is_some_and(|n| n == "1")
        });
        assert!(ok, "the restarted standby never became synchronous");
    }

    fn kill(&self, primary: bool) {
        let node = self.node(primary);
        let pid_file = node.data.join("postmaster.pid");
        let text = std::fs::read_to_string(&pid_file).expect("postmaster.pid");
        let pid: i32 = text.lines().next().unwrap().trim().parse().unwrap();
        let mut victims = children_of(pid);
        victims.push(pid);
        for p in victims {
            // SAFETY: plain kill(2) on processes this test started.
            unsafe { libc::kill(p, libc::SIGKILL) };
        }
        let port = node.port;
        let gone = poll_until(Duration::from_secs(30), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
        });
        assert!(gone, "the killed server still accepts connections");
    }

    /// Promotes the standby to primary (`pg_ctl promote`, waiting until it
    /// takes writes).
    pub fn promote_standby(&self) {
        self.as_pg(
            "pg_ctl",
            &["-D", path(&self.standby.data), "-w", "-t", "60", "promote"],
        );
        let ok = poll_until(Duration::from_secs(60), || {
            self.psql(false, "SELECT pg_is_in_recovery()")
                .is_some_and(|r| r == "f")
        });
        assert!(ok, "the standby did not leave recovery");
    }

    fn chown(&self, p: &Path) {
        if is_root() {
            let out = Command::new("chown")
                .arg("postgres:postgres")
                .arg(p)
                .output()
                .expect("chown");
            assert!(out.status.success(), "chown {}: {out:?}", p.display());
        }
    }

    fn try_as_pg(&self, program: &str, args: &[&str]) -> Output {
        let exe = self.bin.join(program);
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        cmd.args(args)
            .current_dir(self.dir.path())
            .env_remove("PGPASSWORD")
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", exe.display()))
    }

    fn as_pg(&self, program: &str, args: &[&str]) {
        let out = self.try_as_pg(program, args);
        assert!(
            out.status.success(),
            "{program} {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in [&self.primary, &self.standby] {
            if node.data.join("postmaster.pid").exists() {
                let _ = self.try_as_pg(
                    "pg_ctl",
                    &["-D", path(&node.data), "-m", "immediate", "-w", "stop"],
                );
            }
        }
    }
}

/// The pids whose parent is `pid` (from /proc).
fn children_of(pid: i32) -> Vec<i32> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for e in entries.filter_map(|e| e.ok()) {
        let Some(child) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may hold spaces, so split after ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<i32>().ok());
        if ppid == Some(pid) {
            found.push(child);
        }
    }
    found
}

fn append(file: &Path, text: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(file)
        .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    f.write_all(text.as_bytes()).unwrap();
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}
