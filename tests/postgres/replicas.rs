//! Two vkv processes on one database: what a client of either sees is what
//! one vkv would give it (issue 11, points 5 to 7).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use crate::common::{Client, Server, json, metric, poll_until};
use crate::fresh_database;

fn two_replicas(args: &[&str]) -> (Server, Server) {
    let (_, url) = fresh_database();
    (Server::start_on(&url, args), Server::start_on(&url, args))
}

#[test]
fn reads_after_writes_across_replicas_are_never_stale() {
    let _serial = crate::common::shared();
    let (a, b) = two_replicas(&[]);
    let (mut ca, mut cb) = (a.client(), b.client());
    // A few keys, so that both replicas' caches hold them: a stale cache
    // would show at once.
    let keys = ["k0", "k1", "k2"];
    let mut stale = 0;
    for i in 0..2000u64 {
        let key = keys[(i % 3) as usize];
        let (writer, reader) = if i % 2 == 0 {
            (&mut ca, &mut cb)
        } else {
            (&mut cb, &mut ca)
        };
        let put = writer.put(key, &json!(i));
        assert_eq!(put.status, 200, "{}", put.text());
        let acked = put.json()["version"].as_u64().unwrap();
        // Twice: the first read finds the key dropped from the reader's
        // cache by the write, the second is served from the cache (under
        // the reader's lease).
        for _ in 0..2 {
            let got = reader.get(&format!("/get/{key}")).json();
            let seen = got["version"].as_u64().unwrap();
            if seen < acked || (seen == acked && got["value"] != json!(i)) {
                stale += 1;
            }
        }
    }
    assert_eq!(stale, 0, "stale reads across replicas");
    // The caches did serve values.
    let hits = cb.get("/cache/stats").json()["hits"].as_u64().unwrap();
    assert!(hits >= 900, "replica B's cache hit {hits} times");
}

