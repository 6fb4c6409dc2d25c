//! TTLs and leases on PostgreSQL: not stored there yet, so refused with a
//! clear `422` (and nothing written), rather than taken and never expired.

use crate::common::{Server, json};
use crate::fresh_database;

#[test]
fn ttls_and_leases_are_refused_clearly_and_write_nothing() {
    let (_, url) = fresh_database();
    let s = Server::start_on(&url, &[]);
    let mut c = s.client();
    let body = serde_json::to_vec(&json!({"value": 1})).unwrap();
    for path in ["/put/k?ttl=30s", "/put/k?lease=1"] {
        let r = c.request("POST", path, &[], &body);
        assert_eq!(r.status, 422, "{path}: {}", r.text());
        assert!(r.detail().contains("PostgreSQL"), "{}", r.detail());
    }
    let batch = json!({"puts": [{"key": "k", "value": 1, "ttl": "5s"}]});
    let r = c.request("POST", "/batch", &[], &serde_json::to_vec(&batch).unwrap());
    assert_eq!(r.status, 422, "{}", r.text());
    assert_eq!(c.get("/get/k").status, 404, "nothing written");
    let r = c.request("POST", "/leases", &[], br#"{"ttl": "10s"}"#);
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(r.detail().contains("PostgreSQL"), "{}", r.detail());
    for (method, path) in [
        ("GET", "/leases"),
        ("GET", "/leases/1"),
        ("POST", "/leases/1/keepalive"),
        ("DELETE", "/leases/1"),
    ] {
        let r = c.request(method, path, &[], b"");
        assert_eq!(r.status, 422, "{method} {path}: {}", r.text());
    }
    // Plain writes are as before: no deadline.
    let r = c.put("k", &json!(2));
    assert_eq!(r.status, 200);
    let got = c.get("/get/k").json();
    assert!(got.get("expires_at").is_none(), "{got}");
    assert_eq!(
        c.get("/history/k").json()["versions"][0]["operation"],
        "create"
    );
}
