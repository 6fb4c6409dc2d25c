//! The cache is bounded in bytes as well as in keys (`--cache-bytes`), and
//! the bound never makes a read go backwards.

use crate::common::{Client, Server, json};

fn put_sized(c: &mut Client, key: &str, tag: u64, len: usize) {
    let body = format!("{{\"value\": [{tag}, \"{}\"]}}", "x".repeat(len));
    let r = c.request("POST", &format!("/put/{key}"), &[], body.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn cache_holds_at_most_its_byte_budget_and_evicts_least_recent() {
    let s = Server::start(&["--cache-size", "1000", "--cache-bytes", "1MiB"]);
    let mut c = s.client();
    for i in 0..20 {
        put_sized(&mut c, &format!("k{i}"), i, 200_000);
    }
    let st = c.get("/cache/stats").json();
    let bytes = st["bytes"].as_u64().unwrap();
    assert!(bytes <= 1 << 20, "{st}");
    assert!(bytes >= 4 * 200_000, "{st}");
    assert_eq!(st["size"], 5, "{st}");
    assert_eq!(st["evictions"], 15, "{st}");
    assert_eq!(st["is_full"], true, "{st}");
    // Evicted keys are read from the database, every one at its value.
    for i in 0..20 {
        assert_eq!(c.get(&format!("/get/k{i}")).json()["value"][0], i);
    }
    let st = c.get("/cache/stats").json();
    assert!(st["bytes"].as_u64().unwrap() <= 1 << 20, "{st}");
}

#[test]
fn a_value_larger_than_the_cache_is_served_from_the_database_never_stale() {
    let s = Server::start(&["--cache-bytes", "100K", "--max-body-bytes", "1MiB"]);
    let mut c = s.client();
    assert_eq!(c.put("k", &json!("small")).status, 200);
    assert_eq!(c.get("/get/k").json()["value"], "small"); // cached
    put_sized(&mut c, "k", 2, 500_000);
    for _ in 0..3 {
        let r = c.get("/get/k");
        assert_eq!(r.json()["version"], 2);
        assert_eq!(r.json()["value"][0], 2);
    }
    let st = c.get("/cache/stats").json();
    assert_eq!(
        (st["size"].clone(), st["bytes"].clone()),
        (json!(0), json!(0)),
        "{st}"
    );
    // And a small version after it is cached again.
    assert_eq!(c.put("k", &json!("small again")).status, 200);
    assert_eq!(c.get("/get/k").json()["value"], "small again");
    assert_eq!(c.get("/cache/stats").json()["size"], 1);
}
