//! Conditions (`if_version`, `If-Match`, `If-None-Match`) on every write and
//! read that takes one, and what "no live version" means for them.

use crate::common::{Client, Server, json};

fn delete(c: &mut Client, path: &str, headers: &[(&str, &str)]) -> crate::common::Resp {
    c.request("DELETE", path, headers, b"")
}

fn history_len(c: &mut Client, key: &str) -> usize {
    c.get(&format!("/history/{key}")).json()["versions"]
        .as_array()
        .map_or(0, Vec::len)
}

/// A delete or purge whose condition fails answers 409 with the key's
/// version and writes nothing; one whose condition holds goes ahead.
#[test]
fn delete_and_purge_honour_if_match_and_if_version() {
    let s = Server::start(&[]);
    let mut c = s.client();
    assert_eq!(c.put("k", &json!("one")).json()["version"], 1);

    let refused: [(&str, &[(&str, &str)]); 4] = [
        ("/delete/k", &[("If-Match", "\"9\"")]),
        ("/delete/k?if_version=9", &[]),
        ("/delete/k?purge=true", &[("If-Match", "\"9\"")]),
        ("/delete/k?purge=true&if_version=9", &[]),
    ];
    for (path, headers) in refused {
        let r = delete(&mut c, path, headers);
        assert_eq!(r.status, 409, "{path} {headers:?}: {}", r.text());
        assert_eq!(r.json()["current_version"], 1, "{path}");
        assert_eq!(r.json()["key"], "k", "{path}");
    }
    // Nothing was written: still version 1, one version in the history.
    assert_eq!(c.get("/get/k").json()["value"], "one");
    assert_eq!(history_len(&mut c, "k"), 1);
    assert_eq!(c.get("/db/stats").json()["total_versions"], 1);

    // The condition holds: deleted, the tombstone is version 2.
    let r = delete(&mut c, "/delete/k", &[("If-Match", "\"1\"")]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["version"], 2);

    c.put("k", &json!("two"));
    let r = delete(&mut c, "/delete/k?if_version=3", &[]);
    assert_eq!((r.status, r.json()["version"].clone()), (200, json!(4)));

    // A purge whose condition holds: "only if deleted" is if_version=0.
    c.put("p", &json!(1));
    let r = delete(&mut c, "/delete/p?purge=true&if_version=0", &[]);
    assert_eq!(r.status, 409, "{}", r.text());
    let r = delete(&mut c, "/delete/p?purge=true&if_version=1", &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["purged_versions"], 1);
    let r = delete(&mut c, "/delete/k?purge=true&if_version=0", &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["purged_versions"], 4);

    // A malformed condition is refused before anything is looked at.
    c.put("m", &json!(1));
    assert_eq!(delete(&mut c, "/delete/m?if_version=x", &[]).status, 422);
    assert_eq!(
        delete(&mut c, "/delete/m", &[("If-Match", "nope")]).status,
        422
    );
    assert_eq!(c.get("/get/m").status, 200);
}

