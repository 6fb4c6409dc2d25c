//! Property tests (bounded fuzzing) of every input parser: key decoding,
//! query strings, the put body through its real handler, the value depth
//! check, and the HTTP request parser as a pure function over bytes (also
//! fed hostile bytes through the real server in `tests/faults/bad_input.rs`).
//!
//! The number of cases per property is modest by default so that the whole
//! file runs in well under a minute (the bounded CI fuzz run); set
//! `PROPTEST_CASES` for a longer run, e.g. `PROPTEST_CASES=20000`.

use std::sync::Arc;

use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::Value;

use vkv::http::handlers::kv;
use vkv::http::message::HttpRequest;
use vkv::http::query::{BEFORE, IF_VERSION, Kind, LIMIT, Query, TIMEOUT, VERSION, WAIT_AFTER};
use vkv::key::{decode_key, has_dot_segment};
use vkv::value::{MAX_DEPTH, check_value};
use vkv::{MAX_KEY_BYTES, Store, StoreConfig, SyncMode};

/// Cases per property: `PROPTEST_CASES`, else `default`.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn config(default: u32) -> Config {
    Config {
        cases: cases(default),
        // Failures found are kept as named regression tests instead.
        failure_persistence: None,
        ..Config::default()
    }
}

/// A string of `len` arbitrary characters (cheaper to generate than a
/// regex over all of Unicode).
fn chars(len: std::ops::Range<usize>) -> impl Strategy<Value = String> {
    prop::collection::vec(any::<char>(), len).prop_map(|c| c.into_iter().collect())
}

/// Text built to hit the decoders' edges: escapes (valid, truncated, of
/// invalid UTF-8), `+`, `&`, `=`, `/`, multi-byte characters, and anything.
fn tricky_text(max_pieces: usize) -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        "[a-zA-Z0-9_.~-]{1,8}",
        "%[0-9a-fA-F]{2}",
        Just("%".to_string()),
        "%[0-9a-fA-F]",
        "%[g-zG-Z]{2}",
        "%(C3|E2|F0)(%[89AB][0-9A-F]){0,3}",
        "[&=+/?#; ]",
        chars(1..5),
    ];
    prop::collection::vec(piece, 0..max_pieces).prop_map(|p| p.concat())
}

