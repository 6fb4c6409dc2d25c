//! Stalled clients and overload: bounded threads, prompt answers for normal
//! clients, immediate `503`s with `Retry-After` when the queue is full, and
//! recovery with every acknowledged write intact.
//!
//! Both tests measure timing and thread counts, so they run alone
//! (`exclusive`).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::common::{Client, Server, exclusive, history, json, poll_until, raise_fd_limit};

const STALLED: usize = 500;
const MAX_CONNECTIONS: usize = 1024;

#[test]
fn stalled_half_requests_do_not_block_normal_clients_and_threads_stay_bounded() {
    let _g = exclusive();
    let fds = raise_fd_limit();
    assert!(
        fds > (STALLED as u64) * 2 + 100,
        "descriptor limit {fds} too low"
    );
    let s = Server::start(&[
        "--max-connections",
        &MAX_CONNECTIONS.to_string(),
        "--read-timeout",
        "3s",
    ]);
    let baseline = s.threads();
    let mut stalled = Vec::with_capacity(STALLED);
    for i in 0..STALLED {
        let mut t = TcpStream::connect_timeout(&s.addr, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("stalled connection {i}: {e}"));
        t.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("read timeout");
        // Half a request head, then nothing.
        t.write_all(b"POST /put/stalled HTTP/1.1\r\nHost: localhost\r\nContent-Le")
            .expect("half a request");
        stalled.push(t);
    }
    let stalled_at = Instant::now();
    let mut peak = s.threads();
    // Normal clients, on new connections, are answered promptly meanwhile.
    for i in 0..10 {
        let start = Instant::now();
        let mut c = s.client();
        let r = c.put("normal", &json!(i));
        assert_eq!(r.status, 200, "{}", r.text());
        let r = c.get("/get/normal");
        assert_eq!(r.json()["value"], json!(i));
        let took = start.elapsed();
        assert!(
            took < Duration::from_secs(1),
            "normal client took {took:?} with {STALLED} stalled connections"
        );
        peak = peak.max(s.threads());
    }
    assert!(
        stalled_at.elapsed() < Duration::from_secs(3),
        "the checks ran past the read timeout; they measured nothing"
    );
    assert!(
        peak < MAX_CONNECTIONS + 20,
        "{peak} threads with {STALLED} stalled connections (baseline {baseline})"
    );
    // Each stalled request is answered 408 and closed after the read
    // timeout, and the threads go away with them.
    let mut timed_out = 0;
    for t in &mut stalled {
        let mut answer = Vec::new();
        let _ = t.read_to_end(&mut answer);
        if answer.starts_with(b"HTTP/1.1 408") {
            timed_out += 1;
        }
    }
    assert_eq!(timed_out, STALLED, "stalled requests not all answered 408");
    assert!(
        poll_until(Duration::from_secs(5), || s.threads() <= baseline + 2),
        "threads did not come back down: {} (baseline {baseline}, peak {peak})",
        s.threads()
    );
    println!("threads: baseline {baseline}, peak {peak} with {STALLED} stalled");
    let r = s.client().get("/get/normal");
    assert_eq!(r.json()["value"], json!(9));
}

/// Stores keys `pre0`.. in batches of 1000.
fn preload(s: &Server, keys: usize) {
    let mut c = s.client();
    for first in (0..keys).step_by(1000) {
        let puts: Vec<_> = (first..keys.min(first + 1000))
            .map(|i| json!({"key": format!("pre{i}"), "value": {"n": i, "pad": "x".repeat(40)}}))
            .collect();
        let body = serde_json::to_vec(&json!({ "puts": puts })).expect("batch body");
        let r = c.request("POST", "/batch", &[], &body);
        assert_eq!(r.status, 200, "{}", r.text());
    }
}

/// What one flooding client saw.
#[derive(Default)]
struct Flood {
    /// (version, seq) of each 200.
    acked: Vec<(u64, u64)>,
    /// Latency of each 503.
    rejected: Vec<Duration>,
    /// 503s without Retry-After, and other surprises.
    bad: Vec<String>,
}

