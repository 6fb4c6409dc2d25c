//! The change feed's streams (`GET /changes` with `Accept:
//! text/event-stream` or `application/x-ndjson`): every change once and in
//! order under concurrent writers, resumed with `Last-Event-ID`, `gone`
//! after a purge, a reader that stops reading paced (not dropped) and one
//! that takes nothing for the read timeout ended and counted, streams ended at a
//! server stop, and no thread per stream.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::feed::{StreamReader, change};
use crate::common::{Client, Server, Value, json, metric, poll_until};

type Acked = Arc<Mutex<Vec<(u64, String, u64)>>>;

/// Eight writers under `s/` (a batch every fifth write), recording what was
/// acknowledged, with its revision.
fn writers(addr: SocketAddr, acks: &Acked, per: u64) -> Vec<std::thread::JoinHandle<()>> {
    (0..8)
        .map(|t| {
            let acks = Arc::clone(acks);
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                for i in 0..per {
                    if i % 5 == 4 {
                        let body = serde_json::to_vec(&json!({"puts": [
                            {"key": format!("s/{t}/x"), "value": i},
                            {"key": format!("s/{t}/y"), "value": i},
                        ]}))
                        .unwrap();
                        let r = c.request("POST", "/batch", &[], &body);
                        assert_eq!(r.status, 200, "{}", r.text());
                        for res in r.json()["results"].as_array().unwrap() {
                            acks.lock().unwrap().push(change(res));
                        }
                    } else {
                        let key = format!("s/{t}/{}", i % 3);
                        let r = c.put(&key, &json!(i)).json();
                        acks.lock().unwrap().push((
                            r["revision"].as_u64().unwrap(),
                            key,
                            r["version"].as_u64().unwrap(),
                        ));
                    }
                }
            })
        })
        .collect()
}

fn sorted(acks: &Acked) -> Vec<(u64, String, u64)> {
    let mut all = acks.lock().unwrap().clone();
    // Revision, then batch order (x before y).
    all.sort();
    all
}

#[test]
fn sse_delivers_every_change_once_in_order_and_resumes_after_last_event_id() {
    let s = Server::start(&[]);
    let addr = s.addr;
    let acks: Acked = Arc::default();
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            let mut last_id: Option<u64> = None;
            let mut reconnects = 0;
            let mut idle_progress = 0;
            let mut stream =
                StreamReader::open(addr, "/changes?prefix=s/&after=0", "text/event-stream", &[]);
            loop {
                // Cut the connection every 97 events: resume where the ids say.
                if seen.len() > (reconnects + 1) * 97 && !done.load(Ordering::SeqCst) {
                    reconnects += 1;
                    let id = last_id.unwrap().to_string();
                    // Events after the last id are sent again: forget them.
                    seen.retain(|(r, _, _): &(u64, String, u64)| *r <= last_id.unwrap());
                    stream = StreamReader::open(
                        addr,
                        "/changes?prefix=s/&after=0",
                        "text/event-stream",
                        &[("Last-Event-ID", &id)],
                    );
                }
                let Some((kind, data, id)) = stream.event() else {
                    panic!("the stream ended");
                };
                match kind.as_str() {
                    "message" => seen.push(change(&data)),
                    "progress" => idle_progress += 1,
                    other => panic!("event {other}: {data}"),
                }
                if let Some(id) = id {
                    assert_eq!(id, data["revision"].as_u64().unwrap());
                    last_id = Some(id);
                }
                if done.load(Ordering::SeqCst) && seen.len() >= 8 * 60 * 6 / 5 {
                    return (seen, reconnects, idle_progress);
                }
            }
        })
    };
    for w in writers(addr, &acks, 60) {
        w.join().unwrap();
    }
    done.store(true, Ordering::SeqCst);
    let (seen, reconnects, _) = reader.join().unwrap();
    assert!(reconnects >= 3, "{reconnects}");
    assert_eq!(
        seen,
        sorted(&acks),
        "every change once, in revision and batch order"
    );
}

#[test]
fn many_streams_on_one_prefix_each_get_every_change_once_in_order() {
    // Caught-up streams of a prefix share their reads of the feed; streams
    // that join while writers run catch up on their own, then join them.
    let s = Server::start(&[]);
    let addr = s.addr;
    let acks: Acked = Arc::default();
    let done = Arc::new(AtomicBool::new(false));
    let per = 40;
    let total = 8 * per as usize * 6 / 5;
    let reader = |i: usize| {
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            // Later readers start while the writers are busy.
            std::thread::sleep(Duration::from_millis(40 * i as u64));
            let sse = !i.is_multiple_of(3);
            let accept = if sse {
                "text/event-stream"
            } else {
                "application/x-ndjson"
            };
            let mut stream = StreamReader::open(addr, "/changes?prefix=s/&after=0", accept, &[]);
            let mut seen = Vec::new();
            while !(done.load(Ordering::SeqCst) && seen.len() >= total) {
                let data = if sse {
                    let Some((kind, data, _)) = stream.event() else {
                        panic!("stream {i} ended");
                    };
                    if kind == "progress" {
                        continue;
                    }
                    assert_eq!(kind, "message", "stream {i}: {data}");
                    data
                } else {
                    let Some(line) = stream.line() else {
                        panic!("stream {i} ended");
                    };
                    if line.get("key").is_none() {
                        assert!(line.get("detail").is_none(), "stream {i}: {line}");
                        continue;
                    }
                    line
                };
                seen.push(change(&data));
            }
            seen
        })
    };
    let readers: Vec<_> = (0..12).map(reader).collect();
    for w in writers(addr, &acks, per) {
        w.join().unwrap();
    }
    done.store(true, Ordering::SeqCst);
    let want = sorted(&acks);
    assert_eq!(want.len(), total);
    for (i, r) in readers.into_iter().enumerate() {
        assert_eq!(
            r.join().unwrap(),
            want,
            "stream {i}: every change once, in order"
        );
    }
}

