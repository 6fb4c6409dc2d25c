//! The one test harness, shared by every integration test binary (each
//! includes it with `#[path]`): runs the real `vkv` binary on 127.0.0.1:0
//! with a temporary SQLite file (or, with `VKV_TEST_PG` set, a fresh
//! PostgreSQL database: see [`pg_admin_url`]), and a minimal HTTP/1.1
//! client over a real socket (plain TCP, or any stream such as TLS). Every
//! socket has a timeout and every wait a deadline, so nothing here hangs;
//! conditions are polled with [`poll_until`], never slept on.
//!
//! Its parts with a job of their own: [`raw`], the raw-bytes client for
//! malformed and pipelined requests; [`feed`], the change feed's streams
//! and long polls; [`lease`], leases and key expiry.
#![allow(dead_code)] // each test binary uses a different part of it

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

pub use serde_json::{Value, json};

pub mod feed;
pub mod lease;
pub mod raw;

/// How long a client waits for an answer before its request fails.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a server may take to announce its address.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Calls `condition` every few milliseconds until it holds (true) or
/// `deadline` has passed (false). The one way tests wait for something.
pub fn poll_until(deadline: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + deadline;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Tests that measure timing or process-wide resources (thread counts,
/// descriptors, crash timing) take this lock exclusively; the others in
/// their binary share it, so that they do not disturb those measurements.
static SERIAL: RwLock<()> = RwLock::new(());

pub fn shared() -> RwLockReadGuard<'static, ()> {
    SERIAL.read().unwrap_or_else(|e| e.into_inner())
}

pub fn exclusive() -> RwLockWriteGuard<'static, ()> {
    SERIAL.write().unwrap_or_else(|e| e.into_inner())
}

/// A TCP port on 127.0.0.1 no one listens on now (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// The `vkv` binary under test, with no `VKV_*` variable of the test's
/// environment leaking into it (each flag has one). `VKV_TEST_BIN` names
/// another build of it (a release build, for a long checker run whose
/// timings should be the product's, not a debug build's).
pub fn vkv() -> Command {
    let bin = std::env::var_os("VKV_TEST_BIN")
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_vkv").into());
    let mut c = Command::new(bin);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("VKV_") {
            c.env_remove(name);
        }
    }
    c
}

/// Runs `vkv ARGS` to completion (at most 60 s) and returns its output.
pub fn run(args: &[&str]) -> Output {
    run_with(args, &[], b"")
}

/// Runs `vkv ARGS` with `env` set and `stdin` fed to it, to completion (at
/// most 60 s), and returns its output.
pub fn run_with(args: &[&str], env: &[(&str, &str)], stdin: &[u8]) -> Output {
    let mut child = vkv()
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn vkv");
    let mut input = child.stdin.take().expect("stdin piped");
    let stdin = stdin.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    // Drain the pipes while waiting, so a chatty child cannot block on them.
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut b = Vec::new();
            let _ = pipe.read_to_end(&mut b);
            b
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("stdout piped")));
    let stderr = drain(Box::new(child.stderr.take().expect("stderr piped")));
    let Some(status) = wait_timeout(&mut child, Duration::from_secs(60)) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("vkv {args:?} did not finish");
    };
    let _ = feeder.join();
    Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

/// stdout and stderr of `out`, together.
pub fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Waits for `child` to exit, at most `limit`.
pub fn wait_timeout(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let mut status = None;
    poll_until(limit, || {
        status = child.try_wait().ok().flatten();
        status.is_some()
    });
    status
}

/// The PostgreSQL backend parameter of the harness. With `VKV_TEST_PG` set
/// to an admin URL (`postgres://postgres:PASSWORD@127.0.0.1:PORT/postgres`,
/// as `scripts/pg-cluster.sh start` prints) and vkv built with
/// `--features postgres`, every server the harness starts runs on
/// PostgreSQL: the SQLite path a test asks for names a database instead
/// (the same path, the same database, so restart tests restart on their
/// data). Unset: SQLite, as always.
pub fn pg_admin_url() -> Option<String> {
    std::env::var("VKV_TEST_PG").ok().filter(|u| !u.is_empty())
}

/// Whether the servers of this run are on PostgreSQL.
pub fn on_postgres() -> bool {
    pg_admin_url().is_some()
}

