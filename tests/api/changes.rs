//! The store's revision and the change feed (`GET /changes`): revisions on
//! every write and read, the feed's order and operations, pages that resume
//! exactly once under concurrent writers, long polls, `410` after a purge
//! or retention, list-then-watch, and refused parameters.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::feed::{change, revision_in, wait_parked};
use crate::common::{Client, Server, Value, get_ok, json, keys_of, metric, poll_until};

fn batch(c: &mut Client, puts: Value) -> Value {
    let body = serde_json::to_vec(&json!({ "puts": puts })).unwrap();
    let r = c.request(
        "POST",
        "/batch",
        &[("Content-Type", "application/json")],
        &body,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

fn delete(c: &mut Client, path: &str) -> Value {
    let r = c.request("DELETE", path, &[], b"");
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    r.json()
}

/// A listing with values (`/keys?values=true`): each key's version and
/// value.
fn listed(listing: &Value) -> BTreeMap<String, (u64, Value)> {
    listing["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["key"].as_str().unwrap().to_string(),
                (k["version"].as_u64().unwrap(), k["value"].clone()),
            )
        })
        .collect()
}

#[test]
fn every_write_takes_the_next_revision_and_the_feed_shows_each_in_order() {
    let s = Server::start(&[]);
    let mut c = s.client();
    assert_eq!(revision_in(&get_ok(&mut c, "/db/stats")), 0);
    let a1 = revision_in(&c.put("f/a", &json!(1)).json());
    let a2 = revision_in(&c.put("f/a", &json!(2)).json());
    assert!(a2 > a1, "{a1} {a2}");
    let b = batch(
        &mut c,
        json!([{"key": "f/c", "value": "c"}, {"key": "f/b", "value": "b"}]),
    );
    let (b1, b2) = (revision_in(&b["results"][0]), revision_in(&b["results"][1]));
    assert_eq!(b1, b2, "a batch shares one revision");
    assert!(b1 > a2);
    c.put("other", &json!("x"));
    let d = revision_in(&delete(&mut c, "/delete/f/a"));
    let p = delete(&mut c, "/delete/f/c?purge=true");
    let p = revision_in(&p);
    assert!(p > d && d > b1, "{b1} {d} {p}");
    assert_eq!(revision_in(&get_ok(&mut c, "/db/stats")), p);

    // Reads carry the revision of their version.
    assert_eq!(revision_in(&get_ok(&mut c, "/get/f/b")), b1);
    assert_eq!(revision_in(&get_ok(&mut c, "/get/f/a?version=1")), a1);
    let h = get_ok(&mut c, "/history/f/a");
    let revs: Vec<u64> = h["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(revision_in)
        .collect();
    assert_eq!(revs, vec![d, a2, a1]);

    // The feed: every change under the prefix, in order, batch order kept.
    let feed = get_ok(&mut c, "/changes?prefix=f/&after=0");
    let seen: Vec<(u64, String, u64, String, Value)> = feed["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|ch| {
            (
                revision_in(ch),
                ch["key"].as_str().unwrap().to_string(),
                ch["version"].as_u64().unwrap(),
                ch["operation"].as_str().unwrap().to_string(),
                ch.get("value").cloned().unwrap_or(Value::Null),
            )
        })
        .collect();
    // f/c's versions were purged: only its purge is left, without a value.
    let expected = [
        (a1, "f/a".to_string(), 1, "create".to_string(), json!(1)),
        (a2, "f/a".to_string(), 2, "update".to_string(), json!(2)),
        (b1, "f/b".to_string(), 1, "create".to_string(), json!("b")),
        (d, "f/a".to_string(), 3, "delete".to_string(), Value::Null),
        (p, "f/c".to_string(), 1, "purge".to_string(), Value::Null),
    ];
    // Purging f/c removed revision b1's f/c: a feed from 0 starts after it.
    let from_oldest: Vec<_> = expected.iter().filter(|e| e.0 > b1).cloned().collect();
    assert_eq!(seen, from_oldest, "{feed}");
    assert_eq!(revision_in(&feed), p);
    assert_eq!(feed["next_after"], json!(p));
    let r = c.get(&format!("/changes?prefix=f/&after={a1}"));
    assert_eq!(r.status, 410, "{}", r.text());
    assert_eq!(r.json()["oldest_revision"], json!(b1));
    // A purge is gone history for readers of its key's prefix only.
    let other = get_ok(&mut c, &format!("/changes?prefix=other&after={a1}"));
    assert_eq!(other["changes"][0]["key"], "other");

    // values=false leaves values out; a prefix filters.
    let feed = get_ok(&mut c, &format!("/changes?after={b1}&values=false"));
    for ch in feed["changes"].as_array().unwrap() {
        assert!(ch.get("value").is_none(), "{ch}");
    }
    let keys = keys_of(&feed["changes"]);
    assert_eq!(keys, vec!["other", "f/a", "f/c"]);
    // Without after: from now on (nothing yet).
    let now = get_ok(&mut c, "/changes?prefix=f/");
    assert_eq!(now["changes"], json!([]));
    assert_eq!(revision_in(&now), p);
    assert_eq!(now["next_after"], json!(p));
}

