//! Query-string parsing (`?version=3&x=y`), percent-decoded.

use percent_encoding::percent_decode_str;

use super::api_error::ApiError;

/// The largest version number (versions are stored as 64-bit signed
/// integers in both databases).
pub const MAX_VERSION: u64 = i64::MAX as u64;

/// A query parameter a route takes, and the values the server accepts for
/// it. The handlers parse with these, `Route::params` lists them and the
/// OpenAPI document states them (type, minimum, maximum), so the three
/// cannot disagree; a contract test probes each bound on a real server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Param {
    /// Its name in the query string.
    pub name: &'static str,
    /// What it takes.
    pub kind: Kind,
}

/// What a query parameter takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An integer from `min` to `max`, both included.
    Integer {
        /// The smallest accepted.
        min: u64,
        /// The largest accepted.
        max: u64,
    },
    /// `true` or `false` (also `1` or `0`).
    Boolean,
    /// Any text.
    Text,
}

impl Param {
    const fn integer(name: &'static str, min: u64, max: u64) -> Param {
        Param {
            name,
            kind: Kind::Integer { min, max },
        }
    }
}

/// `?version=N` of `GET /get/{key}`: a version to read.
pub const VERSION: Param = Param::integer("version", 1, MAX_VERSION);
/// `?if_version=N` of a write: its condition (0: no live version).
pub const IF_VERSION: Param = Param::integer("if_version", 0, MAX_VERSION);
/// `?wait_after=N`: a long poll for a version above N.
pub const WAIT_AFTER: Param = Param::integer("wait_after", 0, MAX_VERSION);
/// `?timeout=S`: a long poll's limit in seconds.
pub const TIMEOUT: Param = Param::integer("timeout", 1, 300);
/// `?limit=N` of a listing.
pub const LIMIT: Param = Param::integer("limit", 1, 1000);
/// `?before=N` of `/history`: versions below N.
pub const BEFORE: Param = Param::integer("before", 1, MAX_VERSION);
/// `?ttl=30s` of a put: the key expires this long after the write.
pub const TTL: Param = Param {
    name: "ttl",
    kind: Kind::Text,
};
/// `?lease=ID` of a put: the key expires with the lease.
pub const LEASE: Param = Param::integer("lease", 1, MAX_VERSION);
/// `?purge=true` of a delete.
pub const PURGE: Param = Param {
    name: "purge",
    kind: Kind::Boolean,
};
/// `?prefix=P` of `/keys`.
pub const PREFIX: Param = Param {
    name: "prefix",
    kind: Kind::Text,
};
/// `?after=K` of `/keys`.
pub const AFTER: Param = Param {
    name: "after",
    kind: Kind::Text,
};
/// `?values=true` of `/keys` (each key's latest value) and of `/changes`
/// (`false`: changes without their values).
pub const VALUES: Param = Param {
    name: "values",
    kind: Kind::Boolean,
};
/// `?after=R` of `/changes`: changes with a revision above R (0: from the
/// oldest kept).
pub const CHANGES_AFTER: Param = Param::integer("after", 0, MAX_VERSION);
/// `?wait=S` of `/changes`: a long poll of up to S seconds.
pub const WAIT: Param = Param::integer("wait", 0, 300);
/// `?delimiter=/` of `/keys`: one level of the key tree.
pub const DELIMITER: Param = Param {
    name: "delimiter",
    kind: Kind::Text,
};
/// `?v=HASH` of the key browser's assets: their content hash, so that a
/// new binary's page never runs an old cached script.
pub const ASSET_HASH: Param = Param {
    name: "v",
    kind: Kind::Text,
};
/// `?key=K` of `/ui`: the key the page opens.
pub const UI_KEY: Param = Param {
    name: "key",
    kind: Kind::Text,
};

