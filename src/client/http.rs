//! A small blocking HTTP/1.1 client: one keep-alive connection to one
//! endpoint (plain TCP, or TLS through [`super::tls`]), a request written
//! whole, the answer parsed with `httparse` and framed by `Content-Length`
//! or chunked encoding. No async runtime, no pipelining: one request at a
//! time, which is all the commands need.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use super::endpoint::{Endpoint, Scheme};
use super::stream::Stream;
use super::tls::Trust;

/// The most bytes of a response head (status line and headers).
const MAX_HEAD: usize = 64 * 1024;
/// The most headers in a response.
const MAX_HEADERS: usize = 64;
/// The largest body held in memory: a value may be up to the server's
/// largest body (1 GiB), plus the key and the answer's other fields.
const MAX_BUFFERED_BODY: u64 = (1 << 30) + (1 << 20);

/// Why a request got no answer.
#[derive(Debug)]
pub enum Error {
    /// No connection could be made (refused, unreachable, timed out, TLS
    /// handshake refused): nothing was sent.
    Connect(String),
    /// The connection failed after the request was sent, or the answer did
    /// not come in time: the server may have acted on the request.
    Lost(String),
    /// The answer is not HTTP as this client reads it.
    Protocol(String),
    /// Writing a streamed body to its destination failed.
    Sink(io::Error),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Connect(e) | Error::Lost(e) => f.write_str(e),
            Error::Protocol(e) => write!(f, "bad answer: {e}"),
            Error::Sink(e) => write!(f, "cannot write the answer: {e}"),
        }
    }
}

/// One request.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub method: &'static str,
    /// Path and query, under the endpoint's base path (`/get/k?version=2`).
    pub target: String,
    /// A JSON body (sent with `Content-Type: application/json`).
    pub body: Option<&'a [u8]>,
    /// Sent as `Authorization: Bearer`.
    pub token: Option<&'a str>,
    /// How long the answer may take, when not the connection's timeout (a
    /// long poll).
    pub timeout: Option<Duration>,
}

impl<'a> Request<'a> {
    /// A `GET` of `target`.
    pub fn get(target: String) -> Request<'a> {
        Request {
            method: "GET",
            target,
            body: None,
            token: None,
            timeout: None,
        }
    }

    /// Whether sending it twice does no more than sending it once.
    pub fn idempotent(&self) -> bool {
        matches!(self.method, "GET" | "HEAD")
    }
}

/// One answer. The body is empty when it went to a sink.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A keep-alive connection to one endpoint.
pub struct Conn {
    stream: Box<dyn Stream>,
    /// The same socket, to change its read timeout per request.
    socket: TcpStream,
    /// Bytes read and not yet used.
    buf: Vec<u8>,
    start: usize,
    timeout: Duration,
    endpoint: Endpoint,
    /// Whether the server keeps the connection open after this answer.
    reusable: bool,
    /// How many answers this connection carried.
    pub answers: u64,
}