/// Any JSON value, a few levels deep, with strings full of brackets,
/// quotes and escapes (which the depth check must skip).
fn json_value() -> impl Strategy<Value = Value> {
    let text = prop_oneof![
        "[\\[\\]{}\"\\\\/a-z ]{0,12}",
        chars(0..9),
        Just("\\\"[".to_string()),
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e300f64..1e300).prop_map(Value::from),
        text.clone().prop_map(Value::from),
    ];
    leaf.prop_recursive(6, 48, 5, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(text.clone(), inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A JSON value wrapped in up to `max_wraps` more arrays or objects, so that
/// depths on both sides of [`MAX_DEPTH`] come up.
fn nested_value(max_wraps: usize) -> impl Strategy<Value = Value> {
    (
        json_value(),
        prop::collection::vec((any::<bool>(), "[\\[{\"\\\\a-z]{0,4}"), 0..max_wraps),
    )
        .prop_map(|(mut v, wraps)| {
            for (array, key) in wraps {
                v = if array {
                    Value::Array(vec![Value::Null, v])
                } else {
                    let mut m = serde_json::Map::new();
                    m.insert(key, v);
                    Value::Object(m)
                };
            }
            v
        })
}

/// Nesting depth: arrays and objects count one level each.
fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(m) => 1 + m.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

// ------------------------------------------------------------------ keys ---

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn decode_key_never_panics_and_valid_keys_round_trip(raw in tricky_text(60)) {
        if let Ok(key) = decode_key(&raw) {
            prop_assert!(!key.is_empty() && key.len() <= MAX_KEY_BYTES, "{} bytes", key.len());
            let encoded = utf8_percent_encode(&key, NON_ALPHANUMERIC).to_string();
            prop_assert_eq!(decode_key(&encoded).ok(), Some(key.clone()));
            // Without any '%', decoding is the identity.
            if !key.contains('%') {
                prop_assert_eq!(decode_key(&key).ok(), Some(key.clone()));
            }
        }
    }

    #[test]
    fn every_key_of_1_to_1024_bytes_round_trips(key in chars(1..300)) {
        prop_assume!(key.len() <= MAX_KEY_BYTES);
        prop_assume!(!has_dot_segment(&key));
        let encoded = utf8_percent_encode(&key, NON_ALPHANUMERIC).to_string();
        prop_assert_eq!(decode_key(&encoded).ok(), Some(key));
    }

    #[test]
    fn keys_with_a_dot_segment_are_refused(
        before in prop::collection::vec("[a-z.]{1,3}", 0..3),
        dots in prop_oneof![Just("."), Just(".."), Just("%2E"), Just("%2e%2E")],
        after in prop::collection::vec("[a-z.]{1,3}", 0..3),
    ) {
        let key = before.iter().map(String::as_str).chain([dots]).chain(after.iter().map(String::as_str)).collect::<Vec<_>>().join("/");
        prop_assert!(decode_key(&key).is_err(), "{key}");
    }

    #[test]
    fn keys_over_1024_bytes_are_refused(key in chars(1025..1100)) {
        let encoded = utf8_percent_encode(&key, NON_ALPHANUMERIC).to_string();
        prop_assert!(decode_key(&encoded).is_err());
    }
}

// --------------------------------------------------------------- queries ---

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn query_parse_and_integer_never_panic(raw in tricky_text(40)) {
        if let Ok(q) = Query::parse(Some(&raw)) {
            for p in [VERSION, IF_VERSION, WAIT_AFTER, LIMIT, BEFORE, TIMEOUT] {
                let Kind::Integer { min, max } = p.kind else { unreachable!() };
                match q.integer(p) {
                    Ok(Some(n)) => {
                        prop_assert!(n >= min && n <= max);
                        prop_assert_eq!(q.get(p.name).and_then(|v| v.parse().ok()), Some(n));
                    }
                    Ok(None) => prop_assert!(q.get(p.name).is_none()),
                    Err(e) => prop_assert_eq!(e.status, 422),
                }
            }
        }
    }

    #[test]
    fn encoded_pairs_parse_back(
        pairs in prop::collection::vec((chars(1..13), chars(0..13)), 1..6)
    ) {
        let raw = pairs
            .iter()
            .map(|(n, v)| format!(
                "{}={}",
                utf8_percent_encode(n, NON_ALPHANUMERIC),
                utf8_percent_encode(v, NON_ALPHANUMERIC)
            ))
            .collect::<Vec<_>>()
            .join("&");
        let q = Query::parse(Some(&raw)).map_err(|e| TestCaseError::fail(e.detail))?;
        for (n, _) in &pairs {
            // The first value given for a name wins.
            let first = pairs.iter().find(|(m, _)| m == n).map(|(_, v)| v.as_str());
            prop_assert_eq!(q.get(n), first);
        }
    }

    #[test]
    fn integers_accept_exactly_their_bounds(n in any::<u64>(), small in 0u64..2000) {
        for n in [n, small] {
            for p in [VERSION, IF_VERSION, LIMIT, TIMEOUT] {
                let Kind::Integer { min, max } = p.kind else { unreachable!() };
                let q = Query::parse(Some(&format!("{}={n}", p.name)))
                    .map_err(|e| TestCaseError::fail(e.detail))?;
                let ok = n >= min && n <= max;
                prop_assert_eq!(q.integer(p).ok().flatten(), ok.then_some(n));
            }
        }
    }
}