/// For a test that is about the SQLite file itself: true (the test returns
/// at once, saying why) when this run is on PostgreSQL. Each use is a named
/// exception to "every API test passes on both backends".
pub fn sqlite_only(why: &str) -> bool {
    if on_postgres() {
        eprintln!("not run on PostgreSQL: {why}");
        return true;
    }
    false
}

/// `admin` with its database name replaced by `name`.
pub fn pg_url_for(admin: &str, name: &str) -> String {
    let (base, query) = match admin.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (admin, String::new()),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    format!("{base}/{name}{query}")
}

/// Runs `psql` on the admin URL; panics with its output on failure.
pub fn psql(admin: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args([admin, "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .expect("run psql (Debian package postgresql-client)");
    assert!(
        out.status.success(),
        "psql {sql:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The PostgreSQL database that stands for the SQLite file `db` (created if
/// missing), as a URL vkv takes.
fn pg_database_for(admin: &str, db: &Path) -> PathBuf {
    if db.to_string_lossy().starts_with("postgres") {
        return db.to_path_buf();
    }
    // FNV-1a of the path: a stable name, so a restart finds its data.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in db.as_os_str().as_encoded_bytes() {
        h = (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
    }
    let name = format!("vkvt_{h:016x}");
    static CREATED: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let mut created = CREATED.lock().unwrap_or_else(|e| e.into_inner());
    if !created.contains(&name) {
        let exists = psql(
            admin,
            &format!("SELECT count(*) FROM pg_database WHERE datname = '{name}'"),
        );
        if exists == "0" {
            psql(admin, &format!("CREATE DATABASE {name}"));
        }
        created.push(name.clone());
    }
    PathBuf::from(pg_url_for(admin, &name))
}

/// Everything a client can read about `keys` (as they appear in a path):
/// each history page and the answer (status and body) for every version
/// from 1 to latest + 1 and for the latest.
pub fn observe(c: &mut Client, keys: &[&str]) -> Vec<(String, u16, String)> {
    let mut seen = Vec::new();
    for key in keys {
        let path = |q: &str| format!("/{q}/{key}");
        let h = c.get(&format!("{}?limit=1000", path("history")));
        seen.push((path("history"), h.status, h.text()));
        let latest = h.json()["versions"][0]["version"].as_u64().unwrap_or(0);
        for v in 1..=latest + 1 {
            let r = c.get(&format!("{}?version={v}", path("get")));
            seen.push((format!("{} v{v}", path("get")), r.status, r.text()));
        }
        let r = c.get(&path("get"));
        seen.push((path("get"), r.status, r.text()));
    }
    seen
}

/// A running `vkv` process.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    pub db: PathBuf,
    /// Every line vkv wrote to stderr so far.
    pub log: Arc<Mutex<Vec<String>>>,
    /// Set once vkv's stderr is closed: the log is complete.
    log_closed: Arc<AtomicBool>,
    _dir: Option<tempfile::TempDir>,
}

impl Server {
    /// A server on a fresh database in a new temporary directory.
    pub fn start(args: &[&str]) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("kv.db");
        let mut s = Server::start_on(&db, args);
        s._dir = Some(dir);
        s
    }

    /// A server on the database file `db`.
    pub fn start_on(db: &Path, args: &[&str]) -> Server {
        Server::try_start_on(db, args, &[]).unwrap_or_else(|(status, log)| {
            panic!("vkv did not start ({status:?}):\n{}", log.join("\n"))
        })
    }

    /// Starts vkv on `db` with `args` and extra environment variables; on
    /// failure returns its exit status and log. Every server of every test
    /// binary starts here. On PostgreSQL runs (`VKV_TEST_PG`), `db` names
    /// the database that stands for it.
    pub fn try_start_on(
        db: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Server, (Option<ExitStatus>, Vec<String>)> {
        let db = &match pg_admin_url() {
            Some(admin) => pg_database_for(&admin, db),
            None => db.to_path_buf(),
        };
        // A free port, unless the test names its own (a restart on the
        // address clients know).
        let bind = if args.contains(&"--bind") {
            &[][..]
        } else {
            &["--bind", "127.0.0.1:0"][..]
        };
        let mut child = vkv()
            .args(bind)
            .arg("--db")
            .arg(db)
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn vkv");
        let stderr = child.stderr.take().expect("stderr piped");
        let log = Arc::new(Mutex::new(Vec::new()));
        let log_closed = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        let (sink, closed) = (Arc::clone(&log), Arc::clone(&log_closed));
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let addr = line
                    .split("listening on ")
                    .nth(1)
                    .map(|rest| rest.split_whitespace().next().unwrap_or("").to_string());
                // Log first, then announce: a test that reads the log right
                // after start-up must find the "listening on" line in it.
                sink.lock().unwrap_or_else(|e| e.into_inner()).push(line);
                if let Some(addr) = addr {
                    let _ = tx.send(addr);
                }
            }
            closed.store(true, Ordering::SeqCst);
        });
        let mut server = Server {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            db: db.to_path_buf(),
            log,
            log_closed,
            _dir: None,
        };
        match rx.recv_timeout(START_TIMEOUT) {
            Ok(addr) => {
                server.addr = addr.parse().expect("listen address");
                Ok(server)
            }
            Err(_) => {
                let status = wait_timeout(&mut server.child, Duration::from_secs(5));
                server.kill();
                server.wait_for_log_end();
                Err((
                    status,
                    server.log.lock().unwrap_or_else(|e| e.into_inner()).clone(),
                ))
            }
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A new keep-alive client connection.
    pub fn client(&self) -> Client {
        Client::connect(self.addr)
    }

    /// Sends `signal` (a name `kill` knows: TERM, HUP, ...) to the process.
    pub fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "kill -{signal} failed");
    }

    /// Kills the process with SIGKILL (no shutdown at all).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for the exit (and for its last log lines).
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal("TERM");
        let status = wait_timeout(&mut self.child, Duration::from_secs(20))
            .expect("vkv did not exit on SIGTERM");
        self.wait_for_log_end();
        status
    }

    /// The exit status, if the process has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits (bounded) until the process closed stderr: the log is whole.
    fn wait_for_log_end(&self) {
        poll_until(Duration::from_secs(5), || {
            self.log_closed.load(Ordering::SeqCst)
        });
    }

    /// The lines vkv logged so far.
    pub fn log_text(&self) -> String {
        self.log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .join("\n")
    }

    /// The process's resident memory in bytes, from `/proc/PID/status`.
    pub fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc/PID/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .expect("VmRSS: in /proc/PID/status")
            * 1024
    }

    /// The process's thread count, from `/proc/PID/status`.
    pub fn threads(&self) -> usize {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc/PID/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("Threads:"))
            .and_then(|v| v.trim().parse().ok())
            .expect("Threads: in /proc/PID/status")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One HTTP response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The `detail` of an error body ("" when there is none).
    pub fn detail(&self) -> String {
        serde_json::from_slice::<Value>(&self.body)
            .ok()
            .and_then(|v| v["detail"].as_str().map(str::to_string))
            .unwrap_or_default()
    }
}

