//! Read leases (`src/storage/postgres/lease.rs`): a replica holding one
//! answers cached latest versions without asking PostgreSQL, and still no
//! read anywhere is older than a write acknowledged anywhere before it.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Client, Server, json, metric, poll_until, psql};
use crate::fresh_database;

/// A psql session that holds `vkv_versions`, `vkv_keys` and the tables of
/// deadlines and leases locked (no read of them can run) until [`unlock`];
/// returned once the lock is held.
fn lock_tables(db: &str) -> Child {
    let child = Command::new("psql")
        .env("PGAPPNAME", "vkv-test-lock")
        .args([
            db,
            "-XAtq",
            "-c",
            "BEGIN; LOCK TABLE vkv_versions, vkv_keys, vkv_deadlines, vkv_leases \
             IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(600)",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run psql");
    let held = poll_until(Duration::from_secs(30), || {
        psql(
            db,
            "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
             WHERE c.relname = 'vkv_keys' AND l.mode = 'AccessExclusiveLock' AND l.granted",
        ) == "1"
    });
    assert!(held, "the tables were never locked");
    child
}

/// Ends the session of [`lock_tables`] (its server process would not notice
/// a killed psql while it sleeps).
fn unlock(db: &str, mut locker: Child) {
    psql(
        db,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE application_name = 'vkv-test-lock'",
    );
    let _ = locker.kill();
    let _ = locker.wait();
}

/// How many replicas of the database hold a lease on the primary's clock.
fn leases_held(db: &str) -> u64 {
    psql(
        db,
        "SELECT count(*) FROM vkv_replicas WHERE lease_until > clock_timestamp()",
    )
    .parse()
    .unwrap()
}

/// Two replicas with `args` on a fresh database (its URL first), once both
/// hold a lease.
fn two_leased_replicas(args: &[&str]) -> (String, Server, Server) {
    let (_, url) = fresh_database();
    let db = url.to_str().unwrap().to_string();
    let (a, b) = (Server::start_on(&url, args), Server::start_on(&url, args));
    assert!(poll_until(Duration::from_secs(10), || leases_held(&db) == 2));
    (db, a, b)
}

/// A cached read under a read lease is answered with every table it could
/// read locked: also for a key with a TTL and one on a lease, whose
/// `expires_at` comes from what the replica knows, not from a query.
#[test]
fn a_cached_read_under_a_lease_asks_the_database_nothing() {
    let _serial = crate::common::shared();
    let (_, url) = fresh_database();
    let db = url.to_str().unwrap().to_string();
    for lease in ["1s", "0"] {
        let s = Server::start_on(&url, &["--read-lease", lease]);
        let mut c = s.client();
        let n = lease.len();
        let id = crate::common::lease::grant(&mut c, &json!("1h"));
        let keys = [
            (format!("hot{n}"), String::new()),
            (format!("ttl{n}"), "?ttl=1h".to_string()),
            (format!("leased{n}"), format!("?lease={id}")),
        ];
        for (key, lifetime) in &keys {
            let r = crate::common::post(
                &mut c,
                &format!("/put/{key}{lifetime}"),
                &json!({"value": "v1"}),
            );
            assert_eq!(r.status, 200, "{}", r.text());
        }
        // The replica says whether it holds a lease.
        let want = if lease == "0" { 0.0 } else { 1.0 };
        assert!(poll_until(Duration::from_secs(10), || {
            metric(&mut c, "vkv_read_lease_held") == Some(want)
        }));
        assert_eq!(leases_held(&db), want as u64);
        let read = |c: &mut Client, key: &str| {
            let r = c.get(&format!("/get/{key}"));
            let got = r.json();
            (r.status, got["value"].clone(), got["expires_at"].clone())
        };
        let before: Vec<_> = keys.iter().map(|(key, _)| read(&mut c, key)).collect();
        assert_eq!(before[0], (200, json!("v1"), json!(null)));
        for shown in &before[1..] {
            assert!(shown.2.is_string(), "{shown:?}");
        }
        let locker = lock_tables(&db);
        let reader = {
            let (addr, keys) = (s.addr, keys.clone());
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                keys.iter()
                    .map(|(key, _)| read(&mut c, key))
                    .collect::<Vec<_>>()
            })
        };
        if lease == "0" {
            // Every latest read is confirmed by the database: this one
            // waits for the lock (within the query timeout).
            assert!(
                !poll_until(Duration::from_millis(500), || reader.is_finished()),
                "a read without a lease was answered while its table was locked"
            );
            unlock(&db, locker);
        } else {
            let answered = poll_until(Duration::from_secs(4), || reader.is_finished());
            unlock(&db, locker);
            assert!(
                answered,
                "a cached read under a lease waited for the database"
            );
        }
        assert_eq!(reader.join().unwrap(), before);
    }
}

