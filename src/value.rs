//! Value rules: any JSON value that every JSON client can read back.
//!
//! Values are stored as the exact text sent (`1.0` stays `1.0`), and
//! serde_json's `RawValue` checks only syntax. What it lets through but
//! clients cannot parse back is refused on the way in, following I-JSON
//! (RFC 7493):
//! - nesting deeper than [`MAX_DEPTH`] (recursive parsers give up);
//! - a number that overflows an IEEE 754 double (`1e999`): serde_json and
//!   others refuse it, JavaScript reads `Infinity`, which is not JSON;
//! - a string with an escaped lone surrogate (`"\ud800"`): not Unicode, so
//!   no UTF-8 decoder, serde_json or Python's strict `json` accepts it.
//!
//! Integers beyond 2^53 (`12345678901234567890`) are finite doubles and
//! are kept byte for byte, as are duplicate member names and Unicode
//! noncharacters, which common parsers read back.

use crate::error::StoreError;

/// The deepest nesting of arrays and objects a value may have: what
/// serde_json parses by default (its recursion limit of 128 allows 127
/// levels), so that every stored value can be read back with it, including
/// by [`crate::Versioned::value_as`].
pub const MAX_DEPTH: usize = 127;

fn invalid(what: String) -> StoreError {
    StoreError::InvalidValue(what)
}

/// Checks syntactically valid JSON text (as `RawValue` accepted it) against
/// the rules above, in one pass over its bytes.
pub fn check_value(json: &str) -> Result<(), StoreError> {
    let bytes = json.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => i = check_string(bytes, i + 1)?,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(invalid(format!(
                        "value is nested more than {MAX_DEPTH} deep"
                    )));
                }
                i += 1;
            }
            b']' | b'}' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < bytes.len()
                    && matches!(bytes[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                {
                    i += 1;
                }
                check_number(&json[start..i])?;
            }
            _ => i += 1,
        }
    }
    Ok(())
}

/// A number must be a finite double (I-JSON 2.2), both correctly rounded
/// (as most parsers read it) and as serde_json reads it: by default it
/// rounds a few values within an ulp of the largest double differently
/// (`1.79769313486231581e308` is infinite to it), so near the top both
/// are asked.
fn check_number(text: &str) -> Result<(), StoreError> {
    let finite = match text.parse::<f64>() {
        Ok(n) if n.abs() < 1e308 => true,
        Ok(n) => n.is_finite() && serde_json::from_str::<serde_json::Number>(text).is_ok(),
        Err(_) => false,
    };
    match finite {
        true => Ok(()),
        false => {
            let shown: String = text.chars().take(40).collect();
            let more = if shown.len() < text.len() { "..." } else { "" };
            Err(invalid(format!(
                "number {shown}{more} is out of range: JSON numbers must fit an IEEE 754 \
                 double (RFC 7493)"
            )))
        }
    }
}

/// Scans a string from just after its opening quote; returns the index
/// after its closing quote. Escaped UTF-16 surrogates must come in pairs
/// (I-JSON 2.1); raw bytes are already valid UTF-8 (the text is a `&str`).
fn check_string(b: &[u8], mut i: usize) -> Result<usize, StoreError> {
    // A high surrogate just read, waiting for its low half.
    let mut high: Option<u16> = None;
    while i < b.len() {
        match b[i] {
            b'"' => break,
            b'\\' if b.get(i + 1) == Some(&b'u') => {
                let unit = b
                    .get(i + 2..i + 6)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u16::from_str_radix(h, 16).ok())
                    .ok_or_else(|| invalid("malformed \\u escape".into()))?;
                match (high.take(), unit) {
                    (None, 0xD800..=0xDBFF) => high = Some(unit),
                    (Some(_), 0xDC00..=0xDFFF) => {}
                    (Some(h), _) => return Err(lone_surrogate(h)),
                    (None, 0xDC00..=0xDFFF) => return Err(lone_surrogate(unit)),
                    (None, _) => {}
                }
                i += 6;
                continue;
            }
            _ if high.is_some() => break,
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
    if let Some(h) = high {
        return Err(lone_surrogate(h));
    }
    Ok(i + 1)
}

fn lone_surrogate(unit: u16) -> StoreError {
    invalid(format!(
        "string has a lone surrogate \\u{unit:04x}: JSON strings must be Unicode text \
         (RFC 7493)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_only_structure_outside_strings() {
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(check_value(&ok).is_ok());
        let deep = format!("[{ok}]");
        assert!(check_value(&deep).is_err());
        let in_string = format!("\"{}\\\"{}\"", "[".repeat(500), "{".repeat(500));
        assert!(check_value(&in_string).is_ok());
    }

    #[test]
    fn numbers_must_be_finite_doubles() {
        for ok in [
            "0",
            "-0.0",
            "1.0",
            "12345678901234567890",
            "1e308",
            "-1.7976931348623157e308",
            "1e-999",
            "0e999999",
            "[1,2.5e3,{\"a\":-3}]",
        ] {
            assert!(check_value(ok).is_ok(), "{ok}");
        }
        let huge = format!("1{}", "0".repeat(400));
        for bad in [
            "1e999",
            "-1e309",
            "[1, 2e400]",
            "{\"a\":1E999}",
            &huge,
            "1.79769313486231581e308",
        ] {
            let e = check_value(bad).err().map(|e| e.to_string());
            assert!(
                e.as_deref().is_some_and(|e| e.contains("out of range")),
                "{bad}: {e:?}"
            );
        }
    }

    #[test]
    fn surrogates_must_pair() {
        for ok in [
            r#""\ud83d\ude00""#,
            r#""a\u00e9\n\\ud800""#,
            r#""😀""#,
            r#"{"\ud83d\ude00": "\uffff"}"#,
        ] {
            assert!(check_value(ok).is_ok(), "{ok}");
        }
        for bad in [
            r#""\ud800""#,
            r#""\udc00""#,
            r#""\ud800x""#,
            r#""\ud800\n""#,
            r#""\ud800\u0041""#,
            r#""\ud800\ud800""#,
            r#"{"\udfff": 1}"#,
            r#"["ok", "\uDBFF"]"#,
        ] {
            let e = check_value(bad).err().map(|e| e.to_string());
            assert!(
                e.as_deref().is_some_and(|e| e.contains("lone surrogate")),
                "{bad}: {e:?}"
            );
        }
    }
}
