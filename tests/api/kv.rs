//! The happy paths of the HTTP contract.

use crate::common::{Server, json};

fn is_rfc3339_utc(s: &str) -> bool {
    humantime::parse_rfc3339(s).is_ok() && s.ends_with('Z')
}

#[test]
fn put_then_get_latest_and_old_versions() {
    let s = Server::start(&[]);
    let mut c = s.client();
    let r = c.put("greeting", &json!("hello"));
    assert_eq!(r.status, 200, "{}", r.text());
    let b = r.json();
    assert_eq!(b["key"], "greeting");
    assert_eq!(b["version"], 1);
    assert_eq!(b["operation"], "create");
    assert!(is_rfc3339_utc(b["timestamp"].as_str().unwrap()), "{b}");

    let b = c
        .put(
            "greeting",
            &json!({"text": "hi", "n": [1, 2.5, null, true]}),
        )
        .json();
    assert_eq!(
        (b["version"].clone(), b["operation"].clone()),
        (json!(2), json!("update"))
    );

    let r = c.get("/get/greeting");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("etag"), Some("\"2\""));
    let b = r.json();
    assert_eq!(b["value"], json!({"text": "hi", "n": [1, 2.5, null, true]}));
    assert_eq!(b["version"], 2);
    assert_eq!(b["key"], "greeting");
    assert!(is_rfc3339_utc(b["timestamp"].as_str().unwrap()));

    let r = c.get("/get/greeting?version=1");
    assert_eq!(r.status, 200, "{}", r.text());
    let b = r.json();
    assert_eq!(
        (b["value"].clone(), b["version"].clone()),
        (json!("hello"), json!(1))
    );
}

#[test]
fn every_json_type_round_trips() {
    let s = Server::start(&[]);
    let mut c = s.client();
    for (i, v) in [
        json!(null),
        json!(true),
        json!(-3),
        json!(1.5e300),
        json!("é ✓"),
        json!([]),
        json!({"a": {"b": [1]}}),
    ]
    .iter()
    .enumerate()
    {
        assert_eq!(c.put("t", v).json()["version"], i as u64 + 1);
        assert_eq!(&c.get("/get/t").json()["value"], v);
    }
}

#[test]
fn keys_are_percent_decoded_and_may_contain_slashes() {
    let s = Server::start(&[]);
    let mut c = s.client();
    assert_eq!(c.put("a/b%20c/%C3%A9", &json!(1)).json()["key"], "a/b c/é");
    assert_eq!(c.get("/get/a%2Fb%20c%2F%C3%A9").json()["value"], 1);
    let long = "k".repeat(1024);
    assert_eq!(c.put(&long, &json!(2)).status, 200);
    assert_eq!(c.get(&format!("/get/{long}")).json()["value"], 2);
}

#[test]
fn cache_miss_reads_database_then_caches_and_missing_keys_are_not_cached() {
    let s = Server::start(&["--cache-size", "2"]);
    let mut c = s.client();
    for k in ["a", "b", "c"] {
        assert_eq!(c.put(k, &json!(k)).status, 200);
    }
    let st = c.get("/cache/stats").json();
    assert_eq!(st["size"], 2);
    assert_eq!(st["max_size"], 2);
    assert_eq!(st["is_full"], true);
    assert_eq!(st["evictions"], 1, "{st}");
    assert_eq!(
        (st["hits"].clone(), st["misses"].clone()),
        (json!(0), json!(0))
    );

    // "a" was evicted: a miss that falls back to the database...
    assert_eq!(c.get("/get/a").json()["value"], "a");
    let st = c.get("/cache/stats").json();
    assert_eq!(
        (st["misses"].clone(), st["evictions"].clone()),
        (json!(1), json!(2))
    );
    // ...and is cached now.
    assert_eq!(c.get("/get/a").json()["value"], "a");
    assert_eq!(c.get("/cache/stats").json()["hits"], 1);

    // Missing keys and versions answer 404 and cache nothing.
    assert_eq!(c.get("/get/nope").status, 404);
    assert_eq!(c.get("/get/a?version=9").status, 404);
    let st = c.get("/cache/stats").json();
    assert_eq!(
        (st["size"].clone(), st["evictions"].clone()),
        (json!(2), json!(2))
    );
}

#[test]
fn get_refreshes_recency() {
    let s = Server::start(&["--cache-size", "2"]);
    let mut c = s.client();
    c.put("a", &json!(1));
    c.put("b", &json!(1));
    c.get("/get/a"); // a is now most recent; c evicts b
    c.put("c", &json!(1));
    let hits = c.get("/cache/stats").json()["hits"].as_u64().unwrap();
    c.get("/get/a");
    assert_eq!(
        c.get("/cache/stats").json()["hits"],
        hits + 1,
        "a must still be cached"
    );
}

#[test]
fn db_stats_health_and_head() {
    let s = Server::start(&[]);
    let mut c = s.client();
    c.put("x", &json!(1));
    c.put("x", &json!(2));
    c.put("y", &json!(3));
    let st = c.get("/db/stats").json();
    assert_eq!(st["total_keys"], 2);
    assert_eq!(st["total_versions"], 3);
    assert!(st["file_size_bytes"].as_u64().unwrap() > 0);
    let journal = if crate::common::on_postgres() {
        "postgresql"
    } else {
        "wal"
    };
    assert_eq!(st["journal_mode"], journal);
    let h = c.get("/health");
    assert_eq!((h.status, h.json()), (200, json!({"status": "ok"})));
    let r = c.request("HEAD", "/get/x", &[], b"");
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
    assert!(
        r.header("content-length")
            .unwrap()
            .parse::<usize>()
            .unwrap()
            > 0
    );
    // The connection is still usable after HEAD.
    assert_eq!(c.get("/get/y").json()["value"], 3);
}