#[test]
fn a_page_never_ends_inside_a_batch() {
    let s = Server::start(&[]);
    let mut c = s.client();
    c.put("k0", &json!(0));
    let b = batch(
        &mut c,
        json!([{"key": "k1", "value": 1}, {"key": "k2", "value": 2}, {"key": "k3", "value": 3}]),
    );
    let br = revision_in(&b["results"][0]);
    c.put("k4", &json!(4));
    // limit 2 would cut the batch: the page stops before it.
    let page = get_ok(&mut c, "/changes?after=0&limit=2");
    assert_eq!(page["changes"].as_array().unwrap().len(), 1, "{page}");
    assert_eq!(page["next_after"], json!(br - 1));
    // A batch larger than the limit comes whole.
    let page = get_ok(&mut c, &format!("/changes?after={}&limit=2", br - 1));
    let keys = keys_of(&page["changes"]);
    assert_eq!(keys, vec!["k1", "k2", "k3"], "batch order");
    assert_eq!(page["next_after"], json!(br));
    let page = get_ok(&mut c, &format!("/changes?after={br}&limit=2"));
    assert_eq!(page["changes"][0]["key"], "k4");
    assert_eq!(page["next_after"], page["revision"]);
}

/// Writers put under `p/` (and elsewhere) from many threads, each write
/// acknowledged with its revision; a reader follows `p/` with long polls of
/// small pages. Every acknowledged write under `p/` is read exactly once,
/// in revision order.
#[test]
fn a_follower_reads_every_change_exactly_once_in_order_under_concurrent_writers() {
    let s = Server::start(&[]);
    let addr = s.addr;
    let mut c = s.client();
    let start = revision_in(&get_ok(&mut c, "/db/stats"));
    let acks: Arc<Mutex<Vec<(u64, String, u64)>>> = Arc::default();
    let writers: Vec<_> = (0..8)
        .map(|t| {
            let acks = Arc::clone(&acks);
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                for i in 0..40 {
                    let key = if i % 5 == 4 {
                        format!("q/{t}")
                    } else {
                        format!("p/{t}/{}", i % 3)
                    };
                    let r = c.put(&key, &json!(i));
                    assert_eq!(r.status, 200);
                    let body = r.json();
                    if key.starts_with("p/") {
                        let version = body["version"].as_u64().unwrap();
                        acks.lock()
                            .unwrap()
                            .push((revision_in(&body), key, version));
                    }
                }
            })
        })
        .collect();
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            let mut c = Client::connect(addr);
            let mut after = start;
            let mut read: Vec<(u64, String, u64)> = Vec::new();
            loop {
                let finished = done.load(Ordering::SeqCst);
                let page = get_ok(
                    &mut c,
                    &format!("/changes?prefix=p/&after={after}&limit=7&wait=2"),
                );
                for ch in page["changes"].as_array().unwrap() {
                    read.push(change(ch));
                }
                let next = page["next_after"].as_u64().unwrap();
                assert!(next >= after, "next_after went back: {after} -> {next}");
                after = next;
                if finished && page["changes"].as_array().unwrap().is_empty() {
                    return read;
                }
            }
        })
    };
    for w in writers {
        w.join().unwrap();
    }
    done.store(true, Ordering::SeqCst);
    let read = reader.join().unwrap();
    let mut acked = acks.lock().unwrap().clone();
    acked.sort();
    assert!(
        read.windows(2).all(|w| w[0].0 < w[1].0),
        "not in strictly increasing revision order (single puts)"
    );
    assert_eq!(read, acked, "every acknowledged change exactly once");
}

