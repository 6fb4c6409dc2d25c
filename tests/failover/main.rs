//! Issue 11 point 9: vkv over a real PostgreSQL primary with a real
//! synchronous streaming standby survives the primary's crash and the
//! standby's promotion without a restart, losing no acknowledged write
//! (nor its change in the feed).
//!
//! Needs the `postgres` feature and Debian's `postgresql` package (the test
//! starts its own two servers in a temporary directory, as the `postgres`
//! user when run as root):
//!
//! ```sh
//! cargo test --features postgres --test failover
//! ```
#![cfg(feature = "postgres")]

mod cluster;
#[path = "../support/mod.rs"]
mod common;
#[path = "../support/pg.rs"]
mod pg;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cluster::Cluster;
use common::*;

/// vkv's --read-timeout here: no answer may take longer (plus slack for
/// this shared machine).
const READ_TIMEOUT: Duration = Duration::from_secs(5);
const SLACK: Duration = Duration::from_secs(3);

/// One answer a writer got.
#[derive(Debug, Clone)]
struct Answer {
    status: u16,
    retry_after: bool,
    /// Marked "outcome unknown" (`Vkv-Outcome: unknown`): not to be retried
    /// blindly, so no Retry-After.
    outcome_unknown: bool,
    took: Duration,
    detail: String,
}

/// What the writers saw: acknowledged writes (key, version, value) and
/// every answer.
#[derive(Default)]
struct Seen {
    acks: Vec<(String, u64, serde_json::Value)>,
    answers: Vec<Answer>,
}

fn put_answer(c: &mut Client, key: &str, value: &serde_json::Value) -> (Answer, Option<u64>) {
    let t = Instant::now();
    let r = c
        .try_put(key, value)
        .unwrap_or_else(|e| panic!("vkv dropped a put of {key}: {e}"));
    let version = (r.status == 200).then(|| r.json()["version"].as_u64().unwrap());
    let answer = Answer {
        status: r.status,
        retry_after: r.header("retry-after").is_some(),
        outcome_unknown: r.header("vkv-outcome") == Some("unknown"),
        took: t.elapsed(),
        detail: r.text(),
    };
    (answer, version)
}

/// Four clients putting in a loop (keys `w{t}-{0..5}`) until `stop`,
/// recording every answer in `seen`.
fn write_load(
    addr: std::net::SocketAddr,
    seen: &Arc<Mutex<Seen>>,
    stop: &Arc<AtomicBool>,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..4)
        .map(|t| {
            let (seen, stop) = (Arc::clone(seen), Arc::clone(stop));
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                let mut i = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    let key = format!("w{t}-{}", i % 5);
                    let value = serde_json::json!({ "t": t, "i": i });
                    let (answer, version) = put_answer(&mut c, &key, &value);
                    let mut seen = seen.lock().unwrap();
                    if let Some(v) = version {
                        seen.acks.push((key, v, value));
                    }
                    let failed = answer.status != 200;
                    seen.answers.push(answer);
                    drop(seen);
                    if failed {
                        // As a client honouring Retry-After would, briefly.
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    i += 1;
                }
            })
        })
        .collect()
}

/// Every answer was a 200, or a 503 with Retry-After or marked "outcome
/// unknown", none took longer than
/// the read timeout (plus slack); a count by status.
fn check_answers(seen: &Seen) -> std::collections::BTreeMap<u16, u32> {
    let mut by_status = std::collections::BTreeMap::new();
    for a in &seen.answers {
        *by_status.entry(a.status).or_insert(0u32) += 1;
        assert!(
            a.status == 200 || (a.status == 503 && (a.retry_after || a.outcome_unknown)),
            "a write answered {} after {:?}: {}",
            a.status,
            a.took,
            a.detail
        );
        assert!(a.took < READ_TIMEOUT + SLACK, "a write took {a:?}");
    }
    by_status
}

