//! Test harness shared by the `api` and `security` test binaries (each
//! includes it as `mod common` with `#[path]`): runs the real `vkv` binary
//! on 127.0.0.1:0 with a temporary SQLite file, and a minimal HTTP/1.1
//! client over a real socket (plain TCP, or any stream such as TLS).
#![allow(dead_code)] // each test binary uses a different part of it

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use serde_json::{Value, json};

/// The `vkv` binary under test.
pub fn vkv() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vkv"));
    for var in [
        "VKV_BIND",
        "VKV_DB",
        "VKV_AUTH_TOKENS",
        "VKV_TLS_CERT",
        "VKV_TLS_KEY",
    ] {
        c.env_remove(var);
    }
    c
}

/// Runs `vkv ARGS` to completion (at most 60 s) and returns its output.
pub fn run(args: &[&str]) -> Output {
    let mut child = vkv()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "vkv {args:?} did not finish"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
}

/// stdout and stderr of `out`, together.
pub fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A running `vkv` process.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    pub db: PathBuf,
    pub log: Arc<Mutex<Vec<String>>>,
    _dir: Option<tempfile::TempDir>,
}

impl Server {
    /// A server on a fresh database in a new temporary directory.
    pub fn start(args: &[&str]) -> Server {
        let dir = tempfile::tempdir().unwrap();
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

    /// Starts vkv with extra environment variables; on failure returns its
    /// exit status and log.
    pub fn try_start_on(
        db: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Server, (Option<ExitStatus>, Vec<String>)> {
        let mut child = vkv()
            .args(["--bind", "127.0.0.1:0", "--db"])
            .arg(db)
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
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
                // Log first, then announce: a test that reads the log right
                // after start-up must find the "listening on" line in it.
                sink.lock().unwrap().push(line);
                if let Some(addr) = addr {
                    let _ = tx.send(addr);
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(addr) => Ok(Server {
                child,
                addr: addr.parse().unwrap(),
                db: db.to_path_buf(),
                log,
                _dir: None,
            }),
            Err(_) => {
                let status = wait_timeout(&mut child, Duration::from_secs(10));
                if status.is_none() {
                    let _ = child.kill();
                }
                std::thread::sleep(Duration::from_millis(50));
                let lines = log.lock().unwrap().clone();
                Err((status, lines))
            }
        }
    }

    /// A new keep-alive client connection.
    pub fn client(&self) -> Client {
        Client::connect(self.addr)
    }

    /// Kills the process with SIGKILL (no shutdown at all).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for the exit (and for its last log lines).
    pub fn terminate(&mut self) -> ExitStatus {
        let ok = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "kill -TERM failed");
        let status = wait_timeout(&mut self.child, Duration::from_secs(20))
            .expect("vkv did not exit on SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
        status
    }

    /// The lines vkv logged so far.
    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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
}

/// What a client talks over: a TCP socket or a TLS session.
pub trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

/// A keep-alive HTTP/1.1 client on one connection.
pub struct Client {
    io: BufReader<Box<dyn Stream>>,
    /// Sent as `Authorization: Bearer` with every request, when set.
    pub token: Option<String>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.set_nodelay(true).unwrap();
        Client::over(Box::new(s))
    }

    /// A client over an established stream.
    pub fn over(stream: Box<dyn Stream>) -> Client {
        Client {
            io: BufReader::new(stream),
            token: None,
        }
    }

    /// This client, sending `token` with every request.
    pub fn with_token(mut self, token: &str) -> Client {
        self.token = Some(token.to_string());
        self
    }

    pub fn get(&mut self, path: &str) -> Resp {
        self.request("GET", path, &[], b"")
    }

    pub fn put(&mut self, key: &str, value: &Value) -> Resp {
        let body = serde_json::to_vec(&json!({ "value": value })).unwrap();
        self.request("POST", &format!("/put/{key}"), &[], &body)
    }

    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Resp {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: test\r\n");
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
        let w = self.io.get_mut();
        w.write_all(&bytes).unwrap();
        w.flush().unwrap();
        self.read_response(method == "HEAD")
    }

    /// Reads one response (Content-Length framed).
    pub fn read_response(&mut self, head_only: bool) -> Resp {
        let mut line = String::new();
        self.io.read_line(&mut line).unwrap();
        let status: u16 = line
            .split(' ')
            .nth(1)
            .unwrap_or_else(|| panic!("bad status line {line:?}"))
            .parse()
            .unwrap();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            self.io.read_line(&mut h).unwrap();
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (n, v) = h.split_once(':').unwrap();
            headers.push((n.trim().to_string(), v.trim().to_string()));
        }
        let len: usize = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .map(|(_, v)| v.parse().unwrap())
            .unwrap_or(0);
        let mut body = vec![0; if head_only { 0 } else { len }];
        self.io.read_exact(&mut body).unwrap();
        Resp {
            status,
            headers,
            body,
        }
    }
}
