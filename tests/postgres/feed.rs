//! The change feed across replicas: revisions follow commit order whatever
//! replica commits, a follower on one replica reads every change made
//! through the other exactly once and in order, promptly (the other
//! replica's `NOTIFY` wakes it), and through a lost `LISTEN` connection
//! (the feed reads the database by revision: a wake-up is only a hint).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::feed::{StreamReader, change};
use crate::common::get_ok as page;
use crate::common::{Client, Server, json, metric, poll_until, psql};
use crate::fresh_database;

type Seen = Vec<(u64, String, u64)>;

/// Follows `prefix` on `addr` from `after` with long polls of small pages
/// until `done` is set and a poll comes back empty.
fn follow(
    addr: std::net::SocketAddr,
    prefix: &'static str,
    after: u64,
    done: Arc<AtomicBool>,
) -> Seen {
    let mut c = Client::connect(addr);
    let mut after = after;
    let mut read = Vec::new();
    loop {
        let finished = done.load(Ordering::SeqCst);
        let p = page(
            &mut c,
            &format!("/changes?prefix={prefix}&after={after}&limit=13&wait=2"),
        );
        let changes = p["changes"].as_array().unwrap();
        read.extend(changes.iter().map(change));
        after = p["next_after"].as_u64().unwrap();
        if finished && changes.is_empty() {
            return read;
        }
    }
}