// ---------------------------------------------------------- value depth ---

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn check_value_depth_agrees_with_serde_json(v in nested_value(MAX_DEPTH + 20), pretty in any::<bool>()) {
        let text = if pretty {
            serde_json::to_string_pretty(&v)
        } else {
            serde_json::to_string(&v)
        }
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let d = depth(&v);
        let accepted = check_value(&text).is_ok();
        prop_assert_eq!(accepted, d <= MAX_DEPTH, "depth {}", d);
        // What vkv accepts, serde_json (as clients and `value_as` use it)
        // can read back, and nothing more.
        let parses = serde_json::from_str::<Value>(&text).is_ok();
        prop_assert_eq!(accepted, parses, "depth {}", d);
    }

    #[test]
    fn check_value_never_panics_on_any_text(
        text in prop_oneof![chars(0..200), "[\\[\\]{}\"\\\\]{0,300}"]
    ) {
        let _ = check_value(&text);
    }
}

/// JSON text built to hit I-JSON's edges: numbers near and past a double's
/// range, long integers, and strings with `\u` escapes of surrogates (paired,
/// lone, reversed) among other escapes and characters.
fn ijson_text() -> impl Strategy<Value = String> {
    let number = prop_oneof![
        "-?(0|[1-9][0-9]{0,25})(\\.[0-9]{1,5})?([eE][-+]?[0-9]{1,3})?",
        "-?[1-9][0-9]{300,320}",
        "-?1\\.79769313486231[0-9]{0,3}[eE]308",
    ];
    let piece = prop_oneof![
        "\\\\u(d[89ab]|D[89AB])[0-9a-fA-F]{2}",
        "\\\\u(d[c-f]|D[C-F])[0-9a-fA-F]{2}",
        "\\\\u[0-9a-fA-F]{4}",
        "\\\\[nt\"\\\\/]",
        "[a-z😀é ]{1,3}",
    ];
    let string = prop::collection::vec(piece, 0..6).prop_map(|p| format!("\"{}\"", p.concat()));
    let leaf = prop_oneof![number, string.clone(), Just("null".to_string())];
    leaf.prop_recursive(3, 24, 4, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec((string.clone(), inner), 0..4).prop_map(|v| {
                // Each key starts with its index and `#`: no two members
                // share a name, so serde_json's last-one-wins on duplicate
                // keys never hides a member from the oracle below.
                let members: Vec<String> = v
                    .into_iter()
                    .enumerate()
                    .map(|(i, (k, v))| format!("\"{i}#{}:{v}", &k[1..]))
                    .collect();
                format!("{{{}}}", members.join(","))
            }),
        ]
    })
}

proptest! {
    #![proptest_config(config(2000))]

    /// vkv accepts exactly the syntactically valid JSON that serde_json (as
    /// clients and `value_as` use it) can read back into a value, except
    /// numbers that serde_json rounds down to the largest double but a
    /// correctly rounding parser (Python, JavaScript) reads as infinite.
    #[test]
    fn check_value_accepts_what_serde_json_reads_back(text in ijson_text()) {
        prop_assume!(serde_json::from_str::<&serde_json::value::RawValue>(&text).is_ok());
        let accepted = check_value(&text);
        let parses = serde_json::from_str::<Value>(&text);
        match (&accepted, &parses) {
            (Ok(()), Ok(_)) | (Err(_), Err(_)) => {}
            (Err(e), Ok(v)) => prop_assert!(
                e.to_string().contains("out of range") && has_max_double(v),
                "{}: refused ({}) but serde_json reads {}", text, e, v
            ),
            (Ok(()), Err(e)) => prop_assert!(false, "{}: accepted, serde_json says {}", text, e),
        }
    }
}

/// Whether `v` holds a number serde_json read as plus or minus `f64::MAX`.
fn has_max_double(v: &Value) -> bool {
    match v {
        Value::Number(n) => n.as_f64().is_some_and(|f| f.abs() == f64::MAX),
        Value::Array(a) => a.iter().any(has_max_double),
        Value::Object(m) => m.values().any(has_max_double),
        _ => false,
    }
}

