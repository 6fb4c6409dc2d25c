//! The command-line client on two replicas (`--endpoints A,B`): a script
//! goes on, with every command succeeding, while a replica is stopped,
//! killed and restarted under it.

use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::common::{Server, output_text, run};
use crate::fresh_database;

/// `vkv ARGS --endpoints ENDPOINTS`.
fn vkv(endpoints: &str, args: &[&str]) -> Output {
    let mut all = args.to_vec();
    all.extend(["--endpoints", endpoints]);
    run(&all)
}

#[track_caller]
fn ok(out: &Output) -> String {
    assert!(out.status.success(), "{}", output_text(out));
    assert!(out.stderr.is_empty(), "{}", output_text(out));
    String::from_utf8_lossy(&out.stdout).trim_end().to_string()
}

#[test]
fn a_script_goes_on_through_a_replica_stopped_and_restarted_mid_way() {
    let _serial = crate::common::shared();
    let (_, url) = fresh_database();
    let mut a = Server::start_on(&url, &[]);
    let mut b = Server::start_on(&url, &[]);
    let a_addr = a.addr.to_string();
    let endpoints = format!("http://{},http://{}", a.addr, b.addr);
    let mut restarted_a = None;
    for i in 0..30u64 {
        match i {
            // A stops (SIGTERM, as an orchestrator stops it): B serves.
            10 => assert!(a.terminate().success()),
            // A comes back on its address; B is killed outright.
            20 => {
                restarted_a = Some(Server::start_on(&url, &["--bind", &a_addr]));
                b.kill();
            }
            _ => {}
        }
        let put = ok(&vkv(&endpoints, &["put", "counter", &i.to_string()]));
        let verb = if i == 0 { "created" } else { "updated" };
        let prep = if i == 0 { "at" } else { "to" };
        assert_eq!(put, format!("{verb} counter {prep} version {}", i + 1));
        assert_eq!(ok(&vkv(&endpoints, &["get", "counter"])), i.to_string());
    }
    let history = ok(&vkv(&endpoints, &["history", "counter"]));
    assert_eq!(history.lines().count(), 30, "{history}");
    drop(restarted_a);
}

#[test]
fn reads_in_flight_when_a_replica_is_killed_go_to_the_other() {
    let _serial = crate::common::shared();
    let (_, url) = fresh_database();
    let mut a = Server::start_on(&url, &[]);
    let b = Server::start_on(&url, &[]);
    let endpoints = format!("http://{},http://{}", a.addr, b.addr);
    ok(&vkv(&endpoints, &["put", "k", "0"]));
    let written = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    // A script reading in a loop: every read succeeds and is never older
    // than the last write acknowledged before it started.
    let reader = {
        let (written, stop, endpoints) =
            (Arc::clone(&written), Arc::clone(&stop), endpoints.clone());
        std::thread::spawn(move || {
            let mut reads = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let before = written.load(Ordering::SeqCst);
                let got: u64 = ok(&vkv(&endpoints, &["get", "k"])).parse().unwrap();
                assert!(got >= before, "read {got} after {before} was written");
                reads += 1;
            }
            reads
        })
    };
    for i in 1..=40u64 {
        if i == 20 {
            a.kill();
        }
        ok(&vkv(&endpoints, &["put", "k", &i.to_string()]));
        written.store(i, Ordering::SeqCst);
    }
    stop.store(true, Ordering::SeqCst);
    let reads = reader.join().unwrap();
    assert!(reads >= 10, "only {reads} reads ran alongside");
    assert_eq!(ok(&vkv(&endpoints, &["get", "k"])), "40");
}
