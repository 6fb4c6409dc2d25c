//! CORS (`--cors-origins`) and `OPTIONS`: nothing allowed by default,
//! preflights answered for listed origins only, every answer to them
//! readable by the page, no credentials.

use crate::common::*;

const APP: &str = "https://app.example";

fn tokens_file(dir: &std::path::Path) -> String {
    let path = dir.join("tokens");
    std::fs::write(&path, "w-token write\n").unwrap();
    path.to_str().unwrap().to_string()
}

fn preflight(c: &mut Client, path: &str, origin: &str, method: &str, headers: &str) -> Resp {
    let mut h = vec![
        ("Origin", origin),
        ("Access-Control-Request-Method", method),
    ];
    if !headers.is_empty() {
        h.push(("Access-Control-Request-Headers", headers));
    }
    c.request("OPTIONS", path, &h, b"")
}

fn cors_headers(r: &Resp) -> Vec<&str> {
    r.headers
        .iter()
        .filter(|(n, _)| n.to_ascii_lowercase().starts_with("access-control-"))
        .map(|(n, _)| n.as_str())
        .collect()
}

#[test]
fn without_cors_origins_nothing_is_allowed_and_options_answers_its_methods() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&["--auth-tokens", &tokens_file(dir.path())]);
    let mut c = s.client();
    // Plain OPTIONS: the methods, open like a preflight (no token).
    for (path, allow) in [
        ("/get/k", "GET, HEAD, OPTIONS"),
        ("/put/k", "POST, OPTIONS"),
        ("/delete/k", "DELETE, OPTIONS"),
        ("/keys", "GET, HEAD, OPTIONS"),
    ] {
        let r = c.request("OPTIONS", path, &[], b"");
        assert_eq!((r.status, r.header("allow")), (204, Some(allow)), "{path}");
        assert!(r.body.is_empty());
    }
    assert_eq!(c.request("OPTIONS", "/nope", &[], b"").status, 404);
    // A preflight: refused, saying how to allow it.
    let r = preflight(&mut c, "/put/k", APP, "POST", "content-type");
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.detail().contains("--cors-origins"), "{}", r.text());
    assert!(cors_headers(&r).is_empty(), "{:?}", r.headers);
    // Answers carry no CORS header, and a cross-origin write is refused.
    let mut w = s.client().with_token("w-token");
    let r = w.request("GET", "/keys", &[("Origin", APP)], b"");
    assert_eq!(r.status, 200);
    assert!(cors_headers(&r).is_empty(), "{:?}", r.headers);
    assert_eq!(r.header("vary"), None);
    let r = w.request("POST", "/put/k", &[("Origin", APP)], br#"{"value": 1}"#);
    assert_eq!(r.status, 403, "{}", r.text());
}

