//! Keys with a TTL (`POST /put/{key}?ttl=`, and per entry in `/batch`):
//! they expire at their deadline, not before and at most a second after,
//! with a tombstone marked as an expiry; later writes move or remove the
//! deadline; deadlines survive a restart.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::common::{Client, Resp, Server, json, metric, on_postgres, poll_until};

/// Milliseconds since the epoch of an RFC 3339 time.
pub fn ms(rfc3339: &str) -> i64 {
    let t = humantime::parse_rfc3339(rfc3339).unwrap_or_else(|e| panic!("{rfc3339}: {e}"));
    t.duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// `POST path` with a JSON body.
pub fn post(c: &mut Client, path: &str, body: &serde_json::Value) -> Resp {
    let bytes = serde_json::to_vec(body).unwrap();
    c.request(
        "POST",
        path,
        &[("Content-Type", "application/json")],
        &bytes,
    )
}

/// The entries of `/history/{key}`, newest first.
pub fn entries(c: &mut Client, key: &str) -> Vec<serde_json::Value> {
    let r = c.get(&format!("/history/{key}"));
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["versions"].as_array().unwrap().clone()
}

/// Waits until `key` answers 404 "expired"; its expiry's version.
pub fn wait_expired(c: &mut Client, key: &str, limit: Duration) -> u64 {
    let mut version = 0;
    let expired = poll_until(limit, || {
        let r = c.get(&format!("/get/{key}"));
        if r.status == 404 && r.detail().contains("expired") {
            version = r.json()["expired_version"].as_u64().unwrap();
            true
        } else {
            assert_eq!(r.status, 200, "{}", r.text());
            false
        }
    });
    assert!(expired, "{key} did not expire within {limit:?}");
    version
}

/// Checks the `expires_at` GET shows for a write stamped `written` with a
/// TTL of `ttl_ms`: exactly `written + ttl_ms` on SQLite. PostgreSQL sets a
/// deadline on its own clock when the write's statement runs, a little
/// after the replica stamped the version (the same machine's clock here).
fn assert_deadline(shown: i64, written: i64, ttl_ms: i64) {
    let slack = if on_postgres() { 1000 } else { 0 };
    let due = written + ttl_ms;
    assert!(
        (due..=due + slack).contains(&shown),
        "expires at {shown}, written at {written} with a TTL of {ttl_ms} ms"
    );
}

#[test]
fn a_key_expires_at_its_deadline_not_before_and_within_a_second() {
    let s = Server::start(&[]);
    let mut c = s.client();
    assert_eq!(c.put("svc", &json!("v1")).status, 200);
    let r = post(&mut c, "/put/svc?ttl=1s", &json!({"value": "host-7"}));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["version"], 2);
    let written = ms(r.json()["timestamp"].as_str().unwrap());
    let got = c.get("/get/svc").json();
    let deadline = ms(got["expires_at"].as_str().expect("expires_at"));
    assert_deadline(deadline, written, 1000);
    // Live until the deadline: every read before it finds the value.
    while now_ms() < deadline - 50 {
        let r = c.get("/get/svc");
        assert_eq!(r.status, 200, "expired early: {}", r.text());
    }
    let version = wait_expired(&mut c, "svc", Duration::from_secs(5));
    assert_eq!(version, 3);
    let r = c.get("/get/svc");
    assert_eq!(r.detail(), "key 'svc' expired at version 3");
    assert_eq!(r.json()["key"], "svc");
    let history = entries(&mut c, "svc");
    let ops: Vec<&str> = history
        .iter()
        .map(|e| e["operation"].as_str().unwrap())
        .collect();
    assert_eq!(ops, ["expire", "update", "create"]);
    assert_eq!(history[0]["deleted"], true);
    let expired_at = ms(history[0]["timestamp"].as_str().unwrap());
    assert!(
        (written + 1000..=deadline + 1000).contains(&expired_at),
        "expired at {expired_at}, deadline {deadline}"
    );
    // A delete is still a delete; a put starts the key again.
    assert_eq!(c.put("svc", &json!("back")).json()["operation"], "create");
    assert_eq!(c.request("DELETE", "/delete/svc", &[], b"").status, 200);
    assert_eq!(entries(&mut c, "svc")[0]["operation"], "delete");
    assert!(c.get("/get/svc").detail().contains("deleted"));
    assert!(metric(&mut c, "vkv_expirations_total").unwrap() >= 1.0);
}

