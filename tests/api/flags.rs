//! Flags are checked at start: a value past its maximum is refused with a
//! message naming the flag, before anything is opened or served.

use crate::common::{Server, output_text, run};

#[test]
fn durations_and_sizes_past_their_maximum_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("kv.db");
    for (flag, value, says) in [
        ("--read-timeout", "400000000000y", "maximum"),
        ("--read-timeout", "25h", "maximum"),
        ("--idle-timeout", "2days", "maximum"),
        ("--read-timeout", "0s", "above zero"),
        ("--cache-size", "1000000000000", "not in"),
        ("--cache-bytes", "65G", "maximum"),
        ("--cache-bytes", "18446744073709551615G", "maximum"),
        ("--cache-bytes", "12parsecs", "unit"),
        ("--max-body-bytes", "2G", "maximum"),
        ("--max-body-bytes", "0", "above zero"),
        ("--max-output-bytes", "65G", "maximum"),
        ("--max-output-bytes", "0", "above zero"),
        ("--max-watchers", "99999999", "not in"),
        ("--max-versions", "18446744073709551615", "not in"),
        ("--io-threads", "0", "not in"),
        ("--io-threads", "65", "not in"),
        ("--read-lease", "50ms", "100ms to 60s"),
        ("--read-lease", "2m", "100ms to 60s"),
        ("--read-lease", "soon", "try 1s"),
    ] {
        let out = run(&[
            "--bind",
            "127.0.0.1:0",
            "--db",
            db.to_str().unwrap(),
            flag,
            value,
        ]);
        let text = output_text(&out);
        assert!(!out.status.success(), "{flag} {value} accepted:\n{text}");
        assert!(
            text.contains(flag) && text.contains(says),
            "{flag} {value}:\n{text}"
        );
        assert!(!db.exists(), "{flag} {value}: the database was touched");
    }
}

#[test]
fn sizes_take_units_and_the_cache_budget_is_shown() {
    let s = Server::start(&["--cache-bytes", "3MiB", "--max-body-bytes", "2M"]);
    let mut c = s.client();
    let st = c.get("/cache/stats").json();
    assert_eq!(st["max_bytes"], 3 << 20, "{st}");
    assert_eq!(st["bytes"], 0, "{st}");
    // A 1.5 MB body is under the 2 MiB limit.
    let big = format!("{{\"value\": \"{}\"}}", "x".repeat(1_500_000));
    let r = c.request("POST", "/put/big", &[], big.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
}
