//! One targeted test per defect of issue 19, each on its own PostgreSQL
//! server: the smallest run that shows it, failing while it is there.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use crate::cluster::{ConnKind, Db, replicas};
use crate::common::{self, Client, Resp, json, poll_until};
use crate::history::Conn;

fn purge(c: &mut Client, key: &str) -> Resp {
    c.request("DELETE", &format!("/delete/{key}?purge=true"), &[], b"")
}

fn version_of(r: &Resp) -> Option<u64> {
    (r.status == 200)
        .then(|| r.json()["version"].as_u64())
        .flatten()
}

/// Defect 1: two clients write a key at the same moment through replicas A
/// and B; both are acknowledged (versions 2 and 3); then each replica must
/// answer the latest, 3. The replica whose own write was the older one
/// kept it in its cache under a valid lease.
#[test]
fn defect1_racing_writes_through_two_replicas_leave_no_replica_stale() {
    let _serial = common::exclusive();
    let db = Db::start("");
    let reps = replicas(&db, 2, &[]);
    const KEYS: usize = 200;
    let key = |i: usize| format!("race{i}");
    let mut ca = Client::connect(reps[0].addr);
    for i in 0..KEYS {
        assert_eq!(ca.put(&key(i), &json!("v1")).status, 200);
    }
    // One thread per replica; both put key i right after a barrier.
    let barrier = Arc::new(Barrier::new(2));
    let racers: Vec<_> = reps
        .iter()
        .map(|r| {
            let (addr, barrier) = (r.addr, Arc::clone(&barrier));
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                (0..KEYS)
                    .map(|i| {
                        barrier.wait();
                        let r = c.put(&key(i), &json!(addr.to_string()));
                        assert_eq!(r.status, 200, "{}", r.text());
                        version_of(&r).expect("a version")
                    })
                    .collect::<Vec<u64>>()
            })
        })
        .collect();
    let acked: Vec<Vec<u64>> = racers.into_iter().map(|t| t.join().unwrap()).collect();
    let mut stale = Vec::new();
    for (r, rep) in reps.iter().enumerate() {
        let mut c = Client::connect(rep.addr);
        for (i, (&va, &vb)) in acked[0].iter().zip(&acked[1]).enumerate() {
            let want = va.max(vb);
            let got = version_of(&c.get(&format!("/get/{}", key(i)))).unwrap_or(0);
            if got < want {
                stale.push((r, i, got, want));
            }
        }
    }
    if stale.is_empty() {
        return;
    }
    // Still so after a lease and more; and a conditional GET agrees.
    std::thread::sleep(Duration::from_millis(1500));
    let mut lines = Vec::new();
    for &(r, i, got, want) in &stale {
        let mut c = Client::connect(reps[r].addr);
        let later = version_of(&c.get(&format!("/get/{}", key(i)))).unwrap_or(0);
        let etag = format!("\"{got}\"");
        let cond = c.request(
            "GET",
            &format!("/get/{}", key(i)),
            &[("If-None-Match", &etag)],
            b"",
        );
        let mine = if acked[r][i] == got {
            "its own write"
        } else {
            "the other replica's write"
        };
        lines.push(format!(
            "{}: replica {r} answered version {got} ({mine}) with {want} acknowledged; 1.5 s later: {later}; If-None-Match {etag}: {}",
            key(i),
            cond.status
        ));
    }
    panic!(
        "{} of {KEYS} keys read stale after racing writes through both replicas:\n{}",
        stale.len(),
        lines.join("\n")
    );
}

