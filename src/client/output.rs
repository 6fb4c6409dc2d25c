//! Printing answers: values as people read them, JSON on one line, and
//! stdout closed early (`vkv ls | head`) as a quiet end, not an error. No
//! colour anywhere, so `NO_COLOR` has nothing to turn off.

use std::io::{self, Write};

use serde_json::value::RawValue;

use super::exit::Failure;

/// Writes `text` and a newline to stdout, flushed (a watcher's reader
/// sees each line as it comes).
pub fn line(text: &str) -> Result<(), Failure> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush())
        .map_err(stdout_failure)
}

/// Writes `bytes` as they are, then a newline unless they end in one.
pub fn raw(bytes: &[u8]) -> Result<(), Failure> {
    let mut out = io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| {
            if bytes.ends_with(b"\n") {
                Ok(())
            } else {
                out.write_all(b"\n")
            }
        })
        .and_then(|()| out.flush())
        .map_err(stdout_failure)
}

/// A failed write to stdout: a closed pipe ends the command quietly.
pub fn stdout_failure(e: io::Error) -> Failure {
    if e.kind() == io::ErrorKind::BrokenPipe {
        Failure::quiet()
    } else {
        Failure::other(format!("cannot write to stdout: {e}"))
    }
}

/// A value as `vkv get` prints it: a string as its text, anything else as
/// the JSON stored (exactly as it was sent).
pub fn value_text(value: &RawValue) -> String {
    match serde_json::from_str::<String>(value.get()) {
        Ok(s) => s,
        Err(_) => value.get().to_string(),
    }
}

/// JSON text on one line: the whitespace between tokens removed, strings
/// and numbers untouched (a value is printed as stored, never re-encoded,
/// so large numbers keep every digit).
pub fn compact(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in json.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !matches!(c, ' ' | '\t' | '\n' | '\r') {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw_value(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_string()).unwrap()
    }

    #[test]
    fn values_print_as_people_read_them() {
        assert_eq!(value_text(&raw_value(r#""on""#)), "on");
        assert_eq!(value_text(&raw_value(r#""a\nb \"q\"""#)), "a\nb \"q\"");
        assert_eq!(value_text(&raw_value(r#"{"a": 1}"#)), r#"{"a": 1}"#);
        assert_eq!(
            value_text(&raw_value("12345678901234567890123")),
            "12345678901234567890123"
        );
    }

    #[test]
    fn compact_keeps_strings_and_numbers() {
        assert_eq!(
            compact("{\n  \"a b\": [1, 2.50],\r\n\t\"c\\\" d\": \" x \"\n}"),
            "{\"a b\":[1,2.50],\"c\\\" d\":\" x \"}"
        );
        assert_eq!(compact(r#""\\" "#), r#""\\""#);
    }
}
