//! Endpoint URLs (`http://host:port[/base]`, `https://...`) and the
//! percent-encoding of keys in paths and of query values.

use std::fmt;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// `http` or `https`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

/// One server to talk to, from `--endpoints`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub scheme: Scheme,
    /// The host as written, without brackets for an IPv6 address.
    pub host: String,
    pub port: u16,
    /// A path prefix every request goes under (a server behind a proxy at
    /// `/vkv`), without the trailing `/`; empty for none.
    pub base: String,
}

impl Endpoint {
    /// Parses `http://host[:port][/base]` or `https://...`; a URL without a
    /// scheme is taken as `http://`.
    pub fn parse(url: &str) -> Result<Endpoint, String> {
        let bad = |why: &str| format!("endpoint {url:?}: {why} (try http://127.0.0.1:8080)");
        let trimmed = url.trim();
        let (scheme, rest) = match trimmed.split_once("://") {
            Some((s, rest)) => match s.to_ascii_lowercase().as_str() {
                "http" => (Scheme::Http, rest),
                "https" => (Scheme::Https, rest),
                _ => return Err(bad("the scheme must be http or https")),
            },
            None => (Scheme::Http, trimmed),
        };
        if rest.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("no spaces or control characters allowed"));
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if path.contains(['?', '#']) {
            return Err(bad("no query or fragment allowed"));
        }
        if authority.contains('@') {
            return Err(bad("no user name allowed; give a token with --token-file"));
        }
        let default_port = match scheme {
            Scheme::Http => 80,
            Scheme::Https => 443,
        };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
            match after.strip_prefix(':') {
                Some(p) => (host, Some(p)),
                None if after.is_empty() => (host, None),
                None => return Err(bad("unexpected text after ']'")),
            }
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = match port {
            None => default_port,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .ok_or_else(|| bad("the port must be a number from 1 to 65535"))?,
        };
        Ok(Endpoint {
            scheme,
            host: host.to_string(),
            port,
            base: path.trim_end_matches('/').to_string(),
        })
    }

    /// The `Host` header: the host and, unless it is the scheme's
    /// default, the port.
    pub fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        match (self.scheme, self.port) {
            (Scheme::Http, 80) | (Scheme::Https, 443) => host,
            (_, port) => format!("{host}:{port}"),
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
        };
        write!(f, "{scheme}://{}{}", self.host_header(), self.base)
    }
}

/// What a key keeps unencoded in a path: RFC 3986's unreserved characters
/// and `/` (keys are often paths; the server takes `/` as part of the key).
const PATH: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

/// What a query value keeps unencoded: the unreserved characters.
const QUERY: &AsciiSet = &PATH.add(b'/');

/// `key` as a path segment: `config/a b` -> `config/a%20b`.
pub fn path_key(key: &str) -> String {
    utf8_percent_encode(key, PATH).to_string()
}

/// `value` as a query value: `a/b&c` -> `a%2Fb%26c`.
pub fn query_value(value: &str) -> String {
    utf8_percent_encode(value, QUERY).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_endpoints() {
        let e = Endpoint::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(
            (e.scheme, e.host.as_str(), e.port),
            (Scheme::Http, "127.0.0.1", 8080)
        );
        assert_eq!(e.to_string(), "http://127.0.0.1:8080");
        let e = Endpoint::parse("HTTPS://kv.example/vkv/").unwrap();
        assert_eq!(
            (e.scheme, e.port, e.base.as_str()),
            (Scheme::Https, 443, "/vkv")
        );
        assert_eq!(e.host_header(), "kv.example");
        assert_eq!(e.to_string(), "https://kv.example/vkv");
        let e = Endpoint::parse("[::1]:9000").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("::1", 9000));
        assert_eq!(e.host_header(), "[::1]:9000");
        let e = Endpoint::parse("localhost").unwrap();
        assert_eq!((e.scheme, e.port), (Scheme::Http, 80));
        for bad in [
            "ftp://x",
            "http://:80",
            "http://x:0",
            "http://x:99999",
            "http://x:y",
            "http://u@x",
            "http://x/?a=1",
            "http://[::1",
            "http://[::1]x",
            "http://x/a b",
            "http://x/a\r\nX: y",
            "",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn encodes_keys_and_query_values() {
        assert_eq!(path_key("config/a b"), "config/a%20b");
        assert_eq!(path_key("ü?#%"), "%C3%BC%3F%23%25");
        assert_eq!(query_value("a/b&c=d+e"), "a%2Fb%26c%3Dd%2Be");
        assert_eq!(path_key("a-b_c.d~e"), "a-b_c.d~e");
    }
}