/// Defect 1 with its window held open: a third replica C holds a lease
/// and is frozen, so both racing writes wait for C's acknowledgement (until
/// its lease lapses) after their commits. Meanwhile A's `LISTEN` thread
/// drops the keys for B's newer commit; A's writer then caches its own
/// older versions, under A's valid lease. Each replica's writes are one
/// `POST /batch` (one write group, as racing puts are when the writer
/// groups them), so that both groups commit while C's lease holds.
#[test]
fn defect1_racing_writes_while_a_third_replica_is_slow_to_acknowledge_leave_no_replica_stale() {
    let _serial = common::exclusive();
    let db = Db::start("");
    let mut reps = replicas(&db, 3, &[]);
    const KEYS: usize = 40;
    let mut stale = Vec::new();
    for round in 0..2 {
        let key = move |i: usize| format!("slow{round}-{i}");
        let mut ca = Client::connect(reps[0].addr);
        for i in 0..KEYS {
            assert_eq!(ca.put(&key(i), &json!("v1")).status, 200);
        }
        let barrier = Arc::new(Barrier::new(3));
        let racers: Vec<_> = [reps[0].addr, reps[1].addr]
            .into_iter()
            .map(|addr| {
                let barrier = Arc::clone(&barrier);
                std::thread::spawn(move || {
                    let puts: Vec<_> = (0..KEYS)
                        .map(|i| json!({ "key": key(i), "value": addr.to_string() }))
                        .collect();
                    let body = json!({ "puts": puts }).to_string();
                    let mut c = Client::connect(addr);
                    barrier.wait();
                    let r = c.request("POST", "/batch", &[], body.as_bytes());
                    assert_eq!(r.status, 200, "{}", r.text());
                    r.json()["results"]
                        .as_array()
                        .expect("results")
                        .iter()
                        .map(|x| x["version"].as_u64().expect("a version"))
                        .collect::<Vec<u64>>()
                })
            })
            .collect();
        reps[2].freeze();
        barrier.wait();
        let acked: Vec<Vec<u64>> = racers.into_iter().map(|t| t.join().unwrap()).collect();
        reps[2].thaw();
        for (r, rep) in reps.iter().enumerate() {
            let mut c = Client::connect(rep.addr);
            for (i, (&va, &vb)) in acked[0].iter().zip(&acked[1]).enumerate() {
                let want = va.max(vb);
                let got = version_of(&c.get(&format!("/get/{}", key(i)))).unwrap_or(0);
                if got < want {
                    stale.push(format!(
                        "{}: replica {r} answered version {got}, {want} acknowledged",
                        key(i)
                    ));
                }
            }
        }
    }
    assert!(
        stale.is_empty(),
        "{} of {} reads stale after racing writes through A and B with C frozen:\n{}",
        stale.len(),
        2 * 3 * KEYS,
        stale.join("\n")
    );
}

/// Defect 2, with leases: B frozen past its lease, a purge acknowledged
/// on A meanwhile, B resumed: B must not serve a purged version
/// (`?version=N` was answered from its cache without a lease).
#[test]
fn defect2_a_purge_acknowledged_while_a_replica_was_frozen_is_never_served_by_it() {
    let _serial = common::exclusive();
    let db = Db::start("");
    let mut reps = replicas(&db, 2, &[]);
    let (a, b) = (reps[0].addr, reps[1].addr);
    let mut served = Vec::new();
    const ROUNDS: usize = 4;
    for round in 0..ROUNDS {
        let key = format!("purged{round}");
        let mut ca = Client::connect(a);
        for v in 1..=3 {
            assert_eq!(ca.put(&key, &json!(v)).status, 200);
        }
        let mut cb = Client::connect(b);
        for _ in 0..2 {
            assert_eq!(version_of(&cb.get(&format!("/get/{key}"))), Some(3));
        }
        reps[1].freeze();
        std::thread::sleep(Duration::from_millis(1500));
        let purging = {
            let key = key.clone();
            std::thread::spawn(move || purge(&mut Client::connect(a), &key))
        };
        // Whatever a fix makes the purge do about a frozen replica, B is
        // not kept frozen for more than 3 s.
        let acked_while_frozen = poll_until(Duration::from_secs(3), || purging.is_finished());
        let read = format!("GET /get/{key}?version=3 HTTP/1.1\r\nHost: {b}\r\n\r\n");
        if acked_while_frozen {
            // Queued before B resumes: the first thing it reads.
            cb.send_raw(read.as_bytes()).unwrap();
            reps[1].thaw();
        } else {
            reps[1].thaw();
        }
        let p = purging.join().unwrap();
        assert_eq!(p.status, 200, "purge: {}", p.text());
        if !acked_while_frozen {
            cb.send_raw(read.as_bytes()).unwrap();
        }
        let r = cb.read_response(false).unwrap();
        if r.status == 200 {
            served.push(format!("{key}: GET ?version=3 on B -> 200 {}", r.text()));
        }
        let latest = cb.get(&format!("/get/{key}"));
        if latest.status != 404 {
            served.push(format!(
                "{key}: GET on B -> {} {}",
                latest.status,
                latest.text()
            ));
        }
    }
    assert!(
        served.is_empty(),
        "replica B served purged data in {} answers over {ROUNDS} rounds:\n{}",
        served.len(),
        served.join("\n")
    );
}

