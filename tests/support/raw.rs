//! The one raw-bytes HTTP client: bytes out exactly as given (malformed,
//! pipelined, split, half-closed), responses parsed from the bytes that
//! come back. For the keep-alive API client, see `Client`.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::Resp;

/// How long [`Raw::expect_response`] waits for an answer.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

/// A raw client connection. `s` is the socket itself, for tests that shut
/// it down half-way, clone it or set its options.
pub struct Raw {
    pub s: TcpStream,
    /// Bytes received and not yet taken as a response.
    pub buf: Vec<u8>,
    /// The server closed (or reset) the connection.
    pub eof: bool,
}

impl Raw {
    /// Connects to `addr` or fails the test.
    pub fn open(addr: SocketAddr) -> Raw {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        Raw::over(s)
    }

    /// A raw client over a socket connected by the test itself (with
    /// options of its own, such as a small receive window).
    pub fn over(s: TcpStream) -> Raw {
        s.set_write_timeout(Some(Duration::from_secs(5)))
            .expect("write timeout");
        Raw {
            s,
            buf: Vec::new(),
            eof: false,
        }
    }

    /// Sends `bytes` as they are, or fails the test.
    pub fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).expect("send");
    }

    /// Reads for up to `limit` or until EOF; a reset counts as EOF.
    pub fn read_some(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        let mut chunk = [0u8; 16 << 10];
        while !self.eof {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            self.s.set_read_timeout(Some(left)).expect("read timeout");
            match self.s.read(&mut chunk) {
                Ok(0) => self.eof = true,
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return;
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return;
                }
                Err(_) => self.eof = true,
            }
        }
    }

    /// The next complete response, waiting up to `limit` for it: `None`
    /// when the server closed first or `limit` passed (tell them apart with
    /// `eof`).
    pub fn response(&mut self, limit: Duration) -> Option<Resp> {
        self.next(limit, false)
    }

    /// Like [`Raw::response`], for the answer to a `HEAD` (no body).
    pub fn head_response(&mut self, limit: Duration) -> Option<Resp> {
        self.next(limit, true)
    }

    /// The next response, or fails the test naming `what`.
    pub fn expect_response(&mut self, what: &str) -> Resp {
        self.response(ANSWER_WITHIN)
            .unwrap_or_else(|| panic!("{what}: no response (got {:?})", self.text()))
    }

    /// Whether the server closes the connection within `limit` without
    /// sending anything more.
    pub fn closed_within(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while !self.eof && Instant::now() < deadline {
            self.read_some(deadline.saturating_duration_since(Instant::now()));
        }
        self.eof && self.buf.is_empty()
    }

    /// What was received and not yet taken, as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.buf).into_owned()
    }

    fn next(&mut self, limit: Duration, head_only: bool) -> Option<Resp> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(r) = self.parse(head_only) {
                return Some(r);
            }
            if self.eof || Instant::now() >= deadline {
                return None;
            }
            self.read_some(deadline.saturating_duration_since(Instant::now()));
        }
    }

    /// Takes one response (Content-Length framed) off the buffer.
    fn parse(&mut self, head_only: bool) -> Option<Resp> {
        let end = self.buf.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
        let mut lines = head.split("\r\n");
        let status = lines
            .next()?
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line in {head:?}"));
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
            .collect();
        let len: usize = match head_only {
            true => 0,
            false => headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0),
        };
        if self.buf.len() < end + 4 + len {
            return None;
        }
        let body = self.buf[end + 4..end + 4 + len].to_vec();
        self.buf.drain(..end + 4 + len);
        Some(Resp {
            status,
            headers,
            body,
        })
    }
}
