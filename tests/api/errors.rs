//! Every error status of the contract, each with a JSON detail.

use crate::common::{Resp, Server, json};

fn detail(r: &Resp) -> String {
    r.json()["detail"]
        .as_str()
        .unwrap_or_else(|| panic!("no detail: {}", r.text()))
        .to_string()
}

#[test]
fn not_found_and_bad_parameters() {
    let s = Server::start(&[]);
    let mut c = s.client();
    let r = c.get("/get/missing");
    assert_eq!(r.status, 404);
    assert!(detail(&r).contains("missing"));
    c.put("k", &json!(1));
    let r = c.get("/get/k?version=2");
    assert_eq!(r.status, 404);
    assert!(detail(&r).contains("latest is 1"), "{}", detail(&r));
    for bad in ["0", "-1", "x", "", "1e3"] {
        let r = c.get(&format!("/get/k?version={bad}"));
        assert_eq!(r.status, 422, "version={bad}");
        assert!(detail(&r).contains("version"));
    }
    let r = c.get("/nope");
    assert_eq!(r.status, 404);
    assert!(detail(&r).contains("/nope"));
}

#[test]
fn malformed_bodies_and_keys_are_422_and_write_nothing() {
    let s = Server::start(&[]);
    let mut c = s.client();
    let cases: &[(&str, &[u8])] = &[
        ("/put/k", b"{not json"),
        ("/put/k", b"{\"valu\": 1}"),
        ("/put/k", b""),
        ("/put/k", b"[1]"),
        ("/put/k", b"{\"value\": 1} trailing"),
        ("/put/k", b"\xff\xfe"),
        ("/put/", b"{\"value\": 1}"),
        ("/put/%FF", b"{\"value\": 1}"),
    ];
    for (path, body) in cases {
        let r = c.request("POST", path, &[], body);
        assert_eq!(
            r.status,
            422,
            "{path} {:?}: {}",
            String::from_utf8_lossy(body),
            r.text()
        );
        assert!(!detail(&r).is_empty());
    }
    let long = "k".repeat(1025);
    let r = c.put(&long, &json!(1));
    assert_eq!(r.status, 422);
    assert!(detail(&r).contains("1024"));
    let deep = format!(
        "{{\"value\": {}{}}}",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    assert_eq!(
        c.request("POST", "/put/k", &[], deep.as_bytes()).status,
        422
    );
    assert_eq!(c.get("/db/stats").json()["total_versions"], 0);
}

#[test]
fn body_over_the_limit_is_413() {
    let s = Server::start(&["--max-body-bytes", "100"]);
    let mut c = s.client();
    let big = format!("{{\"value\": \"{}\"}}", "x".repeat(200));
    let r = c.request("POST", "/put/k", &[], big.as_bytes());
    assert_eq!(r.status, 413);
    assert!(!detail(&r).is_empty());
    let mut c = s.client();
    assert_eq!(c.put("k", &json!("small")).status, 200);
}

#[test]
fn wrong_method_is_405_with_allow() {
    let s = Server::start(&[]);
    let mut c = s.client();
    let r = c.get("/put/k");
    assert_eq!((r.status, r.header("allow")), (405, Some("POST, OPTIONS")));
    assert!(!detail(&r).is_empty());
    let r = c.request("POST", "/get/k", &[], b"{}");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD, OPTIONS"));
    let r = c.request("DELETE", "/cache/stats", &[], b"");
    assert_eq!(r.status, 405);
}

#[test]
fn bad_configuration_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["--cache-size", "lots"][..],
        &["--sync", "sometimes"],
        &["--workers", "0"],
        &["--idle-timeout", "soon"],
        &["--log-level", "loud"],
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_vkv"))
            .args(args)
            .arg("--db")
            .arg(dir.path().join("x.db"))
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(args[0]), "{args:?}: {err}");
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vkv"))
        .env("VKV_CACHE_SIZE", "-1")
        .arg("--db")
        .arg(dir.path().join("x.db"))
        .output()
        .unwrap();
    assert!(!out.status.success(), "VKV_CACHE_SIZE=-1 was accepted");
}

/// Without the `postgres` feature a PostgreSQL URL is refused at start with
/// a message naming the feature (and the password masked).
#[cfg(not(feature = "postgres"))]
#[test]
fn a_postgres_url_is_refused_by_a_build_without_the_feature() {
    for scheme in ["postgres", "postgresql"] {
        let url = format!("{scheme}://vkv:hunter2@127.0.0.1:1/kv");
        let out = crate::common::run(&["--bind", "127.0.0.1:0", "--db", &url]);
        assert!(!out.status.success(), "{url} was accepted");
        let text = crate::common::output_text(&out);
        assert!(text.contains("--features postgres"), "{text}");
        assert!(
            text.contains(&format!("{scheme}://vkv:***@127.0.0.1:1/kv")),
            "{text}"
        );
        assert!(!text.contains("hunter2"), "password logged: {text}");
    }
}

