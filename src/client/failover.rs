//! Talking to a list of endpoints as one service: a request goes to the
//! endpoint that answered last; on a connection error or a `503` the next
//! is tried, each once, like `etcdctl --endpoints`. A request that may
//! have been acted on (a write whose connection was lost after it was
//! sent) is not sent again: its outcome is unknown, and the caller is
//! told so.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use super::args::Connect;
use super::endpoint::{Endpoint, Scheme};
use super::exit::{Failure, code, detail};
use super::http::{Conn, Error, Request, Response};
use super::tls::{Roots, Trust};

/// A client of the servers `--endpoints` names.
pub struct Client {
    endpoints: Vec<Endpoint>,
    trust: Option<Trust>,
    token: Option<String>,
    timeout: Duration,
    /// The endpoint tried first: the one that answered last.
    current: usize,
    conn: Option<Conn>,
}

impl Client {
    /// A client from the connection flags: endpoints parsed, the token
    /// read, TLS set up if an endpoint is `https` (usage errors if any of
    /// that fails).
    pub fn new(connect: &Connect) -> Result<Client, Failure> {
        let endpoints = connect
            .endpoints
            .iter()
            .filter(|e| !e.trim().is_empty())
            .map(|e| Endpoint::parse(e))
            .collect::<Result<Vec<_>, _>>()
            .map_err(Failure::usage)?;
        if endpoints.is_empty() {
            return Err(Failure::usage("--endpoints names no endpoint"));
        }
        let trust = if endpoints.iter().any(|e| e.scheme == Scheme::Https) {
            let roots = match &connect.cacert {
                Some(file) => Roots::CaFile(file.clone()),
                None => Roots::System,
            };
            let trust = Trust::new(&roots, true)
                .map_err(|e| Failure::usage(format!("https endpoint: {e}")))?;
            Some(trust)
        } else {
            None
        };
        let token = match &connect.token_file {
            Some(file) => Some(read_token(file)?),
            None => std::env::var("VKV_TOKEN")
                .ok()
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty()),
        };
        if let Some(t) = &token
            && !t.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(Failure::usage(
                "the token has spaces or control characters (a bearer token is printable ASCII)",
            ));
        }
        Ok(Client::with(endpoints, trust, token, connect.timeout))
    }

    /// A client of `endpoints` with the settings given.
    pub fn with(
        endpoints: Vec<Endpoint>,
        trust: Option<Trust>,
        token: Option<String>,
        timeout: Duration,
    ) -> Client {
        Client {
            endpoints,
            trust,
            token,
            timeout,
            current: 0,
            conn: None,
        }
    }

    /// The endpoint that answered last (or will be tried first).
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoints[self.current]
    }

    /// Sends `req` and returns the first answer that is not a `503`,
    /// whatever its status.
    pub fn call(&mut self, req: Request<'_>) -> Result<Response, Failure> {
        self.attempt(req, None)
    }

    /// [`Client::call`], a `2xx` answer's body streamed to `sink`. Only
    /// failures that left `sink` untouched (no connection, a `503`) are
    /// tried on the next endpoint.
    pub fn call_to(&mut self, req: Request<'_>, sink: &mut dyn Write) -> Result<Response, Failure> {
        self.attempt(req, Some(sink))
    }

    /// [`Client::call`], and any answer but a `2xx` is the failure it means.
    pub fn expect_ok(&mut self, req: Request<'_>) -> Result<Response, Failure> {
        let r = self.call(req)?;
        self.ok(r)
    }

    /// `r` if it is a `2xx`, else the failure it means.
    pub fn ok(&self, r: Response) -> Result<Response, Failure> {
        if (200..300).contains(&r.status) {
            Ok(r)
        } else {
            Err(Failure::from_status(
                r.status,
                &detail(&r.body),
                &self.endpoint().to_string(),
            ))
        }
    }

    fn attempt(
        &mut self,
        req: Request<'_>,
        mut sink: Option<&mut dyn Write>,
    ) -> Result<Response, Failure> {
        let token = self.token.clone();
        let req = Request {
            token: token.as_deref(),
            ..req
        };
        let n = self.endpoints.len();
        let mut tried = Vec::new();
        for i in 0..n {
            let index = (self.current + i) % n;
            let endpoint = &self.endpoints[index];
            // A kept connection is to `current`; to another, a new one.
            if index != self.current {
                self.conn = None;
            }
            // A kept-alive connection the server closed meanwhile fails at
            // once: an idempotent request gets one more go on a new one.
            let mut fresh_retry = req.idempotent();
            let outcome = loop {
                let reused = self.conn.is_some();
                let mut conn = match self.conn.take() {
                    Some(c) => c,
                    None => match Conn::open(endpoint, self.trust.as_ref(), self.timeout) {
                        Ok(c) => c,
                        Err(e) => break Err(e),
                    },
                };
                let result = match sink.as_deref_mut() {
                    Some(s) => conn.send_to(&req, s),
                    None => conn.send(&req),
                };
                match result {
                    Ok(r) => {
                        if conn.reusable() {
                            self.conn = Some(conn);
                        }
                        break Ok(r);
                    }
                    Err(Error::Lost(_)) if reused && fresh_retry && conn.answers > 0 => {
                        fresh_retry = false;
                    }
                    Err(e) => break Err(e),
                }
            };
            match outcome {
                // The write may have been applied: another endpoint could
                // apply it twice.
                Ok(r) if r.status == 503 && r.header("vkv-outcome") == Some("unknown") => {
                    self.current = index;
                    return Err(Failure::new(
                        code::UNAVAILABLE,
                        format!("{endpoint}: {}", detail(&r.body)),
                    ));
                }
                Ok(r) if r.status == 503 => {
                    self.conn = None;
                    tried.push(format!("{endpoint}: 503 {}", detail(&r.body)));
                }
                Ok(r) => {
                    self.current = index;
                    return Ok(r);
                }
                Err(Error::Connect(e)) => tried.push(format!("{endpoint}: {e}")),
                Err(Error::Lost(e)) if req.idempotent() && sink.is_none() => {
                    tried.push(format!("{endpoint}: {e}"))
                }
                Err(Error::Lost(e)) => {
                    self.current = index;
                    return Err(Failure::new(
                        code::UNAVAILABLE,
                        if req.idempotent() {
                            format!("{endpoint}: {e}")
                        } else {
                            format!(
                                "{endpoint}: {e}, after the request was sent: it may or may \
                                 not have been applied (read the key to see)"
                            )
                        },
                    ));
                }
                Err(Error::Protocol(e)) => {
                    return Err(Failure::other(format!("{endpoint}: {e}")));
                }
                Err(Error::Sink(e)) => {
                    return Err(Failure::other(format!("cannot write the answer: {e}")));
                }
            }
        }
        Err(Failure::new(
            code::UNAVAILABLE,
            format!("no endpoint answered: {}", tried.join("; ")),
        ))
    }
}