#[test]
fn ndjson_delivers_every_change_once_in_order_from_now_on() {
    let s = Server::start(&[]);
    let mut c = s.client();
    c.put("s/before", &json!("not sent: before the stream"));
    let addr = s.addr;
    let mut stream = StreamReader::open(addr, "/changes?prefix=s/", "application/x-ndjson", &[]);
    assert!(poll_until(Duration::from_secs(10), || metric(
        &mut c,
        "vkv_feed_streams"
    ) == Some(1.0)));
    let acks: Acked = Arc::default();
    for w in writers(addr, &acks, 40) {
        w.join().unwrap();
    }
    let expected = sorted(&acks);
    let mut seen = Vec::new();
    while seen.len() < expected.len() {
        let line = stream.line().expect("the stream ended");
        if line.get("key").is_none() {
            assert!(line["revision"].is_u64(), "a progress line: {line}");
            continue;
        }
        seen.push(change(&line));
    }
    assert_eq!(seen, expected);
    // The client leaves: the stream is closed with it.
    drop(stream);
    assert!(poll_until(Duration::from_secs(10), || metric(
        &mut c,
        "vkv_feed_streams"
    ) == Some(0.0)));
    assert!(metric(&mut c, "vkv_feed_stream_events_total") >= Some(expected.len() as f64));
}

#[test]
fn an_idle_stream_sends_progress_marks() {
    let s = Server::start(&[]);
    let mut c = s.client();
    let r = c.put("elsewhere", &json!(1)).json();
    let mut stream = StreamReader::open(
        s.addr,
        "/changes?prefix=quiet/",
        "application/x-ndjson",
        &[],
    );
    // The first mark comes within the 15 s bound, with the store's revision.
    let line = stream.line().expect("a progress line");
    assert_eq!(line, json!({"revision": r["revision"]}));
}

#[test]
fn a_stream_behind_a_purge_is_told_gone_and_ended() {
    let s = Server::start(&[]);
    let mut c = s.client();
    c.put("g/a", &json!(1));
    c.put("g/a", &json!(2));
    assert_eq!(
        c.request("DELETE", "/delete/g/a?purge=true", &[], b"")
            .status,
        200
    );
    let mut stream = StreamReader::open(
        s.addr,
        "/changes?prefix=g/&after=1",
        "text/event-stream",
        &[],
    );
    let (kind, data, _) = stream.event().expect("an event");
    assert_eq!(kind, "gone", "{data}");
    assert_eq!(data["oldest_revision"], 2);
    assert!(stream.event().is_none(), "the stream ends after gone");
    // NDJSON before anything was sent: a plain 410.
    let r = c.request(
        "GET",
        "/changes?prefix=g/&after=1",
        &[("Accept", "application/x-ndjson")],
        b"",
    );
    assert_eq!(r.status, 410);
    assert_eq!(r.json()["oldest_revision"], 2);
}

/// Ten changes of 100 kB under `prefix` in one batch; its revision.
fn big_batch(c: &mut Client, prefix: &str, n: usize) -> u64 {
    let big = "x".repeat(100_000);
    let puts: Vec<Value> = (0..10)
        .map(|i| json!({"key": format!("{prefix}{n}/{i}"), "value": big}))
        .collect();
    let body = serde_json::to_vec(&json!({ "puts": puts })).unwrap();
    let r = c.request("POST", "/batch", &[], &body);
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["results"][0]["revision"].as_u64().unwrap()
}

