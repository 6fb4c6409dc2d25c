//! A Jepsen-style checker of vkv replicas over PostgreSQL (issue 19): many
//! clients put, get (latest, `?version=`, `If-None-Match`, long polls),
//! delete, purge and put conditionally on a few hot keys through two or
//! three replicas while a schedule of faults runs (replicas frozen and
//! killed, PostgreSQL connections terminated by kind, PostgreSQL
//! restarted, tables locked, connection slots taken); every operation is
//! recorded and each key's history checked (`check.rs`). Plus one targeted
//! test per defect the issue found (`defects.rs`).
//!
//! Needs the `postgres` feature and Debian's `postgresql` package; each
//! test starts its own PostgreSQL server (it restarts it) in a temporary
//! directory, as the `postgres` user when run as root:
//!
//! ```sh
//! cargo test --features postgres --test checker -- --nocapture
//! ```
//!
//! - `VKV_CHECKER_SECONDS`: the fault schedule's length, in total over the
//!   two checker runs (leases on, `--read-lease 0`); default 40.
//! - `VKV_CHECKER_REPLICAS`: replicas per run (2 or 3; default 3).
//! - `VKV_CHECKER_READERS`: read-only clients per replica (default 1);
//!   more for a run that checks millions of reads. On a 2-core machine,
//!   two or more saturate the CPUs, and write stalls then measure the
//!   machine as much as vkv (docs/scaling.md, after the timeouts).
//! - `VKV_CHECKER_MAX_STALL_MS`: the longest a healthy replica may go
//!   without completing a write while another is frozen or killed, and
//!   until the next fault begins (default: one lease, at least 1 s, plus
//!   1 s for the commit on this shared machine). The time some task
//!   waited on the disk meanwhile (`/proc/pressure/io`: commits flushing,
//!   or a virtual disk that stops) is not counted, and is reported.
//! - `VKV_CHECKER_FAULTS`: only these kinds of fault, comma-separated
//!   (`freeze`, `kill`, `terminate`, `restart`, `lock`, `slots`), to chase
//!   one; default all.
//! - `VKV_TEST_BIN`: the vkv binary to run (default: this build's), e.g.
//!   `target/release/vkv` built with `--features postgres`, so that the
//!   stalls measured are the product's and not a debug build's.
//! - `VKV_TEST_SEED`: replays a run's random choices (printed at start).
#![cfg(feature = "postgres")]

mod check;
mod cluster;
#[path = "../support/mod.rs"]
mod common;
mod defects;
mod faults;
mod history;
#[path = "../support/pg.rs"]
mod pg;
mod workload;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use check::Finals;
use cluster::{Db, Replica};
use history::{Clock, Conn, History, Kind, Op, Outcome, perform};
use workload::{Clients, Keys, Rng, Workload};

/// Hot keys: few, so that writers collide and caches hold them.
const HOT_KEYS: usize = 6;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn seed(test: &str) -> u64 {
    let seed = env_u64(
        "VKV_TEST_SEED",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64),
    );
    println!("{test}: seed {seed} (replay with VKV_TEST_SEED={seed})");
    seed
}

#[test]
fn checker_with_read_leases() {
    run_checker("checker_with_read_leases", "1s", Duration::from_secs(1));
}

#[test]
fn checker_without_read_leases() {
    run_checker("checker_without_read_leases", "0", Duration::ZERO);
}

