//! What a web page could make a browser send to a vkv without tokens:
//! form and `text/plain` writes (415), writes from another origin and DNS
//! rebinding (403). Nothing refused is written.

use crate::common::*;

const BODY: &[u8] = br#"{"value": "from a web page"}"#;

fn put_with(c: &mut Client, key: &str, headers: &[(&str, &str)]) -> Resp {
    c.request("POST", &format!("/put/{key}"), headers, BODY)
}

#[test]
fn writes_not_declared_json_are_refused_415_and_write_nothing() {
    let s = Server::start(&[]);
    let mut c = s.client();
    for ct in [
        "text/plain",
        "text/plain;charset=UTF-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        let r = put_with(&mut c, "csrf", &[("Content-Type", ct)]);
        assert_eq!(r.status, 415, "{ct}: {}", r.text());
        assert!(r.detail().contains("application/json"), "{}", r.text());
        let batch = br#"{"puts": [{"key": "csrf", "value": 1}]}"#;
        let r = c.request("POST", "/batch", &[("Content-Type", ct)], batch);
        assert_eq!(r.status, 415, "batch {ct}: {}", r.text());
    }
    assert_eq!(c.get("/get/csrf").status, 404, "a refused write was stored");
    // Only writes are checked: an unknown path is still 404.
    let r = c.request("POST", "/nothing", &[("Content-Type", "text/plain")], BODY);
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(
        c.request(
            "DELETE",
            "/delete/csrf",
            &[("Content-Type", "text/plain")],
            b""
        )
        .status,
        415
    );
    // JSON, declared or not, is taken.
    for (i, ct) in [
        None,
        Some("application/json"),
        Some("application/json; charset=utf-8"),
        Some("application/merge-patch+json"),
    ]
    .into_iter()
    .enumerate()
    {
        let headers: Vec<(&str, &str)> = ct.map(|ct| ("Content-Type", ct)).into_iter().collect();
        let r = put_with(&mut c, "json", &headers);
        assert_eq!(r.status, 200, "{ct:?}: {}", r.text());
        assert_eq!(r.json()["version"], i as u64 + 1);
    }
}

#[test]
fn writes_from_another_origin_are_refused_403() {
    let s = Server::start(&[]);
    let mut c = s.client();
    // A Blob body without a type: no Content-Type, but the browser says
    // where the page came from.
    for origin in ["http://evil.example", "null", "http://127.0.0.1:1"] {
        let r = put_with(&mut c, "xo", &[("Origin", origin)]);
        assert_eq!(r.status, 403, "{origin}: {}", r.text());
        assert!(r.detail().contains("cross-origin"), "{}", r.text());
    }
    assert_eq!(c.get("/get/xo").status, 404, "a refused write was stored");
    // Swagger UI at /docs is the same origin: its calls are taken.
    let same = format!("http://{}", s.addr);
    let r = put_with(&mut c, "xo", &[("Origin", &same)]);
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn a_loopback_server_answers_only_loopback_host_names() {
    let s = Server::start(&[]);
    let port = s.addr.port();
    let mut c = s.client();
    // DNS rebinding: the attacker's name resolves to 127.0.0.1.
    for host in [
        format!("evil.example:{port}"),
        "evil.example".to_string(),
        format!("localhost.evil.example:{port}"),
    ] {
        c.host = host.clone();
        let r = c.get("/keys");
        assert_eq!(r.status, 403, "{host}: {}", r.text());
        assert!(r.detail().contains("--allowed-hosts"), "{}", r.text());
        let r = put_with(&mut c, "rebound", &[("Content-Type", "application/json")]);
        assert_eq!(r.status, 403, "{host}: {}", r.text());
    }
    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
        "app.localhost".to_string(),
    ] {
        c.host = host.clone();
        assert_eq!(c.get("/keys").status, 200, "{host}");
    }
    assert_eq!(
        c.get("/get/rebound").status,
        404,
        "a refused write was stored"
    );
}

#[test]
fn allowed_hosts_adds_names_and_a_star_allows_any() {
    let s = Server::start(&["--allowed-hosts", "kv.example,Other.Example"]);
    let mut c = s.client();
    for (host, status) in [
        ("kv.example:8080", 200),
        ("other.example", 200),
        ("localhost", 200),
        ("evil.example", 403),
    ] {
        c.host = host.to_string();
        assert_eq!(c.get("/keys").status, status, "{host}");
    }
    let s = Server::start(&["--allowed-hosts", "*"]);
    let mut c = s.client();
    c.host = "evil.example".to_string();
    assert_eq!(c.get("/keys").status, 200);
}
