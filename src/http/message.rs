//! The request and response values that cross between the connection layer
//! (`conn`) and the worker pool. Plain data: no sockets in here.

use std::fs::File;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;

/// One parsed HTTP/1.x request with its whole body already read.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    /// The method token as sent (`GET`, `POST`, ...).
    pub method: String,
    /// The raw request-target (`/get/a%20b?version=2`), valid UTF-8.
    pub target: String,
    /// Headers in arrival order; names lower-cased.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The request body (empty when none was sent).
    pub body: Vec<u8>,
    /// The peer address, when known.
    pub remote: Option<SocketAddr>,
}

impl HttpRequest {
    /// The first header named `name` (lower-case), if its value is UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
            .map(str::trim)
    }

    /// The path part of the target (before `?`), still percent-encoded.
    pub fn path(&self) -> &str {
        self.target.split_once('?').map_or(&self.target, |(p, _)| p)
    }

    /// The query part of the target (after `?`), if any.
    pub fn query(&self) -> Option<&str> {
        self.target.split_once('?').map(|(_, q)| q)
    }
}

/// An HTTP response to be written by the connection layer.
///
/// Header values are always built by vkv itself, never copied from the
/// request (CVE-2026-66753: no request bytes in response headers).
#[derive(Debug, Clone, PartialEq)]
pub struct HttpResponse {
    /// Status code (200, 404, ...).
    pub status: u16,
    /// Extra headers. `Content-Length`, `Date` and `Connection` are added by
    /// the connection layer; `Content-Type` defaults to JSON when absent.
    pub headers: Vec<(&'static str, String)>,
    /// The body bytes (empty when `file` is set), or the first of them
    /// when `parts` follow.
    pub body: Vec<u8>,
    /// The rest of the body, after `body`: pieces that may be shared with
    /// another owner (a cached value), so a large answer is sent from where
    /// it is, never copied whole.
    pub parts: Vec<Part>,
    /// A body streamed from a file instead of `body`, for large answers
    /// such as backups.
    pub file: Option<FileBody>,
    /// Close the connection after writing this response.
    pub close: bool,
    /// An answer to `HEAD` whose length is not known without making the
    /// body (a backup): the connection layer then sends no
    /// `Content-Length`, which must not be sent unless it is the length a
    /// `GET` would get (RFC 9110 8.6). Ignored for other methods.
    pub length_unknown: bool,
}

/// A response body read from an open file as it is sent, so it never has
/// to fit in memory. Its length is fixed when it is made: the connection
/// sends exactly that many bytes (or closes the connection).
#[derive(Clone)]
pub struct FileBody {
    file: Arc<File>,
    len: u64,
}

impl FileBody {
    /// The first `len` bytes of `file`, from its current position.
    pub fn new(file: File, len: u64) -> Self {
        FileBody {
            file: Arc::new(file),
            len,
        }
    }

    /// The number of bytes sent.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the body is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes, from the file's current position.
    pub fn reader(&self) -> impl Read + '_ {
        (&*self.file).take(self.len)
    }
}

/// Bytes another owner holds too (a cached value), which an answer sends
/// from where they are.
pub trait SharedBytes: Send + Sync {
    /// The bytes.
    fn bytes(&self) -> &[u8];
}

/// A piece of a response body (see [`HttpResponse::parts`]).
#[derive(Clone)]
pub enum Part {
    /// Bytes of this response alone.
    Owned(Vec<u8>),
    /// Bytes shared with another owner: sent without a copy.
    Shared(Arc<dyn SharedBytes>),
}

impl Part {
    /// The bytes of this piece.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Part::Owned(b) => b,
            Part::Shared(s) => s.bytes(),
        }
    }
}

impl std::fmt::Debug for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Part::Owned(b) => write!(f, "Owned({} bytes)", b.len()),
            Part::Shared(s) => write!(f, "Shared({} bytes)", s.bytes().len()),
        }
    }
}

impl PartialEq for Part {
    fn eq(&self, other: &Self) -> bool {
        self.bytes() == other.bytes()
    }
}

impl std::fmt::Debug for FileBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileBody").field("len", &self.len).finish()
    }
}

impl PartialEq for FileBody {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.file, &other.file)
    }
}

impl HttpResponse {
    /// A `200`-style response with a JSON body.
    pub fn json(status: u16, body: Vec<u8>) -> Self {
        HttpResponse {
            status,
            headers: Vec::new(),
            body,
            parts: Vec::new(),
            file: None,
            close: false,
            length_unknown: false,
        }
    }

    /// A response whose body is streamed from `file`, with `content_type`.
    pub fn file(status: u16, content_type: &str, file: FileBody) -> Self {
        let mut r =
            HttpResponse::json(status, Vec::new()).with_header("Content-Type", content_type);
        r.file = Some(file);
        r
    }

    /// A response whose body is `first` followed by `parts`.
    pub fn json_parts(status: u16, first: Vec<u8>, parts: Vec<Part>) -> Self {
        let mut r = HttpResponse::json(status, first);
        r.parts = parts;
        r
    }

    /// The length of the body, wherever it comes from.
    pub fn body_len(&self) -> u64 {
        match &self.file {
            Some(file) => file.len(),
            None => self.parts.iter().fold(self.body.len() as u64, |n, p| {
                n.saturating_add(p.bytes().len() as u64)
            }),
        }
    }

    /// The whole body in one buffer (a file body is not read: empty).
    pub fn body_bytes(&self) -> Vec<u8> {
        let mut all = self.body.clone();
        for part in &self.parts {
            all.extend_from_slice(part.bytes());
        }
        all
    }

    /// The JSON error shape every error uses: `{"detail": "..."}`.
    pub fn error(status: u16, detail: &str) -> Self {
        let body = serde_json::to_vec(&serde_json::json!({ "detail": detail }))
            .unwrap_or_else(|_| b"{\"detail\":\"error\"}".to_vec());
        HttpResponse::json(status, body)
    }

    /// Adds a header (builder style).
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// Marks an answer to `HEAD` as having no known length (see
    /// [`HttpResponse::length_unknown`]).
    pub fn length_unknown(mut self) -> Self {
        self.length_unknown = true;
        self
    }

    /// Marks the response as the last one on its connection.
    pub fn closing(mut self) -> Self {
        self.close = true;
        self
    }

    /// The value of a header set on this response (name compared ASCII
    /// case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The standard reason phrase for the status codes vkv sends.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        417 => "Expectation Failed",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        507 => "Insufficient Storage",
        _ => "Unknown",
    }
}