#[test]
fn deletes_and_purges_are_never_served_from_another_replicas_cache() {
    let _serial = crate::common::shared();
    let (_, a, b) = two_leased_replicas(&[]);
    let (mut ca, mut cb) = (a.client(), b.client());
    for i in 0..20 {
        let key = format!("k{i}");
        assert_eq!(ca.put(&key, &json!(i)).status, 200);
        // Cached on B (twice: the second is a hit).
        for _ in 0..2 {
            assert_eq!(cb.get(&format!("/get/{key}")).json()["value"], json!(i));
        }
        let gone = if i % 2 == 0 {
            ca.request("DELETE", &format!("/delete/{key}"), &[], b"")
        } else {
            ca.request("DELETE", &format!("/delete/{key}?purge=true"), &[], b"")
        };
        assert_eq!(gone.status, 200, "{}", gone.text());
        let r = cb.get(&format!("/get/{key}"));
        assert_eq!(r.status, 404, "{key} still served by B: {}", r.text());
    }
    let hits = cb.get("/cache/stats").json()["hits"].as_u64().unwrap();
    assert!(hits >= 20, "B's cache served {hits} reads");
}

#[test]
fn a_vanished_lease_holder_delays_writes_by_its_lease_at_most() {
    let _serial = crate::common::shared();
    let (db, a, mut b) = two_leased_replicas(&["--read-lease", "2s"]);
    let mut ca = a.client();
    assert_eq!(ca.put("k", &json!(1)).status, 200);
    assert_eq!(b.client().get("/get/k").json()["value"], 1);
    // B cannot acknowledge anything any more, and its lease row stays.
    b.kill();
    let t = Instant::now();
    let r = ca.put("k", &json!(2));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "a write waited {:?} for a dead replica's 2 s lease",
        t.elapsed()
    );
    // Its lease has run out: writes no longer wait for it.
    assert_eq!(leases_held(&db), 1);
    let t = Instant::now();
    for i in 3..13 {
        assert_eq!(ca.put("k", &json!(i)).status, 200);
    }
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "10 writes took {:?} after the dead replica's lease ran out",
        t.elapsed()
    );
    assert_eq!(ca.get("/get/k").json()["version"], 12);
}

#[test]
fn a_replica_that_lost_its_listen_connection_serves_nothing_it_missed() {
    let _serial = crate::common::shared();
    let (db, a, b) = two_leased_replicas(&[]);
    let (mut ca, mut cb) = (a.client(), b.client());
    for round in 0..5 {
        assert_eq!(ca.put("k", &json!(round * 2)).status, 200);
        assert_eq!(cb.get("/get/k").json()["value"], json!(round * 2));
        assert_eq!(cb.get("/get/k").json()["value"], json!(round * 2));
        // Both replicas' listening connections go; writes meanwhile are
        // not seen by them.
        let killed = psql(
            &db,
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE application_name = 'vkv-listen' AND datname = current_database()",
        );
        assert_eq!(killed, "2");
        let put = ca.put("k", &json!(round * 2 + 1));
        assert_eq!(put.status, 200, "{}", put.text());
        let r = cb.get("/get/k");
        assert_eq!(
            r.json()["value"],
            json!(round * 2 + 1),
            "round {round}: B served a value its lost connection never invalidated"
        );
        // Both come back and take leases again, anew.
        assert!(poll_until(Duration::from_secs(20), || leases_held(&db) == 2));
        assert!(poll_until(Duration::from_secs(20), || {
            metric(&mut cb, "vkv_read_leases_taken_total") >= Some(f64::from(round + 2))
        }));
    }
}
