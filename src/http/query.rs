//! Query-string parsing (`?version=3&x=y`), percent-decoded.

use percent_encoding::percent_decode_str;

use super::api_error::ApiError;

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

    /// The value of the first parameter called `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// An optional positive integer parameter (`422` if present but not one).
    pub fn positive(&self, name: &str) -> Result<Option<u64>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => match v.parse::<u64>() {
                Ok(n) if n >= 1 && n <= i64::MAX as u64 => Ok(Some(n)),
                _ => Err(ApiError::unprocessable(format!(
                    "query parameter '{name}' must be a positive integer, got '{v}'"
                ))),
            },
        }
    }
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
        assert_eq!(q.positive("version").ok().flatten(), Some(3));
        assert_eq!(q.get("a"), Some("b c"));
        assert_eq!(q.get("flag"), Some(""));
        assert_eq!(q.get("x"), Some("1 2"));
        for bad in ["0", "-1", "abc", "", "1.5", "99999999999999999999"] {
            let q = Query::parse(Some(&format!("version={bad}"))).unwrap_or_default();
            assert!(q.positive("version").is_err(), "{bad}");
        }
        assert!(Query::parse(Some("a=%FF")).is_err());
    }
}
