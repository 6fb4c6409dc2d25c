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
        .find(|s| {
            s.metric == "vkv_http_request_duration_seconds" && s.labels.get("route") == Some("get")
        })
        .expect("histogram of route get");
    match &hist.value {
        prometheus_parse::Value::Histogram(buckets) => {
            assert!(buckets.iter().any(|b| b.count >= 2.0), "{buckets:?}");
        }
        other => panic!("not a histogram: {other:?}"),
    }
}

/// The "Max open files" soft limit of process `pid`, from
/// `/proc/PID/limits`.
fn max_fds(pid: u32) -> f64 {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    line.split_whitespace().nth(3).unwrap().parse().unwrap()
}

/// Issue 21, item 16: the latency histogram is labelled by route, and the
/// standard `process_*` series are there with the values `/proc` gives for
/// the server's process; `promtool check metrics` (Debian package
/// `prometheus`) accepts the whole exposition.
#[test]
fn metrics_have_route_latency_and_the_standard_process_series() {
    let s = Server::start(&[]);
    let mut c = s.client();
    c.put("m", &json!(1));
    c.get("/get/m");
    c.get("/get/m");
    // Open descriptors around the scrape: with PostgreSQL, the read pool
    // and the expiry thread open connections of their own meanwhile.
    let pid = s.pid();
    let fds = || {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .count() as f64
    };
    let fds_before = fds();
    let text = c.get("/metrics").text();
    let fds_after = fds();
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("not Prometheus text");
    let count = |route: &str| -> f64 {
        let sample = scrape
            .samples
            .iter()
            .find(|s| {
                s.metric == "vkv_http_request_duration_seconds"
                    && s.labels.get("route") == Some(route)
            })
            .unwrap_or_else(|| panic!("no latency histogram for route {route}:\n{text}"));
        match &sample.value {
            prometheus_parse::Value::Histogram(b) => b.last().map_or(0.0, |b| b.count),
            other => panic!("not a histogram: {other:?}"),
        }
    };
    assert_eq!(count("get"), 2.0);
    assert_eq!(count("put"), 1.0);
    let value = |name: &str| -> f64 {
        let sample = scrape
            .samples
            .iter()
            .find(|s| s.metric == name)
            .unwrap_or_else(|| panic!("{name} missing in\n{text}"));
        match sample.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v) => v,
            ref other => panic!("{name}: {other:?}"),
        }
    };
    let rss = value("process_resident_memory_bytes");
    let vm_rss = s.rss() as f64;
    assert!(
        rss > vm_rss / 2.0 && rss < vm_rss * 2.0,
        "resident {rss}, VmRSS {vm_rss}"
    );
    assert!(value("process_virtual_memory_bytes") >= rss);
    let open = value("process_open_fds");
    // The listener, the client's socket, the database and its WAL at least.
    let (low, high) = (fds_before.min(fds_after), fds_before.max(fds_after));
    assert!(
        open >= 4.0 && open >= low - 2.0 && open <= high + 2.0,
        "open {open}, /proc {fds_before} before the scrape and {fds_after} after"
    );
    assert_eq!(value("process_max_fds"), max_fds(pid));
    let cpu = value("process_cpu_seconds_total");
    assert!((0.0..60.0).contains(&cpu), "cpu {cpu}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let started = value("process_start_time_seconds");
    assert!(
        started <= now + 1.0 && started > now - 120.0,
        "started {started}, now {now}"
    );
    promtool_check(&text);
}

/// `promtool check metrics` on `text`: exit 0 (no error, no lint problem).
/// CI installs it (.ci/run); without it the check says so and is skipped.
fn promtool_check(text: &str) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        eprintln!("promtool not installed (Debian package prometheus): check skipped");
        return;
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
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
