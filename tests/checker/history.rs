//! What the clients did and saw: every operation with its key, replica,
//! start and end (nanoseconds on one monotonic clock) and its answer,
//! classified. The checker (`check.rs`) reads nothing else.

use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::common::{Client, Resp, json};

/// Nanoseconds since the run's [`Clock`] started.
pub type Nanos = u64;

/// The run's one monotonic clock, shared by every thread.
#[derive(Clone, Copy)]
pub struct Clock(Instant);

impl Clock {
    pub fn start() -> Clock {
        Clock(Instant::now())
    }

    pub fn now(&self) -> Nanos {
        self.at(Instant::now())
    }

    pub fn at(&self, t: Instant) -> Nanos {
        u64::try_from(t.saturating_duration_since(self.0).as_nanos()).unwrap_or(u64::MAX)
    }
}

/// Seconds, for messages.
pub fn secs(t: Nanos) -> String {
    format!("{:.3}s", t as f64 / 1e9)
}

/// What an operation asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `POST /put/{key}`.
    Put,
    /// `POST /put/{key}?if_version=E`.
    CondPut(u64),
    /// `DELETE /delete/{key}`.
    Delete,
    /// `DELETE /delete/{key}?purge=true`.
    Purge,
    /// `GET /get/{key}`.
    Get,
    /// `GET /get/{key}?version=N`.
    GetVersion(u64),
    /// `GET /get/{key}` with `If-None-Match: "N"`.
    GetIfNoneMatch(u64),
    /// `GET /get/{key}?wait_after=N&timeout=S`.
    Poll { after: u64, timeout_s: u64 },
}

impl Kind {
    pub fn name(&self) -> &'static str {
        match self {
            Kind::Put => "put",
            Kind::CondPut(_) => "put if_version",
            Kind::Delete => "delete",
            Kind::Purge => "purge",
            Kind::Get => "get",
            Kind::GetVersion(_) => "get ?version",
            Kind::GetIfNoneMatch(_) => "get If-None-Match",
            Kind::Poll { .. } => "get wait_after",
        }
    }

    /// A write: it may change the key.
    pub fn writes(&self) -> bool {
        matches!(
            self,
            Kind::Put | Kind::CondPut(_) | Kind::Delete | Kind::Purge
        )
    }
}

/// What an operation got, classified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A put or delete acknowledged (200) with this version.
    Written(u64),
    /// A purge acknowledged (200) with the count of versions removed.
    Purged(u64),
    /// A read's 200: the version, and the operation whose value it holds
    /// (`None`: a value no client wrote).
    Value { version: u64, writer: Option<u64> },
    /// 304: the latest is still this version.
    NotModified(u64),
    /// 404: the key's latest is a tombstone of this version, or (`None`)
    /// the key or version does not exist.
    NotFound { deleted_at: Option<u64> },
    /// 410: the version was removed.
    Gone,
    /// 409: the condition failed; the key was at this version.
    Conflict { current: u64 },
    /// 503, a timeout or a broken connection: a write may or may not have
    /// happened; a read tells nothing.
    Unknown(String),
    /// Any other answer (a 500, a malformed body...): always a violation.
    Unexpected(u16, String),
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Written(v) => write!(f, "200 version {v}"),
            Outcome::Purged(n) => write!(f, "200 purged {n} versions"),
            Outcome::Value { version, writer } => match writer {
                Some(w) => write!(f, "200 version {version} (value of op #{w})"),
                None => write!(f, "200 version {version} (a value no client wrote)"),
            },
            Outcome::NotModified(v) => write!(f, "304 (still version {v})"),
            Outcome::NotFound {
                deleted_at: Some(v),
            } => write!(f, "404 deleted at version {v}"),
            Outcome::NotFound { deleted_at: None } => write!(f, "404 not found"),
            Outcome::Gone => write!(f, "410 gone"),
            Outcome::Conflict { current } => write!(f, "409 (key at version {current})"),
            Outcome::Unknown(why) => write!(f, "unknown ({why})"),
            Outcome::Unexpected(s, body) => write!(f, "unexpected {s}: {body}"),
        }
    }
}

/// One operation of one client.
#[derive(Clone, Debug)]
pub struct Op {
    /// Unique in the run; a put's value is `{"op": id}`.
    pub id: u64,
    /// Index into [`History::keys`].
    pub key: u16,
    pub replica: u8,
    pub kind: Kind,
    pub start: Nanos,
    pub end: Nanos,
    pub outcome: Outcome,
}

impl Op {
    pub fn describe(&self, keys: &[String]) -> String {
        format!(
            "op #{} {} {} on replica {} [{} .. {}] -> {}",
            self.id,
            self.kind.name(),
            self.target(keys),
            self.replica,
            secs(self.start),
            secs(self.end),
            self.outcome
        )
    }

    fn target(&self, keys: &[String]) -> String {
        let key = &keys[usize::from(self.key)];
        match self.kind {
            Kind::CondPut(e) => format!("{key} if_version={e}"),
            Kind::GetVersion(n) => format!("{key} version={n}"),
            Kind::GetIfNoneMatch(n) => format!("{key} If-None-Match \"{n}\""),
            Kind::Poll { after, timeout_s } => {
                format!("{key} wait_after={after} timeout={timeout_s}")
            }
            _ => key.clone(),
        }
    }
}

