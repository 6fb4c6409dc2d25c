//! Durability across restarts, graceful stop, and one server per file.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::common::{Client, Server, db_totals, json, output_text, poll_until, run};

#[test]
fn every_version_survives_sigkill_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("kv.db");
    let mut s = Server::start_on(&db, &[]);
    let mut c = s.client();
    for k in 0..5 {
        for v in 1..=4 {
            assert_eq!(
                c.put(&format!("key{k}"), &json!([k, v])).json()["version"],
                v
            );
        }
    }
    s.kill();
    let s = Server::start_on(&db, &[]);
    let mut c = s.client();
    for k in 0..5 {
        assert_eq!(c.get(&format!("/get/key{k}")).json()["version"], 4);
        for v in 1..=4 {
            assert_eq!(
                c.get(&format!("/get/key{k}?version={v}")).json()["value"],
                json!([k, v])
            );
        }
    }
    // Numbering continues after the restart.
    assert_eq!(c.put("key0", &json!(0)).json()["version"], 5);
    assert_eq!(db_totals(&mut c), (5, 21));
}

#[test]
fn sigterm_during_writes_exits_zero_and_keeps_every_ack() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("kv.db");
    let mut s = Server::start_on(&db, &[]);
    let progress: Arc<Vec<AtomicUsize>> = Arc::new((0..4).map(|_| AtomicUsize::new(0)).collect());
    let writers: Vec<_> = (0..4)
        .map(|t| {
            let (addr, progress) = (s.addr, Arc::clone(&progress));
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                let Ok(mut c) = Client::try_connect(addr) else {
                    return acked;
                };
                for i in 0.. {
                    // Once the server stops, requests fail: stop there.
                    match c.try_put(&format!("w{t}"), &json!(i)) {
                        Ok(r) if r.status == 200 => {
                            acked.push((r.json()["version"].as_u64().unwrap(), i));
                            progress[t].fetch_add(1, Ordering::SeqCst);
                        }
                        _ => break,
                    }
                }
                acked
            })
        })
        .collect();
    // Stop while every writer is writing.
    poll_until(Duration::from_secs(30), || {
        progress.iter().all(|n| n.load(Ordering::SeqCst) >= 3)
    });
    let status = s.terminate();
    assert!(status.success(), "exit status {status:?}\n{}", s.log_text());
    let acked: Vec<_> = writers.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(
        acked.iter().all(|a| !a.is_empty()),
        "some writer never got an ack"
    );
    let s = Server::start_on(&db, &[]);
    let mut c = s.client();
    for (t, acks) in acked.iter().enumerate() {
        for (v, i) in acks {
            assert_eq!(
                c.get(&format!("/get/w{t}?version={v}")).json()["value"],
                json!(i)
            );
        }
    }
}

#[test]
fn a_second_server_on_the_same_file_refuses_to_start() {
    if crate::common::sqlite_only(
        "the lock on the SQLite file; replicas share a PostgreSQL database",
    ) {
        return;
    }
    let s = Server::start(&[]);
    let Err((status, log)) = Server::try_start_on(&s.db, &[], &[]) else {
        panic!("second server started");
    };
    assert!(!status.map(|s| s.success()).unwrap_or(true));
    let log = log.join("\n");
    assert!(log.contains("in use by another vkv process"), "{log}");
}

/// The lock is on the file, not on a name: a hard link or a symlink to a
/// served database is refused too, naming the process that holds it.
#[test]
fn a_second_server_through_a_hard_link_or_symlink_refuses_to_start() {
    if crate::common::sqlite_only("links to the SQLite file") {
        return;
    }
    let s = Server::start(&[]);
    let mut c = s.client();
    assert_eq!(c.put("k", &json!("first")).status, 200);
    let dir = tempfile::tempdir().unwrap();
    let hard = dir.path().join("hard.db");
    std::fs::hard_link(&s.db, &hard).unwrap();
    let soft = dir.path().join("alias.db");
    std::os::unix::fs::symlink(&s.db, &soft).unwrap();
    let real = std::fs::canonicalize(&s.db).unwrap();
    for (name, names_real) in [(&hard, false), (&soft, true)] {
        let Err((status, log)) = Server::try_start_on(name, &[], &[]) else {
            panic!("a second server started on {}", name.display());
        };
        assert!(!status.map(|s| s.success()).unwrap_or(true));
        let log = log.join("\n");
        assert!(log.contains("in use by another vkv process"), "{log}");
        assert!(
            log.contains(&format!("pid {} holds the lock", s.pid())),
            "{log}"
        );
        if names_real {
            assert!(log.contains(&real.display().to_string()), "{log}");
        }
    }
    // `vkv restore` through a link is refused the same way.
    let snapshot = dir.path().join("snap.db");
    let r = c.get("/backup");
    assert_eq!(r.status, 200);
    std::fs::write(&snapshot, &r.body).unwrap();
    for name in [&hard, &soft] {
        let out = run(&[
            "restore",
            snapshot.to_str().unwrap(),
            "--db",
            name.to_str().unwrap(),
            "--force",
        ]);
        assert!(!out.status.success());
        let text = output_text(&out);
        assert!(
            text.contains(&format!("pid {} holds the lock", s.pid())),
            "{text}"
        );
    }
    // The first server is untouched and still the only writer.
    assert_eq!(c.put("k", &json!("second")).status, 200);
    assert_eq!(c.get("/get/k").json()["version"], 2);
}

#[test]
fn a_foreign_or_corrupt_file_is_refused_with_its_name() {
    if crate::common::sqlite_only("a junk SQLite file") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, vec![b'x'; 8192]).unwrap();
    let Err((status, log)) = Server::try_start_on(&junk, &[], &[]) else {
        panic!("started on a junk file");
    };
    assert!(!status.map(|s| s.success()).unwrap_or(true));
    let log = log.join("\n");
    assert!(
        log.contains("junk.db") && log.contains("not a database"),
        "{log}"
    );
}
