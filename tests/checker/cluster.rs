//! The system under test: a private PostgreSQL server (`tests/support/pg.rs`)
//! with one database, and vkv replicas on it (the built binary, each on a
//! port of its own that it keeps across restarts), plus the levers the
//! faults pull: signals to a replica, `pg_terminate_backend` by kind of
//! connection, a table lock held in a psql session, the connection slots
//! taken by another role.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crate::common::{poll_until, vkv};
use crate::history::{Clock, Nanos, secs};
use crate::pg;

/// The database vkv uses, and its role: not a superuser, so that the
/// connection slots PostgreSQL reserves for superusers are not its own
/// (as in a real deployment), while the checker's psql sessions, as
/// `postgres`, still get in when the others are full.
pub const DB: &str = "vkvcheck";
const ROLE: &str = "vkv";
const ROLE_PASSWORD: &str = "vkv-pw";
/// The role that takes connection slots in the slot-exhaustion fault.
const HOG: &str = "hog";
const HOG_PASSWORD: &str = "hog-pw";

/// A private PostgreSQL server with the database vkv uses.
pub struct Db {
    pub pg: pg::Server,
    /// vkv's URL.
    pub url: String,
    /// A superuser session kept open for the questions asked during a
    /// freeze ([`Db::ask`]): starting `psql` took seconds on a loaded
    /// machine, and a freeze waiting on it lasted that much longer than
    /// planned.
    session: Mutex<Option<postgres::Client>>,
}

/// Which of a replica's connections to PostgreSQL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnKind {
    /// The `LISTEN` connection.
    Listen,
    /// The writer thread's connection.
    Writer,
    /// The read pool's connections.
    Reads,
    /// Every connection of every replica.
    All,
}

impl ConnKind {
    /// vkv names each connection by its job in `pg_stat_activity`
    /// (`application_name` `vkv-writer`, `vkv-read`, `vkv-listen`).
    fn condition(self) -> String {
        match self {
            ConnKind::Listen => "application_name = 'vkv-listen'".into(),
            ConnKind::Writer => "application_name = 'vkv-writer'".into(),
            ConnKind::Reads => "application_name = 'vkv-read'".into(),
            ConnKind::All => format!("usename = '{ROLE}'"),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ConnKind::Listen => "listen",
            ConnKind::Writer => "writer",
            ConnKind::Reads => "reads",
            ConnKind::All => "all",
        }
    }
}

/// What every checker server logs: statements of 300 ms or more and lock
/// waits past `deadlock_timeout` (1 s), with the time, the backend and its
/// role, so that a stall can be explained (`Db::slow_statements`).
const SLOW_LOG: &str = "log_min_duration_statement = 300
log_lock_waits = on
log_line_prefix = '%m [%p] %a '
";

impl Db {
    /// A server with the settings `conf` (postgresql.conf lines), the
    /// roles and the database.
    pub fn start(conf: &str) -> Db {
        let pg = pg::Server::start("vkv-checker-", &format!("{SLOW_LOG}{conf}"));
        pg.sql(
            "postgres",
            &format!(
                "CREATE ROLE {ROLE} LOGIN PASSWORD '{ROLE_PASSWORD}';
                 CREATE ROLE {HOG} LOGIN PASSWORD '{HOG_PASSWORD}'"
            ),
        );
        pg.sql("postgres", &format!("CREATE DATABASE {DB} OWNER {ROLE}"));
        let url = pg.url(ROLE, ROLE_PASSWORD, DB);
        Db {
            pg,
            url,
            session: Mutex::new(None),
        }
    }

    /// `sql` on vkv's database in the kept superuser session (opened again
    /// if it was lost, bounded by a 2 s statement timeout): the first
    /// column of each row, one per line; `None` if it failed.
    pub fn ask(&self, sql: &str) -> Option<String> {
        let mut session = self.session.lock().unwrap_or_else(|p| p.into_inner());
        if session.as_ref().is_none_or(|c| c.is_closed()) {
            let url = format!("{}&application_name=checker", self.pg.admin_url(DB));
            let mut client = postgres::Client::connect(&url, postgres::NoTls).ok()?;
            client.batch_execute("SET statement_timeout = 2000").ok()?;
            *session = Some(client);
        }
        let client = session.as_mut()?;
        match client.simple_query(sql) {
            Ok(messages) => Some(
                messages
                    .iter()
                    .filter_map(|m| match m {
                        postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
                        _ => None,
                    })
                    .collect::<Vec<_>>()
                    .join("\n"),
            ),
            Err(_) => {
                *session = None;
                None
            }
        }
    }