impl Conn {
    /// Connects to `endpoint` (every address its host resolves to, in
    /// turn), over TLS with `trust` for `https`. `timeout` bounds the
    /// connection and every read and write.
    pub fn open(
        endpoint: &Endpoint,
        trust: Option<&Trust>,
        timeout: Duration,
    ) -> Result<Conn, Error> {
        let addrs = (endpoint.host.as_str(), endpoint.port)
            .to_socket_addrs()
            .map_err(|e| Error::Connect(format!("cannot resolve {}: {e}", endpoint.host)))?;
        let mut last = None;
        let mut socket = None;
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, timeout) {
                Ok(s) => {
                    socket = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let socket = socket.ok_or_else(|| {
            Error::Connect(match last {
                Some(e) => describe(&e),
                None => format!("{} resolves to no address", endpoint.host),
            })
        })?;
        let io_err = |e: io::Error| Error::Connect(describe(&e));
        socket.set_nodelay(true).map_err(io_err)?;
        socket.set_read_timeout(Some(timeout)).map_err(io_err)?;
        socket.set_write_timeout(Some(timeout)).map_err(io_err)?;
        let stream: Box<dyn Stream> = match endpoint.scheme {
            Scheme::Http => Box::new(socket.try_clone().map_err(io_err)?),
            Scheme::Https => {
                let trust = trust.ok_or_else(|| {
                    Error::Connect("https endpoint without TLS settings".to_string())
                })?;
                super::tls::connect(socket.try_clone().map_err(io_err)?, &endpoint.host, trust)
                    .map_err(|e| Error::Connect(format!("TLS handshake failed: {e}")))?
            }
        };
        Ok(Conn {
            stream,
            socket,
            buf: Vec::new(),
            start: 0,
            timeout,
            endpoint: endpoint.clone(),
            reusable: true,
            answers: 0,
        })
    }

    /// Whether another request may be sent on this connection.
    pub fn reusable(&self) -> bool {
        self.reusable
    }

    /// Sends `req` and reads its answer whole.
    pub fn send(&mut self, req: &Request<'_>) -> Result<Response, Error> {
        self.exchange(req, None)
    }

    /// Sends `req`; a `2xx` answer's body goes to `sink` as it arrives,
    /// any other answer's body into the response.
    pub fn send_to(&mut self, req: &Request<'_>, sink: &mut dyn Write) -> Result<Response, Error> {
        self.exchange(req, Some(sink))
    }

    fn exchange(
        &mut self,
        req: &Request<'_>,
        sink: Option<&mut dyn Write>,
    ) -> Result<Response, Error> {
        let lost = |e: io::Error| Error::Lost(describe(&e));
        let timeout = req.timeout.unwrap_or(self.timeout);
        self.socket.set_read_timeout(Some(timeout)).map_err(lost)?;
        let head = self.request_head(req);
        let mut bytes = head.into_bytes();
        if let Some(body) = req.body {
            bytes.extend_from_slice(body);
        }
        self.stream
            .write_all(&bytes)
            .and_then(|()| self.stream.flush())
            .map_err(lost)?;
        let mut response = loop {
            let r = self.read_head()?;
            // An interim answer (100 Continue, 103 Early Hints): the real
            // one follows.
            if !(100..200).contains(&r.status) || r.status == 101 {
                break r;
            }
        };
        let bodiless = req.method == "HEAD" || matches!(response.status, 204 | 304);
        if !bodiless {
            let mut buffered = Bounded(Vec::new());
            let to_sink = (200..300).contains(&response.status);
            let out: &mut dyn Write = match sink {
                Some(s) if to_sink => s,
                _ => &mut buffered,
            };
            self.read_body(&response, out)?;
            response.body = buffered.0;
        }
        let close = response
            .header("connection")
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")));
        if close {
            self.reusable = false;
        }
        self.answers += 1;
        Ok(response)
    }

    fn request_head(&self, req: &Request<'_>) -> String {
        let mut head = format!(
            "{} {}{} HTTP/1.1\r\nHost: {}\r\nUser-Agent: vkv/{}\r\nAccept: application/json\r\n",
            req.method,
            self.endpoint.base,
            req.target,
            self.endpoint.host_header(),
            env!("CARGO_PKG_VERSION"),
        );
        if let Some(token) = req.token {
            head.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        if let Some(body) = req.body {
            head.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        head.push_str("\r\n");
        head
    }

    /// Reads more bytes into the buffer; `Ok(0)` at the end of the stream.
    fn fill(&mut self) -> Result<usize, Error> {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::Lost(describe(&e))),
            }
        }
    }