/// Defect 2, without leases: right after a purge acknowledged on A, B
/// answers `?version=N` from its cache.
#[test]
fn defect2_without_leases_a_purged_version_is_never_served_from_a_cache() {
    let _serial = common::exclusive();
    let db = Db::start("");
    let reps = replicas(&db, 2, &["--read-lease", "0"]);
    let mut ca = Client::connect(reps[0].addr);
    let mut cb = Client::connect(reps[1].addr);
    const ROUNDS: usize = 200;
    let mut served = Vec::new();
    for i in 0..ROUNDS {
        let key = format!("p{i}");
        assert_eq!(ca.put(&key, &json!(i)).status, 200);
        // Cached on B.
        for _ in 0..2 {
            assert_eq!(version_of(&cb.get(&format!("/get/{key}"))), Some(1));
        }
        let p = purge(&mut ca, &key);
        assert_eq!(p.status, 200, "{}", p.text());
        let r = cb.get(&format!("/get/{key}?version=1"));
        if r.status == 200 {
            served.push(key);
        }
    }
    assert!(
        served.is_empty(),
        "B answered 200 for a purged version in {} of {ROUNDS} reads right after the purge was acknowledged: {served:?}",
        served.len()
    );
}

/// Puts to `keys` through `addr` until `stop`, recording when each was
/// acknowledged.
fn writer(
    addr: SocketAddr,
    keys: Vec<String>,
    stop: Arc<AtomicBool>,
    acks: Arc<Mutex<Vec<Instant>>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut c = Conn::new(addr);
        let mut i = 0usize;
        while !stop.load(Ordering::SeqCst) {
            let key = &keys[i % keys.len()];
            i += 1;
            let body = json!({ "value": i }).to_string();
            if let Ok(r) = c.request("POST", &format!("/put/{key}"), &[], body.as_bytes())
                && r.status == 200
            {
                acks.lock().unwrap().push(Instant::now());
            }
        }
    })
}

/// `n` [`writer`]s through `addr`, thread `t` on keys `{prefix}{t}-0` to
/// `-4`.
fn writers(
    addr: SocketAddr,
    prefix: &str,
    n: usize,
    stop: &Arc<AtomicBool>,
    acks: &Arc<Mutex<Vec<Instant>>>,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..n)
        .map(|t| {
            let keys = (0..5).map(|i| format!("{prefix}{t}-{i}")).collect();
            writer(addr, keys, Arc::clone(stop), Arc::clone(acks))
        })
        .collect()
}

/// The longest interval within `[from, to]` with no time of `times`.
fn longest_gap(times: &[Instant], from: Instant, to: Instant) -> Duration {
    let mut inside: Vec<Instant> = times
        .iter()
        .copied()
        .filter(|&t| t >= from && t <= to)
        .collect();
    inside.sort();
    let mut last = from;
    let mut longest = Duration::ZERO;
    for t in inside.into_iter().chain([to]) {
        longest = longest.max(t - last);
        last = t;
    }
    longest
}

