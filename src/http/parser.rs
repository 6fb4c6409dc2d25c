//! The HTTP/1.x request parser: bytes in, requests out. No socket and no
//! clock: the connection layer feeds it what it read and acts on what it
//! answers, so every framing rule can be tested (and fuzzed with proptest)
//! as a pure function.
//!
//! Every ambiguity that lets two parsers disagree on where a request ends
//! (request smuggling) is rejected with `400`; sizes are checked on partial
//! input so that nothing buffered grows past the limits.

use super::message::HttpRequest;

/// Size limits on one request.
#[derive(Debug, Clone, Copy)]
pub struct ParseLimits {
    /// Largest body (`413` beyond).
    pub max_body_bytes: usize,
    /// Longest request line (`414` beyond).
    pub max_request_line: usize,
    /// Largest header section, request line excluded (`431` beyond).
    pub max_header_bytes: usize,
    /// Most header fields (`431` beyond).
    pub max_headers: usize,
}

/// Longest chunk-size line (with extensions) in a chunked body.
const MAX_CHUNK_LINE: usize = 4 << 10;

/// Why a request is refused: answer `status` with `detail`, then close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejection {
    /// The status to answer (400, 413, 414, 417, 431).
    pub status: u16,
    /// The `detail` of the JSON error.
    pub detail: &'static str,
}

fn reject<T>(status: u16, detail: &'static str) -> Result<T, Rejection> {
    Err(Rejection { status, detail })
}

/// How the response to a request is framed on its connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Framing {
    /// A `HEAD` request: the head only, never the body.
    pub head_only: bool,
    /// Close the connection after the response.
    pub close: bool,
    /// An HTTP/1.0 client that asked for keep-alive: say it is kept.
    pub echo_keep_alive: bool,
}

impl Framing {
    /// The framing of a last response (an error that closes).
    pub fn closing() -> Self {
        Framing {
            close: true,
            ..Framing::default()
        }
    }
}

/// What the parser made of the bytes fed so far.
#[derive(Debug)]
pub enum Progress {
    /// More bytes are needed.
    Incomplete,
    /// The head asked for `100 Continue` and the client may wait for it
    /// before sending the body: send it, then feed what follows.
    SendContinue,
    /// A whole request (`remote` unset) and how to frame its response.
    Complete(HttpRequest, Framing),
}

/// A parsed request head.
#[derive(Debug)]
struct Head {
    method: String,
    target: String,
    minor_version: u8,
    headers: Vec<(String, Vec<u8>)>,
}

impl Head {
    fn values<'h>(&'h self, name: &'h str) -> impl Iterator<Item = &'h [u8]> {
        self.headers
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.trim_ascii())
    }

    fn has_token(&self, name: &str, token: &str) -> bool {
        self.values(name)
            .flat_map(|v| v.split(|&b| b == b','))
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    }

    fn finish(self, body: Vec<u8>) -> Progress {
        // HTTP/1.1 keeps alive unless asked to close; HTTP/1.0 only when asked.
        let http10 = self.minor_version == 0;
        let close = self.has_token("connection", "close")
            || (http10 && !self.has_token("connection", "keep-alive"));
        let framing = Framing {
            head_only: self.method == "HEAD",
            close,
            echo_keep_alive: http10 && !close,
        };
        let request = HttpRequest {
            method: self.method,
            target: self.target,
            headers: self.headers,
            body,
            remote: None,
        };
        Progress::Complete(request, framing)
    }
}

/// Where a chunked body is.
#[derive(Debug)]
enum Chunk {
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk's data: this many bytes left.
    Data(usize),
    /// After a chunk's data: expecting its CRLF.
    DataEnd,
    /// After the last chunk: trailer lines, with this much room left.
    Trailer(usize),
}

#[derive(Debug, Default)]
enum State {
    /// Waiting for a whole head.
    #[default]
    Head,
    /// A `Content-Length` body: this many bytes left.
    Body {
        head: Head,
        body: Vec<u8>,
        left: usize,
    },
    /// A chunked body.
    Chunked {
        head: Head,
        body: Vec<u8>,
        at: Chunk,
    },
}

/// Parses requests one after the other from the bytes of one connection.
#[derive(Debug)]
pub struct RequestParser {
    limits: ParseLimits,
    state: State,
}

impl RequestParser {
    /// A parser at the start of a request.
    pub fn new(limits: ParseLimits) -> Self {
        RequestParser {
            limits,
            state: State::Head,
        }
    }

    /// Whether part of a request (a head) has been consumed: a body is
    /// being read.
    pub fn in_body(&self) -> bool {
        !matches!(self.state, State::Head)
    }

