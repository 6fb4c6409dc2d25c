//! GET /metrics parses as Prometheus text and counts what happened.

use std::time::Duration;

use crate::common::{Client, Server, json};

#[test]
fn metrics_parse_and_count_requests_cache_and_writer() {
    let s = Server::start(&[]);
    let mut c = s.client();
    c.put("m", &json!(1));
    c.get("/get/m");
    c.get("/get/missing");
    let r = c.get("/metrics");
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    let text = r.text();
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("not Prometheus text");
    let value = |name: &str, labels: &[(&str, &str)]| -> f64 {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => f64::NAN,
            })
            .unwrap_or_else(|| panic!("{name} {labels:?} missing in\n{text}"))
    };
    assert_eq!(
        value(
            "vkv_http_requests_total",
            &[("route", "put"), ("status", "200")]
        ),
        1.0
    );
    assert_eq!(
        value(
            "vkv_http_requests_total",
            &[("route", "get"), ("status", "404")]
        ),
        1.0
    );
    assert_eq!(value("vkv_cache_hits_total", &[]), 1.0);
    assert_eq!(value("vkv_writer_ops_total", &[]), 1.0);
    assert_eq!(value("vkv_db_versions", &[]), 1.0);
    assert_eq!(value("vkv_watchers", &[]), 0.0);
    let hist = scrape
        .samples
        .iter()
        .find(|s| s.metric == "vkv_http_request_duration_seconds")
        .expect("histogram");
    match &hist.value {
        prometheus_parse::Value::Histogram(buckets) => {
            assert!(buckets.iter().any(|b| b.count >= 3.0), "{buckets:?}");
        }
        other => panic!("not a histogram: {other:?}"),
    }
}

/// Issue 9 item 15: every answer is counted by status, whatever layer sent
/// it: the connection layer's 400/413/431 and the 503 at the connection
/// limit count as route `unrouted`.
#[test]
fn answers_sent_by_the_connection_layer_are_counted() {
    use std::io::Read;
    let s = Server::start(&["--max-connections", "3"]);
    let mut c = s.client();
    let raw = |bytes: &[u8]| {
        let mut r = s.client();
        r.send_raw(bytes).unwrap();
        r.read_response(false).unwrap().status
    };
    assert_eq!(raw(b"GET /health HTTP/1.1\r\n\r\n"), 400);
    assert_eq!(
        raw(b"POST /put/k HTTP/1.1\r\nHost: localhost\r\nContent-Length: 99999999\r\n\r\n"),
        413
    );
    let big = format!(
        "GET /health HTTP/1.1\r\nHost: localhost\r\nX: {}\r\n\r\n",
        "a".repeat(17 << 10)
    );
    assert_eq!(raw(big.as_bytes()), 431);
    // Two parked long polls and `c`, parked too, fill the 3 connections;
    // none is idle (an idle one would make room), so a fourth is refused
    // with 503.
    let parked: Vec<Client> = (0..2)
        .map(|_| {
            let mut w = s.client();
            w.send_raw(b"GET /get/m?wait_after=0&timeout=300 HTTP/1.1\r\nHost: localhost\r\n\r\n")
                .unwrap();
            w
        })
        .collect();
    assert!(crate::common::poll_until(Duration::from_secs(10), || {
        crate::common::metric(&mut c, "vkv_watchers") == Some(2.0)
    }));
    // The loop reads `c`'s request (ready first) before it accepts the
    // next connection; the poll's own timeout gives `c` back afterwards.
    c.send_raw(b"GET /get/m?wait_after=0&timeout=4 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut refused = std::net::TcpStream::connect(s.addr).unwrap();
    refused
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut answer = String::new();
    let _ = refused.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer:?}");
    assert_eq!(c.read_response(false).unwrap().status, 404);
    let text = c.get("/metrics").text();
    for status in ["400", "413", "431", "503"] {
        let line = format!("vkv_http_requests_total{{route=\"unrouted\",status=\"{status}\"}} 1");
        assert!(text.contains(&line), "{line} missing in\n{text}");
    }
    drop(parked);
}