    /// What PostgreSQL logged within `windows` (wall-clock times) of
    /// statements that ran for `at_least` or longer (it logs every one of
    /// 300 ms or more, see [`SLOW_LOG`]), of lock waits past
    /// `deadlock_timeout`, and of the idle transactions it ended: at most
    /// `max` lines.
    pub fn slow_statements(
        &self,
        at_least: Duration,
        windows: &[(SystemTime, SystemTime)],
        max: usize,
    ) -> Vec<String> {
        let log = std::fs::read_to_string(self.pg.node.data.join("server.log")).unwrap_or_default();
        let ms = at_least.as_secs_f64() * 1000.0;
        // `%m`: "2026-12-07 02:35:31.299 UTC ...".
        let when = |l: &str| {
            let stamp = l.get(..23)?;
            humantime::parse_rfc3339_weak(stamp).ok()
        };
        log.lines()
            .filter(|l| {
                when(l).is_some_and(|t| windows.iter().any(|(from, to)| *from <= t && t <= *to))
            })
            .filter(|l| {
                l.contains("still waiting for")
                    || l.contains("idle-in-transaction")
                    || l.split("duration: ")
                        .nth(1)
                        .and_then(|d| d.split(' ').next()?.parse::<f64>().ok())
                        .is_some_and(|d| d >= ms)
            })
            .take(max)
            .map(|l| l.chars().take(300).collect())
            .collect()
    }

    /// SQL on vkv's database as the superuser; `None` if it failed (the
    /// server may be restarting).
    pub fn psql(&self, sql: &str) -> Option<String> {
        self.pg.psql(DB, sql)
    }

    /// Every vkv backend that is not idle: role, state, what it waits
    /// for, what blocks it, its client port, how long it has been in that
    /// state and in its transaction, its query's start; one line each.
    pub fn activity(&self) -> String {
        self.ask(&format!(
            "SELECT application_name || ' pid ' || pid || ': ' || state
                 || coalesce(' waiting ' || wait_event_type || '/' || wait_event, '')
                 || coalesce(' blocked by ' || nullif(pg_blocking_pids(pid)::text, '{{}}'), '')
                 || ' port ' || coalesce(client_port::text, '-')
                 || ' state for ' || coalesce(round(extract(epoch FROM clock_timestamp() - state_change) * 1000)::text, '-')
                 || ' ms, transaction for ' || coalesce(round(extract(epoch FROM clock_timestamp() - xact_start) * 1000)::text, '-')
                 || ' ms | ' || left(regexp_replace(query, '\\s+', ' ', 'g'), 80)
             FROM pg_stat_activity
             WHERE datname = '{DB}' AND pid <> pg_backend_pid() AND state <> 'idle'
             ORDER BY application_name"
        ))
        .unwrap_or_default()
    }

    /// `pg_terminate_backend` on every backend of `kind`; how many.
    pub fn terminate(&self, kind: ConnKind) -> usize {
        self.psql(&format!(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE datname = '{DB}' AND pid <> pg_backend_pid() AND {}",
            kind.condition()
        ))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
    }

    /// Whether a backend of `replica` (frozen, so that this stays true) is
    /// idle inside a transaction: its writer stopped between two round
    /// trips of a write.
    pub fn idle_in_transaction(&self, replica: &Replica) -> bool {
        let ports = replica.ports();
        self.ask(&format!(
            "SELECT client_port FROM pg_stat_activity
             WHERE datname = '{DB}' AND state = 'idle in transaction'"
        ))
        .unwrap_or_default()
        .lines()
        .filter_map(|p| p.trim().parse::<u16>().ok())
        .any(|p| ports.contains(&p))
    }

