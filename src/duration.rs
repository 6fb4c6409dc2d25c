//! Durations as people write them: `30s`, `500ms`, `1h 30m`, `2days`
//! (humantime's units), or plain seconds (`30`). Flags such as
//! `--read-timeout` and the TTLs of keys and leases are read the same way.

use std::time::Duration;

/// Parses `s` as a duration with units, or as a whole number of seconds.
pub fn parse(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return t
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| format!("{t} seconds is too long"));
    }
    humantime::parse_duration(t).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_or_plain_seconds() {
        assert_eq!(parse("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("1m 30s"), Ok(Duration::from_secs(90)));
        assert!(parse("").is_err());
        assert!(parse("-1").is_err());
        assert!(parse("ten").is_err());
        assert!(parse("99999999999999999999999").is_err());
    }
}