/// Every acknowledged write reads back with its value, and versions are
/// dense per key.
fn check_acks(c: &mut Client, seen: &Seen) {
    for (key, version, value) in &seen.acks {
        let r = c.get(&format!("/get/{key}?version={version}"));
        assert_eq!(r.status, 200, "{key} v{version}: {}", r.text());
        assert_eq!(&r.json()["value"], value, "{key} v{version}");
    }
    for t in 0..4 {
        for k in 0..5 {
            let key = format!("w{t}-{k}");
            let versions = history(c, &key);
            let n = versions.len() as u64;
            assert_eq!(versions, (1..=n).collect::<Vec<_>>(), "{key}");
        }
    }
}

/// A primary with its synchronous standby, vkv on it (`--read-timeout 5s`)
/// and the write load running, 200 writes acknowledged already.
struct Loaded {
    cluster: Cluster,
    url: String,
    server: Server,
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
    writers: Vec<std::thread::JoinHandle<()>>,
}

impl Loaded {
    fn start() -> Loaded {
        let cluster = Cluster::start();
        cluster.create_db("vkv");
        let url = cluster.url("vkv");
        let server = Server::start_on(Path::new(&url), &["--read-timeout", "5s", "--workers", "4"]);
        let seen: Arc<Mutex<Seen>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let writers = write_load(server.addr, &seen, &stop);
        let loaded = Loaded {
            cluster,
            url,
            server,
            seen,
            stop,
            writers,
        };
        assert!(
            poll_until(Duration::from_secs(30), || loaded.acks() >= 200),
            "the write load did not start"
        );
        loaded
    }

    /// How many writes were acknowledged so far.
    fn acks(&self) -> usize {
        self.seen.lock().unwrap().acks.len()
    }

    /// Waits until `/health` says unavailable; its last answer.
    fn wait_unavailable(&self, c: &mut Client) -> String {
        let mut last = String::new();
        let unavailable = poll_until(Duration::from_secs(30), || {
            let h = c.get("/health");
            last = format!("{} {}", h.status, h.text());
            h.status == 503 && h.json()["status"] == "unavailable"
        });
        assert!(unavailable, "/health never said unavailable: {last}");
        last
    }

    /// Waits until a put through `c` succeeds, then until the writers have
    /// 200 more writes acknowledged than `before`; stops them.
    fn recover(&mut self, c: &mut Client, key: &str, before: usize) -> Instant {
        let recovered = poll_until(Duration::from_secs(60), || {
            put_answer(c, key, &serde_json::json!("ok")).0.status == 200
        });
        assert!(recovered, "writes never succeeded again ({key})");
        let at = Instant::now();
        assert!(
            poll_until(Duration::from_secs(60), || self.acks() >= before + 200),
            "the writers did not recover"
        );
        self.stop.store(true, Ordering::SeqCst);
        for w in self.writers.drain(..) {
            w.join().unwrap();
        }
        at
    }

    /// What the writers saw (taken out of `seen`), every answer checked
    /// (see [`check_answers`]).
    fn take_seen(&self) -> Seen {
        let seen = std::mem::take(&mut *self.seen.lock().unwrap());
        let by_status = check_answers(&seen);
        eprintln!(
            "write answers by status: {by_status:?}; {} acknowledged",
            seen.acks.len()
        );
        seen
    }
}