#[test]
fn overload_answers_503_with_retry_after_at_once_and_recovers() {
    let _g = exclusive();
    raise_fd_limit();
    // One worker and room for two waiting requests. The clients alternate
    // fsynced puts and a slow-ish read (a page of 1000 keys), so 48 eager
    // clients overflow the queue whichever thread waits for a commit.
    let s = Server::start(&["--workers", "1", "--queue-len", "2", "--sync", "full"]);
    preload(&s, 2000);
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..48u64)
        .map(|id| {
            let (addr, stop) = (s.addr, Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut seen = Flood::default();
                let mut c = Client::connect(addr);
                let mut seq = 0;
                while !stop.load(Ordering::Relaxed) {
                    seq += 1;
                    let start = Instant::now();
                    let is_put = seq % 2 == 1;
                    let answer = if is_put {
                        c.try_put(&format!("flood{id}"), &json!(seq))
                    } else {
                        c.try_request("GET", "/keys?prefix=pre&limit=1000", &[], b"")
                    };
                    let r = match answer {
                        Ok(r) => r,
                        Err(e) => {
                            seen.bad.push(format!("connection failed: {e}"));
                            break;
                        }
                    };
                    match r.status {
                        200 if is_put => seen
                            .acked
                            .push((r.json()["version"].as_u64().unwrap_or(0), seq)),
                        200 => {}
                        503 => {
                            seen.rejected.push(start.elapsed());
                            if r.header("retry-after").is_none() {
                                seen.bad
                                    .push(format!("503 without Retry-After: {:?}", r.headers));
                            }
                            if !r.detail().contains("overloaded") {
                                seen.bad.push(format!("503 detail: {}", r.text()));
                            }
                            // A short back-off, as a client should; still a
                            // flood of thousands of requests a second.
                            std::thread::sleep(Duration::from_millis(10));
                        }
                        other => seen.bad.push(format!("{other}: {}", r.text())),
                    }
                }
                seen
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    let floods: Vec<Flood> = clients
        .into_iter()
        .map(|h| h.join().expect("client thread"))
        .collect();
    for (id, f) in floods.iter().enumerate() {
        assert!(
            f.bad.is_empty(),
            "client {id}: {:?}",
            &f.bad[..f.bad.len().min(5)]
        );
    }
    let mut rejected: Vec<Duration> = floods.iter().flat_map(|f| f.rejected.clone()).collect();
    let acked: usize = floods.iter().map(|f| f.acked.len()).sum();
    assert!(
        !rejected.is_empty(),
        "no 503 under overload ({acked} puts acked)"
    );
    assert!(acked > 0, "nothing acked under overload");
    rejected.sort();
    let p50 = rejected[rejected.len() / 2];
    let p99 = rejected[rejected.len() * 99 / 100];
    let max = rejected[rejected.len() - 1];
    println!(
        "{acked} acked, {} rejected; 503 latency p50 {p50:?} p99 {p99:?} max {max:?}",
        rejected.len()
    );
    // "At once": a 503 never waits for the worker (a put takes an fsync).
    assert!(p50 < Duration::from_millis(20), "503 p50 {p50:?}");
    assert!(max < Duration::from_secs(1), "503 max {max:?}");

    // Recovered: a normal request succeeds, and every acked write is there
    // at its version; the rejected ones wrote nothing.
    let mut c = s.client();
    let r = c.put("after-flood", &json!("ok"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(c.get("/health").status, 200);
    for (id, f) in floods.iter().enumerate() {
        let key = format!("flood{id}");
        if f.acked.is_empty() {
            assert_eq!(c.get(&format!("/get/{key}")).status, 404);
            continue;
        }
        let versions = history(&mut c, &key);
        assert_eq!(
            versions,
            (1..=f.acked.len() as u64).collect::<Vec<_>>(),
            "{key}: a rejected put left a version"
        );
        for (version, seq) in &f.acked {
            let r = c.get(&format!("/get/{key}?version={version}"));
            assert_eq!(r.json()["value"], json!(seq), "{key} v{version}");
        }
    }
}