/// The decoded `name=value` pairs of a query string.
#[derive(Debug, Default)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    /// Parses `raw` (the part after `?`); `+` means a space.
    pub fn parse(raw: Option<&str>) -> Result<Query, ApiError> {
        let mut pairs = Vec::new();
        for part in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (name, value) = part.split_once('=').unwrap_or((part, ""));
            pairs.push((decode(name)?, decode(value)?));
        }
        Ok(Query { pairs })
    }

    /// Refuses (`422`, naming it) a parameter not in `accepted`, and one
    /// given twice.
    pub fn only(&self, accepted: &[Param]) -> Result<(), ApiError> {
        for (i, (name, _)) in self.pairs.iter().enumerate() {
            if !accepted.iter().any(|p| p.name == name) {
                let takes = if accepted.is_empty() {
                    "this endpoint takes none".to_string()
                } else {
                    let names: Vec<&str> = accepted.iter().map(|p| p.name).collect();
                    format!("this endpoint takes: {}", names.join(", "))
                };
                return Err(ApiError::unprocessable(format!(
                    "unknown query parameter '{}' ({takes})",
                    printable(name)
                )));
            }
            if self.pairs[..i].iter().any(|(n, _)| n == name) {
                return Err(ApiError::unprocessable(format!(
                    "query parameter '{name}' given twice"
                )));
            }
        }
        Ok(())
    }

    /// The value of the first parameter called `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The integer parameter `p`, if given (`422` if it is not an integer
    /// within `p`'s bounds).
    pub fn integer(&self, p: Param) -> Result<Option<u64>, ApiError> {
        let Kind::Integer { min, max } = p.kind else {
            return Err(ApiError::new(
                500,
                format!("'{}' is not an integer", p.name),
            ));
        };
        let Some(v) = self.get(p.name) else {
            return Ok(None);
        };
        match v.parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(Some(n)),
            _ => Err(ApiError::unprocessable(format!(
                "query parameter '{}' must be an integer from {min} to {max}, got '{}'",
                p.name,
                printable(v)
            ))),
        }
    }

    /// The boolean parameter `p` (absent: false).
    pub fn boolean(&self, p: Param) -> Result<bool, ApiError> {
        match self.get(p.name) {
            None | Some("false" | "0") => Ok(false),
            Some("true" | "1") => Ok(true),
            Some(other) => Err(ApiError::unprocessable(format!(
                "query parameter '{}' must be true or false, got '{}'",
                p.name,
                printable(other)
            ))),
        }
    }
}

/// A parameter name for an error detail: at most 100 characters, no
/// control characters.
fn printable(name: &str) -> String {
    name.chars().filter(|c| !c.is_control()).take(100).collect()
}

fn decode(s: &str) -> Result<String, ApiError> {
    let s = s.replace('+', " ");
    percent_decode_str(&s)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| ApiError::new(400, "query string is not valid UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_validates() {
        let q = Query::parse(Some("version=3&a=b%20c&flag&x=1+2")).unwrap_or_default();
        assert_eq!(q.integer(VERSION).ok().flatten(), Some(3));
        assert_eq!(q.get("a"), Some("b c"));
        assert_eq!(q.get("flag"), Some(""));
        assert_eq!(q.get("x"), Some("1 2"));
        for bad in [
            "0",
            "-1",
            "abc",
            "",
            "1.5",
            "99999999999999999999",
            "9223372036854775808",
        ] {
            let q = Query::parse(Some(&format!("version={bad}"))).unwrap_or_default();
            assert!(q.integer(VERSION).is_err(), "{bad}");
        }
        let q = Query::parse(Some("limit=1000&timeout=301")).unwrap_or_default();
        assert_eq!(q.integer(LIMIT).ok().flatten(), Some(1000));
        assert!(q.integer(TIMEOUT).is_err());
        assert!(Query::parse(Some("a=%FF")).is_err());
        let q = Query::parse(Some("purge=maybe")).unwrap_or_default();
        assert!(q.boolean(PURGE).is_err());
        assert_eq!(Query::default().boolean(PURGE).ok(), Some(false));
    }

    #[test]
    fn only_accepted_names_once_each() {
        let q = |raw: &str| Query::parse(Some(raw)).unwrap_or_default();
        assert!(q("version=1&timeout=2").only(&[VERSION, TIMEOUT]).is_ok());
        assert!(q("").only(&[]).is_ok());
        let e = q("versoin=1").only(&[VERSION]).err().map(|e| e.detail);
        assert_eq!(
            e.as_deref(),
            Some("unknown query parameter 'versoin' (this endpoint takes: version)")
        );
        let e = q("x").only(&[]).err().map(|e| e.detail);
        assert_eq!(
            e.as_deref(),
            Some("unknown query parameter 'x' (this endpoint takes none)")
        );
        assert!(q("version=1&version=2").only(&[VERSION]).is_err());
    }
}
