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