    /// Parses from the start of `input` (the bytes received and not yet
    /// consumed). Returns how many bytes it consumed (the caller drops them)
    /// and what it found. After a rejection the connection must be closed:
    /// the parser's state is meaningless.
    pub fn feed(&mut self, input: &[u8]) -> Result<(usize, Progress), Rejection> {
        let mut used = 0;
        loop {
            let rest = &input[used..];
            match &mut self.state {
                State::Head => {
                    let Some((head, len)) = parse_head(rest, &self.limits)? else {
                        return Ok((used, Progress::Incomplete));
                    };
                    used += len;
                    let wants_continue = check_expect(&head)?;
                    let body = body_framing(&head, &self.limits)?;
                    check_host(&head)?;
                    let has_body = !matches!(body, BodyKind::Empty);
                    self.state = match body {
                        BodyKind::Empty => return Ok((used, head.finish(Vec::new()))),
                        BodyKind::Length(left) => State::Body {
                            head,
                            body: Vec::with_capacity(left.min(64 << 10)),
                            left,
                        },
                        BodyKind::Chunked => State::Chunked {
                            head,
                            body: Vec::new(),
                            at: Chunk::Size,
                        },
                    };
                    // Only worth sending when the client may be waiting for it.
                    if wants_continue && has_body && used == input.len() {
                        return Ok((used, Progress::SendContinue));
                    }
                }
                State::Body { body, left, .. } => {
                    let n = rest.len().min(*left);
                    body.extend_from_slice(&rest[..n]);
                    used += n;
                    *left -= n;
                    if *left > 0 {
                        return Ok((used, Progress::Incomplete));
                    }
                    return Ok((used, self.take_request()));
                }
                State::Chunked { body, at, .. } => {
                    let Some(n) = chunked_step(rest, body, at, &self.limits)? else {
                        return Ok((used, Progress::Incomplete));
                    };
                    used += n;
                    if matches!(at, Chunk::Trailer(0)) {
                        return Ok((used, self.take_request()));
                    }
                }
            }
        }
    }

    /// Ends the request whose body was just read; ready for the next one.
    fn take_request(&mut self) -> Progress {
        match std::mem::take(&mut self.state) {
            State::Body { head, body, .. } | State::Chunked { head, body, .. } => head.finish(body),
            State::Head => Progress::Incomplete,
        }
    }
}

/// One step of a chunked body: `None` when more bytes are needed, else the
/// bytes consumed. The end of the trailer is `Chunk::Trailer(0)`.
fn chunked_step(
    input: &[u8],
    body: &mut Vec<u8>,
    at: &mut Chunk,
    limits: &ParseLimits,
) -> Result<Option<usize>, Rejection> {
    match at {
        Chunk::Size => {
            let Some(len) = line(input, MAX_CHUNK_LINE)? else {
                return Ok(None);
            };
            let size = chunk_size(&input[..len])?;
            if size == 0 {
                *at = Chunk::Trailer(limits.max_header_bytes.max(2));
            } else if size > limits.max_body_bytes.saturating_sub(body.len()) {
                return reject(413, "request body too large");
            } else {
                *at = Chunk::Data(size);
            }
            Ok(Some(len))
        }
        Chunk::Data(left) => {
            let n = input.len().min(*left);
            if n == 0 {
                return Ok(None);
            }
            body.extend_from_slice(&input[..n]);
            *left -= n;
            if *left == 0 {
                *at = Chunk::DataEnd;
            }
            Ok(Some(n))
        }
        Chunk::DataEnd => match input.get(..2) {
            None if input.first().is_none_or(|&b| b == b'\r') => Ok(None),
            Some(b"\r\n") => {
                *at = Chunk::Size;
                Ok(Some(2))
            }
            _ => reject(400, "malformed chunked body"),
        },
        Chunk::Trailer(budget) => {
            let Some(len) = line(input, *budget)? else {
                return Ok(None);
            };
            // The empty line ends the body (budget 0 says so to `feed`).
            *budget = if len == 2 { 0 } else { (*budget - len).max(2) };
            Ok(Some(len))
        }
    }
}

/// The length (CRLF included) of the line at the start of `input`, at most
/// `limit` bytes; `None` while incomplete. A bare CR or LF is rejected:
/// lenient line parsing is how smuggling starts.
fn line(input: &[u8], limit: usize) -> Result<Option<usize>, Rejection> {
    let window = &input[..input.len().min(limit)];
    if let Some(lf) = window.iter().position(|&b| b == b'\n') {
        let cr_ok = lf > 0 && window[lf - 1] == b'\r' && !window[..lf - 1].contains(&b'\r');
        return if cr_ok {
            Ok(Some(lf + 1))
        } else {
            reject(400, "malformed chunked body")
        };
    }
    if window.len() >= limit {
        return reject(400, "chunked body line too long");
    }
    Ok(None)
}