/// Regression: vkv accepted values nested exactly 128 deep, which serde_json
/// (its limit is 127 levels) cannot parse, so such a value could be stored
/// but not read back by serde_json clients or `Versioned::value_as`.
#[test]
fn check_value_rejects_depth_128_that_serde_json_cannot_parse() {
    for open in ["[", "{\"k\":"] {
        let close = if open == "[" { "]" } else { "}" };
        let at = |d: usize| format!("{}0{}", open.repeat(d), close.repeat(d));
        let deepest_ok = at(MAX_DEPTH);
        assert!(check_value(&deepest_ok).is_ok());
        assert!(serde_json::from_str::<Value>(&deepest_ok).is_ok());
        let one_more = at(MAX_DEPTH + 1);
        assert!(check_value(&one_more).is_err());
        assert!(serde_json::from_str::<Value>(&one_more).is_err());
        assert!(check_value(&at(128)).is_err(), "128 deep is accepted again");
    }
}

// ------------------------------------------------------------- put body ---

/// A put body: valid `{"value": ...}` (deep or not), that with one byte
/// changed, a JSON value that is not an object, or arbitrary bytes.
fn put_body() -> impl Strategy<Value = (Vec<u8>, Option<Value>)> {
    prop_oneof![
        4 => nested_value(MAX_DEPTH + 10).prop_map(|v| {
            let body = serde_json::to_vec(&serde_json::json!({ "value": v })).unwrap_or_default();
            (body, Some(v))
        }),
        2 => (json_value(), any::<prop::sample::Index>(), any::<u8>()).prop_map(|(v, at, byte)| {
            let mut body = serde_json::to_vec(&serde_json::json!({ "value": v })).unwrap_or_default();
            let i = at.index(body.len());
            body[i] = byte;
            (body, None)
        }),
        1 => json_value().prop_map(|v| (serde_json::to_vec(&v).unwrap_or_default(), None)),
        1 => prop::collection::vec(any::<u8>(), 0..300).prop_map(|b| (b, None)),
        1 => "\\{\"value\":[\\[\\]{}\"0-9,:\\\\]{0,100}\\}?".prop_map(|s| (s.into_bytes(), None)),
    ]
}

#[test]
fn put_handler_never_panics_and_stores_exactly_what_it_accepts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store_config = StoreConfig::new(dir.path().join("props.db"));
    // Durability is not under test here; speed is.
    store_config.sync = SyncMode::Normal;
    let store = Arc::new(Store::open(store_config).expect("open store"));
    let strategy = (
        prop_oneof![
            3 => "[a-z0-9]{1,12}",
            1 => tricky_text(40),
        ],
        prop_oneof![
            4 => Just(String::new()),
            1 => tricky_text(20).prop_map(|q| format!("?{q}")),
            1 => (0u64..4).prop_map(|v| format!("?if_version={v}")),
        ],
        prop::option::weighted(0.1, chars(0..10)),
        put_body(),
    );
    let mut runner = TestRunner::new(config(500));
    let result = runner.run(&strategy, |(key, query, if_match, (body, value))| {
        let mut headers = vec![("content-type".to_string(), b"application/json".to_vec())];
        if let Some(m) = &if_match {
            headers.push(("if-match".to_string(), m.clone().into_bytes()));
        }
        let req = HttpRequest {
            method: "POST".into(),
            target: format!("/put/{key}{query}"),
            headers,
            body: body.clone(),
            remote: None,
        };
        // The handler answers at once or hands back the wait for the commit;
        // either way, a response with a status.
        let resp = match kv::put(&store, &req, &key) {
            Ok(reply) => reply.wait(&req),
            Err(e) => e.into_response(),
        };
        let plain = query.is_empty() && if_match.is_none();
        if resp.status == 200 {
            let put: Value = serde_json::from_slice(&resp.body)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            let stored_key = decode_key(&key).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let version = put["version"].as_u64();
            let got = store
                .get(&stored_key, version)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            // Stored byte for byte as sent (compared as text: serde_json's
            // default float parsing is not exact to the last bit), and
            // readable back as JSON. (Only for generated values: a mutated
            // body can hold a number like 1e999, valid JSON that vkv stores
            // but serde_json refuses as out of range.)
            if let Some(v) = &value {
                let sent =
                    serde_json::to_string(v).map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(got.value.get(), sent.as_str());
                serde_json::from_str::<Value>(got.value.get())
                    .map_err(|e| TestCaseError::fail(format!("stored value unreadable: {e}")))?;
            }
        } else {
            let detail = String::from_utf8_lossy(&resp.body).into_owned();
            prop_assert!(
                matches!(resp.status, 400 | 409 | 422),
                "status {} for {:?}: {}",
                resp.status,
                String::from_utf8_lossy(&body),
                detail
            );
            // A valid body for a valid key, unconditional, with an
            // acceptable depth, must be stored.
            if let Some(v) = &value
                && plain
                && decode_key(&key).is_ok()
            {
                prop_assert!(
                    depth(v) > MAX_DEPTH,
                    "refused ({}): {}",
                    resp.status,
                    detail
                );
            }
        }
        Ok(())
    });
    store.close();
    if let Err(e) = result {
        panic!("{e}");
    }
}