    fn pending(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    fn read_head(&mut self) -> Result<Response, Error> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut parsed = httparse::Response::new(&mut headers);
            match parsed.parse(&self.buf[self.start..]) {
                Ok(httparse::Status::Complete(n)) => {
                    let response = Response {
                        status: parsed.code.unwrap_or(0),
                        headers: parsed
                            .headers
                            .iter()
                            .map(|h| {
                                (
                                    h.name.to_string(),
                                    String::from_utf8_lossy(h.value).trim().to_string(),
                                )
                            })
                            .collect(),
                        body: Vec::new(),
                    };
                    if parsed.version == Some(0) {
                        self.reusable = false;
                    }
                    self.start += n;
                    return Ok(response);
                }
                Ok(httparse::Status::Partial) => {}
                // A TLS record (alert or handshake): a TLS server.
                Err(_) if matches!(self.pending().first(), Some(0x15 | 0x16)) => {
                    return Err(Error::Protocol(
                        "the server answered in TLS: use an https:// endpoint".to_string(),
                    ));
                }
                Err(e) => return Err(Error::Protocol(format!("invalid response head: {e}"))),
            }
            if self.pending().len() > MAX_HEAD {
                return Err(Error::Protocol(format!(
                    "response head over {MAX_HEAD} bytes"
                )));
            }
            if self.fill()? == 0 {
                self.reusable = false;
                return Err(Error::Lost(if self.pending().is_empty() {
                    "the server closed the connection without answering".to_string()
                } else {
                    "the connection closed in the middle of the answer".to_string()
                }));
            }
        }
    }

    fn read_body(&mut self, response: &Response, out: &mut dyn Write) -> Result<(), Error> {
        let chunked = response
            .header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        if chunked {
            return self.read_chunked(out);
        }
        match response.header("content-length") {
            Some(v) => {
                let len: u64 = v
                    .parse()
                    .map_err(|_| Error::Protocol(format!("bad Content-Length {v:?}")))?;
                self.copy_exact(len, out)
            }
            None => {
                // Framed by the end of the connection.
                self.reusable = false;
                loop {
                    self.take_pending(u64::MAX, out)?;
                    if self.fill()? == 0 {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Moves up to `max` buffered bytes to `out`; returns how many.
    fn take_pending(&mut self, max: u64, out: &mut dyn Write) -> Result<u64, Error> {
        let available = self.pending().len();
        let n = usize::try_from(max).map_or(available, |m| m.min(available));
        out.write_all(&self.buf[self.start..self.start + n])
            .map_err(Error::Sink)?;
        self.start += n;
        Ok(n as u64)
    }

    fn copy_exact(&mut self, len: u64, out: &mut dyn Write) -> Result<(), Error> {
        let mut left = len;
        loop {
            left -= self.take_pending(left, out)?;
            if left == 0 {
                return Ok(());
            }
            if self.fill()? == 0 {
                self.reusable = false;
                return Err(Error::Lost(format!(
                    "the connection closed {left} bytes before the end of the answer"
                )));
            }
        }
    }

    /// One line ending in CRLF (or LF), without it.
    fn line(&mut self) -> Result<String, Error> {
        loop {
            if let Some(i) = self.pending().iter().position(|&b| b == b'\n') {
                let line = String::from_utf8_lossy(&self.pending()[..i])
                    .trim_end_matches('\r')
                    .to_string();
                self.start += i + 1;
                return Ok(line);
            }
            if self.pending().len() > MAX_HEAD {
                return Err(Error::Protocol("chunk line too long".to_string()));
            }
            if self.fill()? == 0 {
                self.reusable = false;
                return Err(Error::Lost(
                    "the connection closed in the middle of a chunked answer".to_string(),
                ));
            }
        }
    }

    fn read_chunked(&mut self, out: &mut dyn Write) -> Result<(), Error> {
        loop {
            let line = self.line()?;
            let size = line.split(';').next().unwrap_or("").trim();
            let size = u64::from_str_radix(size, 16)
                .map_err(|_| Error::Protocol(format!("bad chunk size {line:?}")))?;
            if size == 0 {
                // Trailers, up to the empty line.
                while !self.line()?.is_empty() {}
                return Ok(());
            }
            self.copy_exact(size, out)?;
            if !self.line()?.is_empty() {
                return Err(Error::Protocol("chunk not followed by CRLF".to_string()));
            }
        }
    }
}

/// A body held in memory, refusing to grow past [`MAX_BUFFERED_BODY`].
struct Bounded(Vec<u8>);

impl Write for Bounded {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if (self.0.len() + bytes.len()) as u64 > MAX_BUFFERED_BODY {
            return Err(io::Error::other(format!(
                "an answer over {MAX_BUFFERED_BODY} bytes"
            )));
        }
        self.0.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// An I/O error in words: "connection refused", "timed out".
fn describe(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => "timed out".to_string(),
        io::ErrorKind::ConnectionReset => "connection reset by the server".to_string(),
        io::ErrorKind::BrokenPipe => "the server closed the connection".to_string(),
        _ => e.to_string(),
    }
}

/// A local server for tests: for each connection in turn, answers each
/// request it reads with the next of that connection's answers (byte for
/// byte), then closes it. Returns its port and the count of requests read.
#[cfg(test)]
pub fn test_server(
    connections: Vec<Vec<&'static [u8]>>,
) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let requests = std::sync::Arc::new(AtomicUsize::new(0));
    let counted = std::sync::Arc::clone(&requests);
    std::thread::spawn(move || {
        for answers in connections {
            let Ok((mut s, _)) = listener.accept() else {
                return;
            };
            for answer in answers {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && s.read(&mut byte).unwrap_or(0) == 1 {
                    head.push(byte[0]);
                }
                if head.is_empty() {
                    break;
                }
                counted.fetch_add(1, Ordering::SeqCst);
                let _ = s.write_all(answer);
            }
        }
    });
    (port, requests)
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;

    /// A local server and a connection to it.
    fn serve(answers: Vec<&'static [u8]>) -> Conn {
        let (port, _) = test_server(vec![answers]);
        let endpoint = Endpoint::parse(&format!("http://127.0.0.1:{port}")).unwrap();
        Conn::open(&endpoint, None, Duration::from_secs(10)).unwrap()
    }

    fn get(conn: &mut Conn) -> Result<Response, Error> {
        conn.send(&Request::get("/get/k".to_string()))
    }

    #[test]
    fn reads_length_and_chunk_framed_answers_on_one_connection() {
        let mut conn = serve(vec![
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nETag: \"3\"\r\n\r\nhello",
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n\
              4;ext=1\r\n{\"de\r\nA\r\ntail\":\"x\"}\r\n0\r\nTrailer: t\r\n\r\n",
            b"HTTP/1.1 304 Not Modified\r\nETag: \"3\"\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nto the end",
        ]);
        let r = get(&mut conn).unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"hello"[..]));
        assert_eq!(r.header("etag"), Some("\"3\""));
        let r = get(&mut conn).unwrap();
        assert_eq!(r.status, 404);
        assert_eq!(r.body, b"{\"detail\":\"x\"}");
        let r = get(&mut conn).unwrap();
        assert_eq!((r.status, r.body.len()), (304, 0));
        assert!(conn.reusable());
        let r = get(&mut conn).unwrap();
        assert_eq!(r.body, b"to the end");
        assert!(!conn.reusable());
        assert_eq!(conn.answers, 4);
    }

    #[test]
    fn a_2xx_body_streams_to_the_sink_and_an_error_body_does_not() {
        let mut conn = serve(vec![
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc",
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 2\r\n\r\nno",
        ]);
        let mut sink = Vec::new();
        let req = Request::get("/backup".to_string());
        let r = conn.send_to(&req, &mut sink).unwrap();
        assert_eq!(
            (r.status, r.body.len(), sink.as_slice()),
            (200, 0, &b"abc"[..])
        );
        let r = conn.send_to(&req, &mut sink).unwrap();
        assert_eq!(
            (r.status, r.body.as_slice(), sink.len()),
            (503, &b"no"[..], 3)
        );
    }

    #[test]
    fn broken_answers_are_errors_that_say_what_broke() {
        let cases: [(&'static [u8], &str); 5] = [
            (b"", "without answering"),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
                "5 bytes",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                "chunk size",
            ),
            (b"\x15\x03\x03\x00\x02\x02\x46", "TLS"),
            (b"SSH-2.0-OpenSSH\r\n\r\n", "invalid response head"),
        ];
        for (answer, want) in cases {
            let mut conn = serve(vec![answer]);
            let e = get(&mut conn).unwrap_err().to_string();
            assert!(e.contains(want), "{answer:?}: {e}");
        }
        let mut conn = serve(vec![b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"]);
        assert!(matches!(get(&mut conn), Err(Error::Protocol(_))));
    }

    #[test]
    fn a_refused_connection_is_a_connect_error() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let endpoint = Endpoint::parse(&format!("127.0.0.1:{port}")).unwrap();
        match Conn::open(&endpoint, None, Duration::from_secs(5)) {
            Err(Error::Connect(e)) => assert_eq!(e, "connection refused"),
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("connected to a closed port"),
        }
    }
}
