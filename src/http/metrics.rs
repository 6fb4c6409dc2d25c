//! Request metrics and the Prometheus text rendering of `GET /metrics`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

use super::process::ProcessStats;
use crate::Store;

/// Upper bounds of the latency histogram buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 2.5, 10.0,
];

/// Counters of served requests.
#[derive(Default)]
pub struct Metrics {
    /// A mutex held for one map update is cheaper than it looks next to a
    /// request, and keeps the label sets open.
    counts: Mutex<Counts>,
    /// The change feed's streams.
    pub streams: StreamCounters,
}

/// Counters of the change feed's streams (`GET /changes` as Server-Sent
/// Events or NDJSON).
#[derive(Default)]
pub struct StreamCounters {
    /// Streams open now.
    pub open: std::sync::atomic::AtomicU64,
    /// Changes and progress marks sent.
    pub events: std::sync::atomic::AtomicU64,
    /// Streams ended because their reader fell too far behind.
    pub dropped_slow: std::sync::atomic::AtomicU64,
}

#[derive(Default)]
struct Counts {
    /// (route, status) -> answers.
    requests: BTreeMap<(&'static str, u16), u64>,
    /// route -> latency histogram.
    latency: BTreeMap<&'static str, Histogram>,
}

#[derive(Default)]
struct Histogram {
    /// Answers per bucket (not cumulative); beyond the last, only `count`.
    buckets: [u64; BUCKETS.len()],
    sum_us: u64,
    count: u64,
}

impl Metrics {
    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records one answered request.
    pub fn record(&self, route: &'static str, status: u16, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let bucket = BUCKETS.iter().position(|b| secs <= *b);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let mut counts = self.counts();
        *counts.requests.entry((route, status)).or_insert(0) += 1;
        let h = counts.latency.entry(route).or_default();
        if let Some(i) = bucket {
            h.buckets[i] += 1;
        }
        h.sum_us = h.sum_us.saturating_add(micros);
        h.count += 1;
    }

    /// Counts one answer sent before any route was known (by the connection
    /// layer or the worker pool: a framing error, a timeout, overload), as
    /// route `unrouted`; no latency is recorded for it.
    pub fn record_unrouted(&self, status: u16) {
        *self
            .counts()
            .requests
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
        let counts = self.counts();
        for ((route, status), n) in &counts.requests {
            let _ = writeln!(
                o,
                "vkv_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        header(
            o,
            "vkv_http_request_duration_seconds",
            "histogram",
            "Time from routing to response, in seconds, by route.",
        );
        let name = "vkv_http_request_duration_seconds";
        for (route, h) in &counts.latency {
            let mut cumulative = 0;
            for (bound, count) in BUCKETS.iter().zip(&h.buckets) {
                cumulative += count;
                let _ = writeln!(
                    o,
                    "{name}_bucket{{route=\"{route}\",le=\"{bound}\"}} {cumulative}"
                );
            }
            let (total, sum) = (h.count, h.sum_us as f64 / 1e6);
            let _ = writeln!(o, "{name}_bucket{{route=\"{route}\",le=\"+Inf\"}} {total}");
            let _ = writeln!(o, "{name}_sum{{route=\"{route}\"}} {sum}");
            let _ = writeln!(o, "{name}_count{{route=\"{route}\"}} {total}");
        }
        drop(counts);

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
        let streams = &self.streams;
        let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
        gauge(
            o,
            "vkv_feed_streams",
            "Change feed streams (Server-Sent Events, NDJSON) open now.",
            load(&streams.open),
        );
        counter(
            o,
            "vkv_feed_stream_events_total",
            "Changes and progress marks sent on change feed streams.",
            load(&streams.events),
        );
        counter(
            o,
            "vkv_feed_streams_dropped_slow_total",
            "Change feed streams ended because their reader fell too far behind.",
            load(&streams.dropped_slow),
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
        render_expiry(o, &store.expiry_stats());
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
        if let Some(process) = ProcessStats::read() {
            process.render(o);
        }
        out
    }
}

/// Keys that expire: deadlines, leases, expiries and their lag.
fn render_expiry(o: &mut String, e: &crate::ExpiryStats) {
    if let Some(keys) = e.keys_with_deadline {
        gauge(
            o,
            "vkv_keys_with_deadline",
            "Keys that expire: with a TTL or on a lease.",
            keys,
        );
    }
    if let Some(leases) = e.leases {
        gauge(o, "vkv_leases", "Live leases.", leases);
    }
    counter(
        o,
        "vkv_expirations_total",
        "Keys expired (a TTL or lease ran out, or the lease was revoked).",
        e.expired,
    );
    let name = "vkv_expiry_lag_seconds";
    header(
        o,
        name,
        "histogram",
        "How long after its deadline a TTL or lease expiry committed, in seconds.",
    );
    for (bound, count) in crate::LAG_BUCKETS_MS.iter().zip(&e.lag_buckets) {
        let _ = writeln!(
            o,
            "{name}_bucket{{le=\"{}\"}} {count}",
            *bound as f64 / 1000.0
        );
    }
    let total = e.lag_buckets.last().copied().unwrap_or(0);
    let _ = writeln!(o, "{name}_bucket{{le=\"+Inf\"}} {total}");
    let _ = writeln!(o, "{name}_sum {}", e.lag_sum_ms as f64 / 1000.0);
    let _ = writeln!(o, "{name}_count {total}");
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
