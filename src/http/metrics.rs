//! Request metrics and the Prometheus text rendering of `GET /metrics`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::Store;

/// Upper bounds of the latency histogram buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 2.5, 10.0,
];

/// Counters of served requests.
#[derive(Default)]
pub struct Metrics {
    /// (route, status) -> count. A mutex held for one map update is cheaper
    /// than it looks next to a request, and keeps the label set open.
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    buckets: [AtomicU64; BUCKETS.len()],
    latency_sum_us: AtomicU64,
    latency_count: AtomicU64,
}

impl Metrics {
    /// Records one answered request.
    pub fn record(&self, route: &'static str, status: u16, elapsed: Duration) {
        *self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((route, status))
            .or_insert(0) += 1;
        let secs = elapsed.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.latency_sum_us
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
        self.latency_count.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one answer sent before any route was known (by the connection
    /// layer or the worker pool: a framing error, a timeout, overload), as
    /// route `unrouted`; no latency is recorded for it.
    pub fn record_unrouted(&self, status: u16) {
        *self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(("unrouted", status))
            .or_insert(0) += 1;
    }

    /// The Prometheus text exposition of these metrics and the store's.
    pub fn render(&self, store: &Store) -> String {
        let mut out = String::with_capacity(4096);
        let o = &mut out;
        header(
            o,
            "vkv_http_requests_total",
            "counter",
            "Requests answered, by route and status.",
        );
        for ((route, status), n) in self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(
                o,
                "vkv_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        header(
            o,
            "vkv_http_request_duration_seconds",
            "histogram",
            "Time from routing to response, in seconds.",
        );
        let mut cumulative = 0;
        for (bound, count) in BUCKETS.iter().zip(&self.buckets) {
            cumulative += count.load(Ordering::Relaxed);
            let _ = writeln!(
                o,
                "vkv_http_request_duration_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
            );
        }
        let total = self.latency_count.load(Ordering::Relaxed);
        let _ = writeln!(
            o,
            "vkv_http_request_duration_seconds_bucket{{le=\"+Inf\"}} {total}"
        );
        let sum = self.latency_sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(o, "vkv_http_request_duration_seconds_sum {sum}");
        let _ = writeln!(o, "vkv_http_request_duration_seconds_count {total}");

        let c = store.cache_stats();
        gauge(o, "vkv_cache_size", "Keys in the cache.", c.size as u64);
        gauge(
            o,
            "vkv_cache_max_size",
            "Cache capacity in keys.",
            c.max_size as u64,
        );
        counter(
            o,
            "vkv_cache_hits_total",
            "Cache lookups answered from the cache.",
            c.hits,
        );
        counter(
            o,
            "vkv_cache_misses_total",
            "Cache lookups that went to the database.",
            c.misses,
        );
        counter(
            o,
            "vkv_cache_evictions_total",
            "Keys evicted from the cache.",
            c.evictions,
        );
        let w = store.writer_stats();
        counter(
            o,
            "vkv_writer_batches_total",
            "Transactions committed by the writer.",
            w.batches,
        );
        counter(
            o,
            "vkv_writer_ops_total",
            "Write operations committed (ops / batches = mean batch size).",
            w.writes,
        );
        gauge(
            o,
            "vkv_watchers",
            "Long-poll requests parked now.",
            store.watchers() as u64,
        );
        if let Some((held, taken)) = store.read_lease() {
            gauge(
                o,
                "vkv_read_lease_held",
                "1 while this replica holds a read lease (cached latest versions served without a round trip).",
                u64::from(held),
            );
            counter(
                o,
                "vkv_read_leases_taken_total",
                "Read leases taken anew: 1 after the first, one more after each lapse or lost LISTEN connection.",
                taken,
            );
        }
        if let Some(d) = store.db_stats_now() {
            gauge(o, "vkv_db_keys", "Keys stored.", d.total_keys);
            gauge(o, "vkv_db_versions", "Versions stored.", d.total_versions);
            gauge(
                o,
                "vkv_db_size_bytes",
                "Database file plus WAL, in bytes.",
                d.file_size_bytes,
            );
        }
        out
    }
}

fn header(o: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn counter(o: &mut String, name: &str, help: &str, v: u64) {
    header(o, name, "counter", help);
    let _ = writeln!(o, "{name} {v}");
}

fn gauge(o: &mut String, name: &str, help: &str, v: u64) {
    header(o, name, "gauge", help);
    let _ = writeln!(o, "{name} {v}");
}