#[test]
fn a_long_poll_waits_for_a_matching_change_and_else_answers_progress() {
    let s = Server::start(&[]);
    let mut c = s.client();
    c.put("w/a", &json!(1));
    let r0 = revision_in(&get_ok(&mut c, "/db/stats"));
    // Nothing comes: an empty list and the current revision, after the wait.
    let t = Instant::now();
    let page = get_ok(&mut c, &format!("/changes?prefix=w/&after={r0}&wait=1"));
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(page["changes"], json!([]));
    assert_eq!(page["next_after"], json!(r0));

    let addr = s.addr;
    let waiting = std::thread::spawn(move || {
        let mut c = Client::connect(addr);
        let page = get_ok(&mut c, &format!("/changes?prefix=w/&after={r0}&wait=30"));
        (page, Instant::now())
    });
    wait_parked(&mut c, 1);
    // A change elsewhere moves the store's revision, not this poll.
    c.put("elsewhere", &json!(1));
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !waiting.is_finished(),
        "woken by a change outside its prefix"
    );
    let written = Instant::now();
    let put = c.put("w/b", &json!("b")).json();
    let (page, answered) = waiting.join().unwrap();
    assert!(answered.duration_since(written) < Duration::from_secs(5));
    assert_eq!(page["changes"].as_array().unwrap().len(), 1, "{page}");
    assert_eq!(page["changes"][0]["key"], "w/b");
    assert_eq!(revision_in(&page["changes"][0]), revision_in(&put));
    assert_eq!(page["next_after"], json!(revision_in(&put)));
    // Parked, it held no watcher slot after its answer.
    assert!(poll_until(Duration::from_secs(5), || metric(
        &mut c,
        "vkv_watchers"
    ) == Some(0.0)));

    // Without after: only what comes from now on.
    let waiting = std::thread::spawn(move || {
        let mut c = Client::connect(addr);
        get_ok(&mut c, "/changes?prefix=w/&wait=30")
    });
    wait_parked(&mut c, 1);
    c.put("w/c", &json!("c"));
    let page = waiting.join().unwrap();
    let keys = keys_of(&page["changes"]);
    assert_eq!(keys, vec!["w/c"]);
}

#[test]
fn long_polls_are_answered_when_the_server_stops() {
    let mut s = Server::start(&[]);
    let mut c = s.client();
    c.put("s/a", &json!(1));
    let addr = s.addr;
    let waiting = std::thread::spawn(move || {
        let mut c = Client::connect(addr);
        let r = c.get("/changes?prefix=s/&wait=60");
        (r.status, r.json())
    });
    wait_parked(&mut c, 1);
    let stopping = Instant::now();
    assert!(s.terminate().success());
    let (status, body) = waiting.join().unwrap();
    assert!(stopping.elapsed() < Duration::from_secs(15));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["changes"], json!([]));
}

