//! Defences against requests a web page makes a browser send to vkv.
//!
//! A page on another site cannot read vkv's answers (vkv sends no CORS
//! headers), but without these checks it could still make writes, and with
//! DNS rebinding even read:
//! - a "simple" cross-site request (an HTML form, `fetch` with `no-cors`)
//!   carries a body of type `text/plain`, `application/x-www-form-urlencoded`
//!   or `multipart/form-data`: a write whose `Content-Type` is present and is
//!   not JSON (`application/json` or `*/*+json`) is refused, as FastAPI, the
//!   service vkv replaces, refuses to parse it. Without a `Content-Type`
//!   (curl scripts) the body is JSON, as it was;
//! - a body sent as a `Blob` without a type has no `Content-Type` at all, but
//!   every browser sends `Origin` with a cross-site POST: a write whose
//!   `Origin` names another host than the request's `Host` is refused;
//! - DNS rebinding points an attacker's host name at 127.0.0.1, so the
//!   browser treats vkv as the attacker's own origin. Its requests still
//!   carry the attacker's name in `Host`: a server listening on a loopback
//!   address answers only `Host` values naming loopback (`localhost`,
//!   `*.localhost`, `127.x.y.z`, `[::1]`) or listed in `--allowed-hosts`.

use std::net::{IpAddr, SocketAddr};

/// Why a request was refused; `api_error` maps it to a status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CrossSiteError {
    /// A write whose body is declared as something other than JSON.
    #[error(
        "unsupported Content-Type '{0}': send the body as Content-Type: application/json (or omit the header)"
    )]
    NotJson(String),
    /// A `Host` this server does not answer for.
    #[error(
        "host '{0}' is not allowed: this server listens on loopback and answers only Host values naming loopback (or listed in --allowed-hosts)"
    )]
    HostNotAllowed(String),
    /// A write sent by a page of another origin.
    #[error("cross-origin write refused: Origin '{0}' does not match the Host")]
    CrossOrigin(String),
}

/// Which `Host` values the server answers.
#[derive(Debug, Clone, Default)]
pub struct HostPolicy {
    /// Check `Host` at all: when listening on loopback, or when
    /// `--allowed-hosts` lists names.
    enforce: bool,
    /// `--allowed-hosts` entries, lower-case, without port.
    allowed: Vec<String>,
}

impl HostPolicy {
    /// The policy for a server listening on `local` with `--allowed-hosts`
    /// `allowed` (`*` turns the check off).
    pub fn new(local: SocketAddr, allowed: &[String]) -> Self {
        let allowed: Vec<String> = allowed
            .iter()
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect();
        let any = allowed.iter().any(|h| h == "*");
        HostPolicy {
            enforce: !any && (local.ip().is_loopback() || !allowed.is_empty()),
            allowed,
        }
    }

    /// Checks the `Host` header (`None`: HTTP/1.0 without one, which no
    /// browser sends).
    pub fn check(&self, host: Option<&str>) -> Result<(), CrossSiteError> {
        let Some(host) = host else { return Ok(()) };
        if !self.enforce {
            return Ok(());
        }
        let name = host_name(host).to_ascii_lowercase();
        if names_loopback(&name) || self.allowed.contains(&name) {
            Ok(())
        } else {
            Err(CrossSiteError::HostNotAllowed(printable(host)))
        }
    }
}

/// Checks a write's `Content-Type` and `Origin` against its `Host`.
pub fn check_write(
    content_type: Option<&str>,
    origin: Option<&str>,
    host: Option<&str>,
) -> Result<(), CrossSiteError> {
    if let Some(ct) = content_type {
        let media = ct.split(';').next().unwrap_or_default().trim();
        let media = media.to_ascii_lowercase();
        let json = media == "application/json"
            || media
                .split_once('/')
                .is_some_and(|(_, sub)| sub.ends_with("+json"));
        if !json {
            return Err(CrossSiteError::NotJson(printable(ct)));
        }
    }
    if let Some(origin) = origin {
        // `scheme://host[:port]`, or `null` (sandboxed frames, files).
        let authority = origin.split_once("://").map(|(_, a)| a);
        let same = authority
            .zip(host)
            .is_some_and(|(a, h)| a.eq_ignore_ascii_case(h.trim()));
        if !same {
            return Err(CrossSiteError::CrossOrigin(printable(origin)));
        }
    }
    Ok(())
}

