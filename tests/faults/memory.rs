//! Memory after large requests: the cache is bounded in bytes, and what
//! large bodies and values took is given back to the system.

use crate::common::{Server, exclusive, poll_until};
use std::time::Duration;

fn rss_mib(s: &Server) -> f64 {
    s.rss() as f64 / 1024.0 / 1024.0
}

/// 200 puts of 1 MB values over 8 connections, then reads of each: with an
/// 8 MiB cache, RSS must come back within 24 MiB of the cache budget (a
/// debug build idles at about 10 MiB). Before, the cache held 100 values
/// whatever their size, and glibc kept the freed bodies (RSS stayed over
/// 200 MB with a 32 MiB cache).
#[test]
fn rss_returns_near_the_cache_budget_after_large_values() {
    let _g = exclusive();
    let s = Server::start(&["--cache-bytes", "8MiB"]);
    let value = format!("{{\"value\": \"{}\"}}", "x".repeat(1_000_000 - 2));
    let body = value.as_bytes();
    std::thread::scope(|scope| {
        for t in 0..8 {
            let s = &s;
            scope.spawn(move || {
                let mut c = s.client();
                for i in (t..200).step_by(8) {
                    let r = c.request("POST", &format!("/put/k{i}"), &[], body);
                    assert_eq!(r.status, 200, "{}", r.text());
                }
                for i in (t..200).step_by(8) {
                    let r = c.get(&format!("/get/k{i}"));
                    assert_eq!(r.status, 200);
                    assert!(r.body.len() > 1_000_000);
                }
            });
        }
    });
    let st = s.client().get("/cache/stats").json();
    assert!(st["bytes"].as_u64().unwrap() <= 8 << 20, "{st}");
    println!("RSS right after the load: {:.1} MiB", rss_mib(&s));
    let limit = 8.0 + 24.0;
    let settled = poll_until(Duration::from_secs(10), || rss_mib(&s) < limit);
    assert!(
        settled,
        "RSS {:.1} MiB after the load, limit {limit} MiB",
        rss_mib(&s)
    );
}
