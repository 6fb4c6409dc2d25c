//! Hostile and unusual HTTP against the real binary over raw sockets. Each
//! case gets a 4xx or a closed connection (never a write it did not ask
//! for, never a crash), and after each the server still answers a normal
//! client.

use std::io::Write;
use std::time::{Duration, Instant};

use crate::common::raw::Raw;
use crate::common::{Resp, Server, history, json, shared};

/// The server's `--read-timeout` in these tests.
const READ_TIMEOUT: Duration = Duration::from_secs(1);

/// After each case: the server process is alive and a normal client is
/// answered promptly.
fn still_serves(s: &Server, after: &str) {
    let start = Instant::now();
    let r = s.client().get("/health");
    assert_eq!(
        r.status,
        200,
        "after {after}: {}\n{}",
        r.text(),
        s.log_text()
    );
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "after {after}: health took {:?}",
        start.elapsed()
    );
}

/// Sends `bytes` and expects one 4xx (checked by `check`) and then a close,
/// or a close with nothing at all.
fn rejected(s: &Server, what: &str, bytes: &[u8], check: impl Fn(u16) -> bool) -> Option<Resp> {
    let mut raw = Raw::open(s.addr);
    // The server may close before taking everything: a failed send is fine.
    let _ = raw.s.write_all(bytes);
    let r = raw.response(Duration::from_secs(10));
    if let Some(r) = &r {
        assert!(
            (400..500).contains(&r.status) && check(r.status),
            "{what}: answered {} {}",
            r.status,
            r.text()
        );
        assert!(
            r.header("connection")
                .is_some_and(|v| v.eq_ignore_ascii_case("close")),
            "{what}: a rejected request must close the connection: {:?}",
            r.headers
        );
    }
    assert!(
        raw.closed_within(Duration::from_secs(5)),
        "{what}: connection not closed (buffered {:?})",
        raw.text()
    );
    still_serves(s, what);
    r
}

fn server() -> Server {
    Server::start(&["--read-timeout", "1s"])
}

#[test]
fn garbage_bytes_are_rejected() {
    let _g = shared();
    let s = server();
    let cases: [&[u8]; 4] = [
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 TLS hello\r\n\r\n",
        b"\x00\x01\x02\x03\xff\xfe\r\n\r\n",
        b"GET\r\n\r\n",
        b"HELLO WORLD HTTP/9.9 what\r\n\r\n",
    ];
    for bytes in cases {
        rejected(&s, &format!("garbage {bytes:?}"), bytes, |_| true);
    }
}

#[test]
fn request_line_over_the_limit_is_414() {
    let _g = shared();
    let s = server();
    let line = format!(
        "GET /get/{} HTTP/1.1\r\nHost: localhost\r\n\r\n",
        "a".repeat(9000)
    );
    let r = rejected(&s, "long request line", line.as_bytes(), |st| st == 414);
    assert!(r.is_some(), "no 414 sent");
}

#[test]
fn headers_over_the_limit_are_431() {
    let _g = shared();
    let s = server();
    let mut big = String::from("GET /health HTTP/1.1\r\nHost: localhost\r\n");
    for i in 0..40 {
        big.push_str(&format!("X-Fill-{i}: {}\r\n", "v".repeat(500)));
    }
    big.push_str("\r\n");
    let r = rejected(&s, "20 KB of headers", big.as_bytes(), |st| st == 431);
    assert!(r.is_some(), "no 431 sent");

    let mut many = String::from("GET /health HTTP/1.1\r\nHost: localhost\r\n");
    for i in 0..200 {
        many.push_str(&format!("X-{i}: 1\r\n"));
    }
    many.push_str("\r\n");
    let r = rejected(&s, "200 headers", many.as_bytes(), |st| st == 431);
    assert!(r.is_some(), "no 431 sent");
}