/// Defect 3: B frozen with its write transaction open (its backend idle in
/// transaction, holding whatever that transaction locked) must hold up A's
/// writes, on keys B never writes, for one lease at most (1 s, plus a
/// commit).
#[test]
fn defect3_a_replica_frozen_inside_its_write_transaction_stalls_others_a_lease_at_most() {
    let _serial = common::exclusive();
    let db = Db::start("");
    let mut reps = replicas(&db, 2, &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let a_acks: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let mut threads = writers(reps[0].addr, "a", 3, &stop, &a_acks);
    threads.extend(writers(reps[1].addr, "b", 2, &stop, &Arc::default()));
    const FREEZE: Duration = Duration::from_secs(3);
    let bound = Duration::from_millis(1500);
    let (mut hits, mut tries) = (Vec::new(), 0);
    while hits.len() < 2 && tries < 40 {
        tries += 1;
        std::thread::sleep(Duration::from_millis(150));
        reps[1].freeze();
        let frozen_at = Instant::now();
        std::thread::sleep(Duration::from_millis(50));
        // B's own backend, idle in a transaction B will not finish.
        let inside = db.idle_in_transaction(&reps[1]);
        if !inside {
            reps[1].thaw();
            continue;
        }
        std::thread::sleep(FREEZE.saturating_sub(frozen_at.elapsed()));
        let thawed_at = Instant::now();
        reps[1].thaw();
        let gap = longest_gap(&a_acks.lock().unwrap(), frozen_at, thawed_at);
        hits.push(gap);
        // Let A catch up before the next freeze.
        std::thread::sleep(Duration::from_millis(500));
    }
    stop.store(true, Ordering::SeqCst);
    for t in threads {
        t.join().unwrap();
    }
    println!(
        "defect3: {} freezes inside B's write transaction in {tries} tries; A's longest write stalls: {hits:?}",
        hits.len()
    );
    assert!(
        !hits.is_empty(),
        "B was never frozen inside a write transaction in {tries} tries"
    );
    assert!(
        hits.iter().all(|g| *g <= bound),
        "A completed no write for {hits:?} while B was frozen {FREEZE:?} inside its write transaction (bound {bound:?})"
    );
}

/// A replica frozen inside its write transaction never holds the store's
/// revision row, which every replica's commits pass through: the statement
/// that takes it is sent together with the `COMMIT`, so the server
/// releases it whatever the replica's process does. (When the `COMMIT` was
/// a round trip of its own, a writer stopped between the two, frozen or
/// waiting for a CPU, held every replica's writes.) B writes, with puts
/// with a TTL and purges among them (each is a statement of its own); it is
/// frozen while its backend is idle in a transaction, again and again, and
/// each time its locks are read.
#[test]
fn a_replica_frozen_inside_its_write_transaction_never_holds_the_revision_row() {
    let _serial = common::exclusive();
    let db = Db::start("");
    let mut reps = replicas(&db, 2, &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let threads = writers(reps[1].addr, "b", 3, &stop, &Arc::default());
    // Puts with a TTL (their deadlines are one more statement after the
    // write statement), and purges of the same keys.
    let ttl = {
        let (stop, addr) = (Arc::clone(&stop), reps[1].addr);
        std::thread::spawn(move || {
            let mut c = Client::connect(addr);
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) {
                i += 1;
                let body = json!({ "value": i }).to_string();
                let path = format!("/put/t{}?ttl=60s", i % 7);
                let _ = c.try_request("POST", &path, &[], body.as_bytes());
                if i.is_multiple_of(3) {
                    let path = format!("/delete/t{}?purge=true", (i + 1) % 7);
                    let _ = c.try_request("DELETE", &path, &[], b"");
                }
            }
        })
    };
    let (mut inside, mut holding, mut tries) = (0, 0, 0);
    while inside < 12 && tries < 200 {
        tries += 1;
        std::thread::sleep(Duration::from_millis(20));
        reps[1].freeze();
        // Past the round trip in flight when it stopped.
        std::thread::sleep(Duration::from_millis(30));
        if db.idle_in_transaction(&reps[1]) {
            inside += 1;
            let held = db.idle_holding_revision(&reps[1]);
            holding += usize::from(held);
        }
        reps[1].thaw();
    }
    stop.store(true, Ordering::SeqCst);
    for t in threads {
        t.join().unwrap();
    }
    ttl.join().unwrap();
    println!("revision row: {holding} of {inside} freezes inside a write held it ({tries} tries)");
    assert!(
        inside >= 3,
        "B was frozen inside a write transaction only {inside} times in {tries} tries"
    );
    assert_eq!(
        holding, 0,
        "B, frozen inside its write transaction, held the revision row in {holding} of {inside} freezes"
    );
}

/// A writer whose connection the database ended, the server staying up,
/// answers its next write at once: no renewal was lost, so nothing is
/// held. After a restart of PostgreSQL (renewals committed without
/// waiting for the disk may be lost, as on a promoted standby) it holds
/// its answers for one lease.
#[test]
fn a_writer_reconnected_to_the_same_server_waits_for_nothing_and_after_a_restart_a_lease() {
    let _serial = common::exclusive();
    let db = Db::start("");
    const LEASE: Duration = Duration::from_secs(3);
    let reps = replicas(&db, 2, &["--read-lease", "3s"]);
    let mut ca = Client::connect(reps[0].addr);
    assert_eq!(ca.put("k", &json!(1)).status, 200);

    assert!(db.terminate(ConnKind::Writer) >= 2);
    let sent = Instant::now();
    let r = ca.put("k", &json!(2));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        sent.elapsed() < LEASE / 2,
        "the first write after the writer's connection was ended took {:?} (lease {LEASE:?})",
        sent.elapsed()
    );

    db.pg.restart("fast");
    let restarted = Instant::now();
    let mut answered = None;
    while answered.is_none() && restarted.elapsed() < Duration::from_secs(30) {
        if ca.put("k", &json!(3)).status == 200 {
            answered = Some(restarted.elapsed());
        }
    }
    let answered = answered.expect("a write answered after the restart");
    assert!(
        answered >= LEASE - Duration::from_millis(100),
        "the first write after a restart of PostgreSQL was answered {answered:?} after it (lease {LEASE:?})"
    );
}