/// The host name of a `Host` value: without the port and IPv6 brackets.
fn host_name(host: &str) -> &str {
    let host = host.trim();
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or_default();
    }
    host.rsplit_once(':').map_or(host, |(name, _)| name)
}

/// `localhost`, `*.localhost` (RFC 6761: always loopback) or a loopback
/// address literal.
fn names_loopback(name: &str) -> bool {
    let name = name.trim_end_matches('.');
    name == "localhost"
        || name.ends_with(".localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A request header for an error detail (a JSON string): at most 100 characters, no
/// control characters.
fn printable(v: &str) -> String {
    v.chars().filter(|c| !c.is_control()).take(100).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on(addr: &str, allowed: &[&str]) -> HostPolicy {
        let allowed: Vec<String> = allowed.iter().map(|s| s.to_string()).collect();
        HostPolicy::new(addr.parse().unwrap_or_else(|e| panic!("{e}")), &allowed)
    }

    #[test]
    fn loopback_servers_answer_loopback_names_only() {
        let p = on("127.0.0.1:8080", &[]);
        for ok in [
            "localhost",
            "LOCALHOST:8080",
            "127.0.0.1:8080",
            "127.9.9.9",
            "[::1]:80",
            "[::1]",
            "app.localhost:1",
            "localhost.",
        ] {
            assert_eq!(p.check(Some(ok)), Ok(()), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:8080",
            "localhost.evil.example",
            "10.0.0.1",
            "",
            "[::2]:80",
        ] {
            assert!(p.check(Some(bad)).is_err(), "{bad}");
        }
        assert_eq!(p.check(None), Ok(()));
        let p = on("[::1]:8080", &["vkv.internal"]);
        assert_eq!(p.check(Some("VKV.internal:8080")), Ok(()));
        assert!(p.check(Some("other.internal")).is_err());
    }

    #[test]
    fn other_servers_check_only_when_told() {
        assert_eq!(on("0.0.0.0:8080", &[]).check(Some("any.example")), Ok(()));
        let p = on("0.0.0.0:8080", &["kv.example.com"]);
        assert_eq!(p.check(Some("kv.example.com:443")), Ok(()));
        assert_eq!(p.check(Some("localhost:8080")), Ok(()));
        assert!(p.check(Some("evil.example")).is_err());
        let p = on("127.0.0.1:8080", &["*"]);
        assert_eq!(p.check(Some("evil.example")), Ok(()));
    }

    #[test]
    fn writes_must_be_json_from_the_same_origin() {
        for ok in [
            None,
            Some("application/json"),
            Some("Application/JSON; charset=utf-8"),
            Some("application/merge-patch+json"),
        ] {
            assert_eq!(check_write(ok, None, Some("h")), Ok(()), "{ok:?}");
        }
        for bad in [
            "text/plain",
            "text/plain;charset=UTF-8",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "",
            "json",
        ] {
            assert!(check_write(Some(bad), None, Some("h")).is_err(), "{bad}");
        }
        let host = Some("127.0.0.1:8080");
        assert_eq!(
            check_write(None, Some("http://127.0.0.1:8080"), host),
            Ok(())
        );
        for bad in ["http://evil.example", "null", "http://127.0.0.1:9090"] {
            assert!(check_write(None, Some(bad), host).is_err(), "{bad}");
        }
        assert!(check_write(None, Some("http://h"), None).is_err());
    }
}
