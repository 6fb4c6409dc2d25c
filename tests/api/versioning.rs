//! History, listing, delete and purge, conditional writes, ETags, retention.

use crate::common::{Server, db_totals, json, keys_of};

#[test]
fn history_is_newest_first_and_paginates() {
    let s = Server::start(&[]);
    let mut c = s.client();
    for i in 1..=5 {
        c.put("h", &json!("x".repeat(i)));
    }
    let b = c.get("/history/h?limit=2").json();
    let versions: Vec<u64> = b["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, [5, 4]);
    assert_eq!(
        b["versions"][0]["size_bytes"], 7,
        "\"xxxxx\" is 7 bytes of JSON"
    );
    assert_eq!(b["versions"][0]["deleted"], false);
    assert!(
        b["versions"][0]["timestamp"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    assert_eq!(b["next_before"], 4);
    let b = c.get("/history/h?limit=2&before=4").json();
    assert_eq!(b["versions"][0]["version"], 3);
    let b = c.get("/history/h?before=2").json();
    assert_eq!(b["versions"].as_array().unwrap().len(), 1);
    assert_eq!(b["next_before"], json!(null));
    assert_eq!(c.get("/history/none").status, 404);
    assert_eq!(c.get("/history/h?limit=1001").status, 422);
    assert_eq!(c.get("/history/h?limit=0").status, 422);
}

#[test]
fn keys_are_listed_by_prefix_in_byte_order_with_cursor() {
    let s = Server::start(&[]);
    let mut c = s.client();
    for k in ["app/b", "app/a", "app/c/d", "apq", "ap", "zz", "app/é"] {
        c.put(k, &json!(1));
    }
    c.put("app/a", &json!(2));
    let b = c.get("/keys?prefix=app/&limit=2").json();
    let keys = keys_of(&b["keys"]);
    assert_eq!(keys, ["app/a", "app/b"]);
    assert_eq!(b["keys"][0]["version"], 2);
    assert_eq!(b["next_after"], "app/b");
    let b = c.get("/keys?prefix=app/&after=app/b").json();
    let keys = keys_of(&b["keys"]);
    assert_eq!(keys, ["app/c/d", "app/é"]);
    assert_eq!(b["next_after"], json!(null));
    let all = c.get("/keys").json();
    assert_eq!(all["keys"].as_array().unwrap().len(), 7);
    // Deleted keys are not listed.
    c.request("DELETE", "/delete/zz", &[], b"");
    assert_eq!(c.get("/keys?prefix=z").json()["keys"], json!([]));
}

#[test]
fn delete_writes_a_tombstone_and_purge_removes_everything() {
    let s = Server::start(&[]);
    let mut c = s.client();
    c.put("d", &json!("one"));
    c.put("d", &json!("two"));
    let r = c.request("DELETE", "/delete/d", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["version"], 3);
    let r = c.get("/get/d");
    assert_eq!(r.status, 404);
    assert!(
        r.json()["detail"]
            .as_str()
            .unwrap()
            .contains("deleted at version 3"),
        "{}",
        r.text()
    );
    assert_eq!(c.get("/get/d?version=1").json()["value"], "one");
    assert_eq!(
        c.request("DELETE", "/delete/d", &[], b"").status,
        404,
        "already deleted"
    );
    let h = c.get("/history/d").json();
    assert_eq!(h["versions"][0]["deleted"], true);
    // Numbering continues after a delete.
    assert_eq!(c.put("d", &json!("three")).json()["version"], 4);
    assert_eq!(c.get("/get/d").json()["value"], "three");

    let r = c.request("DELETE", "/delete/d?purge=true", &[], b"");
    assert_eq!(
        r.json(),
        json!({"key": "d", "purged_versions": 4, "revision": 5})
    );
    assert_eq!(c.get("/get/d").status, 404);
    assert_eq!(c.get("/get/d?version=1").status, 404);
    assert_eq!(c.get("/history/d").status, 404);
    assert_eq!(
        c.request("DELETE", "/delete/d?purge=true", &[], b"").status,
        404
    );
    assert_eq!(c.request("DELETE", "/delete/never", &[], b"").status, 404);
    assert_eq!(
        c.request("DELETE", "/delete/d?purge=maybe", &[], b"")
            .status,
        422
    );
    // After a purge the key is created again, its numbering continuing.
    let r = c.put("d", &json!(1)).json();
    assert_eq!(
        (r["operation"].clone(), r["version"].clone()),
        (json!("create"), json!(5))
    );
    assert_eq!(db_totals(&mut c), (1, 1));
}

/// A purged key's numbering never restarts (like etcd revisions): no ETag
/// or `if_version` taken before a purge matches what is written after it,
/// also across a restart.
#[test]
fn versions_continue_after_a_purge_so_old_etags_and_conditions_never_match() {
    let mut s = Server::start(&[]);
    let mut c = s.client();
    assert_eq!(c.put("k", &json!("old")).json()["version"], 1);
    let etag = c.get("/get/k").header("etag").unwrap().to_string();
    assert_eq!(etag, "\"1\"");
    assert_eq!(
        c.request("DELETE", "/delete/k?purge=true", &[], b"").status,
        200
    );

    // A stale condition from before the purge fails; nothing is written.
    let r = c.request("POST", "/put/k?if_version=1", &[], br#"{"value": "stale"}"#);
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(r.json()["current_version"], 0);
    let r = c.request(
        "POST",
        "/put/k",
        &[("If-Match", "\"1\"")],
        br#"{"value": "stale"}"#,
    );
    assert_eq!(r.status, 409, "{}", r.text());
    // "Only if absent" holds: the key has no version.
    let r = c.request("POST", "/put/k?if_version=0", &[], br#"{"value": "new"}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["version"], 2);
    assert_eq!(r.json()["operation"], "create");
    // The old ETag does not match the new content.
    let r = c.request("GET", "/get/k", &[("If-None-Match", &etag)], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["value"], "new");
    assert_eq!(r.header("etag"), Some("\"2\""));
    // The purged version is gone, not another value.
    assert_eq!(c.get("/get/k?version=1").status, 410);
    let h = c.get("/history/k").json();
    assert_eq!(h["versions"].as_array().unwrap().len(), 1, "{h}");

    // Purged again, then restarted: still no reuse.
    assert_eq!(
        c.request("DELETE", "/delete/k?purge=true", &[], b"").status,
        200
    );
    assert!(s.terminate().success());
    let s = Server::start_on(&s.db.clone(), &[]);
    let mut c = s.client();
    let r = c.put("k", &json!("after restart")).json();
    assert_eq!(
        (r["version"].clone(), r["operation"].clone()),
        (json!(3), json!("create"))
    );
    assert_eq!(c.put("k", &json!("next")).json()["operation"], "update");
    let out = crate::common::run(&["check", "--db", s.db.to_str().unwrap()]);
    assert!(out.status.success(), "{}", crate::common::output_text(&out));
}

#[test]
fn conditional_puts_by_query_and_if_match() {
    let s = Server::start(&[]);
    let mut c = s.client();
    let body = br#"{"value": 1}"#;
    assert_eq!(
        c.request("POST", "/put/c?if_version=0", &[], body).status,
        200
    );
    let r = c.request("POST", "/put/c?if_version=0", &[], body);
    assert_eq!(r.status, 409);
    assert_eq!(r.json()["current_version"], 1);
    assert!(r.json()["detail"].as_str().unwrap().contains("version 1"));
    assert_eq!(
        c.request("POST", "/put/c?if_version=1", &[], body).json()["version"],
        2
    );
    assert_eq!(
        c.request("POST", "/put/c", &[("If-Match", "\"1\"")], body)
            .status,
        409
    );
    assert_eq!(
        c.request("POST", "/put/c", &[("If-Match", "\"2\"")], body)
            .json()["version"],
        3
    );
    assert_eq!(
        c.request("POST", "/put/c?if_version=x", &[], body).status,
        422
    );
    assert_eq!(
        c.get("/db/stats").json()["total_versions"],
        3,
        "409s wrote nothing"
    );
}

#[test]
fn racing_conditional_writers_exactly_one_wins_each_round() {
    let s = Server::start(&[]);
    for round in 0..5u64 {
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let mut c = s.client();
                std::thread::spawn(move || {
                    let body = format!("{{\"value\": {t}}}");
                    let r = c.request(
                        "POST",
                        &format!("/put/race?if_version={round}"),
                        &[],
                        body.as_bytes(),
                    );
                    (r.status, r.json())
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let wins = results.iter().filter(|r| r.0 == 200).count();
        assert_eq!(wins, 1, "round {round}: {results:?}");
        assert!(
            results
                .iter()
                .all(|r| r.0 == 200 || (r.0 == 409 && r.1["current_version"] == round + 1))
        );
    }
    assert_eq!(s.client().get("/get/race").json()["version"], 5);
}

#[test]
fn etag_and_if_none_match() {
    let s = Server::start(&[]);
    let mut c = s.client();
    c.put("e", &json!(1));
    let r = c.request("GET", "/get/e", &[("If-None-Match", "\"1\"")], b"");
    assert_eq!((r.status, r.header("etag")), (304, Some("\"1\"")));
    assert!(r.body.is_empty());
    c.put("e", &json!(2));
    let r = c.request("GET", "/get/e", &[("If-None-Match", "\"1\"")], b"");
    assert_eq!((r.status, r.header("etag")), (200, Some("\"2\"")));
    assert_eq!(c.get("/get/e?version=1").header("etag"), Some("\"1\""));
}

#[test]
fn retention_keeps_the_newest_versions_and_answers_410_for_removed_ones() {
    let s = Server::start(&["--max-versions", "3"]);
    let mut c = s.client();
    for i in 1..=5 {
        assert_eq!(c.put("r", &json!(i)).json()["version"], i);
    }
    let r = c.get("/get/r?version=2");
    assert_eq!(r.status, 410);
    assert!(
        r.json()["detail"]
            .as_str()
            .unwrap()
            .contains("oldest kept is 3"),
        "{}",
        r.text()
    );
    assert_eq!(c.get("/get/r?version=3").json()["value"], 3);
    assert_eq!(c.get("/get/r?version=6").status, 404);
    let h = c.get("/history/r").json();
    let kept: Vec<u64> = h["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_u64().unwrap())
        .collect();
    assert_eq!(kept, [5, 4, 3]);
    assert_eq!(c.get("/db/stats").json()["total_versions"], 3);
}
