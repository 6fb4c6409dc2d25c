//! Keys with a TTL on PostgreSQL: deadlines on the database's clock, every
//! replica polling them, and exactly one replica expiring each key (its
//! head locked, the deadline checked again inside the transaction); leases
//! in the database, kept alive through any replica.

use std::time::{Duration, Instant};

use crate::common::lease::{grant, keepalive, ms, now_ms};
use crate::common::{Client, Server, json, metric, poll_until, post};
use crate::fresh_database;

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
        assert_eq!(ops, ["expire", "create"], "x/{i}: exactly one expiry");
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

/// The `expires_at` that `GET /get/{key}` shows through `c` (it must show
/// one).
fn expires_at(c: &mut Client, key: &str) -> i64 {
    let r = c.get(&format!("/get/{key}"));
    assert_eq!(r.status, 200, "{}", r.text());
    let at = r.json()["expires_at"].as_str().map(ms);
    at.unwrap_or_else(|| panic!("{key}: no expires_at in {}", r.text()))
}

/// Keeps lease `id` (at `last`, with the key `held` on it) alive through
/// `through`, and waits until `other` shows the new deadline of `held`;
/// that deadline.
fn keep_alive_and_wait(through: &mut Client, other: &mut Client, id: u64, last: i64) -> i64 {
    // A millisecond later than the last one: the deadline moves.
    let since = now_ms();
    assert!(poll_until(Duration::from_secs(1), || now_ms() > since));
    let r = keepalive(through, id);
    assert_eq!(r.status, 200, "{}", r.text());
    let kept = ms(r.json()["expires_at"].as_str().unwrap());
    assert!(kept > last, "kept alive to {kept}, was {last}");
    assert_eq!(expires_at(through, "held"), kept);
    let mut seen = 0;
    let moved = poll_until(Duration::from_secs(5), || {
        seen = expires_at(other, "held");
        seen == kept
    });
    assert!(
        moved,
        "the other replica shows {seen}, kept alive to {kept}"
    );
    kept
}

