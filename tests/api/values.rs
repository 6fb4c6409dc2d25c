//! What a value may be: any JSON that clients can read back (I-JSON, RFC
//! 7493), stored and answered byte for byte.

use crate::common::{Client, Resp, Server, db_totals};

fn put_raw(c: &mut Client, key: &str, value: &str) -> Resp {
    let body = format!("{{\"value\": {value}}}");
    c.request(
        "POST",
        &format!("/put/{key}"),
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    )
}

/// The value's text exactly as the GET body carries it.
fn raw_value_of(c: &mut Client, key: &str) -> String {
    let r = c.get(&format!("/get/{key}"));
    assert_eq!(r.status, 200, "{}", r.text());
    let text = r.text();
    let start = text.find("\"value\":").unwrap() + "\"value\":".len();
    let end = text.find(",\"version\"").unwrap();
    text[start..end].to_string()
}

#[test]
fn numbers_that_overflow_a_double_and_lone_surrogates_are_refused_with_422() {
    let s = Server::start(&[]);
    let mut c = s.client();
    assert_eq!(put_raw(&mut c, "k", "1").status, 200);
    let before = db_totals(&mut c);
    let huge = format!("1{}", "0".repeat(400));
    for (value, says) in [
        ("1e999", "out of range"),
        ("-1E400", "out of range"),
        (huge.as_str(), "out of range"),
        ("[1, {\"a\": 2e308}]", "out of range"),
        ("\"\\ud800\"", "lone surrogate"),
        ("\"\\udc00 trailing\"", "lone surrogate"),
        ("{\"\\ud83d\": 1}", "lone surrogate"),
        ("[\"ok\", \"\\ud83d\\u0041\"]", "lone surrogate"),
    ] {
        let r = put_raw(&mut c, "k", value);
        assert_eq!(r.status, 422, "{value}: {}", r.text());
        assert!(r.detail().contains(says), "{value}: {}", r.detail());
    }
    // In a batch: the whole batch is refused, nothing written.
    let r = c.request(
        "POST",
        "/batch",
        &[("Content-Type", "application/json")],
        br#"{"puts":[{"key":"b1","value":1},{"key":"b2","value":"\ud800"}]}"#,
    );
    assert_eq!(r.status, 422, "{}", r.text());
    assert_eq!(c.get("/get/b1").status, 404);
    assert_eq!(db_totals(&mut c), before, "a refused value was written");
    // The key still answers its last good value, readable by serde_json.
    let r = c.get("/get/k");
    assert_eq!(r.json()["value"], 1);
}

#[test]
fn valid_values_round_trip_byte_for_byte() {
    let s = Server::start(&[]);
    let mut c = s.client();
    for (i, value) in [
        "1.0",
        "-0.0",
        "12345678901234567890",
        "1e308",
        "-1.7976931348623157e308",
        "1E-999",
        "0.1000",
        "\"\\ud83d\\ude00 paired, \\u00e9 escaped, é raw\"",
        "[1.50,{\"a\":-0}]",
    ]
    .iter()
    .enumerate()
    {
        let key = format!("v{i}");
        let r = put_raw(&mut c, &key, value);
        assert_eq!(r.status, 200, "{value}: {}", r.text());
        assert_eq!(raw_value_of(&mut c, &key), *value);
        // And every GET body parses as JSON.
        let _ = c.get(&format!("/get/{key}")).json();
    }
}

/// Values larger than an answer copied whole (64 KiB) are sent from where
/// they are, in pieces: the bytes are the same, from the cache and from the
/// database, for GET, HEAD (same length, no body), a version read, a
/// conditional GET, and pipelined on one connection.
#[test]
fn large_values_round_trip_byte_for_byte_whatever_the_path() {
    let s = Server::start(&["--max-body-bytes", "2MiB", "--cache-bytes", "4MiB"]);
    let mut c = s.client();
    for (key, len) in [("at-limit", 64 << 10), ("mid", 300_000), ("big", 1_500_000)] {
        let value = format!("[\"{}\",{len}]", "é".repeat(len / 2));
        assert_eq!(put_raw(&mut c, key, &value).status, 200);
        assert_eq!(raw_value_of(&mut c, key), value, "{key} from the cache");
        let get = c.get(&format!("/get/{key}"));
        let head = c.request("HEAD", &format!("/get/{key}"), &[], b"");
        assert_eq!(head.status, 200);
        assert!(head.body.is_empty());
        assert_eq!(
            head.header("content-length"),
            Some(get.body.len().to_string().as_str())
        );
        let v1 = c.get(&format!("/get/{key}?version=1"));
        assert_eq!(v1.body, get.body, "{key} by version");
        let r = c.request(
            "GET",
            &format!("/get/{key}"),
            &[("If-None-Match", "\"1\"")],
            b"",
        );
        assert_eq!(r.status, 304);
        assert!(r.body.is_empty());
    }
    // Three pipelined reads of the large value on one connection.
    let expected = c.get("/get/big").body;
    let mut p = s.client();
    p.send_raw(&b"GET /get/big HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".repeat(3))
        .unwrap();
    for i in 0..3 {
        let r = p.read_response(false).unwrap();
        assert_eq!((r.status, r.body == expected), (200, true), "answer {i}");
    }
    // From the database: a cache too small for the value.
    let s = Server::start(&["--max-body-bytes", "2MiB", "--cache-bytes", "64K"]);
    let mut c = s.client();
    let value = format!("\"{}\"", "x".repeat(1_000_000));
    assert_eq!(put_raw(&mut c, "big", &value).status, 200);
    assert_eq!(raw_value_of(&mut c, "big"), value);
    assert_eq!(c.get("/cache/stats").json()["bytes"], 0);
}
