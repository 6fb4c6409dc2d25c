//! Keys with a TTL on PostgreSQL: deadlines on the database's clock, every
//! replica polling them, and exactly one replica expiring each key (its
//! head locked, the deadline checked again inside the transaction). Leases
//! are not stored on PostgreSQL yet: refused with a clear `422`.

use std::time::{Duration, Instant};

use crate::common::{Client, Server, json, metric, poll_until};
use crate::fresh_database;

fn post(c: &mut Client, path: &str, body: &serde_json::Value) -> crate::common::Resp {
    c.request("POST", path, &[], &serde_json::to_vec(body).unwrap())
}

fn ms(rfc3339: &str) -> i64 {
    humantime::parse_rfc3339(rfc3339)
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Writes `n` keys `prefix/i` with `ttl` through `c`, in one batch.
fn write_keys(c: &mut Client, prefix: &str, n: usize, ttl: &str) {
    let puts: Vec<_> = (0..n)
        .map(|i| json!({"key": format!("{prefix}/{i}"), "value": i, "ttl": ttl}))
        .collect();
    let r = post(c, "/batch", &json!({ "puts": puts }));
    assert_eq!(r.status, 200, "{}", r.text());
}

/// Waits until every key `prefix/i` answers 404 "expired" on `c`.
fn all_expired(c: &mut Client, prefix: &str, n: usize, limit: Duration) -> bool {
    poll_until(limit, || {
        (0..n).all(|i| {
            let r = c.get(&format!("/get/{prefix}/{i}"));
            r.status == 404 && r.detail().contains("expired")
        })
    })
}

#[test]
fn two_replicas_expire_each_key_exactly_once_and_wake_each_others_watchers() {
    let _serial = crate::common::shared();
    let (_, url) = fresh_database();
    let (a, b) = (Server::start_on(&url, &[]), Server::start_on(&url, &[]));
    let (mut ca, mut cb) = (a.client(), b.client());
    let n = 300;
    write_keys(&mut ca, "x", n, "1s");
    let addr = b.addr;
    let watcher = std::thread::spawn(move || {
        let mut c = Client::connect(addr);
        let start = Instant::now();
        (c.get("/get/x/7?wait_after=1&timeout=30"), start.elapsed())
    });
    assert!(all_expired(&mut cb, "x", n, Duration::from_secs(10)));
    let (woken, waited) = watcher.join().unwrap();
    assert_eq!(woken.status, 404, "{}", woken.text());
    assert_eq!(woken.json()["expired_version"], 2);
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    for i in 0..n {
        let h = ca.get(&format!("/history/x/{i}")).json();
        let versions = h["versions"].as_array().unwrap();
        let ops: Vec<&str> = versions
            .iter()
            .map(|v| v["operation"].as_str().unwrap())
            .collect();
        assert_eq!(ops, ["expire", "put"], "x/{i}: exactly one expiry");
        let put = ms(versions[1]["timestamp"].as_str().unwrap());
        let gone = ms(versions[0]["timestamp"].as_str().unwrap());
        assert!(
            (put + 1000..=put + 2500).contains(&gone),
            "x/{i}: put at {put}, expired at {gone}"
        );
    }
    let total = |c: &mut Client| metric(c, "vkv_expirations_total").unwrap_or(0.0);
    assert_eq!(
        total(&mut ca) + total(&mut cb),
        n as f64,
        "one tombstone per key"
    );
}

#[test]
fn a_killed_replicas_keys_expire_through_the_other_and_rewrites_move_deadlines() {
    let _serial = crate::common::shared();
    let (_, url) = fresh_database();
    let (mut a, b) = (Server::start_on(&url, &[]), Server::start_on(&url, &[]));
    let (mut ca, mut cb) = (a.client(), b.client());
    write_keys(&mut ca, "k", 20, "1s");
    // Moved by a later write through the other replica: a longer TTL, and
    // none at all.
    assert_eq!(
        post(&mut cb, "/put/k/0?ttl=1h", &json!({"value": 0})).status,
        200
    );
    assert_eq!(cb.put("k/1", &json!(1)).status, 200);
    a.kill();
    assert!(poll_until(Duration::from_secs(10), || {
        (2..20).all(|i| {
            let r = cb.get(&format!("/get/k/{i}"));
            r.status == 404 && r.detail().contains("expired")
        })
    }));
    assert_eq!(cb.get("/get/k/0").status, 200);
    assert_eq!(cb.get("/get/k/1").status, 200);
    // Restarted after the deadlines: nothing left to expire twice.
    let a = Server::start_on(&url, &[]);
    let mut ca = a.client();
    assert_eq!(
        ca.get("/history/k/5").json()["versions"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn leases_are_refused_clearly_and_ttls_keep_their_bounds() {
    let (_, url) = fresh_database();
    let s = Server::start_on(&url, &[]);
    let mut c = s.client();
    let r = post(&mut c, "/put/k?lease=1", &json!({"value": 1}));
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(r.detail().contains("PostgreSQL"), "{}", r.detail());
    let r = post(&mut c, "/leases", &json!({"ttl": "10s"}));
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
    let r = post(&mut c, "/put/k?ttl=0", &json!({"value": 1}));
    assert_eq!(r.status, 422);
    assert!(r.detail().contains("30days"), "{}", r.detail());
    assert_eq!(c.get("/get/k").status, 404, "nothing written");
    let r = post(&mut c, "/put/k?ttl=1h", &json!({"value": 1}));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        c.get("/history/k").json()["versions"][0]["operation"],
        "put"
    );
}