/// What a client talks over: a TCP socket or a TLS session.
pub trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

/// A keep-alive HTTP/1.1 client on one connection. The `try_` methods
/// return the I/O error (the server may have been killed under them); the
/// others fail the test.
pub struct Client {
    io: BufReader<Box<dyn Stream>>,
    /// Sent as `Host`: the address connected to, as a browser would.
    pub host: String,
    /// Sent as `Authorization: Bearer` with every request, when set.
    pub token: Option<String>,
}

impl Client {
    /// Connects to `addr` or fails the test.
    pub fn connect(addr: SocketAddr) -> Client {
        Client::try_connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"))
    }

    pub fn try_connect(addr: SocketAddr) -> io::Result<Client> {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        s.set_read_timeout(Some(CLIENT_TIMEOUT))?;
        s.set_write_timeout(Some(CLIENT_TIMEOUT))?;
        s.set_nodelay(true)?;
        let mut c = Client::over(Box::new(s));
        c.host = addr.to_string();
        Ok(c)
    }

    /// A client over an established stream (its `Host` is `localhost`).
    pub fn over(stream: Box<dyn Stream>) -> Client {
        Client {
            io: BufReader::new(stream),
            host: "localhost".to_string(),
            token: None,
        }
    }

    /// This client, sending `token` with every request.
    pub fn with_token(mut self, token: &str) -> Client {
        self.token = Some(token.to_string());
        self
    }

    /// GET that must get an answer.
    pub fn get(&mut self, path: &str) -> Resp {
        self.request("GET", path, &[], b"")
    }

    /// `POST /put/{key}` with `{"value": value}`, that must get an answer.
    pub fn put(&mut self, key: &str, value: &Value) -> Resp {
        self.try_put(key, value)
            .unwrap_or_else(|e| panic!("PUT {key}: {e}"))
    }

