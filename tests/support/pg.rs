//! Private PostgreSQL servers for the tests that must own theirs (they
//! crash, restart, promote or lock it): `initdb` in a temporary directory,
//! `pg_ctl` to start, restart and stop, `psql` over the server's Unix
//! socket. Shared by the `failover` and `checker` test binaries, which
//! include it next to `tests/support/mod.rs` (as `common`).
//!
//! PostgreSQL refuses to run as root: when the tests run as root, every
//! server command runs as the `postgres` user (`runuser`). Servers are
//! stopped (immediate mode) and their directory removed on drop.
#![allow(dead_code)] // each test binary uses a different part of it

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use crate::common::{free_port, poll_until};

/// The PostgreSQL binaries: the newest /usr/lib/postgresql/*/bin.
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

/// The server binaries and a temporary directory the `postgres` user owns
/// (data directories, Unix sockets, password file live in it).
pub struct Tools {
    bin: PathBuf,
    dir: tempfile::TempDir,
}

/// One PostgreSQL server: its data directory and port.
pub struct Node {
    pub data: PathBuf,
    pub port: u16,
}

impl Tools {
    pub fn new(prefix: &str) -> Tools {
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir()
            .expect("tempdir");
        let tools = Tools {
            bin: bin_dir(),
            dir,
        };
        // The postgres user must reach and own the directory.
        tools.chown(tools.dir.path());
        tools
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The directory of the servers' Unix sockets.
    pub fn socket_dir(&self) -> String {
        path(self.dir.path()).to_string()
    }

    /// `initdb` of `node` with superuser `postgres` whose password is
    /// `password` (trust over the Unix socket, SCRAM over TCP), and the
    /// settings every server here has plus `conf`.
    pub fn initdb(&self, node: &Node, password: &str, conf: &str) {
        let pwfile = self.dir().join("pwfile");
        std::fs::write(&pwfile, format!("{password}\n")).unwrap();
        self.chown(&pwfile);
        self.run(
            "initdb",
            &[
                "-D",
                path(&node.data),
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
        let _ = std::fs::remove_file(&pwfile);
        append(
            &node.data.join("postgresql.conf"),
            &format!(
                "\n# vkv test server\nlisten_addresses = '127.0.0.1'\nport = {}\n\
                 unix_socket_directories = '{}'\nfsync = on\n{conf}\n",
                node.port,
                self.socket_dir()
            ),
        );
    }

    /// Starts `node` and waits until it accepts connections.
    pub fn start(&self, node: &Node) {
        self.pg_ctl(node, &[], "start");
    }

    /// `pg_ctl restart -m MODE` (`fast`: connections closed, a checkpoint;
    /// `immediate`: no checkpoint, crash recovery at start), waiting until
    /// the server accepts connections again.
    pub fn restart(&self, node: &Node, mode: &str) {
        self.pg_ctl(node, &["-m", mode], "restart");
    }

    /// `pg_ctl ACTION` on `node`, logging to its `server.log` and waiting
    /// (60 s at most) until the server accepts connections.
    fn pg_ctl(&self, node: &Node, options: &[&str], action: &str) {
        let log = node.data.join("server.log");
        let port = format!("-p {}", node.port);
        let mut args = vec!["-D", path(&node.data), "-l", path(&log)];
        args.extend_from_slice(options);
        args.extend(["-w", "-t", "60", "-o", &port, action]);
        self.run("pg_ctl", &args);
    }

    /// Stops `node` in immediate mode, if it runs.
    pub fn stop(&self, node: &Node) {
        if node.data.join("postmaster.pid").exists() {
            let _ = self.try_run(
                "pg_ctl",
                &["-D", path(&node.data), "-m", "immediate", "-w", "stop"],
            );
        }
    }

    /// Crashes `node`: SIGKILL to the postmaster and to each of its
    /// children, as when its host dies. Returns once its port no longer
    /// accepts connections.
    pub fn kill(&self, node: &Node) {
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

    /// Runs SQL on database `db` of `node` as `postgres` over the Unix
    /// socket; its output (trimmed), or `None` if psql failed.
    pub fn psql(&self, node: &Node, db: &str, sql: &str) -> Option<String> {
        let out = self.try_run(
            "psql",
            &[
                "-h",
                &self.socket_dir(),
                "-p",
                &node.port.to_string(),
                "-U",
                "postgres",
                "-d",
                db,
                "-XAtq",
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

    /// A command running `program` of the PostgreSQL binaries as the
    /// `postgres` user, in the temporary directory.
    pub fn command(&self, program: &str) -> Command {
        let exe = self.bin.join(program);
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        cmd.current_dir(self.dir.path()).env_remove("PGPASSWORD");
        cmd
    }

    fn try_run(&self, program: &str, args: &[&str]) -> Output {
        self.command(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
    }

    pub fn run(&self, program: &str, args: &[&str]) {
        let out = self.try_run(program, args);
        assert!(
            out.status.success(),
            "{program} {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn chown(&self, p: &Path) {
        if is_root() {
            let out = Command::new("chown")
                .arg("postgres:postgres")
                .arg(p)
                .output()
                .expect("chown");
            assert!(out.status.success(), "chown {}: {out:?}", p.display());
        }
    }
}

/// One private PostgreSQL server, stopped and removed on drop.
pub struct Server {
    pub tools: Tools,
    pub node: Node,
    /// The password of the superuser `postgres` over TCP.
    pub password: String,
}

impl Server {
    /// initdb, the settings `conf` (postgresql.conf lines), start.
    pub fn start(prefix: &str, conf: &str) -> Server {
        let tools = Tools::new(prefix);
        let node = Node {
            data: tools.dir().join("data"),
            port: free_port(),
        };
        let password = format!("pw{:x}", std::process::id() as u64 * 7919 + 17);
        tools.initdb(&node, &password, conf);
        tools.start(&node);
        Server {
            tools,
            node,
            password,
        }
    }

    /// The URL of database `db` as `user` with `password`, over TCP.
    pub fn url(&self, user: &str, password: &str, db: &str) -> String {
        format!(
            "postgres://{user}:{password}@127.0.0.1:{}/{db}?connect_timeout=2",
            self.node.port
        )
    }

    /// The URL of database `db` as the superuser.
    pub fn admin_url(&self, db: &str) -> String {
        self.url("postgres", &self.password, db)
    }

    /// SQL as the superuser over the Unix socket (see [`Tools::psql`]).
    pub fn psql(&self, db: &str, sql: &str) -> Option<String> {
        self.tools.psql(&self.node, db, sql)
    }

    /// SQL that must succeed.
    pub fn sql(&self, db: &str, sql: &str) -> String {
        self.psql(db, sql)
            .unwrap_or_else(|| panic!("psql {sql:?} on {db} failed"))
    }

    pub fn restart(&self, mode: &str) {
        self.tools.restart(&self.node, mode);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.tools.stop(&self.node);
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

pub fn append(file: &Path, text: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(file)
        .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    f.write_all(text.as_bytes()).unwrap();
}

pub fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}