#[test]
fn primary_crash_and_promotion_keep_every_acknowledged_write_without_a_restart() {
    let mut load = Loaded::start();
    let pid = load.server.pid();

    load.cluster.kill_primary();
    let killed_at = Instant::now();
    // No primary: writes are refused with 503 + Retry-After, /health is
    // unavailable; the standby is reachable but read-only.
    let mut c = load.server.client();
    load.wait_unavailable(&mut c);
    let (answer, _) = put_answer(&mut c, "during-outage", &serde_json::json!(1));
    assert_eq!(answer.status, 503, "{answer:?}");
    assert!(answer.retry_after, "{answer:?}");
    // Let the writers run into the outage for a while.
    let refused = |seen: &Mutex<Seen>| {
        seen.lock()
            .unwrap()
            .answers
            .iter()
            .filter(|a| a.status == 503)
            .count()
    };
    assert!(
        poll_until(Duration::from_secs(30), || refused(&load.seen) >= 20),
        "the writers saw no 503"
    );
    let acked_before_promotion = load.acks();

    load.cluster.promote_standby();
    let promoted_at = Instant::now();
    // vkv finds the new primary by itself: same process, writes succeed.
    let recovered_at = load.recover(&mut c, "after-promotion", acked_before_promotion);
    assert!(load.server.exited().is_none(), "vkv exited");
    assert_eq!(load.server.pid(), pid);
    eprintln!(
        "promoted {:?} after the kill; writes back {:?} after the promotion",
        promoted_at - killed_at,
        recovered_at - promoted_at
    );

    let seen = load.take_seen();

    // Every acknowledged write, from before and after the crash, is there.
    check_acks(&mut load.server.client(), &seen);
    // And through a new process that has no cache of them.
    load.server.terminate();
    let s2 = Server::start_on(Path::new(&load.url), &[]);
    let mut c = s2.client();
    for (key, version, value) in &seen.acks {
        let r = c.get(&format!("/get/{key}?version={version}"));
        assert_eq!(
            &r.json()["value"],
            value,
            "{key} v{version} after a restart"
        );
    }
    check_acks(&mut c, &seen);
    check_feed(&mut c, &seen);
    assert_eq!(c.get("/health").status, 200);
    assert_eq!(c.put("new", &serde_json::json!("write")).status, 200);
    assert_eq!(c.get("/get/new").json()["value"], "write");
}

/// The change feed from the start, read in pages after the failover, holds
/// every acknowledged write exactly once, in increasing revisions, with
/// the value it acknowledged: a failover loses no acknowledged change.
fn check_feed(c: &mut Client, seen: &Seen) {
    let mut feed: std::collections::HashMap<(String, u64), serde_json::Value> =
        std::collections::HashMap::new();
    let (mut after, mut last) = (0u64, 0u64);
    loop {
        let r = c.get(&format!("/changes?after={after}&limit=500"));
        assert_eq!(r.status, 200, "{}", r.text());
        let page = r.json();
        let changes = page["changes"].as_array().unwrap().clone();
        for ch in &changes {
            let revision = ch["revision"].as_u64().unwrap();
            assert!(revision >= last, "revision {revision} after {last}");
            last = revision;
            let key = ch["key"].as_str().unwrap().to_string();
            let version = ch["version"].as_u64().unwrap();
            let value = ch.get("value").cloned().unwrap_or(serde_json::Value::Null);
            assert!(
                feed.insert((key.clone(), version), value).is_none(),
                "{key} v{version} twice in the feed"
            );
        }
        let next = page["next_after"].as_u64().unwrap();
        if changes.is_empty() && next == after {
            break;
        }
        after = next;
    }
    for (key, version, value) in &seen.acks {
        assert_eq!(
            feed.get(&(key.clone(), *version)),
            Some(value),
            "{key} v{version}: acknowledged, not in the feed as written"
        );
    }
}