    pub fn try_put(&mut self, key: &str, value: &Value) -> io::Result<Resp> {
        let body = serde_json::to_vec(&json!({ "value": value }))?;
        self.try_request("POST", &format!("/put/{key}"), &[], &body)
    }

    /// A request that must get an answer.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Resp {
        self.try_request(method, path, headers, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    pub fn try_request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<Resp> {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.host);
        if let Some(t) = &self.token {
            req.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        for (n, v) in headers {
            req.push_str(&format!("{n}: {v}\r\n"));
        }
        if !body.is_empty() || method == "POST" {
            req.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        req.push_str("\r\n");
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(body);
        self.send_raw(&bytes)?;
        self.read_response(method == "HEAD")
    }

    /// Writes `bytes` as they are.
    pub fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        let w = self.io.get_mut();
        w.write_all(bytes)?;
        w.flush()
    }

    /// Reads one response (Content-Length framed; no body after a HEAD).
    pub fn read_response(&mut self, head_only: bool) -> io::Result<Resp> {
        let bad = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
        let mut line = String::new();
        if self.io.read_line(&mut line)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let status: u16 = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad(format!("bad status line {line:?}")))?;
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if self.io.read_line(&mut h)? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (n, v) = h
                .split_once(':')
                .ok_or_else(|| bad(format!("bad header {h:?}")))?;
            headers.push((n.trim().to_string(), v.trim().to_string()));
        }
        let len: usize = match headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        {
            Some((_, v)) => v
                .parse()
                .map_err(|_| bad(format!("bad Content-Length {v:?}")))?,
            None => 0,
        };
        let mut body = vec![0; if head_only { 0 } else { len }];
        self.io.read_exact(&mut body)?;
        Ok(Resp {
            status,
            headers,
            body,
        })
    }
}

/// `POST path` with `body` as JSON, whatever it answers.
pub fn post(c: &mut Client, path: &str, body: &Value) -> Resp {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|e| panic!("{body}: {e}"));
    c.request(
        "POST",
        path,
        &[("Content-Type", "application/json")],
        &bytes,
    )
}

/// `GET path` that must answer 200; its JSON body.
pub fn get_ok(c: &mut Client, path: &str) -> Value {
    let r = c.get(path);
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    r.json()
}

/// The value of the unlabelled Prometheus sample `name` in `/metrics`.
pub fn metric(c: &mut Client, name: &str) -> Option<f64> {
    let text = c.get("/metrics").text();
    text.lines()
        .filter_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .find_map(|v| v.trim().parse().ok())
}

/// Every version of `key` from `/history` (all pages), oldest first.
pub fn history(c: &mut Client, key: &str) -> Vec<u64> {
    let mut versions = Vec::new();
    let mut before: Option<u64> = None;
    loop {
        let path = match before {
            Some(b) => format!("/history/{key}?limit=1000&before={b}"),
            None => format!("/history/{key}?limit=1000"),
        };
        let r = c.get(&path);
        assert_eq!(r.status, 200, "GET {path}: {}", r.text());
        let page = r.json();
        for v in page["versions"].as_array().expect("versions array") {
            versions.push(v["version"].as_u64().expect("version number"));
        }
        match page["next_before"].as_u64() {
            Some(b) => before = Some(b),
            None => break,
        }
    }
    versions.reverse();
    versions
}

/// The entries of `/history/{key}` (its first page), newest first.
pub fn entries(c: &mut Client, key: &str) -> Vec<Value> {
    let r = c.get(&format!("/history/{key}"));
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["versions"]
        .as_array()
        .unwrap_or_else(|| panic!("no versions in {}", r.text()))
        .clone()
}

/// The `key` of each object in the JSON array `list` (a listing's `keys`,
/// a feed page's `changes`).
pub fn keys_of(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap_or_else(|| panic!("not an array: {list}"))
        .iter()
        .map(|k| k["key"].as_str().unwrap_or_else(|| panic!("no key in {k}")))
        .collect()
}

/// `total_keys` and `total_versions` from `/db/stats`.
pub fn db_totals(c: &mut Client) -> (u64, u64) {
    let r = c.get("/db/stats");
    assert_eq!(r.status, 200, "/db/stats: {}", r.text());
    let j = r.json();
    (
        j["total_keys"].as_u64().expect("total_keys"),
        j["total_versions"].as_u64().expect("total_versions"),
    )
}

