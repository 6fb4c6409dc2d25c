//! Test harness: runs the real `vkv` binary on 127.0.0.1:0 with a temporary
//! SQLite file, and a minimal HTTP/1.1 client over a real socket whose
//! operations can fail (the server may be killed under it). Adapted from
//! `tests/api/common.rs`; every socket has a timeout, so nothing here hangs.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

pub use serde_json::{Value, json};

/// Tests that measure timing or process-wide resources (thread counts,
/// descriptors, crash timing) take this lock exclusively; the others share
/// it, so that they do not disturb those measurements.
static SERIAL: RwLock<()> = RwLock::new(());

pub fn shared() -> RwLockReadGuard<'static, ()> {
    SERIAL.read().unwrap_or_else(|e| e.into_inner())
}

pub fn exclusive() -> RwLockWriteGuard<'static, ()> {
    SERIAL.write().unwrap_or_else(|e| e.into_inner())
}

/// How long any client waits for an answer before the test fails.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(15);

/// A running `vkv` process.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    pub log: Arc<Mutex<Vec<String>>>,
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
        Server::try_start_on(db, args).unwrap_or_else(|(status, log)| {
            panic!("vkv did not start ({status:?}):\n{}", log.join("\n"))
        })
    }

    /// Starts vkv; on failure returns its exit status and log.
    pub fn try_start_on(
        db: &Path,
        args: &[&str],
    ) -> Result<Server, (Option<ExitStatus>, Vec<String>)> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_vkv"))
            .args(["--bind", "127.0.0.1:0", "--db"])
            .arg(db)
            .args(args)
            .env_remove("VKV_BIND")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn vkv");
        let stderr = child.stderr.take().expect("stderr piped");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let addr = line
                    .split("listening on ")
                    .nth(1)
                    .map(|rest| rest.split_whitespace().next().unwrap_or("").to_string());
                // Log first, then announce (see tests/support/mod.rs).
                sink.lock().unwrap_or_else(|e| e.into_inner()).push(line);
                if let Some(addr) = addr {
                    let _ = tx.send(addr);
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(addr) => Ok(Server {
                child,
                addr: addr.parse().expect("listen address"),
                log,
                _dir: None,
            }),
            Err(_) => {
                let status = wait_timeout(&mut child, Duration::from_secs(5));
                if status.is_none() {
                    let _ = child.kill();
                    let _ = child.wait();
                }
                std::thread::sleep(Duration::from_millis(50));
                let lines = log.lock().unwrap_or_else(|e| e.into_inner()).clone();
                Err((status, lines))
            }
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A new keep-alive client connection.
    pub fn client(&self) -> Client {
        Client::connect(self.addr).expect("connect to vkv")
    }

    /// Kills the process with SIGKILL (no shutdown at all).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The lines vkv logged so far.
    pub fn log_text(&self) -> String {
        self.log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .join("\n")
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

pub fn wait_timeout(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
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

/// A keep-alive HTTP/1.1 client on one TCP connection.
pub struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> io::Result<Client> {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        s.set_read_timeout(Some(CLIENT_TIMEOUT))?;
        s.set_write_timeout(Some(CLIENT_TIMEOUT))?;
        s.set_nodelay(true)?;
        Ok(Client {
            writer: s.try_clone()?,
            reader: BufReader::new(s),
        })
    }

    /// GET that must get an answer.
    pub fn get(&mut self, path: &str) -> Resp {
        self.request("GET", path, b"")
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// PUT (`POST /put/{key}` with `{"value": value}`) that must get an answer.
    pub fn put(&mut self, key: &str, value: &Value) -> Resp {
        self.try_put(key, value)
            .unwrap_or_else(|e| panic!("PUT {key}: {e}"))
    }

    pub fn try_put(&mut self, key: &str, value: &Value) -> io::Result<Resp> {
        let body = serde_json::to_vec(&json!({ "value": value }))?;
        self.request("POST", &format!("/put/{key}"), &body)
    }

    pub fn request(&mut self, method: &str, path: &str, body: &[u8]) -> io::Result<Resp> {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: test\r\n");
        if !body.is_empty() || method == "POST" {
            req.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        req.push_str("\r\n");
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(body);
        self.send_raw(&bytes)?;
        self.read_response()
    }

    pub fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.writer.write_all(bytes)
    }

    /// Reads one response (Content-Length framed).
    pub fn read_response(&mut self) -> io::Result<Resp> {
        let bad = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
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
            if self.reader.read_line(&mut h)? == 0 {
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
        let len: usize = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        self.reader.read_exact(&mut body)?;
        Ok(Resp {
            status,
            headers,
            body,
        })
    }
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