#[test]
fn a_follower_on_one_replica_reads_every_change_of_both_once_in_order() {
    let _serial = crate::common::shared();
    let (_, url) = fresh_database();
    let (a, b) = (Server::start_on(&url, &[]), Server::start_on(&url, &[]));
    let acks: Arc<Mutex<Seen>> = Arc::default();
    let done = Arc::new(AtomicBool::new(false));
    let follower = {
        let done = Arc::clone(&done);
        let addr = b.addr;
        std::thread::spawn(move || follow(addr, "p/", 0, done))
    };
    let writers: Vec<_> = (0..8)
        .map(|t| {
            let addr = if t % 2 == 0 { a.addr } else { b.addr };
            let acks = Arc::clone(&acks);
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                for i in 0..40 {
                    let key = format!("p/{}", (t * 3 + i) % 10);
                    let r = c.put(&key, &json!([t, i]));
                    assert_eq!(r.status, 200, "{}", r.text());
                    let body = r.json();
                    acks.lock().unwrap().push((
                        body["revision"].as_u64().unwrap(),
                        key,
                        body["version"].as_u64().unwrap(),
                    ));
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    done.store(true, Ordering::SeqCst);
    let read = follower.join().unwrap();
    let mut acked = acks.lock().unwrap().clone();
    acked.sort();
    assert!(
        acked.windows(2).all(|w| w[0].0 < w[1].0),
        "two writes acknowledged with one revision"
    );
    // Within a key, revisions follow versions: commit order.
    let mut by_key = acked.clone();
    by_key.sort_by(|x, y| (&x.1, x.2).cmp(&(&y.1, y.2)));
    for w in by_key.windows(2) {
        if w[0].1 == w[1].1 {
            assert!(w[0].0 < w[1].0, "{w:?}");
        }
    }
    assert_eq!(read, acked, "every change exactly once, in revision order");
}

#[test]
fn a_long_poll_on_one_replica_is_woken_by_a_write_on_the_other() {
    let _serial = crate::common::shared();
    let (_, url) = fresh_database();
    let (a, b) = (Server::start_on(&url, &[]), Server::start_on(&url, &[]));
    let (mut ca, mut cb) = (a.client(), b.client());
    let mut lags = Vec::new();
    for round in 0..10u64 {
        let after = page(&mut cb, "/db/stats")["revision"].as_u64().unwrap();
        let addr = b.addr;
        let waiting = std::thread::spawn(move || {
            let mut c = Client::connect(addr);
            let p = page(&mut c, &format!("/changes?prefix=x/&after={after}&wait=30"));
            (p, Instant::now())
        });
        assert!(poll_until(Duration::from_secs(10), || metric(
            &mut cb,
            "vkv_watchers"
        ) == Some(1.0)));
        let written = Instant::now();
        assert_eq!(ca.put("x/k", &json!(round)).status, 200);
        let (p, answered) = waiting.join().unwrap();
        assert_eq!(p["changes"][0]["value"], json!(round), "{p}");
        lags.push(answered.duration_since(written));
    }
    lags.sort();
    // Woken by the NOTIFY, not by the 30 s deadline.
    assert!(lags[9] < Duration::from_secs(2), "{lags:?}");
}

#[test]
fn a_follower_whose_replica_lost_its_listen_connection_misses_nothing() {
    let _serial = crate::common::shared();
    let (db, url) = fresh_database();
    let admin = crate::admin();
    let db = crate::common::pg_url_for(&admin, &db);
    let (a, b) = (Server::start_on(&url, &[]), Server::start_on(&url, &[]));
    let mut ca = a.client();
    let done = Arc::new(AtomicBool::new(false));
    let follower = {
        let done = Arc::clone(&done);
        let addr = b.addr;
        std::thread::spawn(move || follow(addr, "l/", 0, done))
    };
    let mut acked = Vec::new();
    for round in 0..4 {
        for i in 0..5 {
            let key = format!("l/{i}");
            let r = ca.put(&key, &json!(round)).json();
            acked.push((
                r["revision"].as_u64().unwrap(),
                key,
                r["version"].as_u64().unwrap(),
            ));
        }
        // Both replicas listen again (after the previous round's kill)
        // before their connections go once more.
        assert!(poll_until(Duration::from_secs(20), || psql(
            &db,
            "SELECT count(*) FROM pg_stat_activity
             WHERE application_name = 'vkv-listen' AND datname = current_database()",
        ) == "2"));
        let killed = psql(
            &db,
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE application_name = 'vkv-listen' AND datname = current_database()",
        );
        assert_eq!(killed, "2");
    }
    // Written while B listens again (or not yet): read all the same.
    for i in 0..5 {
        let key = format!("l/{i}");
        let r = ca.put(&key, &json!("last")).json();
        acked.push((
            r["revision"].as_u64().unwrap(),
            key,
            r["version"].as_u64().unwrap(),
        ));
    }
    let mut cb = b.client();
    let end = acked.iter().map(|a| a.0).max().unwrap();
    assert!(poll_until(Duration::from_secs(20), || {
        page(&mut cb, "/db/stats")["revision"].as_u64() >= Some(end)
    }));
    done.store(true, Ordering::SeqCst);
    let read = follower.join().unwrap();
    assert_eq!(read, acked, "no gap and no repeat through lost connections");
}

#[test]
fn a_stream_on_one_replica_carries_the_writes_of_the_other_in_order() {
    let _serial = crate::common::shared();
    let (_, url) = fresh_database();
    let (a, b) = (Server::start_on(&url, &[]), Server::start_on(&url, &[]));
    let mut sse = StreamReader::open(b.addr, "/changes?prefix=r/", "text/event-stream", &[]);
    let mut cb = b.client();
    assert!(poll_until(Duration::from_secs(10), || metric(
        &mut cb,
        "vkv_feed_streams"
    ) == Some(1.0)));
    let mut ca = a.client();
    let mut lags = Vec::new();
    let mut last = 0;
    for i in 0..30u64 {
        let written = Instant::now();
        let put = ca.put(&format!("r/{}", i % 4), &json!(i)).json();
        let (kind, data, id) = sse.event().expect("an event");
        if kind == "progress" {
            continue;
        }
        lags.push(written.elapsed());
        assert_eq!(data["value"], json!(i), "{data}");
        assert_eq!(data["revision"], put["revision"]);
        let id = id.expect("an id on a single put");
        assert!(id > last);
        last = id;
    }
    lags.sort();
    assert!(lags[lags.len() - 1] < Duration::from_secs(2), "{lags:?}");
}