/// A small PRNG (xorshift64*), seeded from the clock unless `VKV_TEST_SEED`
/// is set; the seed is printed so that a failure can be replayed.
pub struct Rng(u64);

impl Rng {
    pub fn from_time(test: &str) -> Rng {
        let seed = std::env::var("VKV_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
            });
        println!("{test}: seed {seed} (replay with VKV_TEST_SEED={seed})");
        Rng(seed | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `lo..hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }
}

/// Raises this process's soft descriptor limit to its hard limit (servers
/// started afterwards inherit it); returns the new soft limit.
pub fn raise_fd_limit() -> libc::rlim_t {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = limit.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }
    limit.rlim_cur
}

/// Writes through `c` a mix of what a copy or a backup must carry: versions
/// (5 of `a`), a tombstone (`b`), a purged key (`c`), a key with `/` and
/// escapes, and a batch of 20; the keys as they appear in paths.
pub fn write_mix(c: &mut Client) -> Vec<String> {
    for i in 0..5 {
        assert_eq!(c.put("a", &serde_json::json!({ "i": i })).status, 200);
    }
    for i in 0..2 {
        assert_eq!(c.put("b", &serde_json::json!(i)).status, 200);
    }
    assert_eq!(c.request("DELETE", "/delete/b", &[], b"").status, 200);
    assert_eq!(c.put("c", &serde_json::json!("purged")).status, 200);
    let r = c.request("DELETE", "/delete/c?purge=true", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    let odd = serde_json::json!([1, "two", null]);
    assert_eq!(c.put("x/%C3%BC%20y", &odd).status, 200);
    let puts: Vec<_> = (0..20)
        .map(|i| serde_json::json!({ "key": format!("batch-{i:02}"), "value": { "n": i } }))
        .collect();
    let body = serde_json::to_vec(&serde_json::json!({ "puts": puts })).unwrap();
    assert_eq!(c.request("POST", "/batch", &[], &body).status, 200);
    let mut keys: Vec<String> = ["a", "b", "c", "x/%C3%BC%20y"].map(String::from).to_vec();
    keys.extend((0..20).map(|i| format!("batch-{i:02}")));
    keys
}

/// One acknowledged write: key, version, the writer's sequence number, and
/// when the ack arrived.
pub type Ack = (String, u64, u64, Instant);

/// Three clients putting `{"t": T, "i": I}` (T the client, I its sequence
/// number) to ten keys each (`wT-0` .. `wT-9`) until stopped, recording
/// every acknowledged write: the load a backup is taken under.
pub struct Writers {
    stop: Arc<AtomicBool>,
    acks: Arc<Mutex<Vec<Ack>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Writers {
    pub fn start(addr: SocketAddr) -> Writers {
        let acks: Arc<Mutex<Vec<Ack>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..3)
            .map(|t| {
                let (acks, stop) = (Arc::clone(&acks), Arc::clone(&stop));
                std::thread::spawn(move || {
                    let mut c = Client::connect(addr);
                    let mut i = 0u64;
                    while !stop.load(Ordering::SeqCst) {
                        let key = format!("w{t}-{}", i % 10);
                        let r = c.put(&key, &serde_json::json!({ "t": t, "i": i }));
                        assert_eq!(r.status, 200, "{}", r.text());
                        let version = r.json()["version"].as_u64().unwrap();
                        let mut acks = acks.lock().unwrap();
                        acks.push((key, version, i, Instant::now()));
                        i += 1;
                    }
                })
            })
            .collect();
        Writers {
            stop,
            acks,
            threads,
        }
    }

    /// The writes acknowledged so far.
    pub fn acks(&self) -> Vec<Ack> {
        self.acks.lock().unwrap().clone()
    }

    /// Waits until at least `n` writes are acknowledged.
    pub fn wait_for(&self, n: usize) {
        assert!(
            poll_until(Duration::from_secs(30), || self.acks.lock().unwrap().len()
                >= n),
            "the writers did not get {n} acks"
        );
    }

    /// Stops the writers; every write acknowledged.
    pub fn stop(mut self) -> Vec<Ack> {
        self.stop.store(true, Ordering::SeqCst);
        for t in std::mem::take(&mut self.threads) {
            t.join().unwrap();
        }
        self.acks()
    }

    /// The value writer of `key` put with sequence number `i`.
    pub fn value(key: &str, i: u64) -> serde_json::Value {
        let t: u64 = key[1..2].parse().unwrap();
        serde_json::json!({ "t": t, "i": i })
    }
}
