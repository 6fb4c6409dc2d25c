//! The response encoder: an [`HttpResponse`] and its [`Framing`] to the
//! bytes of an HTTP/1.1 response head (and a small body). No socket.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use super::message::{FileBody, HttpResponse, Part, reason_phrase};
use super::parser::Framing;

/// A body of parts up to this size is copied after the head (the whole
/// answer then goes out in one write); a larger one is sent from where its
/// parts are.
pub const INLINE_MAX: usize = 64 << 10;

/// What goes out after the bytes [`encode`] wrote, as the socket takes it.
pub enum Tail {
    /// A file body.
    File(FileBody),
    /// Parts too large to copy (see [`INLINE_MAX`]).
    Parts(Vec<Part>),
}

/// The interim answer to `Expect: 100-continue`.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// 1xx, 204 and 304 responses never carry a body (RFC 9110 6.4.1).
pub fn is_bodyless(status: u16) -> bool {
    status < 200 || status == 204 || status == 304
}

/// Appends the response to `out`, so it goes out in one write; for a file
/// body or large parts, only the head and `body`: the connection sends the
/// returned tail after them.
pub fn encode(response: HttpResponse, framing: &Framing, out: &mut Vec<u8>) -> Option<Tail> {
    let status = response.status;
    let bodyless = is_bodyless(status);
    let length = response.body_len();
    let inline = usize::try_from(length).is_ok_and(|n| n <= INLINE_MAX);
    out.reserve(
        192 + if inline {
            length as usize
        } else {
            response.body.len()
        },
    );
    // Writing into a Vec cannot fail: the results are ignored.
    let _ = write!(out, "HTTP/1.1 {status} {}\r\nDate: ", reason_phrase(status));
    push_date(out);
    out.extend_from_slice(b"\r\n");
    if response.header("content-type").is_none() {
        out.extend_from_slice(b"Content-Type: application/json\r\n");
    }
    for (name, value) in &response.headers {
        // Framing headers are ours alone; a value with CR/LF would inject headers.
        let ours = ["content-length", "connection", "date", "transfer-encoding"];
        if ours.iter().any(|o| name.eq_ignore_ascii_case(o))
            || value.bytes().any(|b| b == b'\r' || b == b'\n')
        {
            continue;
        }
        let _ = write!(out, "{name}: {value}\r\n");
    }
    let unknown = framing.head_only && response.length_unknown;
    if !bodyless && !unknown {
        let _ = write!(out, "Content-Length: {length}\r\n");
    }
    if framing.close {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if framing.echo_keep_alive {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if framing.head_only || bodyless {
        return None;
    }
    if let Some(file) = response.file {
        return Some(Tail::File(file));
    }
    out.extend_from_slice(&response.body);
    if inline || response.parts.is_empty() {
        for part in &response.parts {
            out.extend_from_slice(part.bytes());
        }
        return None;
    }
    Some(Tail::Parts(response.parts))
}

thread_local! {
    /// The formatted `Date` and the second it is for, per thread.
    static DATE: std::cell::RefCell<(u64, String)> = const { std::cell::RefCell::new((0, String::new())) };
}

fn push_date(out: &mut Vec<u8>) {
    let now = SystemTime::now();
    let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    DATE.with_borrow_mut(|(cached, text)| {
        if *cached != second || text.is_empty() {
            *text = httpdate::fmt_http_date(now);
            *cached = second;
        }
        out.extend_from_slice(text.as_bytes());
    });
}