#[test]
fn retention_that_removes_a_change_is_gone_for_readers_behind_it() {
    let s = Server::start(&["--max-versions", "2"]);
    let mut c = s.client();
    let r0 = revision_in(&c.put("first", &json!(0)).json());
    let r1 = revision_in(&c.put("r", &json!(1)).json());
    let r2 = revision_in(&c.put("r", &json!(2)).json());
    assert_eq!(
        get_ok(&mut c, &format!("/changes?after={r1}"))["changes"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let r3 = revision_in(&c.put("r", &json!(3)).json());
    // Version 1 (revision r1) is gone: a reader after 0 .. r1-1 would miss it.
    let r = c.get(&format!("/changes?after={}", r1 - 1));
    assert_eq!(r.status, 410, "{}", r.text());
    assert_eq!(r.json()["oldest_revision"], json!(r1));
    // From r1 on nothing is missing.
    let page = get_ok(&mut c, &format!("/changes?after={r1}"));
    let revs: Vec<u64> = page["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(revision_in)
        .collect();
    assert_eq!(revs, vec![r2, r3]);
    // after=0: from the oldest revision kept without a gap (not r0, kept
    // but before the gap).
    assert_eq!(
        get_ok(&mut c, "/changes?after=0")["changes"],
        page["changes"]
    );
    assert!(r0 < r1);
}

/// The list-then-watch recipe while writers create, update and delete keys:
/// the listing at its revision plus the changes after it is exactly the
/// store at the end.
#[test]
fn list_then_watch_misses_nothing_and_repeats_nothing() {
    let s = Server::start(&[]);
    let addr = s.addr;
    let mut c = s.client();
    for i in 0..20 {
        c.put(&format!("l/{i}"), &json!(i));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|t| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                let mut i = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    let key = format!("l/{}", (i * 7 + t) % 30);
                    if i % 4 == 3 {
                        let r = c.request("DELETE", &format!("/delete/{key}"), &[], b"");
                        assert!(r.status == 200 || r.status == 404, "{}", r.text());
                    } else {
                        assert_eq!(c.put(&key, &json!([t, i])).status, 200);
                    }
                    i += 1;
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let listing = get_ok(&mut c, "/keys?prefix=l/&limit=1000&values=true");
    let mut state = listed(&listing);
    let mut after = revision_in(&listing);
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.join().unwrap();
    }
    let end = revision_in(&get_ok(&mut c, "/db/stats"));
    let mut seen = HashSet::new();
    while after < end {
        let page = get_ok(
            &mut c,
            &format!("/changes?prefix=l/&after={after}&limit=50"),
        );
        for ch in page["changes"].as_array().unwrap() {
            let key = ch["key"].as_str().unwrap().to_string();
            let version = ch["version"].as_u64().unwrap();
            assert!(
                revision_in(ch) > revision_in(&listing),
                "a change the listing already held: {ch}"
            );
            assert!(seen.insert((key.clone(), version)), "repeated: {ch}");
            if let Some((v, _)) = state.get(&key) {
                assert!(version > *v, "{ch} is not after the listed version {v}");
            }
            match ch["operation"].as_str().unwrap() {
                "create" | "update" => {
                    state.insert(key, (version, ch["value"].clone()));
                }
                "delete" | "purge" => {
                    state.remove(&key);
                }
                other => panic!("operation {other}"),
            }
        }
        after = page["next_after"].as_u64().unwrap();
    }
    let now = get_ok(&mut c, "/keys?prefix=l/&limit=1000&values=true");
    let expected = listed(&now);
    assert_eq!(state, expected);
    assert_eq!(revision_in(&now), end);
}

#[test]
fn keys_with_values_and_their_revision() {
    let s = Server::start(&[]);
    let mut c = s.client();
    c.put("v/a", &json!({"x": 1}));
    let last = revision_in(&c.put("v/b", &json!([2])).json());
    let page = get_ok(&mut c, "/keys?prefix=v/&values=true");
    assert_eq!(revision_in(&page), last);
    assert_eq!(page["keys"][0]["value"], json!({"x": 1}));
    assert_eq!(page["keys"][1]["value"], json!([2]));
    let page = get_ok(&mut c, "/keys?prefix=v/");
    assert!(page["keys"][0].get("value").is_none());
    assert_eq!(c.get("/keys?values=true&delimiter=/").status, 422);
}

#[test]
fn bad_parameters_are_refused() {
    let s = Server::start(&[]);
    let mut c = s.client();
    for bad in [
        "/changes?after=x",
        "/changes?after=-1",
        "/changes?wait=301",
        "/changes?limit=0",
        "/changes?limit=1001",
        "/changes?values=maybe",
        "/changes?bogus=1",
        "/changes?after=1&after=2",
    ] {
        let r = c.get(bad);
        assert_eq!(r.status, 422, "{bad}: {}", r.text());
        assert!(r.json()["detail"].is_string(), "{bad}");
    }
    assert_eq!(c.request("POST", "/changes", &[], b"").status, 405);
}
