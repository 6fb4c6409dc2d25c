//! Leases and key expiry over HTTP: grant and keep alive a lease, wait for
//! a key to expire, and the wall-clock milliseconds deadlines are stated in.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{Client, Resp, Value, json, poll_until, post};

/// Grants a lease of `ttl` (seconds or a duration string); its id.
pub fn grant(c: &mut Client, ttl: &Value) -> u64 {
    let r = post(c, "/leases", &json!({ "ttl": ttl }));
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()["id"]
        .as_u64()
        .unwrap_or_else(|| panic!("no id in {}", r.text()))
}

/// `POST /leases/{id}/keepalive`, whatever it answers.
pub fn keepalive(c: &mut Client, id: u64) -> Resp {
    c.request("POST", &format!("/leases/{id}/keepalive"), &[], b"")
}

/// Waits until `key` answers 404 "expired" (it must answer 200 until
/// then); its expiry's version.
pub fn wait_expired(c: &mut Client, key: &str, limit: Duration) -> u64 {
    let mut version = 0;
    let expired = poll_until(limit, || {
        let r = c.get(&format!("/get/{key}"));
        if r.status == 404 && r.detail().contains("expired") {
            version = r.json()["expired_version"]
                .as_u64()
                .unwrap_or_else(|| panic!("no expired_version in {}", r.text()));
            true
        } else {
            assert_eq!(r.status, 200, "{}", r.text());
            false
        }
    });
    assert!(expired, "{key} did not expire within {limit:?}");
    version
}

/// Milliseconds since the epoch of an RFC 3339 time.
pub fn ms(rfc3339: &str) -> i64 {
    let t = humantime::parse_rfc3339(rfc3339).unwrap_or_else(|e| panic!("{rfc3339}: {e}"));
    millis(t)
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    millis(SystemTime::now())
}

fn millis(t: SystemTime) -> i64 {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}