#[test]
fn invalid_utf8_in_path_and_body_is_rejected_and_writes_nothing() {
    let _g = shared();
    let s = server();
    // Raw bytes in the request target: not a valid request.
    rejected(
        &s,
        "invalid UTF-8 in the path",
        b"POST /put/\xff\xfe HTTP/1.1\r\nHost: localhost\r\nContent-Length: 11\r\n\r\n{\"value\":1}",
        |_| true,
    );
    // Percent-encoded invalid UTF-8: a well-formed request with a bad key.
    let mut c = s.client();
    let r = c
        .try_request("POST", "/put/%ff%fe", &[], b"{\"value\":1}")
        .expect("answer");
    assert_eq!(r.status, 422, "{}", r.text());
    let r = c.get("/get/%C3%28");
    assert_eq!(r.status, 422, "{}", r.text());
    // Invalid UTF-8 inside a JSON string.
    let r = c
        .try_request("POST", "/put/utf8", &[], b"{\"value\":\"\xff\xfe\"}")
        .expect("answer");
    assert_eq!(r.status, 422, "{}", r.text());
    assert_eq!(
        c.get("/get/utf8").status,
        404,
        "a rejected body was written"
    );
    let r = c.get("/keys");
    assert_eq!(r.json()["keys"], json!([]), "something was written");
    still_serves(&s, "invalid UTF-8");
}

#[test]
fn json_nested_ten_thousand_deep_is_422() {
    let _g = shared();
    let s = server();
    let mut c = s.client();
    let arrays = format!("{{\"value\":{}{}}}", "[".repeat(10_000), "]".repeat(10_000));
    let objects = format!(
        "{{\"value\":{}1{}}}",
        "{\"a\":".repeat(10_000),
        "}".repeat(10_000)
    );
    // Unclosed, so only a streaming check can see the depth before the end.
    let unclosed = format!("{{\"value\":{}", "[".repeat(10_000));
    for (what, body) in [
        ("arrays", &arrays),
        ("objects", &objects),
        ("unclosed", &unclosed),
    ] {
        let r = c
            .try_request("POST", "/put/deep", &[], body.as_bytes())
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(r.status, 422, "{what}: {}", r.text());
        let batch = format!("{{\"puts\":[{{\"key\":\"deep\",\"value\":{}]}}", &body[9..]);
        let r = c
            .try_request("POST", "/batch", &[], batch.as_bytes())
            .unwrap_or_else(|e| panic!("{what} in a batch: {e}"));
        assert_eq!(r.status, 422, "{what} in a batch: {}", r.text());
    }
    assert_eq!(c.get("/get/deep").status, 404);
    // The deepest allowed value is stored and read back.
    let ok = format!(
        "{{\"value\":{}{}}}",
        "[".repeat(vkv::value::MAX_DEPTH),
        "]".repeat(vkv::value::MAX_DEPTH)
    );
    let r = c
        .try_request("POST", "/put/deep", &[], ok.as_bytes())
        .expect("answer");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(c.get("/get/deep").status, 200);
    still_serves(&s, "deep JSON");
}

#[test]
fn content_length_longer_than_the_body_times_out_and_writes_nothing() {
    let _g = shared();
    let s = server();
    let mut raw = Raw::open(s.addr);
    let start = Instant::now();
    raw.send(b"POST /put/lie-long HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n{\"value\":1}");
    let r = raw.expect_response("body shorter than Content-Length");
    let waited = start.elapsed();
    assert_eq!(r.status, 408, "{}", r.text());
    assert!(
        waited >= READ_TIMEOUT - Duration::from_millis(100) && waited < READ_TIMEOUT * 5,
        "answered after {waited:?}, read timeout is {READ_TIMEOUT:?}"
    );
    assert!(raw.closed_within(Duration::from_secs(5)), "not closed");
    let mut c = s.client();
    assert_eq!(
        c.get("/get/lie-long").status,
        404,
        "a partial body was written"
    );
    still_serves(&s, "long Content-Length");
}