#[test]
fn many_readers_of_a_few_hot_keys_see_every_acknowledged_write() {
    // Readers on B share read rounds (the same key asked by many of them at
    // once, latest and old versions mixed) while A writes those keys: each
    // answer must be the reader's own key and version, at least as new as
    // every write acknowledged before it asked.
    let _serial = crate::common::shared();
    let (a, b) = two_replicas(&[]);
    const KEYS: u64 = 3;
    let acked: Arc<Vec<AtomicU64>> = Arc::new((0..KEYS).map(|_| AtomicU64::new(0)).collect());
    // Value of version `v` of key `k`: tells both apart.
    let value = |k: u64, v: u64| v * 10 + k;
    let mut w = a.client();
    for k in 0..KEYS {
        assert_eq!(w.put(&format!("hot{k}"), &json!(value(k, 1))).status, 200);
        acked[k as usize].store(1, Ordering::SeqCst);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..8u64)
        .map(|t| {
            let (acked, stop, addr) = (Arc::clone(&acked), Arc::clone(&stop), b.addr);
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                let (mut reads, mut i) = (0u64, t);
                while !stop.load(Ordering::SeqCst) {
                    i += 1;
                    let k = i % KEYS;
                    let before = acked[k as usize].load(Ordering::SeqCst);
                    let old = i % 4 == 0;
                    let path = if old {
                        format!("/get/hot{k}?version={}", 1 + i % before)
                    } else {
                        format!("/get/hot{k}")
                    };
                    let r = c.get(&path);
                    assert_eq!(r.status, 200, "{path}: {}", r.text());
                    let got = r.json();
                    let v = got["version"].as_u64().unwrap();
                    assert_eq!(got["key"], json!(format!("hot{k}")), "{path}");
                    assert_eq!(
                        got["value"],
                        json!(value(k, v)),
                        "{path}: another version's value"
                    );
                    if old {
                        assert_eq!(v, 1 + i % before, "{path}");
                    } else {
                        assert!(
                            v >= before,
                            "{path}: stale: version {v}, {before} acknowledged"
                        );
                    }
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    for n in 2..=150u64 {
        for k in 0..KEYS {
            let r = w.put(&format!("hot{k}"), &json!(value(k, n)));
            assert_eq!(r.json()["version"], json!(n), "{}", r.text());
            acked[k as usize].store(n, Ordering::SeqCst);
        }
    }
    stop.store(true, Ordering::SeqCst);
    let reads: u64 = readers.into_iter().map(|r| r.join().unwrap()).sum();
    assert!(reads > 450, "only {reads} reads ran alongside the writes");
}

#[test]
fn conditional_writes_race_across_replicas_with_exactly_one_winner() {
    let _serial = crate::common::shared();
    let (a, b) = two_replicas(&[]);
    let rounds = 40u64;
    let per_replica = 3;
    let barrier = Arc::new(Barrier::new(per_replica * 2));
    let mut threads = Vec::new();
    for addr in [a.addr, b.addr] {
        for t in 0..per_replica {
            let barrier = Arc::clone(&barrier);
            threads.push(std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                let mut won = Vec::new();
                for round in 0..rounds {
                    barrier.wait();
                    let r = c.request(
                        "POST",
                        &format!("/put/cas?if_version={round}"),
                        &[("Content-Type", "application/json")],
                        json!({ "value": format!("{addr}-{t}-{round}") })
                            .to_string()
                            .as_bytes(),
                    );
                    match r.status {
                        200 => won.push(round),
                        409 => {}
                        s => panic!("round {round}: {s} {}", r.text()),
                    }
                    barrier.wait();
                }
                won
            }));
        }
    }
    let mut winners = vec![0u32; rounds as usize];
    for t in threads {
        for round in t.join().unwrap() {
            winners[round as usize] += 1;
        }
    }
    assert!(
        winners.iter().all(|&w| w == 1),
        "winners per round: {winners:?}"
    );
    let latest = a.client().get("/get/cas").json();
    assert_eq!(latest["version"], rounds);
}

#[test]
fn versions_stay_dense_under_concurrent_writers_on_both_replicas() {
    let _serial = crate::common::shared();
    let (a, b) = two_replicas(&[]);
    let per_thread = 60u64;
    let mut threads = Vec::new();
    for addr in [a.addr, b.addr] {
        for t in 0..4 {
            threads.push(std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                (0..per_thread)
                    .map(|i| {
                        let key = if i % 2 == 0 { "shared" } else { "other" };
                        let r = c.put(key, &json!(format!("{addr}/{t}/{i}")));
                        assert_eq!(r.status, 200, "{}", r.text());
                        (key, r.json()["version"].as_u64().unwrap())
                    })
                    .collect::<Vec<_>>()
            }));
        }
    }
    let mut acked: Vec<(&str, u64)> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    acked.sort();
    let total = 8 * per_thread;
    for key in ["shared", "other"] {
        let mine: Vec<u64> = acked
            .iter()
            .filter(|(k, _)| *k == key)
            .map(|(_, v)| *v)
            .collect();
        let n = mine.len() as u64;
        assert_eq!(
            mine,
            (1..=n).collect::<Vec<_>>(),
            "{key}: acked versions not dense"
        );
        let history = crate::common::history(&mut a.client(), key);
        assert_eq!(history, (1..=n).collect::<Vec<_>>(), "{key}: history");
    }
    // Totals are exact, from either replica.
    for s in [&a, &b] {
        assert_eq!(crate::common::db_totals(&mut s.client()), (2, total));
    }
}

#[test]
fn a_watcher_on_one_replica_is_woken_by_a_write_on_the_other() {
    // Timed: nothing else of this binary runs meanwhile.
    let _serial = crate::common::exclusive();
    let (a, b) = two_replicas(&[]);
    let (mut ca, mut cb) = (a.client(), b.client());
    let mut worst = Duration::ZERO;
    for round in 1..=5u64 {
        let seen = cb.put("w", &json!(round)).json()["version"]
            .as_u64()
            .unwrap();
        let mut watcher = a.client();
        let waiting = std::thread::spawn(move || {
            let r = watcher.get(&format!("/get/w?wait_after={seen}&timeout=20"));
            (r.status, r.json(), Instant::now())
        });
        assert!(
            poll_until(Duration::from_secs(10), || metric(&mut ca, "vkv_watchers")
                == Some(1.0)),
            "the watcher was never parked"
        );
        let written = Instant::now();
        let put = cb.put("w", &json!(format!("woken {round}")));
        let acked = Instant::now();
        assert_eq!(put.status, 200);
        let (status, body, answered) = waiting.join().unwrap();
        assert_eq!(status, 200);
        assert_eq!(body["value"], json!(format!("woken {round}")));
        assert_eq!(body["version"], seen + 1);
        // From the commit (before the ack) to the watcher's answer: NOTIFY,
        // LISTEN, one read, the answer.
        let woken = answered.saturating_duration_since(acked);
        eprintln!(
            "round {round}: write took {:?}, watcher answered {woken:?} after the ack",
            acked - written
        );
        worst = worst.max(woken);
    }
    assert!(
        worst < Duration::from_millis(100),
        "a watcher took {worst:?} after the commit to be woken by the other replica"
    );
}