#[test]
fn a_later_write_moves_the_deadline_and_one_without_ttl_removes_it() {
    let s = Server::start(&[]);
    let mut c = s.client();
    post(&mut c, "/put/k?ttl=1", &json!({"value": 1}));
    let first = ms(c.get("/get/k").json()["expires_at"].as_str().unwrap());
    let r = post(&mut c, "/put/k?ttl=3s", &json!({"value": 2}));
    assert_eq!(r.status, 200);
    let second = ms(c.get("/get/k").json()["expires_at"].as_str().unwrap());
    assert!(second >= first + 2000, "{first} then {second}");
    post(&mut c, "/put/p?ttl=1s", &json!({"value": 1}));
    assert_eq!(c.put("p", &json!(2)).status, 200);
    let got = c.get("/get/p").json();
    assert!(got.get("expires_at").is_none(), "{got}");
    assert_eq!(metric(&mut c, "vkv_keys_with_deadline"), Some(1.0));
    // Past the first deadline (and a second more), both are still there.
    assert!(poll_until(Duration::from_secs(5), || now_ms() > first + 1500));
    assert_eq!(c.get("/get/k").json()["value"], 2);
    assert_eq!(c.get("/get/p").json()["value"], 2);
    assert_eq!(wait_expired(&mut c, "k", Duration::from_secs(5)), 3);
    assert!(now_ms() >= second);
    // An older version read by number shows no deadline.
    assert!(c.get("/get/p?version=1").json().get("expires_at").is_none());
}

#[test]
fn ttls_out_of_bounds_or_with_a_lease_are_refused() {
    let s = Server::start(&[]);
    let mut c = s.client();
    for bad in ["0", "999ms", "31days", "2592001"] {
        let r = post(&mut c, &format!("/put/k?ttl={bad}"), &json!({"value": 1}));
        assert_eq!(r.status, 422, "{bad}: {}", r.text());
        assert!(
            r.detail().contains("1s") && r.detail().contains("30days"),
            "{bad}: {}",
            r.detail()
        );
    }
    let r = post(&mut c, "/put/k?ttl=soon", &json!({"value": 1}));
    assert_eq!(r.status, 422);
    assert!(r.detail().contains("'soon'"), "{}", r.detail());
    let r = post(&mut c, "/put/k?ttl=30days", &json!({"value": 1}));
    assert_eq!(r.status, 200, "{}", r.text());
    let r = post(&mut c, "/put/k?ttl=10s&lease=1", &json!({"value": 1}));
    assert_eq!(r.status, 422);
    assert!(r.detail().contains("ttl and lease"), "{}", r.detail());
    let r = post(&mut c, "/put/k?lease=424242", &json!({"value": 1}));
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(r.detail().contains("lease 424242"), "{}", r.detail());
    assert_eq!(r.json()["lease"], 424242);
    let r = post(
        &mut c,
        "/batch",
        &json!({"puts": [{"key": "a", "value": 1, "ttl": "5s"}, {"key": "b", "value": 1, "ttl": 0}]}),
    );
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(r.detail().contains("30days"), "{}", r.detail());
    assert_eq!(c.get("/get/a").status, 404, "nothing of the batch written");
    let r = post(
        &mut c,
        "/batch",
        &json!({"puts": [{"key": "b", "value": 1, "ttl": 2, "lease": 1}]}),
    );
    assert_eq!(r.status, 422);
    assert!(r.detail().contains("key 'b'"), "{}", r.detail());
    // Nothing refused was written: k is at version 1 from the 30-day put.
    assert_eq!(c.get("/get/k").json()["version"], 1);
}