    /// Whether a backend of `replica` idle inside a transaction has updated
    /// the store's revision row and so holds its lock (the row's `xmax` is
    /// that transaction's id): every replica's commits wait for it. (Not
    /// the table's `ROW EXCLUSIVE` lock in `pg_locks`: preparing a statement
    /// that updates the table takes that too, and it blocks no writer.)
    pub fn idle_holding_revision(&self, replica: &Replica) -> bool {
        let ports = replica.ports();
        self.ask(&format!(
            "SELECT a.client_port FROM pg_stat_activity a, vkv_revision r
             WHERE a.datname = '{DB}' AND a.state = 'idle in transaction' AND r.id = 1
                 AND a.backend_xid IS NOT NULL AND r.xmax::text = a.backend_xid::text"
        ))
        .unwrap_or_default()
        .lines()
        .filter_map(|p| p.trim().parse::<u16>().ok())
        .any(|p| ports.contains(&p))
    }

    /// Holds `tables` locked in ACCESS EXCLUSIVE mode for `hold` in a psql
    /// session of its own; returns once the lock is held (or after 10 s if
    /// it never was: then `None`), with the session, which ends by itself.
    pub fn lock_tables(&self, tables: &str, hold: Duration) -> Option<Child> {
        let sock = self.pg.tools.socket_dir();
        let port = self.pg.node.port.to_string();
        let sql = format!(
            "BEGIN; LOCK TABLE {tables} IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep({}); COMMIT",
            hold.as_secs_f64()
        );
        let child = self
            .pg
            .tools
            .command("psql")
            .args(["-h", &sock, "-p", &port, "-U", "postgres", "-d", DB])
            .args(["-XAtq", "-c", &sql])
            .env("PGAPPNAME", "vkv-checker-lock")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run psql");
        let first = tables
            .split(',')
            .next()
            .unwrap_or(tables)
            .trim()
            .to_string();
        let held = poll_until(Duration::from_secs(10), || {
            self.psql(&format!(
                "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
                 WHERE c.relname = '{first}' AND l.mode = 'AccessExclusiveLock' AND l.granted"
            ))
            .is_some_and(|n| n == "1")
        });
        held.then_some(child)
    }

    /// Opens idle connections as another role until PostgreSQL refuses one
    /// (every slot but the superusers' taken), holds them for `hold`, and
    /// closes them; how many it held.
    pub fn hog_slots(&self, hold: Duration) -> usize {
        let mut config = postgres::Config::new();
        config
            .host("127.0.0.1")
            .port(self.pg.node.port)
            .user(HOG)
            .password(HOG_PASSWORD)
            .dbname("postgres")
            .connect_timeout(Duration::from_secs(2));
        let mut held = Vec::new();
        while held.len() < 1000 {
            match config.connect(postgres::NoTls) {
                Ok(c) => held.push(c),
                Err(_) => break,
            }
        }
        let n = held.len();
        std::thread::sleep(hold);
        drop(held);
        n
    }
}

/// One vkv process, restartable on the same port.
pub struct Replica {
    pub index: usize,
    pub addr: SocketAddr,
    args: Vec<String>,
    child: Option<Child>,
    /// Every line it logged (it runs at `--log-level warn`), over all its
    /// lives.
    pub log: Arc<Mutex<Vec<(Instant, String)>>>,
    /// SIGSTOPped now.
    pub frozen: bool,
}