// ---------------------------------------------------------------------------
// The HTTP request parser (`vkv::http::parser`), as a pure function over
// bytes: the bounded fuzz run of the framing rules.

use vkv::http::parser::{Framing, ParseLimits, Progress, RequestParser};

const PARSE_LIMITS: ParseLimits = ParseLimits {
    max_body_bytes: 4096,
    max_request_line: 256,
    max_header_bytes: 512,
    max_headers: 16,
};

/// What a parser made of a whole byte stream: the requests it completed
/// (method, target, headers, body, framing), then how it stopped.
type Parsed = (
    Vec<(String, String, Vec<(String, Vec<u8>)>, Vec<u8>, Framing)>,
    Option<u16>,
);

/// Feeds `stream` cut into pieces at `cuts` (offsets), as reads from a
/// socket would deliver it, keeping unconsumed bytes as a connection does.
fn parse_stream(stream: &[u8], cuts: &[usize]) -> Parsed {
    let mut parser = RequestParser::new(PARSE_LIMITS);
    let mut ends: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
    ends.push(stream.len());
    ends.sort_unstable();
    let (mut buf, mut fed, mut done) = (Vec::new(), 0, Vec::new());
    for end in ends {
        buf.extend_from_slice(&stream[fed..end.max(fed)]);
        fed = end.max(fed);
        loop {
            match parser.feed(&buf) {
                Err(r) => return (done, Some(r.status)),
                Ok((used, progress)) => {
                    buf.drain(..used);
                    match progress {
                        Progress::Complete(r, f) => {
                            done.push((r.method, r.target, r.headers, r.body, f));
                        }
                        Progress::SendContinue => {}
                        Progress::Incomplete => break,
                    }
                }
            }
        }
    }
    (done, None)
}