#[test]
fn batch_entries_take_their_own_ttl() {
    let s = Server::start(&[]);
    let mut c = s.client();
    let r = post(
        &mut c,
        "/batch",
        &json!({"puts": [
            {"key": "b/short", "value": 1, "ttl": 1},
            {"key": "b/long", "value": 2, "ttl": "1h"},
            {"key": "b/none", "value": 3}
        ]}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let ts = ms(r.json()["results"][0]["timestamp"].as_str().unwrap());
    let long = ms(c.get("/get/b/long").json()["expires_at"].as_str().unwrap());
    assert_deadline(long, ts, 3_600_000);
    assert_eq!(wait_expired(&mut c, "b/short", Duration::from_secs(5)), 2);
    assert_eq!(c.get("/get/b/long").status, 200);
    assert_eq!(c.get("/get/b/none").status, 200);
}

#[test]
fn an_expiry_wakes_a_long_poll() {
    let s = Server::start(&[]);
    let mut c = s.client();
    post(&mut c, "/put/w?ttl=1s", &json!({"value": "x"}));
    let start = std::time::Instant::now();
    let r = c.get("/get/w?wait_after=1&timeout=30");
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(r.json()["expired_version"], 2);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn deadlines_survive_a_restart_passed_or_not() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("kv.db");
    let mut s = Server::start_on(&db, &[]);
    let mut c = s.client();
    post(&mut c, "/put/soon?ttl=1s", &json!({"value": 1}));
    post(&mut c, "/put/later?ttl=1h", &json!({"value": 2}));
    let soon = ms(c.get("/get/soon").json()["expires_at"].as_str().unwrap());
    let later = ms(c.get("/get/later").json()["expires_at"].as_str().unwrap());
    s.kill();
    // Down past the first deadline: it expires at once on start.
    assert!(poll_until(Duration::from_secs(5), || now_ms() > soon + 500));
    let s = Server::start_on(&db, &[]);
    let mut c = s.client();
    assert_eq!(wait_expired(&mut c, "soon", Duration::from_secs(2)), 2);
    let got = c.get("/get/later").json();
    assert_eq!(ms(got["expires_at"].as_str().unwrap()), later);
    assert_eq!(metric(&mut c, "vkv_keys_with_deadline"), Some(1.0));
}

#[test]
fn many_keys_due_together_expire_within_a_second_while_others_write() {
    let _serial = crate::common::exclusive();
    let s = Server::start(&[]);
    let mut c = s.client();
    let n = 3000;
    for chunk in 0..n / 1000 {
        let puts: Vec<_> = (0..1000)
            .map(|i| json!({"key": format!("m/{}", chunk * 1000 + i), "value": i, "ttl": "2s"}))
            .collect();
        let r = post(&mut c, "/batch", &json!({ "puts": puts }));
        assert_eq!(r.status, 200, "{}", r.text());
    }
    // An unrelated writer goes on while they expire.
    let addr = s.addr;
    let writer = std::thread::spawn(move || {
        let mut c = Client::connect(addr);
        let mut worst = Duration::ZERO;
        let end = std::time::Instant::now() + Duration::from_secs(4);
        let mut i = 0;
        while std::time::Instant::now() < end {
            let t = std::time::Instant::now();
            assert_eq!(c.put("other", &json!(i)).status, 200);
            worst = worst.max(t.elapsed());
            i += 1;
        }
        worst
    });
    assert!(poll_until(Duration::from_secs(10), || {
        metric(&mut c, "vkv_expirations_total") == Some(n as f64)
    }));
    let worst = writer.join().unwrap();
    assert!(worst < Duration::from_secs(1), "a put took {worst:?}");
    let within = metric(&mut c, "vkv_expiry_lag_seconds_bucket{le=\"1\"}");
    assert_eq!(within, Some(n as f64), "every expiry within a second");
    assert_eq!(metric(&mut c, "vkv_keys_with_deadline"), Some(0.0));
    for i in [0, 1499, 2999] {
        let e = &entries(&mut c, &format!("m/{i}"))[0];
        assert_eq!(e["operation"], "expire");
    }
}

#[test]
fn copy_backup_and_check_carry_deadlines_and_leases() {
    if crate::common::sqlite_only(
        "copies and checks SQLite files by path and damages one with rusqlite \
         (tests/postgres/ttl.rs copies deadlines and leases out of PostgreSQL and back)",
    ) {
        return;
    }
    use crate::common::{output_text, run};
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src.db"), dir.path().join("dst.db"));
    let mut s = Server::start_on(&src, &[]);
    let mut c = s.client();
    post(&mut c, "/put/gone?ttl=1s", &json!({"value": 0}));
    wait_expired(&mut c, "gone", Duration::from_secs(5));
    post(&mut c, "/put/t?ttl=1h", &json!({"value": 1}));
    let lease = post(&mut c, "/leases", &json!({"ttl": "1h"})).json()["id"]
        .as_u64()
        .unwrap();
    post(
        &mut c,
        &format!("/put/l?lease={lease}"),
        &json!({"value": 2}),
    );
    let t_due = c.get("/get/t").json()["expires_at"].clone();
    let backup = c.get("/backup");
    assert_eq!(backup.status, 200);
    let snapshot = dir.path().join("snap.db");
    std::fs::write(&snapshot, &backup.body).unwrap();
    s.terminate();
    for db in [&src, &snapshot] {
        let out = run(&["check", "--db", db.to_str().unwrap()]);
        assert!(out.status.success(), "{}", output_text(&out));
    }
    let out = run(&[
        "copy",
        "--from",
        src.to_str().unwrap(),
        "--to",
        dst.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", output_text(&out));
    for db in [&dst, &snapshot] {
        let out = run(&["check", "--db", db.to_str().unwrap()]);
        assert!(out.status.success(), "{}", output_text(&out));
        let d = Server::start_on(db, &[]);
        let mut dc = d.client();
        assert_eq!(dc.get("/get/t").json()["expires_at"], t_due);
        assert_eq!(
            dc.get(&format!("/leases/{lease}")).json()["keys"],
            json!(["l"])
        );
        assert_eq!(dc.get("/get/gone").json()["expired_version"], 2);
        assert_eq!(entries(&mut dc, "gone")[0]["operation"], "expire");
        // A purge takes the key's deadline with it.
        assert_eq!(
            dc.request("DELETE", "/delete/t?purge=true", &[], b"")
                .status,
            200
        );
        assert_eq!(metric(&mut dc, "vkv_keys_with_deadline"), Some(1.0));
    }

    // A deadline left behind by a damaged file is found.
    let conn = rusqlite::Connection::open(&dst).unwrap();
    conn.execute(
        "INSERT INTO deadlines (key, version, due_ms, lease) VALUES ('nokey', 1, 5, NULL)",
        [],
    )
    .unwrap();
    conn.execute("UPDATE deadlines SET lease = 999 WHERE key = 'l'", [])
        .unwrap();
    drop(conn);
    let out = run(&["check", "--db", dst.to_str().unwrap()]);
    let text = output_text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("\"nokey\": has a deadline"), "{text}");
    assert!(text.contains("lease 999, which does not exist"), "{text}");
}

/// Writers race their keys' expiries, rewriting each with a TTL around its
/// deadline: every expiry tombstone in the histories comes at or after the
/// deadline of the put before it (and within a second of it), never after
/// a rewrite that moved the deadline.
#[test]
fn expiries_racing_rewrites_never_come_early_or_twice() {
    let s = Server::start(&[]);
    let threads: Vec<_> = (0..6)
        .map(|t| {
            let addr = s.addr;
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                let mut rng = crate::common::Rng::from_time("expiries_racing_rewrites");
                let end = std::time::Instant::now() + Duration::from_secs(5);
                let mut i = 0u64;
                while std::time::Instant::now() < end {
                    let key = format!("race/{t}/{}", i % 3);
                    let r = post(&mut c, &format!("/put/{key}?ttl=1"), &json!({"value": i}));
                    assert_eq!(r.status, 200, "{}", r.text());
                    i += 1;
                    // Around a third of a TTL per key between rewrites, some
                    // past it: expiries and rewrites meet at the deadline.
                    std::thread::sleep(Duration::from_millis(rng.range(200, 450)));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let mut c = s.client();
    let mut expiries = 0;
    for t in 0..6 {
        for k in 0..3 {
            let key = format!("race/{t}/{k}");
            let _ = wait_expired(&mut c, &key, Duration::from_secs(5));
            let r = c.get(&format!("/history/{key}?limit=1000"));
            let mut versions = r.json()["versions"].as_array().unwrap().clone();
            versions.reverse();
            for pair in versions.windows(2) {
                let (before, after) = (&pair[0], &pair[1]);
                if after["operation"] != "expire" {
                    continue;
                }
                expiries += 1;
                assert_ne!(
                    before["operation"], "expire",
                    "{key}: two expiries in a row"
                );
                let put = ms(before["timestamp"].as_str().unwrap());
                let gone = ms(after["timestamp"].as_str().unwrap());
                assert!(
                    (put + 1000..=put + 2000).contains(&gone),
                    "{key}: put at {put}, expired at {gone}"
                );
            }
        }
    }
    assert!(expiries >= 18, "only {expiries} expiries");
}

#[test]
fn retention_counts_expiry_tombstones_as_versions() {
    let s = Server::start(&["--max-versions", "2"]);
    let mut c = s.client();
    assert_eq!(c.put("r", &json!(1)).status, 200);
    post(&mut c, "/put/r?ttl=1s", &json!({"value": 2}));
    assert_eq!(wait_expired(&mut c, "r", Duration::from_secs(5)), 3);
    // Versions 2 and 3 (the expiry) are kept; 1 fell to retention.
    let versions: Vec<u64> = entries(&mut c, "r")
        .iter()
        .map(|e| e["version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, [3, 2]);
    assert_eq!(c.get("/get/r?version=1").status, 410);
    assert_eq!(c.get("/get/r?version=2").json()["value"], 2);
    assert_eq!(
        c.get("/db/stats").json()["total_versions"],
        2,
        "{}",
        c.get("/db/stats").text()
    );
}

/// An expiry is a change like any other: the feed shows it as `expire`,
/// with a revision above the write that set the deadline, and a long poll
/// on the feed wakes on it; expiries of one lease share a revision.
#[test]
fn expiries_are_changes_of_the_feed() {
    let s = Server::start(&[]);
    let mut c = s.client();
    let r = c.request("POST", "/put/feed/ttl?ttl=1s", &[], br#"{"value":1}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    let written = r.json()["revision"].as_u64().unwrap();
    let r = c.get(&format!("/changes?prefix=feed/&after={written}&wait=10"));
    assert_eq!(r.status, 200, "{}", r.text());
    let changes = r.json()["changes"].as_array().unwrap().clone();
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(changes[0]["operation"], "expire");
    assert_eq!(changes[0]["key"], "feed/ttl");
    assert_eq!(changes[0]["version"], 2);
    assert!(changes[0]["revision"].as_u64().unwrap() > written);
    assert!(changes[0].get("value").is_none(), "{changes:?}");

    // Two keys on one lease, revoked: two expiries in one revision.
    let lease = post(&mut c, "/leases", &json!({"ttl": "60s"}));
    assert_eq!(lease.status, 201, "{}", lease.text());
    let id = lease.json()["id"].as_u64().unwrap();
    for k in ["a", "b"] {
        let r = c.request(
            "POST",
            &format!("/put/feed/{k}?lease={id}"),
            &[],
            br#"{"value":1}"#,
        );
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let before = c.get("/db/stats").json()["revision"].as_u64().unwrap();
    let r = c.request("DELETE", &format!("/leases/{id}"), &[], b"");
    assert!(r.status < 300, "{} {}", r.status, r.text());
    let r = c.get(&format!("/changes?prefix=feed/&after={before}"));
    let changes = r.json()["changes"].as_array().unwrap().clone();
    let expired: Vec<_> = changes
        .iter()
        .filter(|ch| ch["operation"] == "expire")
        .collect();
    assert_eq!(expired.len(), 2, "{changes:?}");
    assert_eq!(
        expired[0]["revision"], expired[1]["revision"],
        "{changes:?}"
    );
}