/// The token in `file`: its first line, trimmed.
fn read_token(file: &Path) -> Result<String, Failure> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| Failure::usage(format!("--token-file {}: {e}", file.display())))?;
    let token = text.lines().next().unwrap_or("").trim();
    if token.is_empty() {
        return Err(Failure::usage(format!(
            "--token-file {}: no token on its first line",
            file.display()
        )));
    }
    Ok(token.to_string())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;
    use crate::client::http::test_server;

    const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    const BUSY: &[u8] =
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 15\r\n\r\n{\"detail\":\"no\"}";

    fn client(ports: &[u16]) -> Client {
        let endpoints = ports
            .iter()
            .map(|p| Endpoint::parse(&format!("127.0.0.1:{p}")).unwrap())
            .collect();
        Client::with(endpoints, None, None, Duration::from_secs(10))
    }

    fn get() -> Request<'static> {
        Request::get("/get/k".to_string())
    }

    #[test]
    fn a_kept_alive_connection_the_server_closed_is_replaced_for_a_read() {
        // The first connection answers once and closes.
        let (port, requests) = test_server(vec![vec![OK], vec![OK]]);
        let mut c = client(&[port]);
        assert_eq!(c.call(get()).unwrap().body, b"ok");
        assert_eq!(c.call(get()).unwrap().body, b"ok");
        assert_eq!(requests.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_503_passes_to_the_next_endpoint_which_is_then_asked_first() {
        let (busy, _) = test_server(vec![vec![BUSY]]);
        let (ok, requests) = test_server(vec![vec![OK, OK]]);
        let mut c = client(&[busy, ok]);
        assert_eq!(c.call(get()).unwrap().status, 200);
        assert_eq!(c.endpoint().port, ok);
        assert_eq!(c.call(get()).unwrap().status, 200);
        assert_eq!(requests.load(Ordering::SeqCst), 2);
        // Every endpoint 503: unavailable, each named.
        let (a, _) = test_server(vec![vec![BUSY]]);
        let (b, _) = test_server(vec![vec![BUSY]]);
        let f = client(&[a, b]).call(get()).unwrap_err();
        assert_eq!(f.code, code::UNAVAILABLE);
        assert!(f.message.contains(&format!(":{a}: 503 no")), "{f}");
        assert!(f.message.contains(&format!(":{b}: 503 no")), "{f}");
    }

    #[test]
    fn a_503_whose_outcome_is_unknown_is_not_tried_elsewhere() {
        let unknown: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nVkv-Outcome: unknown\r\n\
            Content-Length: 20\r\n\r\n{\"detail\":\"unknown\"}";
        let (stalled, _) = test_server(vec![vec![unknown]]);
        let (ok, requests) = test_server(vec![vec![OK]]);
        let f = client(&[stalled, ok]).call(get()).unwrap_err();
        assert_eq!(f.code, code::UNAVAILABLE);
        assert!(f.message.contains("unknown"), "{f}");
        assert_eq!(requests.load(Ordering::SeqCst), 0, "sent again elsewhere");
    }

    #[test]
    fn a_write_lost_after_it_was_sent_is_not_sent_again() {
        // Reads the request, then closes without answering.
        let (lost, _) = test_server(vec![vec![b""]]);
        let (ok, requests) = test_server(vec![vec![OK]]);
        let mut c = client(&[lost, ok]);
        let put = Request {
            method: "POST",
            body: Some(b"{\"value\":1}"),
            ..Request::get("/put/k".to_string())
        };
        let f = c.call(put).unwrap_err();
        assert_eq!(f.code, code::UNAVAILABLE);
        assert!(
            f.message.contains("may or may not have been applied"),
            "{f}"
        );
        assert_eq!(requests.load(Ordering::SeqCst), 0, "sent twice");
        // A read lost the same way is asked of the next endpoint.
        let (lost, _) = test_server(vec![vec![b""]]);
        let mut c = client(&[lost, ok]);
        assert_eq!(c.call(get()).unwrap().status, 200);
        assert_eq!(requests.load(Ordering::SeqCst), 1);
    }
}
