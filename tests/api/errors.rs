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
    assert_eq!((r.status, r.header("allow")), (405, Some("POST")));
    assert!(!detail(&r).is_empty());
    let r = c.request("POST", "/get/k", &[], b"{}");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
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