impl Replica {
    /// Starts replica `index` on `url` with `args`; returns once it
    /// answers HTTP.
    pub fn start(index: usize, url: &str, args: &[&str]) -> Replica {
        let port = crate::common::free_port();
        let mut all: Vec<String> = [
            "--bind",
            &format!("127.0.0.1:{port}"),
            "--db",
            url,
            "--log-level",
            "warn",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        all.extend(args.iter().map(|s| s.to_string()));
        let mut r = Replica {
            index,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            args: all,
            child: None,
            log: Arc::default(),
            frozen: false,
        };
        r.spawn();
        r
    }

    fn spawn(&mut self) {
        let mut child = vkv()
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn vkv");
        let stderr = child.stderr.take().expect("stderr piped");
        let log = Arc::clone(&self.log);
        log.lock().unwrap().push((
            Instant::now(),
            format!("--- replica {} started", self.index),
        ));
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                log.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((Instant::now(), line));
            }
        });
        self.child = Some(child);
        let addr = self.addr;
        let t = Instant::now();
        // vkv binds its port before it opens the store; a request sent
        // meanwhile waits in the backlog and is answered once it is open.
        let up = poll_until(Duration::from_secs(30), || {
            std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
                || self.exited()
        });
        assert!(
            up && !self.exited(),
            "replica {} did not start within {:?}:\n{}",
            self.index,
            t.elapsed(),
            self.log_text()
        );
    }

    fn exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_none_or(|c| c.try_wait().ok().flatten().is_some())
    }

    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }

    fn signal(&self, sig: i32) {
        if let Some(pid) = self.pid() {
            // SAFETY: kill(2) on a process this test started.
            unsafe { libc::kill(pid, sig) };
        }
    }

    /// SIGSTOP: it stops wherever it is (a VM pause, a partition).
    pub fn freeze(&mut self) {
        self.signal(libc::SIGSTOP);
        self.frozen = true;
    }

    /// SIGCONT.
    pub fn thaw(&mut self) {
        self.signal(libc::SIGCONT);
        self.frozen = false;
    }

    /// SIGKILL, and the exit reaped.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.frozen = false;
    }

    /// Starts it again (after [`Replica::kill`]) on the same port.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// The local ports of its TCP sockets: `client_port` in
    /// `pg_stat_activity` names which backends are its connections.
    pub fn ports(&self) -> std::collections::HashSet<u16> {
        let Some(pid) = self.pid() else {
            return Default::default();
        };
        let inodes: std::collections::HashSet<String> =
            std::fs::read_dir(format!("/proc/{pid}/fd"))
                .map(|fds| {
                    fds.filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
                        .filter_map(|l| {
                            let l = l.to_string_lossy().into_owned();
                            let inode = l.strip_prefix("socket:[")?.strip_suffix(']')?;
                            Some(inode.to_string())
                        })
                        .collect()
                })
                .unwrap_or_default();
        let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
        table
            .lines()
            .skip(1)
            .filter_map(|line| {
                let f: Vec<&str> = line.split_whitespace().collect();
                let port = f.get(1)?.rsplit(':').next()?;
                inodes
                    .contains(*f.get(9)?)
                    .then(|| u16::from_str_radix(port, 16).ok())
                    .flatten()
            })
            .collect()
    }

    pub fn alive(&mut self) -> bool {
        !self.exited()
    }

    pub fn log_text(&self) -> String {
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        let lines: Vec<&str> = log.iter().map(|(_, l)| l.as_str()).collect();
        lines.join("\n")
    }

    /// The lines it logged while `clock` read `from` to `to`, each with
    /// that time.
    pub fn log_between(&self, clock: &Clock, from: Nanos, to: Nanos) -> Vec<String> {
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        log.iter()
            .map(|(at, l)| (clock.at(*at), l))
            .filter(|(t, _)| (from..=to).contains(t))
            .map(|(t, l)| format!("[{}] {l}", secs(t)))
            .collect()
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if self.frozen {
            self.thaw();
        }
        self.kill();
    }
}

/// Starts `n` replicas on `db` with `args`.
pub fn replicas(db: &Db, n: usize, args: &[&str]) -> Vec<Replica> {
    (0..n).map(|i| Replica::start(i, &db.url, args)).collect()
}

#[test]
fn postgresql_log_times_are_read() {
    // `log_line_prefix = '%m ...'`: milliseconds, then the zone.
    let line = "2026-12-07 02:35:31.299 UTC [15915] vkv-writer FATAL:  terminating";
    let t = humantime::parse_rfc3339_weak(&line[..23]).expect("a time");
    let since = t.duration_since(std::time::UNIX_EPOCH).expect("after 1970");
    assert_eq!(since.as_millis(), 1_796_610_931_299);
}