/// One run: replicas with `--read-lease LEASE` under load and faults for
/// half of `VKV_CHECKER_SECONDS`, then the checks.
fn run_checker(test: &str, lease_flag: &str, lease: Duration) {
    let _serial = common::exclusive();
    let seconds = env_u64("VKV_CHECKER_SECONDS", 40) / 2;
    let n = env_u64("VKV_CHECKER_REPLICAS", 3).clamp(2, 3) as usize;
    let stall_bound = Duration::from_millis(env_u64(
        "VKV_CHECKER_MAX_STALL_MS",
        (lease.max(Duration::from_secs(1)) + Duration::from_secs(1)).as_millis() as u64,
    ));
    let seed = seed(test);
    let mut rng = Rng::new(seed);
    // Few slots, so that taking them is quick; superusers keep 3.
    let db = Db::start("max_connections = 40\n");
    let mut replicas = cluster::replicas(&db, n, &["--read-lease", lease_flag]);
    let addrs: Vec<_> = replicas.iter().map(|r| r.addr).collect();
    let keys = Keys::new(HOT_KEYS, n);
    let clock = Clock::start();
    let clients = Clients {
        roaming: 3,
        sticky_per_replica: 2,
        probes: true,
        readers_per_replica: env_u64("VKV_CHECKER_READERS", 1) as usize,
    };
    let load = Workload::start(&addrs, &keys, clients, clock, rng.next());
    let (began, io_at_start) = (Instant::now(), faults::io_stalled());
    let applied = faults::run(
        &db,
        &mut replicas,
        &clock,
        began + Duration::from_secs(seconds),
        &mut rng,
    );
    faults::heal(&mut replicas);
    let healed = wait_writable(&replicas, Duration::from_secs(30));
    let mut ops = load.stop();
    let ran = began.elapsed();
    let (final_ops, finals, final_errors) = final_reads(&replicas, &keys, &clock);
    ops.extend(final_ops);
    let history = History {
        keys: keys.names.clone(),
        ops,
    };
    let report = check::check(&history, &finals);
    let stalls = faults::stalls(&history.ops, &keys, &applied, n);
    let bound = stall_bound.as_nanos() as u64;

    // The summary.
    let mut summary = format!(
        "{test}: {n} replicas, --read-lease {lease_flag}, {:.1}s of load and faults\n",
        ran.as_secs_f64()
    );
    summary.push_str(&operations_summary(&history.ops));
    summary.push_str(&format!(
        "  reads checked: {}; writes acknowledged {}, unknown {} ({} revealed by reads)\n",
        report.reads_checked, report.writes_acked, report.writes_unknown, report.writes_inferred
    ));
    let mut families: BTreeMap<String, (usize, Vec<String>)> = BTreeMap::new();
    for a in &applied {
        let e = families.entry(a.fault.family()).or_default();
        e.0 += 1;
        if !a.note.is_empty() {
            e.1.push(a.note.clone());
        }
    }
    summary.push_str(&format!("  faults applied: {}\n", applied.len()));
    for (family, (count, notes)) in &families {
        summary.push_str(&format!("    {family}: {count} {}\n", notes.join("; ")));
    }
    let worst = |f: fn(&faults::Stall) -> u64| stalls.iter().map(f).max().unwrap_or(0);
    summary.push_str(&format!(
        "  write stalls on healthy replicas during {} freezes and kills: longest {} on keys only they write, {} on hot keys; \
         less the disk waits, {} (bound {}); disk waits {} in all\n",
        applied.iter().filter(|a| matches!(a.fault, faults::Fault::Freeze { .. } | faults::Fault::Kill { .. })).count(),
        history::secs(worst(|s| s.probe)),
        history::secs(worst(|s| s.hot)),
        history::secs(worst(faults::Stall::net)),
        history::secs(bound),
        history::secs(faults::io_stalled().saturating_sub(io_at_start)),
    ));
    summary.push_str(&format!("  violations: {}\n", report.violations.len()));
    for (class, count) in report.classes() {
        summary.push_str(&format!("    {class}: {count}\n"));
    }
    println!("{summary}");

    let mut failures = String::new();
    if !report.violations.is_empty() {
        failures.push_str(&report.describe(&history, 30));
    }
    let slow = faults::describe_stalls(&stalls, &applied, bound);
    if !slow.is_empty() {
        failures.push_str(&format!(
            "write stalls above {}:\n{slow}",
            history::secs(bound)
        ));
        // What every replica logged around each such fault.
        let mut faults: Vec<usize> = stalls
            .iter()
            .filter(|s| s.net() > bound)
            .map(|s| s.fault)
            .collect();
        faults.dedup();
        for f in faults {
            let a = &applied[f];
            let (from, to) = (a.start.saturating_sub(500_000_000), a.end + 500_000_000);
            failures.push_str(&format!(
                "busy backends through \"{}\":\n  {}\nlogs around it:\n",
                a.fault,
                a.activity.replace('\n', "\n  ")
            ));
            for r in &replicas {
                for line in r.log_between(&clock, from, to).iter().take(40) {
                    failures.push_str(&format!("  replica {}: {line}\n", r.index));
                }
            }
        }
    }
    if !slow.is_empty() {
        // The windows of the stalls above, on the wall clock.
        let wall0 = std::time::SystemTime::now() - Duration::from_nanos(clock.now());
        let windows: Vec<_> = stalls
            .iter()
            .filter(|s| s.net() > bound)
            .map(|s| {
                let (from, to) = (
                    applied[s.fault].start,
                    faults::window_end(&applied, s.fault),
                );
                (
                    wall0 + Duration::from_nanos(from),
                    wall0 + Duration::from_nanos(to),
                )
            })
            .collect();
        let lines = db.slow_statements(Duration::from_millis(1000), &windows, 100);
        failures.push_str(&format!(
            "statements of 1 s or more, lock waits and idle transactions ended, in PostgreSQL's log during those stalls ({}):\n",
            lines.len()
        ));
        for line in lines {
            failures.push_str(&format!("  {line}\n"));
        }
    }
    if let Err(e) = healed {
        failures.push_str(&format!("after the faults: {e}\n"));
    }
    for e in final_errors {
        failures.push_str(&format!("final read: {e}\n"));
    }
    if !failures.is_empty() {
        for r in &replicas {
            let log = r.log_text();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            failures.push_str(&format!(
                "replica {} log (last lines):\n  {}\n",
                r.index,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n  ")
            ));
        }
        panic!("{summary}\n{failures}");
    }
}

