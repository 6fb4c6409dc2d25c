//! POST /batch: all or nothing, also across a crash.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::common::{Client, Server, json, poll_until};

#[test]
fn a_batch_commits_all_puts_and_returns_each_version() {
    let s = Server::start(&[]);
    let mut c = s.client();
    c.put("a", &json!(0));
    let body = json!({"puts": [
        {"key": "a", "value": 1},
        {"key": "b", "value": [2]},
        {"key": "a", "value": 3, "if_version": 2},
    ]});
    let r = c.request("POST", "/batch", &[], body.to_string().as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    let v: Vec<(String, u64)> = r.json()["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["key"].as_str().unwrap().to_string(),
                x["version"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(v, [("a".into(), 2), ("b".into(), 1), ("a".into(), 3)]);
    assert_eq!(c.get("/get/a").json()["value"], 3);
}

/// Batches of a thousand unconditional puts (no savepoint, a larger page
/// cache for their transaction), several in flight at once, next to a
/// conditional one that fails: every unconditional put is there, in order
/// of its batch, and the failed batch left nothing.
#[test]
fn large_batches_in_flight_together_commit_whole() {
    let s = Server::start(&[]);
    let addr = s.addr;
    let writers: Vec<_> = (0..4u64)
        .map(|t| {
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                for round in 1..=2u64 {
                    let puts: Vec<_> = (0..1000u64)
                        .map(|i| json!({"key": format!("t{t}/{i}"), "value": {"round": round, "i": i}}))
                        .collect();
                    let r = c.request("POST", "/batch", &[], json!({"puts": puts}).to_string().as_bytes());
                    assert_eq!(r.status, 200, "{}", r.text());
                    let results = r.json()["results"].as_array().unwrap().clone();
                    assert_eq!(results.len(), 1000);
                    assert!(results.iter().all(|x| x["version"] == round), "round {round}");
                }
            })
        })
        .collect();
    let mut c = s.client();
    let mut puts: Vec<_> = (0..999u64)
        .map(|i| json!({"key": format!("refused/{i}"), "value": i}))
        .collect();
    puts.push(json!({"key": "refused/last", "value": 0, "if_version": 5}));
    let r = c.request(
        "POST",
        "/batch",
        &[],
        json!({"puts": puts}).to_string().as_bytes(),
    );
    assert_eq!(r.status, 409, "{}", r.text());
    for w in writers {
        w.join().expect("writer thread");
    }
    let stats = c.get("/db/stats").json();
    assert_eq!(stats["total_keys"], 4000, "{stats}");
    assert_eq!(stats["total_versions"], 8000, "{stats}");
    assert_eq!(c.get("/get/refused/0").status, 404);
    assert_eq!(
        c.get("/get/t3/999").json()["value"],
        json!({"round": 2, "i": 999})
    );
}

#[test]
fn a_failed_condition_writes_nothing_and_names_the_key() {
    let s = Server::start(&["--max-batch", "3"]);
    let mut c = s.client();
    c.put("x", &json!(0));
    let body = json!({"puts": [
        {"key": "y", "value": 1},
        {"key": "x", "value": 1, "if_version": 7},
    ]});
    let r = c.request("POST", "/batch", &[], body.to_string().as_bytes());
    assert_eq!(r.status, 409);
    assert_eq!(
        (r.json()["key"].clone(), r.json()["current_version"].clone()),
        (json!("x"), json!(1))
    );
    assert_eq!(
        c.get("/get/y").status,
        404,
        "the batch was not all-or-nothing"
    );
    let too_many = json!({"puts": (0..4).map(|i| json!({"key": format!("k{i}"), "value": i})).collect::<Vec<_>>()});
    assert_eq!(
        c.request("POST", "/batch", &[], too_many.to_string().as_bytes())
            .status,
        422
    );
    assert_eq!(
        c.request("POST", "/batch", &[], br#"{"puts": []}"#).status,
        422
    );
    assert_eq!(
        c.request(
            "POST",
            "/batch",
            &[],
            br#"{"puts": [{"key": "", "value": 1}]}"#
        )
        .status,
        422
    );
    assert_eq!(c.request("POST", "/batch", &[], b"[]").status, 422);
    assert_eq!(c.get("/db/stats").json()["total_versions"], 1);
}

#[test]
fn a_batch_is_all_or_nothing_when_the_process_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("kv.db");
    for round in 0..3u64 {
        let mut s = Server::start_on(&db, &[]);
        let committed = Arc::new(AtomicU64::new(0));
        let writers: Vec<_> = (0..3)
            .map(|t| {
                let (addr, committed) = (s.addr, Arc::clone(&committed));
                std::thread::spawn(move || {
                    let Ok(mut c) = Client::try_connect(addr) else {
                        return;
                    };
                    for i in 0.. {
                        let puts: Vec<_> = (0..50)
                            .map(|k| json!({"key": format!("r{round}/t{t}/b{i}/{k}"), "value": i}))
                            .collect();
                        let body = json!({ "puts": puts }).to_string();
                        match c.try_request("POST", "/batch", &[], body.as_bytes()) {
                            Ok(r) if r.status == 200 => committed.fetch_add(1, Ordering::SeqCst),
                            _ => return,
                        };
                    }
                })
            })
            .collect();
        // Killed while batches are in flight, a little later each round.
        let enough = 2 + round * 4;
        assert!(
            poll_until(Duration::from_secs(30), || committed.load(Ordering::SeqCst)
                >= enough),
            "round {round}: fewer than {enough} batches committed"
        );
        s.kill();
        for w in writers {
            let _ = w.join();
        }
    }
    let s = Server::start_on(&db, &[]);
    let mut c = s.client();
    let mut batches = std::collections::HashMap::<String, u64>::new();
    let mut after = String::new();
    loop {
        let page = c.get(&format!("/keys?limit=1000&after={after}")).json();
        for k in page["keys"].as_array().unwrap() {
            let key = k["key"].as_str().unwrap();
            let batch = key.rsplit_once('/').unwrap().0.to_string();
            *batches.entry(batch).or_default() += 1;
        }
        match page["next_after"].as_str() {
            Some(a) => after = a.replace('/', "%2F"),
            None => break,
        }
    }
    assert!(!batches.is_empty(), "no batch committed at all");
    let partial: Vec<_> = batches.iter().filter(|(_, n)| **n != 50).collect();
    assert!(
        partial.is_empty(),
        "partial batches after crashes: {partial:?}"
    );
}