#[test]
fn content_length_shorter_than_the_body_leaves_a_rejected_remainder() {
    let _g = shared();
    let s = server();
    let mut raw = Raw::open(s.addr);
    // The declared 11 bytes are a valid put; the rest is read as the next
    // request, which is not HTTP: 400 and close, and it writes nothing.
    raw.send(
        b"POST /put/lie-short HTTP/1.1\r\nHost: localhost\r\nContent-Length: 11\r\n\r\n\
          {\"value\":1}{\"value\":2}\r\n\r\n",
    );
    let first = raw.expect_response("declared part");
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(first.json()["version"], json!(1));
    let second = raw.expect_response("remainder");
    assert_eq!(second.status, 400, "{}", second.text());
    assert!(raw.closed_within(Duration::from_secs(5)), "not closed");
    let mut c = s.client();
    assert_eq!(history(&mut c, "lie-short"), vec![1]);
    assert_eq!(c.get("/get/lie-short").json()["value"], json!(1));
    still_serves(&s, "short Content-Length");
}

#[test]
fn chunked_put_works() {
    let _g = shared();
    let s = server();
    let mut raw = Raw::open(s.addr);
    raw.send(
        b"POST /put/chunky HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n\
          5\r\n{\"val\r\n7;ext=1\r\nue\":42}\r\n0\r\n\r\n",
    );
    let r = raw.expect_response("chunked put");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["version"], json!(1));
    // Keep-alive: the same connection serves the next request.
    raw.send(b"GET /get/chunky HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let r = raw.expect_response("get after chunked put");
    assert_eq!(r.json()["value"], json!(42));
    still_serves(&s, "chunked");
}

#[test]
fn pipelined_put_and_get_in_one_write_are_answered_in_order() {
    let _g = shared();
    let s = server();
    let mut raw = Raw::open(s.addr);
    let body = b"{\"value\":\"piped\"}";
    let mut bytes = format!(
        "POST /put/pipe HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    bytes.extend_from_slice(body);
    bytes.extend_from_slice(b"GET /get/pipe HTTP/1.1\r\nHost: localhost\r\n\r\n");
    bytes.extend_from_slice(b"GET /history/pipe HTTP/1.1\r\nHost: localhost\r\n\r\n");
    raw.send(&bytes);
    let put = raw.expect_response("pipelined put");
    assert_eq!(put.status, 200, "{}", put.text());
    let get = raw.expect_response("pipelined get");
    assert_eq!(get.status, 200, "{}", get.text());
    assert_eq!(get.json()["value"], json!("piped"));
    assert_eq!(get.json()["version"], put.json()["version"]);
    let hist = raw.expect_response("pipelined history");
    assert_eq!(hist.json()["versions"].as_array().map(Vec::len), Some(1));
    still_serves(&s, "pipelining");
}

#[test]
fn http_1_0_requests_are_answered_and_closed() {
    let _g = shared();
    let s = server();
    let mut raw = Raw::open(s.addr);
    raw.send(b"GET /health HTTP/1.0\r\n\r\n");
    let r = raw.expect_response("HTTP/1.0 GET");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        raw.closed_within(Duration::from_secs(5)),
        "HTTP/1.0 kept alive"
    );

    let mut raw = Raw::open(s.addr);
    raw.send(b"POST /put/old HTTP/1.0\r\nContent-Length: 12\r\n\r\n{\"value\":10}");
    let r = raw.expect_response("HTTP/1.0 PUT");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        raw.closed_within(Duration::from_secs(5)),
        "HTTP/1.0 kept alive"
    );

    // HTTP/1.0 with keep-alive asked for stays open.
    let mut raw = Raw::open(s.addr);
    raw.send(b"GET /get/old HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let r = raw.expect_response("HTTP/1.0 keep-alive GET");
    assert_eq!(r.json()["value"], json!(10));
    raw.send(b"GET /get/old HTTP/1.0\r\n\r\n");
    let r = raw.expect_response("second HTTP/1.0 GET");
    assert_eq!(r.status, 200);
    // Chunked framing does not exist in HTTP/1.0.
    rejected(
        &s,
        "HTTP/1.0 chunked",
        b"POST /put/old HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
        |st| st == 400,
    );
    let mut c = s.client();
    assert_eq!(history(&mut c, "old"), vec![1]);
    still_serves(&s, "HTTP/1.0");
}
