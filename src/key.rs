//! Key rules: 1 to [`MAX_KEY_BYTES`] bytes of UTF-8, any characters
//! (including `/`), but no `.` or `..` path segment. In URLs keys are
//! percent-encoded.

use percent_encoding::percent_decode_str;

use crate::error::StoreError;

/// The longest key, in bytes of UTF-8.
pub const MAX_KEY_BYTES: usize = 1024;

/// Checks a key against the rules.
///
/// A key with a `.` or `..` segment (`x/../y`, `./a`, `a/.`) is refused:
/// browsers and curl resolve such segments in a URL before sending it
/// (RFC 3986, 5.2.4; `%2E` too, in browsers), so `/get/x/../y` reaches the
/// server as `/get/y` and no ordinary client could read the key back.
pub fn validate_key(key: &str) -> Result<(), StoreError> {
    validate_key_to_remove(key)?;
    if has_dot_segment(key) {
        return Err(StoreError::InvalidKey(
            "key has a '.' or '..' segment between '/', which browsers and curl resolve \
             away in URLs: no client could reach it"
                .into(),
        ));
    }
    Ok(())
}

/// The rules a key named by a delete or a purge must meet: those of
/// [`validate_key`] but the dot segments, so that a key stored before
/// they were refused can still be removed.
pub fn validate_key_to_remove(key: &str) -> Result<(), StoreError> {
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

/// Whether a segment of `key` between `/` is `.` or `..`.
pub fn has_dot_segment(key: &str) -> bool {
    key.split('/').any(|s| s == "." || s == "..")
}

/// Percent-decodes the key part of a URL path and checks it.
pub fn decode_key(encoded: &str) -> Result<String, StoreError> {
    let key = decode(encoded)?;
    validate_key(&key)?;
    Ok(key)
}

/// [`decode_key`] for a delete or a purge (see [`validate_key_to_remove`]).
pub fn decode_key_to_remove(encoded: &str) -> Result<String, StoreError> {
    let key = decode(encoded)?;
    validate_key_to_remove(&key)?;
    Ok(key)
}

fn decode(encoded: &str) -> Result<String, StoreError> {
    Ok(percent_decode_str(encoded)
        .decode_utf8()
        .map_err(|_| StoreError::InvalidKey("key is not valid UTF-8 once percent-decoded".into()))?
        .into_owned())
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

    #[test]
    fn dot_segments_are_refused_except_to_remove_a_key() {
        for bad in [
            ".", "..", "x/../y", "./a", "a/.", "a/./b", "a/..", "%2E%2E/a", "a/%2e",
        ] {
            assert!(decode_key(bad).is_err(), "{bad}");
            assert!(decode_key_to_remove(bad).is_ok(), "{bad}");
        }
        for good in [
            "...", ".a", "a.", "a/.b/c", "a..b", "v1.2", "a//b", "/a", "a/",
        ] {
            assert!(decode_key(good).is_ok(), "{good}");
        }
    }
}