/// Every replica shows a key's deadline, from what it read or learnt, not
/// from a query of its own per GET: a key's own TTL the same on both, and
/// a lease's as moved by a keepalive through either replica (the other
/// learns it from the keepalive's notification while it serves the key
/// from its cache). `/metrics` counts deadlines and leases from the
/// database on both.
#[test]
fn every_replica_shows_expires_at_and_learns_keepalives_made_through_the_other() {
    let _serial = crate::common::shared();
    let (_, url) = fresh_database();
    let (a, b) = (Server::start_on(&url, &[]), Server::start_on(&url, &[]));
    let (mut ca, mut cb) = (a.client(), b.client());
    for c in [&mut ca, &mut cb] {
        assert!(poll_until(Duration::from_secs(10), || {
            metric(c, "vkv_read_lease_held") == Some(1.0)
        }));
    }
    let r = post(&mut ca, "/put/own?ttl=1h", &json!({"value": 1}));
    assert_eq!(r.status, 200, "{}", r.text());
    let written = ms(r.json()["timestamp"].as_str().unwrap());
    let own = expires_at(&mut ca, "own");
    assert!(
        (written + 3_600_000..=written + 3_601_000).contains(&own),
        "written at {written}, expires at {own}"
    );
    // Read, then cached: the same deadline on B as on A.
    for _ in 0..2 {
        assert_eq!(expires_at(&mut cb, "own"), own);
    }

    let id = grant(&mut ca, &json!("1h"));
    let granted = ms(ca.get(&format!("/leases/{id}")).json()["expires_at"]
        .as_str()
        .unwrap());
    let r = post(
        &mut ca,
        &format!("/put/held?lease={id}"),
        &json!({"value": 2}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(expires_at(&mut ca, "held"), granted);
    for _ in 0..2 {
        assert_eq!(expires_at(&mut cb, "held"), granted);
    }
    // Kept alive through one replica, the other shows the new deadline.
    let kept = keep_alive_and_wait(&mut ca, &mut cb, id, granted);
    keep_alive_and_wait(&mut cb, &mut ca, id, kept);

    for c in [&mut ca, &mut cb] {
        assert_eq!(metric(c, "vkv_keys_with_deadline"), Some(2.0));
        assert_eq!(metric(c, "vkv_leases"), Some(1.0));
    }
    let r = cb.request("DELETE", &format!("/leases/{id}"), &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    for c in [&mut ca, &mut cb] {
        assert_eq!(metric(c, "vkv_keys_with_deadline"), Some(1.0));
        assert_eq!(metric(c, "vkv_leases"), Some(0.0));
    }
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
fn leases_live_in_the_database_kept_alive_through_any_replica_even_after_a_crash() {
    let _serial = crate::common::shared();
    let (_, url) = fresh_database();
    let (mut a, b) = (Server::start_on(&url, &[]), Server::start_on(&url, &[]));
    let (mut ca, mut cb) = (a.client(), b.client());
    let r = post(&mut ca, "/leases", &json!({"ttl": "2s"}));
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["id"].as_u64().unwrap();
    for i in 0..10 {
        let r = post(
            &mut cb,
            &format!("/put/l/{i}?lease={id}"),
            &json!({"value": i}),
        );
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let lease = cb.get(&format!("/leases/{id}")).json();
    assert_eq!(lease["keys"].as_array().unwrap().len(), 10, "{lease}");
    assert_eq!(cb.get("/leases").json()["leases"][0]["id"], id);
    // Kept alive through B for two TTLs, the replica that granted it
    // killed meanwhile: the lease is the database's.
    let start = Instant::now();
    let mut last = 0;
    while start.elapsed() < Duration::from_secs(4) {
        if start.elapsed() > Duration::from_secs(1) && a.exited().is_none() {
            a.kill();
        }
        let r = cb.request("POST", &format!("/leases/{id}/keepalive"), &[], b"");
        assert_eq!(r.status, 200, "{}", r.text());
        last = ms(r.json()["expires_at"].as_str().unwrap());
        assert_eq!(cb.get("/get/l/3").status, 200);
        // Pacing of the keepalives, not a wait for a condition.
        std::thread::sleep(Duration::from_millis(400));
    }
    // A second replica polls too: each key still expires once.
    let c = Server::start_on(&url, &[]);
    assert!(all_expired(&mut cb, "l", 10, Duration::from_secs(6)));
    let mut stamps = Vec::new();
    for i in 0..10 {
        let h = cb.get(&format!("/history/l/{i}")).json();
        let ops: Vec<&str> = h["versions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["operation"].as_str().unwrap())
            .collect();
        assert_eq!(ops, ["expire", "create"], "l/{i}");
        stamps.push(ms(h["versions"][0]["timestamp"].as_str().unwrap()));
    }
    assert!(
        stamps.windows(2).all(|w| w[0] == w[1]),
        "one transaction: {stamps:?}"
    );
    assert!(
        (last..=last + 1500).contains(&stamps[0]),
        "due {last}, expired {}",
        stamps[0]
    );
    let mut cc = c.client();
    for (method, path) in [
        ("GET", format!("/leases/{id}")),
        ("POST", format!("/leases/{id}/keepalive")),
        ("DELETE", format!("/leases/{id}")),
    ] {
        assert_eq!(
            cc.request(method, &path, &[], b"").status,
            404,
            "{method} {path}"
        );
    }
    let r = post(
        &mut cc,
        &format!("/put/l/0?lease={id}"),
        &json!({"value": 0}),
    );
    assert_eq!(r.status, 404, "{}", r.text());
}

#[test]
fn a_revoke_through_one_replica_expires_keys_attached_through_another() {
    let (_, url) = fresh_database();
    let (a, b) = (Server::start_on(&url, &[]), Server::start_on(&url, &[]));
    let (mut ca, mut cb) = (a.client(), b.client());
    let id = post(&mut cb, "/leases", &json!({"ttl": "1h"})).json()["id"]
        .as_u64()
        .unwrap();
    let puts: Vec<_> = (0..5)
        .map(|i| json!({"key": format!("r/{i}"), "value": i, "lease": id}))
        .collect();
    assert_eq!(
        post(&mut ca, "/batch", &json!({ "puts": puts })).status,
        200
    );
    // Moved off the lease by a later write.
    assert_eq!(ca.put("r/4", &json!("mine")).status, 200);
    let r = cb.request("DELETE", &format!("/leases/{id}"), &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!({"id": id, "expired_keys": 4}));
    for i in 0..4 {
        let r = ca.get(&format!("/get/r/{i}"));
        assert_eq!(r.json()["expired_version"], 2, "{}", r.text());
    }
    assert_eq!(ca.get("/get/r/4").json()["value"], "mine");
    assert_eq!(
        ca.request("DELETE", &format!("/leases/{id}"), &[], b"")
            .status,
        404
    );
}

#[test]
fn ttls_keep_their_bounds_and_show_as_puts_in_history() {
    let (_, url) = fresh_database();
    let s = Server::start_on(&url, &[]);
    let mut c = s.client();
    let r = post(&mut c, "/put/k?ttl=0", &json!({"value": 1}));
    assert_eq!(r.status, 422);
    assert!(r.detail().contains("30days"), "{}", r.detail());
    let r = post(&mut c, "/put/k?ttl=1s&lease=1", &json!({"value": 1}));
    assert_eq!(r.status, 422);
    let r = post(&mut c, "/put/k?lease=77", &json!({"value": 1}));
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(r.detail().contains("lease 77"), "{}", r.detail());
    assert_eq!(c.get("/get/k").status, 404, "nothing written");
    let r = post(&mut c, "/put/k?ttl=1h", &json!({"value": 1}));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        c.get("/history/k").json()["versions"][0]["operation"],
        "create"
    );
}

#[test]
fn copy_carries_deadlines_and_leases_from_postgres_to_sqlite_and_back() {
    let (_, first) = fresh_database();
    let (_, second) = fresh_database();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("from-pg.db");
    let mut s = Server::start_on(&first, &[]);
    let mut c = s.client();
    assert_eq!(
        post(&mut c, "/put/t?ttl=1h", &json!({"value": 1})).status,
        200
    );
    let id = post(&mut c, "/leases", &json!({"ttl": "1h"})).json()["id"]
        .as_u64()
        .unwrap();
    let r = post(&mut c, &format!("/put/l?lease={id}"), &json!({"value": 2}));
    assert_eq!(r.status, 200);
    assert_eq!(
        post(&mut c, "/put/gone?ttl=1s", &json!({"value": 3})).status,
        200
    );
    assert!(poll_until(Duration::from_secs(5), || {
        c.get("/get/gone").detail().contains("expired")
    }));
    s.terminate();
    let arg = |p: &std::path::Path| p.to_str().unwrap().to_string();
    for (from, to) in [(&first, &file), (&file, &second)] {
        let out = crate::common::run(&["copy", "--from", &arg(from), "--to", &arg(to)]);
        assert!(out.status.success(), "{}", crate::common::output_text(&out));
        let out = crate::common::run(&["check", "--db", &arg(to)]);
        assert!(out.status.success(), "{}", crate::common::output_text(&out));
    }
    let s = Server::start_on(&second, &[]);
    let mut c = s.client();
    assert_eq!(c.get(&format!("/leases/{id}")).json()["keys"], json!(["l"]));
    assert_eq!(c.get("/get/gone").json()["expired_version"], 2);
    assert_eq!(
        c.get("/history/gone").json()["versions"][0]["operation"],
        "expire"
    );
    // The copied lease runs; a new one gets another id.
    let next = post(&mut c, "/leases", &json!({"ttl": "1h"})).json()["id"]
        .as_u64()
        .unwrap();
    assert!(next > id, "{next} after {id}");
    let r = c.request("DELETE", &format!("/leases/{id}"), &[], b"");
    assert_eq!(r.json()["expired_keys"], 1, "{}", r.text());
}