/// Defect 4: a table locked for 8 s. Reads that need the database answer
/// 503 (with Retry-After) within vkv's read timeout (its default is
/// expected to be at most 5 s: the bound here is 6 s), a long poll answers
/// within its timeout plus that, `/metrics` at once and `/health` says 503
/// within a second even while every worker waits on the database.
#[test]
fn defect4_reads_on_a_locked_table_answer_503_within_the_read_timeout() {
    let _serial = common::exclusive();
    let db = Db::start("");
    let reps = replicas(&db, 2, &[]);
    let (a, b) = (reps[0].addr, reps[1].addr);
    let mut ca = Client::connect(a);
    for i in 0..6 {
        assert_eq!(ca.put(&format!("t{i}"), &json!(i)).status, 200);
    }
    let mut cb = Client::connect(b);
    for _ in 0..2 {
        assert_eq!(cb.get("/get/t0").status, 200); // cached on B
    }
    const LOCK: Duration = Duration::from_secs(8);
    const BOUND: Duration = Duration::from_secs(6);
    let locker = db
        .lock_tables("vkv_keys, vkv_versions", LOCK)
        .expect("the tables were never locked");
    let locked_at = Instant::now();
    // A write in flight, waiting on the locked tables. It holds no lock
    // that renewals wait for (the lease lock is taken with its COMMIT), so
    // B keeps its lease.
    let write = std::thread::spawn(move || Client::connect(a).put("t5", &json!("during")).status);
    // (name, path, asked after, answered within, statuses allowed)
    type Probe = (&'static str, &'static str, u64, Duration, &'static [u16]);
    let any: &'static [u16] = &[200, 304, 404, 503];
    let probes: Vec<Probe> = vec![
        ("uncached GET", "/get/t1", 0, BOUND, &[503]),
        ("GET ?version=", "/get/t2?version=1", 0, BOUND, &[503]),
        ("/history", "/history/t3", 0, BOUND, &[503]),
        ("/keys", "/keys", 0, BOUND, &[503]),
        ("/db/stats", "/db/stats", 0, BOUND, &[503]),
        // B still holds its lease 1.5 s into the lock: the cached version
        // is answered from the cache.
        (
            "cached GET while a write waits on the lock",
            "/get/t0",
            1500,
            Duration::from_millis(500),
            &[200],
        ),
        // With the five above, every worker of B (4) waits on the
        // database, while /metrics answers at once, and /health says 503 within
        // its second of probing, on a thread of their own.
        ("/metrics", "/metrics", 500, Duration::from_secs(1), &[200]),
        (
            "/health",
            "/health",
            500,
            Duration::from_millis(1500),
            &[503],
        ),
        // A long poll's expiry reads the latest: within the query timeout
        // of its deadline, though every worker of B waits on the database
        // then and the expiry runs only once one is free.
        (
            "long poll timeout=2",
            "/get/t4?wait_after=1&timeout=2",
            0,
            Duration::from_secs(2) + BOUND,
            any,
        ),
    ];
    let running: Vec<_> = probes
        .into_iter()
        .map(|(name, path, after, within, statuses)| {
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(after));
                let t = Instant::now();
                let r = Conn::new(b).request("GET", path, &[], b"");
                let took = t.elapsed();
                let mut bad = Vec::new();
                match r {
                    Err(e) => bad.push(format!("{name}: no answer after {took:?}: {e}")),
                    Ok(r) => {
                        if took > within {
                            bad.push(format!(
                                "{name}: answered {} after {took:?} (bound {within:?})",
                                r.status
                            ));
                        }
                        if !statuses.contains(&r.status) {
                            bad.push(format!(
                                "{name}: {} {} (want one of {statuses:?})",
                                r.status,
                                r.text()
                            ));
                        }
                        if r.status == 503 && r.header("retry-after").is_none() {
                            bad.push(format!("{name}: 503 without Retry-After"));
                        }
                    }
                }
                bad
            })
        })
        .collect();
    // /health says 503 within a second of reads failing; asked of A, whose
    // read pool the probes above do not hold.
    let mut health = Conn::new(a);
    let unhealthy = poll_until(BOUND + Duration::from_secs(1), || {
        health
            .request("GET", "/health", &[], b"")
            .is_ok_and(|r| r.status == 503)
    });
    let health_after = locked_at.elapsed();
    let mut failures: Vec<String> = running
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    if !unhealthy {
        failures.push(format!(
            "/health on A did not answer 503 within {health_after:?} of the lock"
        ));
    }
    let mut locker = locker;
    let _ = common::wait_timeout(&mut locker, LOCK + Duration::from_secs(10));
    let _ = write.join();
    assert!(
        failures.is_empty(),
        "with vkv_keys and vkv_versions locked for {LOCK:?}:\n{}",
        failures.join("\n")
    );
}