#[test]
fn listed_origins_get_preflights_and_readable_answers_others_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&[
        "--cors-origins",
        "https://App.Example:443,http://localhost:3000",
        "--auth-tokens",
        &tokens_file(dir.path()),
    ]);
    let mut c = s.client();
    let r = preflight(
        &mut c,
        "/put/k",
        APP,
        "POST",
        "content-type, authorization, if-match",
    );
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(r.header("access-control-allow-origin"), Some(APP));
    assert_eq!(r.header("access-control-allow-methods"), Some("POST"));
    let allowed = r.header("access-control-allow-headers").unwrap();
    for h in ["Authorization", "Content-Type", "If-Match", "If-None-Match"] {
        assert!(allowed.contains(h), "{allowed}");
    }
    assert_eq!(r.header("access-control-max-age"), Some("600"));
    assert!(r.header("vary").unwrap().contains("Origin"));
    // Bearer tokens, never cookies: no credentials.
    assert_eq!(r.header("access-control-allow-credentials"), None);
    // The other listed origin; a GET route's methods.
    let r = preflight(&mut c, "/get/k", "http://localhost:3000", "GET", "");
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("http://localhost:3000")
    );
    assert_eq!(r.header("access-control-allow-methods"), Some("GET, HEAD"));
    // Refused: another origin, a method the path does not take, a header
    // vkv does not read.
    let r = preflight(&mut c, "/put/k", "https://evil.example", "POST", "");
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.detail().contains("not listed"), "{}", r.text());
    assert_eq!(r.header("access-control-allow-origin"), None);
    let r = preflight(&mut c, "/put/k", APP, "DELETE", "");
    assert_eq!(r.status, 405, "{}", r.text());
    let r = preflight(&mut c, "/put/k", APP, "POST", "x-custom");
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.detail().contains("x-custom"), "{}", r.text());

    // The real requests: a write from the listed origin is taken and its
    // answer is readable (ETag exposed); errors too.
    let mut w = s.client().with_token("w-token");
    let json = ("Content-Type", "application/json");
    let r = w.request(
        "POST",
        "/put/k",
        &[("Origin", APP), json],
        br#"{"value": 1}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("access-control-allow-origin"), Some(APP));
    assert!(r.header("vary").unwrap().contains("Origin"));
    for _ in 0..2 {
        // Read from the store, then from the cache on the I/O loop.
        let r = w.request("GET", "/get/k", &[("Origin", APP)], b"");
        assert_eq!(r.status, 200);
        assert_eq!(r.header("access-control-allow-origin"), Some(APP));
        let exposed = r.header("access-control-expose-headers").unwrap();
        assert!(exposed.contains("ETag"), "{exposed}");
    }
    let r = c.request("GET", "/get/k", &[("Origin", APP)], b"");
    assert_eq!(r.status, 401);
    assert_eq!(r.header("access-control-allow-origin"), Some(APP));
    let exposed = r.header("access-control-expose-headers").unwrap();
    assert!(exposed.contains("WWW-Authenticate"), "{exposed}");
    // Another origin: no CORS header, its write refused; the answer still
    // varies by Origin for caches.
    let evil = ("Origin", "https://evil.example");
    let r = w.request("GET", "/get/k", &[evil], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), None);
    assert!(r.header("vary").unwrap().contains("Origin"));
    let r = w.request("POST", "/put/k", &[evil, json], br#"{"value": 2}"#);
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(w.get("/get/k").json()["value"], 1);
    // Docs assets keep their own Vary.
    let r = c.request(
        "GET",
        "/docs/swagger-ui.css",
        &[("Origin", APP), ("Accept-Encoding", "gzip")],
        b"",
    );
    assert_eq!(r.header("vary"), Some("Accept-Encoding, Origin"));
}

#[test]
fn a_star_allows_any_origin_without_credentials() {
    let s = Server::start(&["--cors-origins", "*"]);
    let mut c = s.client();
    let r = preflight(
        &mut c,
        "/batch",
        "https://any.example",
        "POST",
        "content-type",
    );
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert_eq!(r.header("access-control-allow-credentials"), None);
    let body = br#"{"puts": [{"key": "a", "value": 1}]}"#;
    let r = c.request(
        "POST",
        "/batch",
        &[
            ("Origin", "https://any.example"),
            ("Content-Type", "application/json"),
        ],
        body,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert_eq!(r.header("vary"), None, "the same answer for every origin");
}

#[test]
fn origin_flags_are_checked_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("kv.db");
    for args in [
        &["--cors-origins", "app.example"][..],
        &["--cors-origins", "null"],
        &["--cors-origins", "https://app.example/path"],
        &["--allowed-origins", "*"],
        &["--allowed-origins", "https://"],
    ] {
        let out = run(&[&["--db", db.to_str().unwrap()][..], args].concat());
        assert!(!out.status.success(), "{args:?} was accepted");
        let text = output_text(&out);
        assert!(text.contains(args[0]), "{args:?}: {text}");
    }
    assert!(!db.exists(), "a refused start touched the database");
}
