//! Long-poll watch: woken by a write on another connection, times out with
//! the current latest, does not hold workers, is bounded, and is answered
//! at shutdown.

use std::time::{Duration, Instant};

use crate::common::feed::wait_parked;
use crate::common::{Client, Server, json};

#[test]
fn a_watcher_is_woken_by_a_write_on_another_connection() {
    let s = Server::start(&[]);
    let mut c = s.client();
    c.put("w", &json!("first"));
    let mut watcher = s.client();
    let waiting = std::thread::spawn(move || {
        let r = watcher.get("/get/w?wait_after=1&timeout=20");
        (r.status, r.json(), Instant::now())
    });
    wait_parked(&mut c, 1);
    assert!(
        !waiting.is_finished(),
        "the watcher was answered before a write"
    );
    let written = Instant::now();
    assert_eq!(c.put("w", &json!("second")).json()["version"], 2);
    let (status, body, answered) = waiting.join().unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        (body["version"].clone(), body["value"].clone()),
        (json!(2), json!("second"))
    );
    // Answered by the write, promptly.
    let elapsed = answered.duration_since(written);
    assert!(
        answered >= written && elapsed < Duration::from_secs(5),
        "{elapsed:?}"
    );
    // Already past: answered at once.
    let r = c.get("/get/w?wait_after=1");
    assert_eq!(r.json()["version"], 2);
}

#[test]
fn a_watcher_ahead_of_the_latest_waits_for_a_version_above_its_number() {
    // The client knows of version 3 (another replica committed it, say)
    // while this server's latest is 1: version 2, and a delete at 3 of the
    // same number, must not answer a wait for a version above 3.
    let s = Server::start(&[]);
    let mut c = s.client();
    c.put("ahead", &json!(1));
    for path in [
        "/get/ahead?wait_after=3&timeout=20",
        "/get/absent?wait_after=2&timeout=20",
    ] {
        let mut watcher = s.client();
        let waiting = std::thread::spawn(move || {
            let r = watcher.get(path);
            (r.status, r.json())
        });
        wait_parked(&mut c, 1);
        let key = if path.contains("ahead") {
            "ahead"
        } else {
            "absent"
        };
        let below = if key == "ahead" { 3 } else { 2 };
        let mut written = c.put(key, &json!("below")).json()["version"]
            .as_u64()
            .unwrap();
        while written < below {
            let r = if written + 1 == below {
                c.request("DELETE", &format!("/delete/{key}"), &[], b"")
            } else {
                c.put(key, &json!("below"))
            };
            written = r.json()["version"].as_u64().unwrap();
        }
        assert_eq!(written, below);
        // A watcher woken by a version at or below its number is answered
        // as that version is published, before its write is answered: the
        // answer below would name it.
        c.put(key, &json!("above"));
        let (status, body) = waiting.join().unwrap();
        assert_eq!(
            (status, body["version"].clone()),
            (200, json!(below + 1)),
            "{path}: {body}"
        );
        assert_eq!(body["value"], "above");
    }
}

#[test]
fn a_watch_times_out_with_the_current_latest() {
    let s = Server::start(&[]);
    let mut c = s.client();
    c.put("t", &json!(1));
    let start = Instant::now();
    let r = c.get("/get/t?wait_after=1&timeout=1");
    assert!(start.elapsed() >= Duration::from_millis(900));
    assert_eq!((r.status, r.json()["version"].clone()), (200, json!(1)));
    let r = c.get("/get/nothing?wait_after=0&timeout=1");
    assert_eq!(r.status, 404);
    assert_eq!(c.get("/get/t?wait_after=1&timeout=301").status, 422);
    assert_eq!(c.get("/get/t?wait_after=x").status, 422);
}

#[test]
fn parked_watchers_hold_no_worker_and_are_bounded() {
    let s = Server::start(&["--workers", "1", "--max-watchers", "3"]);
    let mut c = s.client();
    c.put("p", &json!(0));
    let parked: Vec<_> = (0..3)
        .map(|_| {
            let mut w = s.client();
            std::thread::spawn(move || {
                w.get("/get/p?wait_after=1&timeout=20").json()["version"].clone()
            })
        })
        .collect();
    wait_parked(&mut c, 3);
    // With the only worker free, other requests are served at once.
    let start = Instant::now();
    assert_eq!(c.get("/get/p").status, 200);
    assert!(start.elapsed() < Duration::from_secs(1));
    let metrics = c.get("/metrics").text();
    assert!(metrics.contains("vkv_watchers 3"), "{metrics}");
    let r = c.get("/get/p?wait_after=1&timeout=20");
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.header("retry-after"), Some("1"));
    c.put("p", &json!(1));
    for p in parked {
        assert_eq!(p.join().unwrap(), 2);
    }
}

#[test]
fn shutdown_answers_parked_watchers() {
    let mut s = Server::start(&[]);
    s.client().put("s", &json!("v1"));
    let mut w = s.client();
    let waiting = std::thread::spawn(move || {
        let r = w.get("/get/s?wait_after=1&timeout=60");
        (r.status, r.json()["version"].clone())
    });
    wait_parked(&mut s.client(), 1);
    let start = Instant::now();
    assert!(s.terminate().success());
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "stop waited for the watcher"
    );
    assert_eq!(waiting.join().unwrap(), (200, json!(1)));
}

/// Issue 9 item 7: a long poll whose client disconnects frees its watcher
/// slot at once, not at its timeout.
#[test]
fn a_watcher_that_disconnects_frees_its_slot_at_once() {
    let s = Server::start(&["--max-watchers", "3"]);
    let mut c = s.client();
    c.put("gone", &json!(0));
    let mut leaving: Vec<Client> = (0..3)
        .map(|_| {
            let mut w = s.client();
            w.send_raw(
                b"GET /get/gone?wait_after=1&timeout=300 HTTP/1.1\r\nHost: localhost\r\n\r\n",
            )
            .unwrap();
            w
        })
        .collect();
    wait_parked(&mut c, 3);
    leaving.clear(); // the three clients close their sockets
    wait_parked(&mut c, 0);
    // A new watcher is admitted, and woken as usual.
    let mut w = s.client();
    let waiting = std::thread::spawn(move || w.get("/get/gone?wait_after=1&timeout=20"));
    wait_parked(&mut c, 1);
    c.put("gone", &json!(1));
    let r = waiting.join().unwrap();
    assert_eq!((r.status, r.json()["version"].clone()), (200, json!(2)));
}