/// Everything the clients did, in no particular order.
#[derive(Default)]
pub struct History {
    pub keys: Vec<String>,
    pub ops: Vec<Op>,
}

/// How long a client waits to connect, and for an answer: past vkv's own
/// bounds (a write is answered 503 at its 10 s `--read-timeout`), so a
/// timeout here is vkv failing to answer.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(15);

/// A keep-alive connection to one replica, reopened after any error.
pub struct Conn {
    pub addr: SocketAddr,
    client: Option<Client>,
}

impl Conn {
    pub fn new(addr: SocketAddr) -> Conn {
        Conn { addr, client: None }
    }

    /// One request; an I/O error closes the connection (the next request
    /// opens another).
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<Resp> {
        if self.client.is_none() {
            let s = std::net::TcpStream::connect_timeout(&self.addr, CONNECT_TIMEOUT)?;
            s.set_read_timeout(Some(ANSWER_TIMEOUT))?;
            s.set_write_timeout(Some(ANSWER_TIMEOUT))?;
            s.set_nodelay(true)?;
            let mut c = Client::over(Box::new(s));
            c.host = self.addr.to_string();
            self.client = Some(c);
        }
        let client = self.client.as_mut().expect("connected above");
        let r = client.try_request(method, path, headers, body);
        if r.is_err() || r.as_ref().is_ok_and(close_requested) {
            self.client = None;
        }
        r
    }
}

fn close_requested(r: &Resp) -> bool {
    r.header("connection")
        .is_some_and(|v| v.eq_ignore_ascii_case("close"))
}

/// Runs `kind` on `key` (its name `name`, as it appears in a path) over
/// `conn` and records it.
pub fn perform(
    conn: &mut Conn,
    clock: &Clock,
    id: u64,
    (key, name): (u16, &str),
    replica: u8,
    kind: Kind,
) -> Op {
    let json_type = [("Content-Type", "application/json")];
    let body = json!({ "value": { "op": id } }).to_string();
    let inm;
    let start = clock.now();
    let answer = match kind {
        Kind::Put => conn.request("POST", &format!("/put/{name}"), &json_type, body.as_bytes()),
        Kind::CondPut(e) => conn.request(
            "POST",
            &format!("/put/{name}?if_version={e}"),
            &json_type,
            body.as_bytes(),
        ),
        Kind::Delete => conn.request("DELETE", &format!("/delete/{name}"), &[], b""),
        Kind::Purge => conn.request("DELETE", &format!("/delete/{name}?purge=true"), &[], b""),
        Kind::Get => conn.request("GET", &format!("/get/{name}"), &[], b""),
        Kind::GetVersion(n) => conn.request("GET", &format!("/get/{name}?version={n}"), &[], b""),
        Kind::GetIfNoneMatch(n) => {
            inm = format!("\"{n}\"");
            conn.request(
                "GET",
                &format!("/get/{name}"),
                &[("If-None-Match", &inm)],
                b"",
            )
        }
        Kind::Poll { after, timeout_s } => conn.request(
            "GET",
            &format!("/get/{name}?wait_after={after}&timeout={timeout_s}"),
            &[],
            b"",
        ),
    };
    let end = clock.now();
    let outcome = match answer {
        Ok(r) => classify(kind, &r),
        Err(e) => Outcome::Unknown(format!("no answer: {e}")),
    };
    Op {
        id,
        key,
        replica,
        kind,
        start,
        end,
        outcome,
    }
}

/// The meaning of an answer to `kind`.
fn classify(kind: Kind, r: &Resp) -> Outcome {
    let body: Option<serde_json::Value> = serde_json::from_slice(&r.body).ok();
    let field = |name: &str| body.as_ref().and_then(|b| b[name].as_u64());
    let unexpected = || {
        let text = r.text();
        Outcome::Unexpected(r.status, text.chars().take(200).collect())
    };
    match (r.status, kind) {
        (200, Kind::Purge) => field("purged_versions").map_or_else(unexpected, Outcome::Purged),
        (200, Kind::Put | Kind::CondPut(_) | Kind::Delete) => {
            field("version").map_or_else(unexpected, Outcome::Written)
        }
        (200, _) => match field("version") {
            Some(version) => Outcome::Value {
                version,
                writer: body.as_ref().and_then(|b| b["value"]["op"].as_u64()),
            },
            None => unexpected(),
        },
        (304, Kind::GetIfNoneMatch(n)) => Outcome::NotModified(n),
        (404, _) => Outcome::NotFound {
            deleted_at: deleted_at(&r.detail()),
        },
        (410, Kind::GetVersion(_)) => Outcome::Gone,
        (409, Kind::CondPut(_)) => field("current_version")
            .map_or_else(unexpected, |current| Outcome::Conflict { current }),
        (503, _) => Outcome::Unknown(format!("503 {}", r.detail())),
        _ => unexpected(),
    }
}

/// The version in "key 'K' was deleted at version N".
fn deleted_at(detail: &str) -> Option<u64> {
    let rest = detail.split(" was deleted at version ").nth(1)?;
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

#[test]
fn a_tombstone_version_is_read_from_the_detail() {
    assert_eq!(deleted_at("key 'k' was deleted at version 12"), Some(12));
    assert_eq!(deleted_at("key 'k' not found"), None);
}