/// Defect 5: few connection slots (`max_connections = 10`, 7 for vkv's
/// role), two replicas under read load, a disconnect storm: writes must
/// get through again soon after, on both replicas.
#[test]
fn defect5_after_a_disconnect_storm_with_few_slots_writes_get_through() {
    let _serial = common::exclusive();
    let db = Db::start("max_connections = 10\n");
    let reps = replicas(&db, 2, &[]);
    let mut c = Client::connect(reps[0].addr);
    // Two versions each: `?version=1` is never the cached latest, so every
    // such read takes a pooled connection.
    for i in 0..4 {
        for v in 0..2 {
            assert_eq!(c.put(&format!("slot{i}"), &json!(v)).status, 200);
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = reps
        .iter()
        .flat_map(|r| std::iter::repeat_n(r.addr, 3))
        .enumerate()
        .map(|(t, addr)| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut c = Conn::new(addr);
                let mut i = t;
                while !stop.load(Ordering::SeqCst) {
                    i += 1;
                    let _ = c.request("GET", &format!("/get/slot{}?version=1", i % 4), &[], b"");
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    let mut terminated = 0;
    for _ in 0..5 {
        terminated += db.terminate(ConnKind::All);
        std::thread::sleep(Duration::from_millis(200));
    }
    let storm_over = Instant::now();
    let mut answers: Vec<Vec<(Duration, u16, String)>> = vec![Vec::new(), Vec::new()];
    let mut conns: Vec<Conn> = reps.iter().map(|r| Conn::new(r.addr)).collect();
    let mut i = 0;
    while storm_over.elapsed() < Duration::from_secs(10) {
        for (r, conn) in conns.iter_mut().enumerate() {
            i += 1;
            let body = json!({ "value": i }).to_string();
            let answer = match conn.request("POST", "/put/after-storm", &[], body.as_bytes()) {
                Ok(resp) => (resp.status, resp.detail()),
                Err(e) => (0, e.to_string()),
            };
            answers[r].push((storm_over.elapsed(), answer.0, answer.1));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    // Who holds the slots now, by replica and role: what a failure needs.
    let backends = db
        .psql(&format!(
            "SELECT client_port || ' ' || application_name FROM pg_stat_activity WHERE datname = '{}'",
            crate::cluster::DB
        ))
        .unwrap_or_default();
    let holders: Vec<String> = reps
        .iter()
        .enumerate()
        .map(|(r, rep)| {
            let ports = rep.ports();
            let mut roles: Vec<&str> = backends
                .lines()
                .filter_map(|l| l.trim().split_once(' '))
                .filter(|(port, _)| port.parse().is_ok_and(|p: u16| ports.contains(&p)))
                .map(|(_, name)| name)
                .collect();
            roles.sort_unstable();
            format!("replica {r} holds {roles:?}")
        })
        .collect();
    eprintln!("defect5: {}", holders.join("; "));
    stop.store(true, Ordering::SeqCst);
    for t in readers {
        t.join().unwrap();
    }
    let mut failures = Vec::new();
    for (r, seen) in answers.iter().enumerate() {
        let first_ok = seen.iter().find(|a| a.1 == 200).map(|a| a.0);
        let refused: Vec<&(Duration, u16, String)> = seen.iter().filter(|a| a.1 != 200).collect();
        let late: Vec<_> = seen
            .iter()
            .filter(|a| a.0 > Duration::from_secs(8) && a.1 != 200)
            .collect();
        if first_ok.is_none_or(|t| t > Duration::from_secs(8)) || !late.is_empty() {
            failures.push(format!(
                "replica {r}: first write acknowledged {first_ok:?} after the storm; {} of {} refused, {} of them more than 8 s after; e.g. {:?}",
                refused.len(),
                seen.len(),
                late.len(),
                refused.last()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "after terminating {terminated} connections in 5 storms with max_connections = 10:\n{}\n{}",
        failures.join("\n"),
        holders.join("\n")
    );
}

/// Defect 5, across replicas: one replica's reads hold every slot (its
/// pool may grow past what the server has), another replica's writer lost
/// its connection. The busy pool gives slots back, and the writer gets
/// one, though it holds no connection to ask with.
#[test]
fn defect5_a_replica_whose_reads_hold_every_slot_lets_another_replicas_writer_in() {
    let _serial = common::exclusive();
    let db = Db::start("max_connections = 10\n");
    let a = crate::cluster::Replica::start(0, &db.url, &[]);
    let b = crate::cluster::Replica::start(1, &db.url, &["--workers", "8"]);
    let mut c = Client::connect(b.addr);
    for v in 0..2 {
        assert_eq!(c.put("greedy", &json!(v)).status, 200);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..10)
        .map(|_| {
            let (stop, addr) = (Arc::clone(&stop), b.addr);
            std::thread::spawn(move || {
                let mut c = Conn::new(addr);
                while !stop.load(Ordering::SeqCst) {
                    let _ = c.request("GET", "/get/greedy?version=1", &[], b"");
                }
            })
        })
        .collect();
    // Every connection of both replicas goes; B's readers take the slots
    // back at once (none of them but B's reads asks for one until A writes).
    let terminated = db.terminate(ConnKind::All);
    let count = "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'vkv-%'";
    let full = poll_until(Duration::from_secs(10), || {
        db.psql(count).is_some_and(|n| n.trim() == "7")
    });
    let before = db.psql("SELECT string_agg(application_name, ' ') FROM pg_stat_activity WHERE application_name LIKE 'vkv-%'");
    let started = Instant::now();
    let mut a_conn = Conn::new(a.addr);
    let mut last = None;
    let written = poll_until(Duration::from_secs(10), || {
        let body = json!({ "value": 1 }).to_string();
        match a_conn.request("POST", "/put/through-a", &[], body.as_bytes()) {
            Ok(r) if r.status == 200 => true,
            Ok(r) => {
                last = Some((r.status, r.detail()));
                false
            }
            Err(e) => {
                last = Some((0, e.to_string()));
                false
            }
        }
    });
    let took = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    for t in readers {
        t.join().unwrap();
    }
    assert!(
        full,
        "the slots never filled up after terminating {terminated}"
    );
    assert!(
        written && took < Duration::from_secs(5),
        "with B's reads holding the slots ({before:?}), a write through A took {took:?} (acknowledged: {written}); last refusal {last:?}"
    );
}

/// Defect 5, at start: the second replica on a server whose free slots
/// cannot serve it says so.
#[test]
fn defect5_a_replica_warns_at_start_when_connection_slots_cannot_serve_it() {
    let _serial = common::exclusive();
    let db = Db::start("max_connections = 10\n");
    let reps = replicas(&db, 2, &[]);
    // The port is bound before the store opens: the warning comes after.
    let warned = poll_until(Duration::from_secs(15), || {
        reps[1]
            .log_text()
            .to_lowercase()
            .contains("max_connections")
    });
    let log = reps[1].log_text();
    assert!(
        warned,
        "the second replica (4 workers) on max_connections = 10 started without a warning naming max_connections; its log:\n{log}"
    );
}