/// The size from a chunk-size line (`1a;ext=x\r\n`).
fn chunk_size(line: &[u8]) -> Result<usize, Rejection> {
    let line = line.strip_suffix(b"\r\n").unwrap_or(line);
    let hex = line
        .split(|&b| b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii_end();
    if hex.is_empty() || !hex.iter().all(u8::is_ascii_hexdigit) {
        return reject(400, "malformed chunk size");
    }
    let hex = std::str::from_utf8(hex).unwrap_or_default();
    Ok(usize::from_str_radix(hex, 16).unwrap_or(usize::MAX))
}

/// Parses the head at the start of `buf`: `None` while incomplete, with the
/// limits checked on every partial input so nothing grows past them.
fn parse_head(buf: &[u8], limits: &ParseLimits) -> Result<Option<(Head, usize)>, Rejection> {
    // httparse skips empty lines before the request line; so do the limits.
    let start = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len());
    // The verdict must not depend on how the bytes were split into reads:
    // httparse sees only the bytes a legal head could span, so a limit is
    // judged on the same prefix whether more bytes follow or not.
    let line_end = start
        .saturating_add(limits.max_request_line)
        .saturating_add(1);
    let line_window = &buf[start..buf.len().min(line_end)];
    let (cut, over, too_long) = match line_window.iter().position(|&b| b == b'\n') {
        Some(k) => {
            let end = start + k + limits.max_header_bytes;
            let too_big = Rejection {
                status: 431,
                detail: "request header section too large",
            };
            (buf.len().min(end), buf.len() > end, too_big)
        }
        None => {
            let too_long = Rejection {
                status: 414,
                detail: "request line too long",
            };
            (buf.len().min(line_end), buf.len() >= line_end, too_long)
        }
    };
    // Header slots on the stack for the usual limit: no allocation per parse.
    let mut on_stack = [httparse::EMPTY_HEADER; 100];
    let mut on_heap = Vec::new();
    let slots = if limits.max_headers <= on_stack.len() {
        &mut on_stack[..limits.max_headers]
    } else {
        on_heap.resize(limits.max_headers, httparse::EMPTY_HEADER);
        &mut on_heap[..]
    };
    let mut parsed = httparse::Request::new(slots);
    let len = match parsed.parse(&buf[..cut]) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if over => return Err(too_long),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return reject(431, "too many request headers");
        }
        Err(_) => return reject(400, "malformed request head"),
    };
    let mut headers = Vec::with_capacity(parsed.headers.len());
    for h in parsed.headers.iter() {
        // httparse already refuses control bytes in values; CR/LF checked again
        // because a value with either would be a header injection downstream.
        if h.value.iter().any(|&b| b == b'\r' || b == b'\n') {
            return reject(400, "invalid header value");
        }
        headers.push((h.name.to_ascii_lowercase(), h.value.to_vec()));
    }
    let head = Head {
        method: parsed.method.unwrap_or_default().to_owned(),
        target: origin_form(parsed.path.unwrap_or_default()),
        minor_version: parsed.version.unwrap_or_default(),
        headers,
    };
    Ok(Some((head, len)))
}

/// The absolute form `http://host/get/k?x` (RFC 9112 3.2.2, which servers
/// must accept) as the origin form `/get/k?x`; anything else as it is.
fn origin_form(target: &str) -> String {
    let lower = target.get(..8).unwrap_or(target).to_ascii_lowercase();
    let after_scheme = if lower.starts_with("http://") {
        &target[7..]
    } else if lower.starts_with("https://") {
        &target[8..]
    } else {
        return target.to_owned();
    };
    match after_scheme.find(['/', '?']) {
        Some(i) if after_scheme[i..].starts_with('/') => after_scheme[i..].to_owned(),
        Some(i) => format!("/{}", &after_scheme[i..]),
        None => "/".to_owned(),
    }
}

/// RFC 9112 3.2: an HTTP/1.1 request without `Host`, or any request with
/// more than one, is a `400`.
fn check_host(head: &Head) -> Result<(), Rejection> {
    match head.values("host").count() {
        0 if head.minor_version >= 1 => reject(400, "missing Host header"),
        0 | 1 => Ok(()),
        _ => reject(400, "more than one Host header"),
    }
}

