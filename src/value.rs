//! Value rules: any JSON value, nested at most [`MAX_DEPTH`] deep.
//!
//! serde_json's `RawValue` checks syntax but not depth, and a value nested
//! thousands deep would break every client that parses it recursively, so
//! vkv refuses it on the way in.

use crate::error::StoreError;

/// The deepest nesting of arrays and objects a value may have: what
/// serde_json parses by default (its recursion limit of 128 allows 127
/// levels), so that every stored value can be read back with it, including
/// by [`crate::Versioned::value_as`].
pub const MAX_DEPTH: usize = 127;

/// Checks the nesting depth of syntactically valid JSON text.
pub fn check_depth(json: &str) -> Result<(), StoreError> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for b in json.bytes() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(StoreError::InvalidValue(format!(
                        "value is nested more than {MAX_DEPTH} deep"
                    )));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_only_structure_outside_strings() {
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(check_depth(&ok).is_ok());
        let deep = format!("[{ok}]");
        assert!(check_depth(&deep).is_err());
        let in_string = format!("\"{}\\\"{}\"", "[".repeat(500), "{".repeat(500));
        assert!(check_depth(&in_string).is_ok());
    }
}
