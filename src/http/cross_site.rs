//! Defences against requests a web page makes a browser send to vkv.
//!
//! A page on another site cannot read vkv's answers (vkv sends no CORS
//! headers unless `--cors-origins` lists that site), but without these
//! checks it could still make writes, and with DNS rebinding even read:
//! - a "simple" cross-site request (an HTML form, `fetch` with `no-cors`)
//!   carries a body of type `text/plain`, `application/x-www-form-urlencoded`
//!   or `multipart/form-data`: a write whose `Content-Type` is present and is
//!   not JSON (`application/json` or `*/*+json`) is refused, as FastAPI, the
//!   service vkv replaces, refuses to parse it. Without a `Content-Type`
//!   (curl scripts) the body is JSON, as it was;
//! - a body sent as a `Blob` without a type has no `Content-Type` at all, but
//!   every browser sends `Origin` with a cross-site POST: a write whose
//!   `Origin` names another host than the request's `Host` is refused,
//!   unless the operator trusts that origin ([`Origins`]: `--allowed-origins`
//!   for a proxy that rewrites `Host`, `--cors-origins` for web apps on
//!   other sites, which `cors.rs` then answers with CORS headers);
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
    #[error(
        "cross-origin write refused: Origin '{0}' does not match the Host (behind a proxy: \
         pass the client's Host on, or list the origin in --allowed-origins)"
    )]
    CrossOrigin(String),
}

/// The origins (`scheme://host[:port]`) trusted besides the request's own.
#[derive(Debug, Clone, Default)]
pub struct Origins {
    /// `--allowed-origins`: their writes are accepted.
    writes: Vec<String>,
    /// `--cors-origins`: answered with CORS headers; writes accepted.
    cors: Vec<String>,
    /// `--cors-origins '*'`: any origin, by CORS' wildcard.
    cors_any: bool,
}

/// What `Access-Control-Allow-Origin` says to an origin CORS allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowOrigin {
    /// `*`: any origin (never with credentials: vkv sends none).
    Any,
    /// This origin, echoed (then the answer varies by `Origin`).
    This(String),
}

impl Origins {
    /// Origins whose writes are trusted (`allowed`) and those CORS answers
    /// (`cors`, where `*` means any), each as [`parse_origin`] gives it.
    pub fn new(allowed: &[String], cors: &[String]) -> Self {
        Origins {
            writes: allowed.iter().filter(|o| *o != "*").cloned().collect(),
            cors: cors.iter().filter(|o| *o != "*").cloned().collect(),
            cors_any: cors.iter().any(|o| o == "*"),
        }
    }

    /// Whether CORS is configured at all.
    pub fn cors_enabled(&self) -> bool {
        self.cors_any || !self.cors.is_empty()
    }

    /// How CORS answers a request from `origin`, if it allows it.
    pub fn cors(&self, origin: &str) -> Option<AllowOrigin> {
        if self.cors_any {
            return Some(AllowOrigin::Any);
        }
        // The configured string, not the request's bytes, goes back out.
        let origin = normalize(origin)?;
        self.cors
            .iter()
            .find(|o| **o == origin)
            .map(|o| AllowOrigin::This(o.clone()))
    }

    /// Whether a write from `origin` (another than the request's `Host`)
    /// is accepted.
    fn trusts_write(&self, origin: &str) -> bool {
        self.cors_any
            || normalize(origin).is_some_and(|o| self.writes.contains(&o) || self.cors.contains(&o))
    }
}

/// Parses an origin for `--allowed-origins` or `--cors-origins`:
/// `scheme://host[:port]`, no path; lower-cased, the default port dropped
/// (as browsers send it); `*` as it is. `null` (sandboxed pages, files) is
/// refused: any page can send it.
pub fn parse_origin(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s == "*" {
        return Ok(s.to_string());
    }
    normalize(s).ok_or_else(|| {
        format!("'{s}' is not an origin: scheme://host[:port], such as https://app.example.com")
    })
}

