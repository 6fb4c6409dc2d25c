//! Key rules: 1 to [`MAX_KEY_BYTES`] bytes of UTF-8, any characters
//! (including `/`). In URLs keys are percent-encoded.

use percent_encoding::percent_decode_str;

use crate::error::StoreError;

/// The longest key, in bytes of UTF-8.
pub const MAX_KEY_BYTES: usize = 1024;

/// Checks a key against the rules.
pub fn validate_key(key: &str) -> Result<(), StoreError> {
    if key.is_empty() {
        return Err(StoreError::InvalidKey("key must not be empty".into()));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(StoreError::InvalidKey(format!(
            "key is {} bytes, the limit is {MAX_KEY_BYTES}",
            key.len()
        )));
    }
    Ok(())
}

/// Percent-decodes the key part of a URL path and checks it.
pub fn decode_key(encoded: &str) -> Result<String, StoreError> {
    let key = percent_decode_str(encoded)
        .decode_utf8()
        .map_err(|_| StoreError::InvalidKey("key is not valid UTF-8 once percent-decoded".into()))?
        .into_owned();
    validate_key(&key)?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_and_checks() {
        assert_eq!(decode_key("a%2Fb%20c").ok().as_deref(), Some("a/b c"));
        assert_eq!(decode_key("x/y").ok().as_deref(), Some("x/y"));
        assert!(decode_key("").is_err());
        assert!(decode_key("%FF").is_err());
        assert!(decode_key(&"k".repeat(1024)).is_ok());
        assert!(decode_key(&"k".repeat(1025)).is_err());
        // A literal '%' that does not start an escape stays as it is.
        assert_eq!(decode_key("100%").ok().as_deref(), Some("100%"));
    }
}