/// Counts per kind of operation: all, acknowledged or answered, unknown.
fn operations_summary(ops: &[Op]) -> String {
    let mut per: BTreeMap<&str, [u64; 3]> = BTreeMap::new();
    for op in ops {
        let c = per.entry(op.kind.name()).or_default();
        c[0] += 1;
        match op.outcome {
            Outcome::Unknown(_) => c[2] += 1,
            Outcome::Unexpected(..) => {}
            _ => c[1] += 1,
        }
    }
    let mut out = format!("  operations: {}\n", ops.len());
    for (kind, [all, answered, unknown]) in per {
        out.push_str(&format!(
            "    {kind}: {all} ({answered} answered, {unknown} 503 or no answer)\n"
        ));
    }
    out
}

/// Waits until every replica acknowledges a write.
fn wait_writable(replicas: &[Replica], limit: Duration) -> Result<(), String> {
    let t = Instant::now();
    for r in replicas {
        let mut c = Conn::new(r.addr);
        let mut last = String::new();
        let ok = common::poll_until(limit.saturating_sub(t.elapsed()), || {
            match c.request("POST", "/put/healed", &[], br#"{"value": 1}"#) {
                Ok(resp) if resp.status == 200 => true,
                Ok(resp) => {
                    last = format!("{} {}", resp.status, resp.text());
                    false
                }
                Err(e) => {
                    last = e.to_string();
                    false
                }
            }
        });
        if !ok {
            return Err(format!(
                "replica {} took no write within {limit:?} once the faults stopped (last: {last})",
                r.index
            ));
        }
    }
    Ok(())
}

/// Once the load stopped: the latest of every key on every replica, each
/// key's `/history`, and its last versions' values (all recorded for the
/// checker); plus what could not be read.
fn final_reads(replicas: &[Replica], keys: &Keys, clock: &Clock) -> (Vec<Op>, Finals, Vec<String>) {
    let mut ops = Vec::new();
    let mut finals = Finals::new();
    let mut errors = Vec::new();
    let mut id = 0xffff_u64 << 32;
    let mut conns: Vec<Conn> = replicas.iter().map(|r| Conn::new(r.addr)).collect();
    for (k, name) in keys.names.iter().enumerate() {
        let key = (k as u16, name.as_str());
        for (r, conn) in conns.iter_mut().enumerate() {
            id += 1;
            ops.push(perform(conn, clock, id, key, r as u8, Kind::Get));
        }
        match history_of(&mut conns[0], name) {
            Ok(versions) => {
                for &(v, deleted) in versions.iter().rev().take(100) {
                    if !deleted {
                        id += 1;
                        ops.push(perform(
                            &mut conns[0],
                            clock,
                            id,
                            key,
                            0,
                            Kind::GetVersion(v),
                        ));
                    }
                }
                finals.insert(k as u16, versions);
            }
            Err(e) => errors.push(format!("/history/{name}: {e}")),
        }
    }
    (ops, finals, errors)
}

/// Every version of `key` (version, deleted), oldest first, from all
/// pages of `/history`.
fn history_of(c: &mut Conn, key: &str) -> Result<Vec<(u64, bool)>, String> {
    let mut versions = Vec::new();
    let mut before: Option<u64> = None;
    loop {
        let path = match before {
            Some(b) => format!("/history/{key}?limit=1000&before={b}"),
            None => format!("/history/{key}?limit=1000"),
        };
        let r = c
            .request("GET", &path, &[], b"")
            .map_err(|e| e.to_string())?;
        if r.status == 404 {
            break; // purged, or never written
        }
        if r.status != 200 {
            return Err(format!("{} {}", r.status, r.text()));
        }
        let page: serde_json::Value =
            serde_json::from_slice(&r.body).map_err(|e| format!("not JSON: {e}"))?;
        for v in page["versions"].as_array().ok_or("no versions array")? {
            let n = v["version"].as_u64().ok_or("no version number")?;
            versions.push((n, v["deleted"].as_bool().unwrap_or(false)));
        }
        match page["next_before"].as_u64() {
            Some(b) => before = Some(b),
            None => break,
        }
    }
    versions.reverse();
    Ok(versions)
}