#[test]
fn writes_and_reads_never_scan_a_table() {
    // A write group runs one statement for every table, planned once per
    // connection (generic plan) while the tables are still empty; a plan
    // that scans a table (a hash join, as the retention delete and the
    // heads update once had) makes every write cost the size of the store.
    // PostgreSQL counts the scans of each table.
    let _serial = crate::common::shared();
    let (name, url) = fresh_database();
    // No read lease: every read below is a round (an index scan) of its own.
    let s = Server::start_on(&url, &["--max-versions", "2", "--read-lease", "0"]);
    let mut c = s.client();
    let db = crate::common::pg_url_for(&crate::admin(), &name);
    // Sequential scans of vkv_versions and vkv_keys, once the statistics
    // show at least `inserted` versions and `looked_up` index scans of
    // vkv_versions (every backend reports at most about 10 s after it went
    // idle), and the index scans seen.
    let scans = |inserted: u64, looked_up: u64| {
        let mut last = String::new();
        let reported = poll_until(Duration::from_secs(30), || {
            last = crate::common::psql(
                &db,
                "SELECT sum(n_tup_ins) FILTER (WHERE relname = 'vkv_versions') || ' ' ||
                        sum(idx_scan) FILTER (WHERE relname = 'vkv_versions') || ' ' ||
                        string_agg(relname || '=' || seq_scan, ' ' ORDER BY relname)
                 FROM pg_stat_user_tables WHERE relname IN ('vkv_versions', 'vkv_keys')",
            );
            let n: Vec<u64> = last
                .split(' ')
                .take(2)
                .filter_map(|n| n.parse().ok())
                .collect();
            n.len() == 2 && n[0] >= inserted && n[1] >= looked_up
        });
        assert!(
            reported,
            "statistics never showed {inserted} inserts, {looked_up} lookups: {last}"
        );
        let mut parts = last.splitn(3, ' ');
        let looked = parts
            .nth(1)
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
        (looked, parts.next().unwrap_or_default().to_string())
    };
    // Read rounds planned while the tables are empty, too.
    assert_eq!(c.get("/get/k0").status, 404);
    assert_eq!(c.get("/get/k0?version=1").status, 404);
    for k in 0..50 {
        assert_eq!(c.put(&format!("k{k}"), &json!(0)).status, 200);
    }
    let (looked_up, before) = scans(50, 0);
    // 50 keys x 4 more versions: every group trims what is beyond 2.
    let mut threads = Vec::new();
    for t in 0..4 {
        let addr = s.addr;
        threads.push(std::thread::spawn(move || {
            let mut c = Client::connect(addr);
            for i in 0..50 {
                let r = c.put(&format!("k{}", (i + t * 13) % 50), &json!(i));
                assert_eq!(r.status, 200, "{}", r.text());
            }
        }));
    }
    threads.into_iter().for_each(|t| t.join().unwrap());
    for k in 0..50 {
        assert_eq!(c.get(&format!("/get/k{k}")).status, 200);
        assert_eq!(c.get(&format!("/get/k{k}?version=1")).status, 410);
    }
    // 100 reads, one round each: 100 more index scans at least.
    assert_eq!(
        scans(250, looked_up + 100).1,
        before,
        "writes or reads scanned tables (seq_scan counts)"
    );
    let versions = crate::common::history(&mut c, "k0");
    assert_eq!(versions.len(), 2, "retention kept {versions:?}");
}

#[test]
fn contended_writes_through_both_replicas_leave_no_replica_behind() {
    // Two clients write the same key at the same moment, one through each
    // replica; both are acknowledged. Then each replica, asked for the
    // latest (plainly, and with `If-None-Match` naming the older version),
    // answers the newer one. A replica whose own older write was published
    // to its cache after the other's newer one had dropped the key served
    // the older version until the key was written again.
    let _serial = crate::common::shared();
    let (a, b) = two_replicas(&[]);
    const KEYS: usize = 120;
    let mut behind = Vec::new();
    for k in 0..KEYS {
        let key = format!("race{k}");
        // Both caches hold version 1.
        assert_eq!(a.client().put(&key, &json!(0)).status, 200);
        for s in [&a, &b] {
            assert_eq!(s.client().get(&format!("/get/{key}")).status, 200);
        }
        let start = Arc::new(Barrier::new(2));
        let writers: Vec<_> = [a.addr, b.addr]
            .into_iter()
            .map(|addr| {
                let (start, key) = (Arc::clone(&start), key.clone());
                std::thread::spawn(move || {
                    let mut c = Client::connect(addr);
                    start.wait();
                    let put = c.put(&key, &json!(addr.port()));
                    assert_eq!(put.status, 200, "{}", put.text());
                    put.json()["version"].as_u64().unwrap()
                })
            })
            .collect();
        let versions: Vec<u64> = writers.into_iter().map(|w| w.join().unwrap()).collect();
        let newest = versions.iter().copied().max().unwrap();
        for s in [&a, &b] {
            let mut c = s.client();
            let got = c.get(&format!("/get/{key}")).json();
            let seen = got["version"].as_u64().unwrap();
            let older = format!("\"{}\"", newest - 1);
            let cond = c.request(
                "GET",
                &format!("/get/{key}"),
                &[("If-None-Match", older.as_str())],
                b"",
            );
            if seen != newest || cond.status != 200 {
                behind.push((key.clone(), s.addr, seen, cond.status, newest));
            }
        }
    }
    assert!(
        behind.is_empty(),
        "replicas behind an acknowledged write: {behind:?}"
    );
}