/// Whether the head asks for `100 Continue`; `417` for any other
/// expectation.
fn check_expect(head: &Head) -> Result<bool, Rejection> {
    let mut expects = head.values("expect").peekable();
    if expects.peek().is_none() {
        return Ok(false);
    }
    if !expects.all(|v| v.eq_ignore_ascii_case(b"100-continue")) {
        return reject(417, "only Expect: 100-continue is supported");
    }
    Ok(head.minor_version == 1)
}

enum BodyKind {
    Empty,
    Length(usize),
    Chunked,
}

/// How the body is delimited. Every ambiguity that lets two parsers disagree
/// on where a request ends (request smuggling) is rejected.
fn body_framing(head: &Head, limits: &ParseLimits) -> Result<BodyKind, Rejection> {
    let te: Vec<&[u8]> = head.values("transfer-encoding").collect();
    let cl: Vec<&[u8]> = head.values("content-length").collect();
    if let Some(first) = te.first() {
        if !cl.is_empty() {
            return reject(400, "both Content-Length and Transfer-Encoding");
        }
        // RFC 9112 6.1: Transfer-Encoding in HTTP/1.0 means faulty framing.
        if te.len() > 1 || !first.eq_ignore_ascii_case(b"chunked") || head.minor_version == 0 {
            return reject(400, "unsupported Transfer-Encoding (only a single chunked)");
        }
        return Ok(BodyKind::Chunked);
    }
    let mut length = None;
    for value in cl {
        let Some(n) = parse_decimal(value) else {
            return reject(400, "invalid Content-Length");
        };
        if length.is_some_and(|l| l != n) {
            return reject(400, "conflicting Content-Length headers");
        }
        length = Some(n);
    }
    match length {
        None | Some(0) => Ok(BodyKind::Empty),
        Some(n) if n > limits.max_body_bytes => reject(413, "request body too large"),
        Some(n) => Ok(BodyKind::Length(n)),
    }
}

/// A plain decimal (no sign, no spaces, unlike `str::parse`); saturates
/// instead of overflowing, which the size limit then rejects.
fn parse_decimal(digits: &[u8]) -> Option<usize> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        std::str::from_utf8(digits)
            .ok()?
            .parse()
            .unwrap_or(usize::MAX),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: ParseLimits = ParseLimits {
        max_body_bytes: 1 << 20,
        max_request_line: 8 << 10,
        max_header_bytes: 16 << 10,
        max_headers: 100,
    };

    fn parse_all(bytes: &[u8]) -> Result<(HttpRequest, Framing), Rejection> {
        let mut p = RequestParser::new(LIMITS);
        let mut at = 0;
        loop {
            match p.feed(&bytes[at..])? {
                (n, Progress::Complete(r, f)) => {
                    assert_eq!(at + n, bytes.len());
                    return Ok((r, f));
                }
                (0, _) => panic!("incomplete: {:?}", String::from_utf8_lossy(bytes)),
                (n, _) => at += n,
            }
        }
    }

    #[test]
    fn host_is_required_once_in_http_1_1() {
        let missing = parse_all(b"GET / HTTP/1.1\r\n\r\n").unwrap_err();
        assert_eq!(
            missing,
            Rejection {
                status: 400,
                detail: "missing Host header"
            }
        );
        let two = parse_all(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n").unwrap_err();
        assert_eq!(two.detail, "more than one Host header");
        let two = parse_all(b"GET / HTTP/1.0\r\nHost: a\r\nhost: a\r\n\r\n").unwrap_err();
        assert_eq!(two.status, 400);
        assert!(parse_all(b"GET / HTTP/1.0\r\n\r\n").is_ok());
    }

    #[test]
    fn absolute_form_is_routed_by_its_path() {
        for (target, path) in [
            ("http://h/get/k", "/get/k"),
            ("HTTP://h:8080/get/k?version=1", "/get/k?version=1"),
            ("https://h", "/"),
            ("http://h?x=1", "/?x=1"),
            ("/plain", "/plain"),
        ] {
            let req = format!("GET {target} HTTP/1.1\r\nHost: h\r\n\r\n");
            let (r, _) = parse_all(req.as_bytes()).unwrap();
            assert_eq!(r.target, path);
        }
    }

    #[test]
    fn continue_is_asked_only_before_the_body_arrives() {
        let head =
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n";
        let mut p = RequestParser::new(LIMITS);
        let (n, progress) = p.feed(head).unwrap();
        assert_eq!(n, head.len());
        assert!(matches!(progress, Progress::SendContinue));
        assert!(matches!(
            p.feed(b"ab").unwrap(),
            (2, Progress::Complete(..))
        ));
        let mut with_body = head.to_vec();
        with_body.extend_from_slice(b"ab");
        assert!(parse_all(&with_body).is_ok());
    }
}
