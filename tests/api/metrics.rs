//! GET /metrics parses as Prometheus text and counts what happened.

use crate::common::{Server, json};

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