#[test]
fn a_purge_is_never_served_by_a_replica_that_was_paused() {
    // B holds version 1 of a key in its cache, under its lease; B is
    // paused past its lease; the purge is acknowledged on A (it need not
    // wait for a lease that ran out); B resumes: asked for version 1 it
    // must not answer the purged value from its cache.
    let _serial = crate::common::shared();
    let (a, b) = two_replicas(&[]);
    let (mut ca, mut cb) = (a.client(), b.client());
    let mut served = Vec::new();
    for k in 0..5 {
        let key = format!("gone{k}");
        assert_eq!(ca.put(&key, &json!("secret")).status, 200);
        assert_eq!(cb.get(&format!("/get/{key}")).status, 200);
        assert_eq!(cb.get(&format!("/get/{key}?version=1")).status, 200);
        b.signal("STOP");
        std::thread::sleep(Duration::from_millis(1500)); // the pause itself
        let purged = ca.request("DELETE", &format!("/delete/{key}?purge=true"), &[], b"");
        b.signal("CONT");
        assert_eq!(purged.status, 200, "{}", purged.text());
        for path in [format!("/get/{key}?version=1"), format!("/get/{key}")] {
            let got = cb.get(&path);
            if got.status == 200 {
                served.push((path, got.text()));
            }
        }
    }
    assert!(served.is_empty(), "purged data served: {served:?}");
}

#[test]
fn a_writer_keeps_committing_while_a_lease_holder_is_frozen() {
    // B caches version 1 of every key under its lease, then is frozen.
    // Writes reach A one by one, 20 ms apart: each is held until B's lease
    // runs out, but A's writer commits each as it comes (it does not wait
    // for B before committing the next), and answers them in order. Once B
    // resumes it serves every acknowledged version.
    let _serial = crate::common::shared();
    let (a, b) = two_replicas(&[]);
    let (mut ca, mut cb) = (a.client(), b.client());
    const N: usize = 20;
    for i in 0..N {
        let key = format!("held{i}");
        assert_eq!(ca.put(&key, &json!(1)).status, 200);
        assert_eq!(cb.get(&format!("/get/{key}")).status, 200);
    }
    let batches = |c: &mut Client| metric(c, "vkv_writer_batches_total").unwrap_or(-1.0);
    let before = batches(&mut ca);
    b.signal("STOP");
    let frozen_at = Instant::now();
    let threads: Vec<_> = (0..N)
        .map(|i| {
            let mut c = a.client();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20 * i as u64));
                let r = c.put(&format!("held{i}"), &json!(2));
                (r.status, Instant::now())
            })
        })
        .collect();
    let answers: Vec<(u16, Instant)> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let groups = batches(&mut ca) - before;
    b.signal("CONT");
    assert!(
        answers.iter().all(|(status, _)| *status == 200),
        "{answers:?}"
    );
    let last = answers.iter().map(|(_, at)| *at - frozen_at).max().unwrap();
    assert!(
        last < Duration::from_millis(2500),
        "the last write waited {last:?} for a lease of 1 s"
    );
    assert!(
        groups >= (N / 2) as f64,
        "{N} writes arriving 20 ms apart while B was frozen were committed in {groups} groups: \
         the writer waited for B before committing the next"
    );
    for i in 0..N {
        let got = cb.get(&format!("/get/held{i}"));
        assert_eq!(got.status, 200, "{}", got.text());
        assert_eq!(
            got.json()["version"],
            2,
            "B served a replaced version: {}",
            got.text()
        );
    }
}
