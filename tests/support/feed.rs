//! Following changes: the change feed's streams (`GET /changes` as SSE or
//! NDJSON, read chunk by chunk), NDJSON text, revisions, and long polls
//! parked on the server.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::{Client, Resp, Value, get_ok, metric, poll_until};

/// The `revision` of a `200` answer (a write's, a listing's, a feed page's).
#[track_caller]
pub fn revision(r: &Resp) -> u64 {
    assert_eq!(r.status, 200, "{}", r.text());
    revision_in(&r.json())
}

/// The `revision` in `v` (a write's result, a read, a change, a page).
pub fn revision_in(v: &Value) -> u64 {
    v["revision"]
        .as_u64()
        .unwrap_or_else(|| panic!("no revision in {v}"))
}

/// Every change under `prefix` after `after`, read from the server's feed
/// page by page (as `vkv watch --prefix -o json` prints them).
pub fn changes_after(c: &mut Client, prefix: &str, mut after: u64) -> Vec<Value> {
    let mut all = Vec::new();
    loop {
        let page = get_ok(
            c,
            &format!("/changes?prefix={prefix}&after={after}&limit=1000"),
        );
        let changes = page["changes"]
            .as_array()
            .unwrap_or_else(|| panic!("no changes in {page}"))
            .clone();
        if changes.is_empty() {
            return all;
        }
        all.extend(changes);
        after = page["next_after"]
            .as_u64()
            .unwrap_or_else(|| panic!("no next_after in {page}"));
    }
}

/// The revision, key and version of a change (or of a write's result
/// that names its key).
pub fn change(v: &Value) -> (u64, String, u64) {
    let key = v["key"].as_str().unwrap_or_else(|| panic!("no key in {v}"));
    let version = v["version"]
        .as_u64()
        .unwrap_or_else(|| panic!("no version in {v}"));
    (revision_in(v), key.to_string(), version)
}

/// Each line of NDJSON `text` (as `-o json` prints), parsed.
pub fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

/// Waits until exactly `n` long polls are parked on `c`'s server (the
/// `vkv_watchers` gauge); fails the test if they are not within 10 s.
#[track_caller]
pub fn wait_parked(c: &mut Client, n: u64) {
    assert!(
        poll_until(Duration::from_secs(10), || metric(c, "vkv_watchers")
            == Some(n as f64)),
        "{n} watchers were never parked: {:?}",
        metric(c, "vkv_watchers")
    );
}

/// A change feed stream's client (`GET /changes` with `Accept:
/// text/event-stream` or `application/x-ndjson`): the head, then the
/// chunked body as it comes; a cut without the last chunk panics.
pub struct StreamReader {
    io: BufReader<TcpStream>,
    /// Body bytes received and not yet taken.
    buf: Vec<u8>,
    ended: bool,
    /// The head's header lines, lower-cased.
    pub headers: Vec<String>,
}

impl StreamReader {
    pub fn open(
        addr: SocketAddr,
        path: &str,
        accept: &str,
        extra: &[(&str, &str)],
    ) -> StreamReader {
        StreamReader::open_on(TcpStream::connect(addr).unwrap(), addr, path, accept, extra)
    }

    /// As [`StreamReader::open`], on a socket whose receive buffer is a few
    /// KiB: a client that stops reading holds little, and the server soon
    /// sees it not taking its output.
    pub fn open_small(addr: SocketAddr, path: &str, accept: &str) -> StreamReader {
        let sock = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            None,
        )
        .unwrap();
        sock.set_recv_buffer_size(4096).unwrap();
        sock.connect(&addr.into()).unwrap();
        StreamReader::open_on(sock.into(), addr, path, accept, &[])
    }

    fn open_on(
        mut s: TcpStream,
        addr: SocketAddr,
        path: &str,
        accept: &str,
        extra: &[(&str, &str)],
    ) -> StreamReader {
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: {accept}\r\n");
        for (n, v) in extra {
            req.push_str(&format!("{n}: {v}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).unwrap();
        let mut io = BufReader::new(s);
        let mut line = String::new();
        io.read_line(&mut line).unwrap();
        assert!(line.starts_with("HTTP/1.1 200"), "{line}");
        let mut chunked = false;
        let mut headers = Vec::new();
        loop {
            line.clear();
            io.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
            let lower = line.to_ascii_lowercase();
            headers.push(lower.trim_end().to_string());
            if lower.starts_with("content-type:") {
                assert!(lower.contains(accept), "{line}");
            }
            chunked |= lower.starts_with("transfer-encoding: chunked");
        }
        assert!(chunked);
        StreamReader {
            io,
            buf: Vec::new(),
            ended: false,
            headers,
        }
    }

    /// Reads one chunk into `buf`; false at the end of the stream.
    fn fill(&mut self) -> bool {
        if self.ended {
            return false;
        }
        let mut line = String::new();
        if self.io.read_line(&mut line).unwrap_or(0) == 0 {
            panic!("the stream was cut without its last chunk");
        }
        let n = usize::from_str_radix(line.trim(), 16).unwrap_or_else(|_| panic!("{line:?}"));
        if n == 0 {
            self.io.read_line(&mut line).unwrap();
            self.ended = true;
            return false;
        }
        let mut data = vec![0; n + 2];
        self.io.read_exact(&mut data).unwrap();
        self.buf.extend_from_slice(&data[..n]);
        true
    }

    /// The next NDJSON line; `None` at the end.
    pub fn line(&mut self) -> Option<serde_json::Value> {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                return Some(serde_json::from_slice(&line).unwrap());
            }
            if !self.fill() {
                return None;
            }
        }
    }

    /// The next SSE event: (event type, data, id); `None` at the end.
    pub fn event(&mut self) -> Option<(String, serde_json::Value, Option<u64>)> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.buf.drain(..i + 2).collect();
                let text = String::from_utf8(block).unwrap();
                let (mut kind, mut data, mut id) =
                    ("message".to_string(), serde_json::Value::Null, None);
                for l in text.lines() {
                    if let Some(v) = l.strip_prefix("event: ") {
                        kind = v.to_string();
                    } else if let Some(v) = l.strip_prefix("data: ") {
                        data = serde_json::from_str(v).unwrap();
                    } else if let Some(v) = l.strip_prefix("id: ") {
                        id = Some(v.parse().unwrap());
                    }
                }
                return Some((kind, data, id));
            }
            if !self.fill() {
                return None;
            }
        }
    }
}