/// One well-formed request and its parts: method, target, extra headers,
/// body, whether chunked (with these chunk sizes).
fn valid_request() -> impl Strategy<Value = (Vec<u8>, String, String, Vec<u8>, bool)> {
    (
        prop_oneof![Just("GET"), Just("POST"), Just("DELETE"), Just("HEAD")],
        "/[a-z0-9/%?=&]{0,40}",
        prop::collection::vec(("x-[a-z]{1,8}", "[ -~]{0,20}"), 0..5),
        prop::collection::vec(any::<u8>(), 0..600),
        any::<bool>(),
        prop::collection::vec(1usize..200, 1..8),
    )
        .prop_map(|(method, target, headers, body, chunked, sizes)| {
            let mut out = format!("{method} {target} HTTP/1.1\r\nHost: h\r\n").into_bytes();
            for (n, v) in &headers {
                out.extend_from_slice(format!("{n}: {}\r\n", v.trim()).as_bytes());
            }
            if chunked {
                out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
                let mut rest = &body[..];
                for size in sizes.iter().cycle() {
                    if rest.is_empty() {
                        break;
                    }
                    let (chunk, tail) = rest.split_at((*size).min(rest.len()));
                    out.extend_from_slice(format!("{:x};e=1\r\n", chunk.len()).as_bytes());
                    out.extend_from_slice(chunk);
                    out.extend_from_slice(b"\r\n");
                    rest = tail;
                }
                out.extend_from_slice(b"0\r\nX-Trailer: t\r\n\r\n");
            } else {
                out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
                out.extend_from_slice(&body);
            }
            (out, method.to_string(), target, body, chunked)
        })
}

/// Cut anywhere, a stream parses exactly as when it arrives whole: the
/// parser's answer never depends on how the bytes were split into reads.
/// Over arbitrary bytes, valid requests, and valid requests with a few bytes
/// changed; and it never panics.
#[test]
fn parser_answer_does_not_depend_on_how_reads_split_the_bytes() {
    let mutated = (
        prop::collection::vec(valid_request(), 1..4),
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
    )
        .prop_map(|(reqs, edits)| {
            let mut bytes: Vec<u8> = reqs.into_iter().flat_map(|r| r.0).collect();
            for (at, b) in edits {
                let i = at.index(bytes.len());
                bytes[i] = b;
            }
            bytes
        });
    let stream = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..400),
        "[A-Z]{1,6} [ -~]{0,30} HTTP/1\\.[01]\r\n([A-Za-z-]{1,12}: [ -~]{0,20}\r\n){0,6}\r\n[ -~\r\n]{0,80}"
            .prop_map(String::into_bytes),
        mutated,
    ];
    let mut runner = TestRunner::new(config(2000));
    let result = runner.run(
        &(stream, prop::collection::vec(any::<usize>(), 0..12)),
        |(stream, cuts)| {
            let whole = parse_stream(&stream, &[]);
            let split = parse_stream(&stream, &cuts);
            prop_assert_eq!(&whole, &split);
            let byte_by_byte: Vec<usize> = (0..stream.len()).collect();
            prop_assert_eq!(&whole, &parse_stream(&stream, &byte_by_byte));
            Ok(())
        },
    );
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// Pipelined well-formed requests (Content-Length or chunked with
/// extensions and trailers), cut anywhere, come out whole and in order with
/// their exact bodies; a body over the limit is a 413.
#[test]
fn parser_round_trips_pipelined_requests() {
    let mut runner = TestRunner::new(config(1000));
    let strategy = (
        prop::collection::vec(valid_request(), 1..5),
        prop::collection::vec(any::<usize>(), 0..10),
    );
    let result = runner.run(&strategy, |(reqs, cuts)| {
        let stream: Vec<u8> = reqs.iter().flat_map(|r| r.0.clone()).collect();
        let (done, stopped) = parse_stream(&stream, &cuts);
        prop_assert_eq!(stopped, None);
        prop_assert_eq!(done.len(), reqs.len());
        for ((_, method, target, body, chunked), (m, t, headers, b, framing)) in
            reqs.iter().zip(&done)
        {
            prop_assert_eq!(method, m);
            prop_assert_eq!(target, t);
            prop_assert_eq!(body, b);
            prop_assert_eq!(framing.head_only, method == "HEAD");
            prop_assert!(!framing.close);
            let te = headers.iter().any(|(n, _)| n == "transfer-encoding");
            prop_assert_eq!(te, *chunked);
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let big = format!(
        "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n",
        4097
    );
    assert_eq!(parse_stream(big.as_bytes(), &[]).1, Some(413));
    let chunked = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1001\r\n";
    assert_eq!(parse_stream(chunked, &[]).1, Some(413));
}