/// A client that stops reading while about 20 MB of changes are written
/// under its prefix is paced, not dropped: the server's memory stays
/// bounded, and when it reads again it gets every change once, in order.
fn a_reader_that_stops_reading_is_paced(accept: &str) {
    let s = Server::start(&["--read-timeout", "60s"]);
    let mut c = s.client();
    let mut stream = StreamReader::open_small(s.addr, "/changes?prefix=big/", accept);
    assert!(poll_until(Duration::from_secs(10), || metric(
        &mut c,
        "vkv_feed_streams"
    ) == Some(1.0)));
    // Warm up the store's own buffers before the baseline.
    let mut revisions = vec![big_batch(&mut c, "big/", 0)];
    let base = s.rss();
    let mut peak = base;
    for n in 1..20 {
        revisions.push(big_batch(&mut c, "big/", n));
        peak = peak.max(s.rss());
    }
    assert!(
        peak < base + (32 << 20),
        "RSS grew from {base} to {peak} bytes for one stalled reader"
    );
    assert_eq!(
        metric(&mut c, "vkv_feed_streams_dropped_slow_total"),
        Some(0.0)
    );
    assert_eq!(metric(&mut c, "vkv_feed_streams"), Some(1.0));
    // It reads again: every change, once, in revision and batch order.
    let mut seen = Vec::new();
    while seen.len() < revisions.len() * 10 {
        let change = if accept == "text/event-stream" {
            let (kind, data, _) = stream.event().expect("the stream ended");
            assert_eq!(kind, "message", "{data}");
            data
        } else {
            let line = stream.line().expect("the stream ended");
            if line.get("key").is_none() {
                continue; // a progress line
            }
            line
        };
        seen.push((
            change["revision"].as_u64().unwrap(),
            change["key"].as_str().unwrap().to_string(),
        ));
    }
    let expected: Vec<(u64, String)> = revisions
        .iter()
        .enumerate()
        .flat_map(|(n, r)| (0..10).map(move |i| (*r, format!("big/{n}/{i}"))))
        .collect();
    assert_eq!(seen, expected);
    assert_eq!(
        metric(&mut c, "vkv_feed_streams_dropped_slow_total"),
        Some(0.0)
    );
}

#[test]
fn an_sse_reader_that_stops_reading_is_paced_not_dropped() {
    a_reader_that_stops_reading_is_paced("text/event-stream");
}

#[test]
fn an_ndjson_reader_that_stops_reading_is_paced_not_dropped() {
    a_reader_that_stops_reading_is_paced("application/x-ndjson");
}

#[test]
fn a_reader_that_takes_nothing_for_the_read_timeout_is_dropped_and_counted() {
    let s = Server::start(&["--read-timeout", "2s"]);
    let mut c = s.client();
    let _stream = StreamReader::open_small(s.addr, "/changes?prefix=big/", "application/x-ndjson");
    assert!(poll_until(Duration::from_secs(10), || metric(
        &mut c,
        "vkv_feed_streams"
    ) == Some(1.0)));
    // More than its socket takes, then nothing read.
    for n in 0..5 {
        big_batch(&mut c, "big/", n);
    }
    assert!(poll_until(Duration::from_secs(30), || metric(
        &mut c,
        "vkv_feed_streams_dropped_slow_total"
    ) == Some(1.0)));
    assert!(poll_until(Duration::from_secs(10), || metric(
        &mut c,
        "vkv_feed_streams"
    ) == Some(0.0)));
}

#[test]
fn streams_end_cleanly_when_the_server_stops_and_cost_no_thread() {
    let mut s = Server::start(&[]);
    let mut c = s.client();
    let threads = s.threads();
    let mut streams: Vec<(StreamReader, bool)> = (0..20)
        .map(|i| {
            let sse = i % 2 == 0;
            let accept = if sse {
                "text/event-stream"
            } else {
                "application/x-ndjson"
            };
            (
                StreamReader::open(s.addr, "/changes?prefix=z/", accept, &[]),
                sse,
            )
        })
        .collect();
    assert!(poll_until(Duration::from_secs(10), || metric(
        &mut c,
        "vkv_feed_streams"
    ) == Some(20.0)));
    // Caught-up streams share one feed thread, started with the first.
    assert!(
        s.threads() <= threads + 1,
        "a stream costs no thread: {} threads before, {} with 20 streams",
        threads,
        s.threads()
    );
    c.put("z/1", &json!(1));
    for (stream, sse) in &mut streams {
        if *sse {
            assert_eq!(stream.event().unwrap().1["key"], "z/1");
        } else {
            assert_eq!(stream.line().unwrap()["key"], "z/1");
        }
    }
    assert!(s.terminate().success());
    for (stream, sse) in &mut streams {
        // Each ends with its last chunk (a cut would panic), after at most
        // progress marks: no error.
        if *sse {
            while let Some((kind, data, _)) = stream.event() {
                assert_eq!(kind, "progress", "{data}");
            }
        } else {
            while let Some(line) = stream.line() {
                assert!(
                    line.get("detail").is_none() && line["revision"].is_u64(),
                    "{line}"
                );
            }
        }
    }
}

#[test]
fn a_stream_to_a_listed_origin_carries_the_cors_headers() {
    let s = Server::start(&["--cors-origins", "http://localhost:3000"]);
    let stream = StreamReader::open(
        s.addr,
        "/changes",
        "text/event-stream",
        &[("Origin", "http://localhost:3000")],
    );
    assert!(
        stream
            .headers
            .iter()
            .any(|h| h == "access-control-allow-origin: http://localhost:3000"),
        "{:?}",
        stream.headers
    );
}