/// A primary whose synchronous standby dies waits in `COMMIT` until one is
/// back. vkv must not hang with it: a put whose commit has not returned
/// within the read timeout is answered 503 (outcome unknown), later puts are
/// refused at once, `/health` says unavailable, reads keep working; when
/// the standby returns, writes succeed again without a restart and every
/// acknowledged write is there. (Without the bound, puts hang and
/// `/health` stays 200: this test fails.)
#[test]
fn a_commit_waiting_for_a_lost_synchronous_standby_is_answered_within_the_read_timeout() {
    let mut load = Loaded::start();
    let pid = load.server.pid();

    // The primary keeps synchronous_standby_names = '*': every commit now
    // waits for a standby that is gone.
    load.cluster.kill_standby();
    let mut c = load.server.client();
    let last_health = load.wait_unavailable(&mut c);
    assert!(
        last_health.contains("commit has not returned"),
        "{last_health}"
    );
    let (answer, _) = put_answer(&mut c, "during-stall", &serde_json::json!(1));
    assert_eq!(answer.status, 503, "{answer:?}");
    assert!(answer.retry_after, "{answer:?}");
    assert!(answer.took < SLACK, "a refused put took {answer:?}");
    let refused = |seen: &Mutex<Seen>| {
        let seen = seen.lock().unwrap();
        let unknown = seen
            .answers
            .iter()
            .filter(|a| {
                a.status == 503
                    && a.outcome_unknown
                    && a.detail.contains("outcome of this write is unknown")
            })
            .count();
        (
            unknown,
            seen.answers.iter().filter(|a| a.status == 503).count(),
        )
    };
    assert!(
        poll_until(Duration::from_secs(30), || refused(&load.seen).1 >= 20),
        "the writers saw no 503"
    );
    assert!(
        refused(&load.seen).0 >= 1,
        "no writer was told its write's outcome is unknown"
    );
    // Reads do not depend on the stuck writer.
    let (key, version, _) = load.seen.lock().unwrap().acks[0].clone();
    let r = c.get(&format!("/get/{key}"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json()["version"].as_u64().unwrap() >= version);
    let acked_during_stall = load.acks();

    load.cluster.restart_standby();
    let back_at = Instant::now();
    let recovered_at = load.recover(&mut c, "after-standby", acked_during_stall);
    eprintln!("writes back {:?} after the standby", recovered_at - back_at);
    assert_eq!(c.get("/health").status, 200);
    assert_eq!(load.server.pid(), pid);
    let seen = load.take_seen();
    check_acks(&mut load.server.client(), &seen);
}

/// Keys that expire live in the database: a lease and a TTL granted before
/// the primary's crash hold on the promoted standby, a keepalive after it
/// works, and the key with a TTL still expires, once.
#[test]
fn leases_and_deadlines_survive_a_failover() {
    let cluster = Cluster::start();
    cluster.create_db("vkv");
    let url = cluster.url("vkv");
    let server = Server::start_on(Path::new(&url), &["--read-timeout", "5s"]);
    let mut c = server.client();
    let post = |c: &mut Client, path: &str, body: serde_json::Value| {
        c.request("POST", path, &[], &serde_json::to_vec(&body).unwrap())
    };
    let r = post(&mut c, "/leases", json!({"ttl": "30s"}));
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["id"].as_u64().unwrap();
    let r = post(
        &mut c,
        &format!("/put/held?lease={id}"),
        json!({"value": 1}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = post(&mut c, "/put/brief?ttl=5s", json!({"value": 2}));
    assert_eq!(r.status, 200, "{}", r.text());

    cluster.kill_primary();
    cluster.promote_standby();
    let kept = poll_until(Duration::from_secs(60), || {
        c.try_request("POST", &format!("/leases/{id}/keepalive"), &[], b"")
            .is_ok_and(|r| r.status == 200)
    });
    assert!(kept, "no keepalive succeeded after the failover");
    assert_eq!(
        c.get(&format!("/leases/{id}")).json()["keys"],
        json!(["held"])
    );
    let expired = poll_until(Duration::from_secs(30), || {
        c.get("/get/brief")
            .detail()
            .contains("expired at version 2")
    });
    assert!(
        expired,
        "the key with a TTL never expired after the failover"
    );
    let versions = c.get("/history/brief").json()["versions"].clone();
    assert_eq!(versions.as_array().unwrap().len(), 2, "{versions}");
    assert_eq!(c.get("/get/held").status, 200);
    let r = c.request("DELETE", &format!("/leases/{id}"), &[], b"");
    assert_eq!(r.json()["expired_keys"], 1, "{}", r.text());
}
