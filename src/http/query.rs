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

    /// Refuses (`422`, naming it) a parameter not in `accepted`, and one
    /// given twice.
    pub fn only(&self, accepted: &[&str]) -> Result<(), ApiError> {
        for (i, (name, _)) in self.pairs.iter().enumerate() {
            if !accepted.contains(&name.as_str()) {
                let takes = if accepted.is_empty() {
                    "this endpoint takes none".to_string()
                } else {
                    format!("this endpoint takes: {}", accepted.join(", "))
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

    #[test]
    fn only_accepted_names_once_each() {
        let q = |raw: &str| Query::parse(Some(raw)).unwrap_or_default();
        assert!(
            q("version=1&timeout=2")
                .only(&["version", "timeout"])
                .is_ok()
        );
        assert!(q("").only(&[]).is_ok());
        let e = q("versoin=1").only(&["version"]).err().map(|e| e.detail);
        assert_eq!(
            e.as_deref(),
            Some("unknown query parameter 'versoin' (this endpoint takes: version)")
        );
        let e = q("x").only(&[]).err().map(|e| e.detail);
        assert_eq!(
            e.as_deref(),
            Some("unknown query parameter 'x' (this endpoint takes none)")
        );
        assert!(q("version=1&version=2").only(&["version"]).is_err());
    }
}