/// `if_version=0` means "no live version": it holds for a key never
/// written, deleted or purged; the next version after a tombstone is a
/// "create" whose number continues the key's numbering.
#[test]
fn create_only_holds_when_the_key_is_absent_deleted_or_purged() {
    let s = Server::start(&[]);
    let mut c = s.client();
    let create_only = |c: &mut Client, key: &str, v: i64| {
        let body = json!({ "value": v }).to_string();
        c.request(
            "POST",
            &format!("/put/{key}?if_version=0"),
            &[],
            body.as_bytes(),
        )
    };
    // Absent.
    let r = create_only(&mut c, "lock", 1);
    assert_eq!(
        (r.status, r.json()["operation"].clone()),
        (200, json!("create"))
    );
    // Held: refused, naming the live version.
    let r = create_only(&mut c, "lock", 2);
    assert_eq!(
        (r.status, r.json()["current_version"].clone()),
        (409, json!(1))
    );

    // Deleted: the 404 carries the tombstone's version in its body.
    assert_eq!(delete(&mut c, "/delete/lock", &[]).status, 200);
    let r = c.get("/get/lock");
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["deleted_version"], 2, "{}", r.text());
    // A stale condition names no live version.
    let r = c.request("POST", "/put/lock?if_version=1", &[], br#"{"value": 0}"#);
    assert_eq!(
        (r.status, r.json()["current_version"].clone()),
        (409, json!(0))
    );
    let r = create_only(&mut c, "lock", 3);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        (r.json()["version"].clone(), r.json()["operation"].clone()),
        (json!(3), json!("create"))
    );

    // A plain put after a tombstone is a "create" too, numbering going on.
    delete(&mut c, "/delete/lock", &[]);
    let r = c.put("lock", &json!(4)).json();
    assert_eq!(
        (r["version"].clone(), r["operation"].clone()),
        (json!(5), json!("create"))
    );
    assert_eq!(c.put("lock", &json!(5)).json()["operation"], "update");

    // Purged: create-only holds, the numbering still goes on.
    assert_eq!(delete(&mut c, "/delete/lock?purge=true", &[]).status, 200);
    let r = create_only(&mut c, "lock", 6);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        (r.json()["version"].clone(), r.json()["operation"].clone()),
        (json!(7), json!("create"))
    );

    // In a batch too.
    delete(&mut c, "/delete/lock", &[]);
    let body = json!({"puts": [{"key": "lock", "value": 9, "if_version": 0}]});
    let r = c.request("POST", "/batch", &[], body.to_string().as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["results"][0]["version"], 9);
    assert_eq!(r.json()["results"][0]["operation"], "create");

    // A deleted key's 404 on a long poll carries its version as well.
    delete(&mut c, "/delete/lock", &[]);
    let r = c.get("/get/lock?wait_after=1&timeout=1");
    assert_eq!(
        (r.status, r.json()["deleted_version"].clone()),
        (404, json!(10))
    );
    // Versions never restart: dense from 7 (the purge removed 1..=6).
    let h: Vec<u64> = c.get("/history/lock").json()["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_u64().unwrap())
        .collect();
    assert_eq!(h, [10, 9, 8, 7]);
}

/// `If-None-Match` compares weakly (RFC 9110): a proxy that compresses
/// answers makes ETags weak, and `W/"1"` still names version 1; `*` and
/// lists too. `If-Match` compares strongly: a weak ETag is refused.
#[test]
fn if_none_match_compares_weakly_and_if_match_strongly() {
    // With and without the cache (the loop's fast path and the store's).
    for args in [&[][..], &["--cache-size", "0"][..]] {
        let s = Server::start(args);
        let mut c = s.client();
        c.put("e", &json!(1));
        c.get("/get/e");
        for tag in ["\"1\"", "W/\"1\"", "*", "W/\"7\", \"1\"", "\"0\",W/\"1\""] {
            let r = c.request("GET", "/get/e", &[("If-None-Match", tag)], b"");
            assert_eq!(r.status, 304, "{args:?} {tag}: {}", r.text());
            assert_eq!(r.header("etag"), Some("\"1\""));
        }
        c.put("e", &json!(2));
        c.get("/get/e");
        for tag in ["\"1\"", "W/\"1\"", "W/\"3\", \"1\"", "W/\"02\""] {
            let r = c.request("GET", "/get/e", &[("If-None-Match", tag)], b"");
            assert_eq!(r.status, 200, "{args:?} {tag}");
            assert_eq!(r.json()["version"], 2);
        }
        let r = c.request("GET", "/get/e", &[("If-None-Match", "W/\"2\"")], b"");
        assert_eq!(r.status, 304, "{args:?}");

        // If-Match: strong; a weak tag is refused and nothing is written.
        for (method, path) in [("POST", "/put/e"), ("DELETE", "/delete/e")] {
            let r = c.request(method, path, &[("If-Match", "W/\"2\"")], br#"{"value": 3}"#);
            assert_eq!(r.status, 422, "{method}: {}", r.text());
            assert!(r.text().contains("strongly"), "{}", r.text());
        }
        assert_eq!(c.get("/get/e").json()["version"], 2);
    }
}
