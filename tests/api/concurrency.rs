//! Many threads on many connections: versions stay dense and increasing,
//! and a read never returns something older than an acknowledged write.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::common::{Server, db_totals, json, poll_until};

#[test]
fn concurrent_writers_to_one_key_get_dense_unique_versions() {
    let s = Server::start(&[]);
    let (threads, per_thread) = (8, 60);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let mut c = s.client();
            std::thread::spawn(move || {
                (0..per_thread)
                    .map(|i| {
                        let r = c.put("hot", &json!({"t": t, "i": i}));
                        assert_eq!(r.status, 200, "{}", r.text());
                        (r.json()["version"].as_u64().unwrap(), t, i)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut all = Vec::new();
    for h in handles {
        let mine = h.join().unwrap();
        // A thread's own writes are acknowledged in order, so its versions rise.
        assert!(
            mine.windows(2).all(|w| w[0].0 < w[1].0),
            "not increasing: {mine:?}"
        );
        all.extend(mine);
    }
    let mut versions: Vec<u64> = all.iter().map(|a| a.0).collect();
    versions.sort_unstable();
    assert_eq!(
        versions,
        (1..=(threads * per_thread) as u64).collect::<Vec<_>>()
    );
    // Every acknowledged version holds exactly what was written with it.
    let mut c = s.client();
    for (v, t, i) in all {
        let b = c.get(&format!("/get/hot?version={v}")).json();
        assert_eq!(b["value"], json!({"t": t, "i": i}));
    }
    assert_eq!(c.get("/get/hot").json()["version"], threads * per_thread);
}

#[test]
fn reads_never_older_than_acknowledged_writes_under_eviction() {
    // A cache of 3 for 12 keys forces evictions and read-through races.
    let s = Server::start(&["--cache-size", "3", "--sync", "normal"]);
    let keys = 12;
    let acked: Arc<Vec<AtomicU64>> = Arc::new((0..keys).map(|_| AtomicU64::new(0)).collect());
    let stop = Arc::new(AtomicBool::new(false));
    // Progress, so the load runs until it is enough rather than for a fixed
    // time: a durable write costs an fsync, whose time depends on the machine
    // (and on the backend: PostgreSQL runs this test too).
    let (wrote, read) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (mut c, acked, stop) = (s.client(), Arc::clone(&acked), Arc::clone(&stop));
            let wrote = Arc::clone(&wrote);
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let k = ((n * 7 + w) % keys as u64) as usize;
                    let r = c.put(&format!("k{k}"), &json!(n));
                    assert_eq!(r.status, 200);
                    acked[k].fetch_max(r.json()["version"].as_u64().unwrap(), Ordering::SeqCst);
                    wrote.fetch_add(1, Ordering::Relaxed);
                    n += 1;
                }
                n
            })
        })
        .collect();
    let readers: Vec<_> = (0..4)
        .map(|r| {
            let (mut c, acked, stop) = (s.client(), Arc::clone(&acked), Arc::clone(&stop));
            let read = Arc::clone(&read);
            std::thread::spawn(move || {
                let mut n = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let k = (n * 5 + r) % keys;
                    let floor = acked[k].load(Ordering::SeqCst);
                    let resp = c.get(&format!("/get/k{k}"));
                    if floor > 0 {
                        assert_eq!(resp.status, 200);
                        let got = resp.json()["version"].as_u64().unwrap();
                        assert!(
                            got >= floor,
                            "k{k}: read v{got} after v{floor} was acknowledged"
                        );
                    }
                    read.fetch_add(1, Ordering::Relaxed);
                    n += 1;
                }
                n
            })
        })
        .collect();
    let enough = poll_until(Duration::from_secs(60), || {
        wrote.load(Ordering::Relaxed) > 400 && read.load(Ordering::Relaxed) > 400
    });
    stop.store(true, Ordering::Relaxed);
    let writes: u64 = writers.into_iter().map(|h| h.join().unwrap()).sum();
    let reads: usize = readers.into_iter().map(|h| h.join().unwrap()).sum();
    assert!(
        enough && writes > 400 && reads > 400,
        "too little load in 60 s: {writes} writes, {reads} reads"
    );
    let mut c = s.client();
    let st = c.get("/cache/stats").json();
    assert!(st["evictions"].as_u64().unwrap() > 0, "{st}");
    // Versions of every key are dense: the latest equals the number stored.
    let total: u64 = (0..keys)
        .map(|k| {
            c.get(&format!("/get/k{k}")).json()["version"]
                .as_u64()
                .unwrap()
        })
        .sum();
    assert_eq!(total, writes);
    assert_eq!(c.get("/db/stats").json()["total_versions"], writes);
}

#[test]
fn writers_to_different_keys_each_count_from_one() {
    let s = Server::start(&[]);
    let handles: Vec<_> = (0..8)
        .map(|t| {
            let mut c = s.client();
            std::thread::spawn(move || {
                let versions: Vec<u64> = (0..40)
                    .map(|i| {
                        c.put(&format!("own/{t}"), &json!(i)).json()["version"]
                            .as_u64()
                            .unwrap()
                    })
                    .collect();
                assert_eq!(versions, (1..=40).collect::<Vec<_>>());
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let mut c = s.client();
    assert_eq!(db_totals(&mut c), (8, 320));
    let seen: HashMap<u64, u64> = (0..8)
        .map(|t| {
            (
                t,
                c.get(&format!("/get/own%2F{t}")).json()["version"]
                    .as_u64()
                    .unwrap(),
            )
        })
        .collect();
    assert!(seen.values().all(|&v| v == 40), "{seen:?}");
}
