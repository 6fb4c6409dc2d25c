//! Leases (`/leases`): grant, attach keys, keep alive, read, list, revoke;
//! keys expire with their lease, in one transaction; a restart gives every
//! lease its full TTL again.

use std::time::{Duration, Instant};

use crate::common::feed::wait_parked;
use crate::common::lease::{grant, keepalive, ms, now_ms, wait_expired};
use crate::common::{Client, Server, entries, json, metric, poll_until, post};

#[test]
fn a_lease_keeps_its_keys_while_kept_alive_and_expires_them_after() {
    let s = Server::start(&[]);
    let mut c = s.client();
    let r = post(&mut c, "/leases", &json!({"ttl": "2s"}));
    assert_eq!(r.status, 201, "{}", r.text());
    let lease = r.json();
    assert_eq!(lease["ttl"], "2s");
    assert_eq!(lease["ttl_seconds"], 2.0);
    let id = lease["id"].as_u64().unwrap();
    let r = post(
        &mut c,
        &format!("/put/svc/a?lease={id}"),
        &json!({"value": 1}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = post(
        &mut c,
        "/batch",
        &json!({"puts": [{"key": "svc/b", "value": 2, "lease": id}]}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let got = c.get("/get/svc/a").json();
    assert_eq!(got["expires_at"], lease["expires_at"]);
    let detail = c.get(&format!("/leases/{id}")).json();
    assert_eq!(detail["keys"], json!(["svc/a", "svc/b"]));
    assert_eq!(detail["more_keys"], false);
    assert!(detail["remaining_ms"].as_u64().unwrap() <= 2000);
    let one = c.get(&format!("/leases/{id}?limit=1")).json();
    assert_eq!(
        (one["keys"].clone(), one["more_keys"].clone()),
        (json!(["svc/a"]), json!(true))
    );
    let listed = c.get("/leases").json();
    assert_eq!(listed["leases"][0]["id"], id);
    assert_eq!(metric(&mut c, "vkv_leases"), Some(1.0));
    assert_eq!(metric(&mut c, "vkv_keys_with_deadline"), Some(2.0));

    // Kept alive for three TTLs: the keys stay.
    let start = Instant::now();
    let mut last = now_ms();
    let mut previous = ms(lease["expires_at"].as_str().unwrap());
    while start.elapsed() < Duration::from_secs(6) {
        let r = keepalive(&mut c, id);
        assert_eq!(r.status, 200, "{}", r.text());
        last = now_ms();
        let next = ms(r.json()["expires_at"].as_str().unwrap());
        assert!(next >= previous, "{next} < {previous}");
        previous = next;
        assert_eq!(c.get("/get/svc/a").status, 200);
        assert_eq!(c.get("/get/svc/b").status, 200);
        // Pacing of the keepalives, not a wait for a condition.
        std::thread::sleep(Duration::from_millis(500));
    }
    // Then left to run out: both expire, in one transaction, within TTL + 1 s.
    wait_expired(&mut c, "svc/a", Duration::from_secs(4));
    wait_expired(&mut c, "svc/b", Duration::from_secs(1));
    let at_a = ms(entries(&mut c, "svc/a")[0]["timestamp"].as_str().unwrap());
    let at_b = ms(entries(&mut c, "svc/b")[0]["timestamp"].as_str().unwrap());
    assert_eq!(at_a, at_b, "one transaction");
    assert!(
        (last + 2000 - 50..=last + 3000).contains(&at_a),
        "last keepalive {last}, expired {at_a}"
    );
    assert_eq!(entries(&mut c, "svc/a")[0]["operation"], "expire");
    // The lease is gone: a keepalive does not revive it.
    let r = keepalive(&mut c, id);
    assert_eq!(r.status, 404);
    assert!(
        r.detail().contains(&format!("lease {id}")),
        "{}",
        r.detail()
    );
    assert_eq!(c.get(&format!("/leases/{id}")).status, 404);
    let r = post(
        &mut c,
        &format!("/put/svc/a?lease={id}"),
        &json!({"value": 1}),
    );
    assert_eq!(r.status, 404);
    assert_eq!(c.get("/leases").json()["leases"], json!([]));
    assert_eq!(metric(&mut c, "vkv_leases"), Some(0.0));
}

#[test]
fn revoking_a_lease_expires_its_keys_at_once_and_wakes_watchers() {
    let s = Server::start(&[]);
    let mut c = s.client();
    let id = grant(&mut c, &json!(3600));
    let other = grant(&mut c, &json!("1h"));
    assert!(other > id);
    for key in ["r/1", "r/2", "r/3"] {
        let r = post(
            &mut c,
            &format!("/put/{key}?lease={id}"),
            &json!({"value": key}),
        );
        assert_eq!(r.status, 200);
    }
    post(
        &mut c,
        &format!("/put/r/other?lease={other}"),
        &json!({"value": 0}),
    );
    // A key moved off the lease by a later write does not go with it.
    post(
        &mut c,
        &format!("/put/r/moved?lease={id}"),
        &json!({"value": 0}),
    );
    assert_eq!(c.put("r/moved", &json!(1)).status, 200);
    let addr = s.addr;
    let watcher = std::thread::spawn(move || {
        let mut c = Client::connect(addr);
        c.get("/get/r/1?wait_after=1&timeout=30")
    });
    wait_parked(&mut c, 1);
    let r = c.request("DELETE", &format!("/leases/{id}"), &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!({"id": id, "expired_keys": 3}));
    let woken = watcher.join().unwrap();
    assert_eq!(woken.status, 404);
    assert_eq!(woken.json()["expired_version"], 2);
    let stamps: Vec<i64> = ["r/1", "r/2", "r/3"]
        .iter()
        .map(|k| {
            let r = c.get(&format!("/get/{k}"));
            assert_eq!(r.json()["expired_version"], 2, "{}", r.text());
            ms(entries(&mut c, k)[0]["timestamp"].as_str().unwrap())
        })
        .collect();
    assert!(stamps.windows(2).all(|w| w[0] == w[1]), "{stamps:?}");
    assert_eq!(c.get("/get/r/other").status, 200);
    assert_eq!(c.get("/get/r/moved").json()["value"], 1);
    assert_eq!(
        c.request("DELETE", &format!("/leases/{id}"), &[], b"")
            .status,
        404
    );
    // A lock's next holder: create-only succeeds on the expired key.
    let r = post(&mut c, "/put/r/1?if_version=0", &json!({"value": "mine"}));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["operation"], "create");
}

#[test]
fn a_restart_gives_leases_their_full_ttl_again() {
    if crate::common::sqlite_only(
        "a lease in PostgreSQL is the database's, on its clock: a replica's restart leaves it \
         as it was (tests/postgres/ttl.rs keeps one alive through a replica while the other \
         is killed)",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("kv.db");
    let mut s = Server::start_on(&db, &[]);
    let mut c = s.client();
    let id = grant(&mut c, &json!("3s"));
    post(
        &mut c,
        &format!("/put/reg/host?lease={id}"),
        &json!({"value": 1}),
    );
    s.kill();
    // Down for longer than the lease: it starts again in full.
    let down = now_ms();
    assert!(poll_until(Duration::from_secs(10), || now_ms() > down + 3500));
    let s = Server::start_on(&db, &[]);
    let started = now_ms();
    let mut c = s.client();
    let lease = c.get(&format!("/leases/{id}")).json();
    let due = ms(lease["expires_at"].as_str().unwrap());
    assert!(due >= started + 2500, "due {due}, restarted {started}");
    assert_eq!(lease["keys"], json!(["reg/host"]));
    assert_eq!(c.get("/get/reg/host").status, 200);
    wait_expired(&mut c, "reg/host", Duration::from_secs(6));
    assert!(now_ms() >= due);
    // Ids are never reused, also after a restart.
    assert!(grant(&mut c, &json!(5)) > id);
}

#[test]
fn lease_requests_that_are_refused() {
    let s = Server::start(&[]);
    let mut c = s.client();
    for bad in [json!(0), json!("500ms"), json!("31days"), json!("never")] {
        let r = post(&mut c, "/leases", &json!({ "ttl": bad }));
        assert_eq!(r.status, 422, "{bad}: {}", r.text());
        assert!(r.detail().contains("30days"), "{bad}: {}", r.detail());
    }
    for body in [json!({}), json!({"ttl": "5s", "x": 1}), json!([1])] {
        let r = post(&mut c, "/leases", &body);
        assert_eq!(r.status, 422, "{body}: {}", r.text());
    }
    for (method, path) in [
        ("GET", "/leases/77"),
        ("DELETE", "/leases/77"),
        ("POST", "/leases/77/keepalive"),
    ] {
        let r = c.request(method, path, &[], b"");
        assert_eq!(r.status, 404, "{method} {path}: {}", r.text());
        assert!(r.detail().contains("lease 77"), "{}", r.detail());
    }
    for path in ["/leases/0", "/leases/x", "/leases/-1"] {
        assert_eq!(c.get(path).status, 422, "{path}");
    }
    assert_eq!(c.get("/leases?x=1").status, 422);
    assert_eq!(c.request("PUT", "/leases", &[], b"").status, 405);
}