/// `origin` in the form browsers send it, or `None` if it is not one.
fn normalize(origin: &str) -> Option<String> {
    let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
    let (scheme, authority) = origin.split_once("://")?;
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    let authority_ok = !authority.is_empty()
        && !authority
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "/?#@\\".contains(c));
    if !scheme_ok || !authority_ok {
        return None;
    }
    let authority = match scheme {
        "http" => authority.strip_suffix(":80").unwrap_or(authority),
        "https" => authority.strip_suffix(":443").unwrap_or(authority),
        _ => authority,
    };
    Some(format!("{scheme}://{authority}"))
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

/// Checks a write's `Content-Type`, and its `Origin` against its `Host`
/// and the `trusted` origins.
pub fn check_write(
    content_type: Option<&str>,
    origin: Option<&str>,
    host: Option<&str>,
    trusted: &Origins,
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
        if !same && !trusted.trusts_write(origin) {
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

    const NONE: Origins = Origins {
        writes: Vec::new(),
        cors: Vec::new(),
        cors_any: false,
    };

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
        let none = NONE;
        for ok in [
            None,
            Some("application/json"),
            Some("Application/JSON; charset=utf-8"),
            Some("application/merge-patch+json"),
        ] {
            assert_eq!(check_write(ok, None, Some("h"), &none), Ok(()), "{ok:?}");
        }
        for bad in [
            "text/plain",
            "text/plain;charset=UTF-8",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "",
            "json",
        ] {
            assert!(
                check_write(Some(bad), None, Some("h"), &none).is_err(),
                "{bad}"
            );
        }
        let host = Some("127.0.0.1:8080");
        assert_eq!(
            check_write(None, Some("http://127.0.0.1:8080"), host, &none),
            Ok(())
        );
        for bad in ["http://evil.example", "null", "http://127.0.0.1:9090"] {
            assert!(check_write(None, Some(bad), host, &none).is_err(), "{bad}");
        }
        assert!(check_write(None, Some("http://h"), None, &none).is_err());
        // Trusted origins, by either flag; CORS' `*` trusts any.
        let trusted = Origins::new(
            &["https://proxy.example".into()],
            &["http://app.example:8000".into()],
        );
        for ok in [
            "https://proxy.example",
            "HTTPS://Proxy.example:443",
            "http://app.example:8000",
        ] {
            assert_eq!(check_write(None, Some(ok), host, &trusted), Ok(()), "{ok}");
        }
        for bad in ["http://proxy.example", "http://app.example", "null"] {
            assert!(
                check_write(None, Some(bad), host, &trusted).is_err(),
                "{bad}"
            );
        }
        let any = Origins::new(&[], &["*".into()]);
        assert_eq!(
            check_write(None, Some("http://x.example"), host, &any),
            Ok(())
        );
    }

    #[test]
    fn origins_parse_as_browsers_send_them() {
        for (given, parsed) in [
            ("https://App.Example.com", "https://app.example.com"),
            ("https://app.example.com:443/", "https://app.example.com"),
            ("http://localhost:80", "http://localhost"),
            ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
            ("http://[::1]:3000", "http://[::1]:3000"),
            ("*", "*"),
        ] {
            assert_eq!(parse_origin(given).as_deref(), Ok(parsed), "{given}");
        }
        for bad in [
            "null",
            "app.example.com",
            "https://",
            "https://a.example/path",
            "https://u@a.example",
            "1http://a",
        ] {
            assert!(parse_origin(bad).is_err(), "{bad}");
        }
        let o = Origins::new(&[], &["https://app.example.com".into()]);
        assert_eq!(
            o.cors("https://APP.example.com:443"),
            Some(AllowOrigin::This("https://app.example.com".into()))
        );
        assert_eq!(o.cors("https://other.example"), None);
        assert!(!Origins::default().cors_enabled());
    }
}