/// A misspelt or unknown query parameter, or body field, is refused with
/// `422` naming it, on every route, before anything is read or written:
/// never answered as if it were absent.
#[test]
fn unknown_parameters_and_body_fields_are_422_naming_them() {
    let s = Server::start(&[]);
    let mut c = s.client();
    c.put("k", &json!(1));
    c.put("k", &json!(2));
    // The latest of k is cached: the cache's fast path refuses it too.
    assert_eq!(c.get("/get/k").json()["version"], 2);
    let r = c.get("/get/k?versoin=1");
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(detail(&r).contains("'versoin'"), "{}", detail(&r));
    assert!(
        detail(&r).contains("version, wait_after, timeout"),
        "{}",
        detail(&r)
    );

    let routes: &[(&str, &str, &[u8])] = &[
        ("POST", "/put/k", br#"{"value": 3}"#),
        ("GET", "/get/k", b""),
        ("HEAD", "/get/k", b""),
        ("DELETE", "/delete/k", b""),
        ("GET", "/history/k", b""),
        ("GET", "/keys", b""),
        ("POST", "/batch", br#"{"puts": [{"key": "b", "value": 1}]}"#),
        ("GET", "/metrics", b""),
        ("GET", "/cache/stats", b""),
        ("GET", "/db/stats", b""),
        ("GET", "/health", b""),
        ("GET", "/openapi.json", b""),
        ("GET", "/docs", b""),
        ("GET", "/docs/swagger-ui.css", b""),
        ("GET", "/backup", b""),
    ];
    for (method, path, body) in routes {
        let r = c.request(method, &format!("{path}?expire=10s"), &[], body);
        assert_eq!(r.status, 422, "{method} {path}: {}", r.text());
        if *method != "HEAD" {
            assert!(
                detail(&r).contains("'expire'"),
                "{method} {path}: {}",
                detail(&r)
            );
        }
        // Known parameters given twice are refused too.
        let r = c.request(method, &format!("{path}?limit=1&limit=2"), &[], body);
        assert_eq!(r.status, 422, "{method} {path}: {}", r.text());
    }
    // Parameters that would do nothing where they are.
    for path in ["/get/k?timeout=5", "/get/k?version=1&wait_after=1"] {
        let r = c.get(path);
        assert_eq!(r.status, 422, "{path}: {}", r.text());
    }

    // Body fields: the put's, a batch's and each batch entry's.
    let bodies: &[(&str, &[u8], &str)] = &[
        ("/put/k", br#"{"value": 1, "ttl": "10s"}"#, "ttl"),
        ("/put/k", br#"{"vaule": 1, "value": 1}"#, "vaule"),
        (
            "/batch",
            br#"{"puts": [{"key": "b", "value": 1, "expire": 5}]}"#,
            "expire",
        ),
        (
            "/batch",
            br#"{"puts": [{"key": "b", "value": 1, "if_versoin": 0}]}"#,
            "if_versoin",
        ),
        (
            "/batch",
            br#"{"puts": [{"key": "b", "value": 1}], "atomic": false}"#,
            "atomic",
        ),
    ];
    for (path, body, field) in bodies {
        let r = c.request("POST", path, &[], body);
        assert_eq!(
            r.status,
            422,
            "{path} {}: {}",
            String::from_utf8_lossy(body),
            r.text()
        );
        assert!(detail(&r).contains(field), "{}", detail(&r));
    }
    // Nothing above was read as something else, nor written.
    let stats = c.get("/db/stats").json();
    assert_eq!(
        (stats["total_keys"].clone(), stats["total_versions"].clone()),
        (json!(1), json!(2))
    );

    // Every parameter a route takes still works.
    for path in [
        "/get/k?version=1",
        "/get/k?wait_after=1&timeout=1",
        "/history/k?limit=1&before=2",
        "/keys?prefix=k&limit=1&after=a",
    ] {
        let r = c.get(path);
        assert_eq!(r.status, 200, "{path}: {}", r.text());
    }
    let r = c.request("POST", "/put/k?if_version=2", &[], br#"{"value": 3}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    let r = c.request("DELETE", "/delete/k?if_version=3&purge=false", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    let r = c.request("DELETE", "/delete/k?purge=true", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
}

/// A key with a `.` or `..` segment could not be read back by a browser
/// or curl (they resolve such segments before sending): refused with 422
/// on every route that names a key, in a batch too, nothing written.
#[test]
fn keys_with_dot_segments_are_refused() {
    let s = Server::start(&[]);
    let mut c = s.client();
    for key in ["x/../y", "./a", "a/.", "..", "a/%2E%2E/b", "a/%2e"] {
        let r = c.put(key, &json!(1));
        assert_eq!(r.status, 422, "{key}: {}", r.text());
        assert!(detail(&r).contains("segment"), "{}", detail(&r));
        for path in [format!("/get/{key}"), format!("/history/{key}")] {
            let r = c.get(&path);
            assert_eq!(r.status, 422, "{path}: {}", r.text());
        }
    }
    let body = json!({"puts": [{"key": "ok", "value": 1}, {"key": "a/../b", "value": 1}]});
    let r = c.request("POST", "/batch", &[], body.to_string().as_bytes());
    assert_eq!(r.status, 422, "{}", r.text());
    assert_eq!(c.get("/db/stats").json()["total_versions"], 0);
    // Dots that are not a whole segment are ordinary characters.
    for key in ["...", ".a", "a./b", "v1.2/x..y"] {
        assert_eq!(c.put(key, &json!(1)).status, 200, "{key}");
        assert_eq!(c.get(&format!("/get/{key}")).status, 200, "{key}");
    }
}
