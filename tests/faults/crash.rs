//! SIGKILL under write load, at random moments, several times on the same
//! database: every acknowledged write survives with its version and value,
//! versions stay dense from 1, and the counters stay exact.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::common::{Client, Rng, Server, db_totals, history, json, shared};

const WRITERS: u64 = 4;
const KEYS_PER_WRITER: u64 = 3;
const CYCLES: usize = 4;

fn key(writer: u64, seq: u64) -> String {
    format!("w{writer}-k{}", seq % KEYS_PER_WRITER)
}

/// What one writer saw in one cycle.
#[derive(Default)]
struct Seen {
    /// (key, version, seq) of every 200.
    acked: Vec<(String, u64, u64)>,
    /// The write sent when the connection broke: it may or may not have
    /// committed.
    in_flight: Option<(String, u64)>,
    /// Anything but a 200 or a broken connection.
    errors: Vec<String>,
}

/// PUTs `{"w": writer, "seq": n}` for n = `first`.. on one keep-alive
/// connection until the connection breaks (the server was killed) or `stop`.
fn write_until_broken(addr: SocketAddr, writer: u64, first: u64, stop: &AtomicBool) -> Seen {
    let mut seen = Seen::default();
    let Ok(mut c) = Client::try_connect(addr) else {
        return seen;
    };
    for seq in first.. {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let k = key(writer, seq);
        match c.try_put(&k, &json!({"w": writer, "seq": seq})) {
            Ok(r) if r.status == 200 => {
                let version = r.json()["version"].as_u64().unwrap_or(0);
                seen.acked.push((k, version, seq));
            }
            Ok(r) => {
                seen.errors
                    .push(format!("PUT {k}: {} {}", r.status, r.text()));
                break;
            }
            Err(_) => {
                seen.in_flight = Some((k, seq));
                break;
            }
        }
    }
    seen
}

/// Everything acknowledged so far, and the writes that may have landed.
#[derive(Default)]
struct Ledger {
    /// key -> version -> seq.
    acked: BTreeMap<String, BTreeMap<u64, u64>>,
    /// key -> seqs sent but never answered.
    maybe: BTreeMap<String, Vec<u64>>,
    /// key -> versions whose values were already checked.
    checked: BTreeMap<String, u64>,
}

/// Checks the restarted server against the ledger: density from 1, every
/// ack at its version with its value, nothing that was never sent, exact
/// counters. Values are fetched for versions not checked yet (`all`: every
/// version).
fn verify(c: &mut Client, ledger: &mut Ledger, all: bool) -> u64 {
    let mut total_versions = 0;
    let mut keys = 0;
    for w in 0..WRITERS {
        for k in 0..KEYS_PER_WRITER {
            let key = key(w, k);
            let acked = ledger.acked.get(&key).cloned().unwrap_or_default();
            if acked.is_empty() && !ledger.maybe.contains_key(&key) {
                continue;
            }
            let versions = history(c, &key);
            let n = versions.len() as u64;
            assert_eq!(
                versions,
                (1..=n).collect::<Vec<_>>(),
                "{key}: versions are not dense from 1"
            );
            let last_acked = acked.keys().next_back().copied().unwrap_or(0);
            assert!(
                n >= last_acked,
                "{key}: acked version {last_acked} lost (latest is {n})"
            );
            // Only a write left in flight by a kill may add a version.
            let unacked = n - acked.len() as u64;
            let in_flight = ledger.maybe.get(&key).map_or(0, Vec::len) as u64;
            assert!(
                unacked <= in_flight,
                "{key}: {unacked} unacknowledged versions but only {in_flight} writes in flight"
            );
            let from = if all {
                1
            } else {
                ledger.checked.get(&key).copied().unwrap_or(0) + 1
            };
            let mut last_seq = None;
            for v in from..=n {
                let r = c.get(&format!("/get/{key}?version={v}"));
                assert_eq!(r.status, 200, "{key} v{v}: {}", r.text());
                let value = r.json()["value"].clone();
                assert_eq!(value["w"], json!(w), "{key} v{v}: {value}");
                let seq = value["seq"].as_u64().expect("seq");
                match acked.get(&v) {
                    Some(&want) => assert_eq!(seq, want, "{key} v{v}: acked seq {want}"),
                    None => assert!(
                        ledger.maybe.get(&key).is_some_and(|m| m.contains(&seq)),
                        "{key} v{v}: seq {seq} was neither acked nor in flight"
                    ),
                }
                assert!(
                    last_seq.is_none_or(|l| l < seq),
                    "{key} v{v}: seq {seq} out of order"
                );
                last_seq = Some(seq);
            }
            ledger.checked.insert(key, n);
            total_versions += n;
            keys += 1;
        }
    }
    assert_eq!(
        db_totals(c),
        (keys, total_versions),
        "/db/stats counters disagree with the histories"
    );
    total_versions
}

#[test]
fn sigkill_under_write_load_keeps_every_ack_dense_and_exact() {
    let _g = shared();
    let started = Instant::now();
    let mut rng = Rng::from_time("sigkill_under_write_load");
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("kv.db");
    let mut ledger = Ledger::default();
    let mut next_seq = [0u64; WRITERS as usize];
    for cycle in 0..CYCLES {
        // Both durability modes must survive a process crash.
        let sync = if cycle % 2 == 0 { "full" } else { "normal" };
        let mut server = Server::start_on(&db, &["--sync", sync]);
        if cycle > 0 {
            verify(&mut server.client(), &mut ledger, false);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let (addr, first, stop) = (server.addr, next_seq[w as usize], Arc::clone(&stop));
                std::thread::spawn(move || write_until_broken(addr, w, first, &stop))
            })
            .collect();
        let delay = Duration::from_millis(rng.range(200, 1100));
        std::thread::sleep(delay);
        server.kill();
        // Writers whose connection the kill did not break stop on the flag.
        stop.store(true, Ordering::Relaxed);
        let mut acks = 0;
        for (w, h) in writers.into_iter().enumerate() {
            let seen = h.join().expect("writer thread");
            assert!(seen.errors.is_empty(), "writer {w}: {:?}", seen.errors);
            for (k, version, seq) in &seen.acked {
                let prev = ledger
                    .acked
                    .entry(k.clone())
                    .or_default()
                    .insert(*version, *seq);
                assert!(prev.is_none(), "{k}: version {version} acked twice");
                next_seq[w] = next_seq[w].max(seq + 1);
            }
            if let Some((k, seq)) = seen.in_flight {
                ledger.maybe.entry(k).or_default().push(seq);
                next_seq[w] = next_seq[w].max(seq + 1);
            }
            acks += seen.acked.len();
        }
        println!("cycle {cycle}: --sync {sync}, killed after {delay:?}, {acks} acks");
        assert!(
            acks > 0,
            "cycle {cycle}: no write was acknowledged before the kill"
        );
    }
    let server = Server::start_on(&db, &[]);
    let mut c = server.client();
    let total = verify(&mut c, &mut ledger, true);
    // Numbering continues after the last crash.
    let k = key(0, 0);
    let latest = history(&mut c, &k).len() as u64;
    let r = c.put(&k, &json!({"w": 0, "seq": u64::MAX}));
    assert_eq!(r.json()["version"], json!(latest + 1));
    println!(
        "{CYCLES} kills, {total} versions verified in {:?}",
        started.elapsed()
    );
}
