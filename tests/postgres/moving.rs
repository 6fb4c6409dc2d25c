//! Moving data in and out of PostgreSQL (issue 11, point 10): `vkv copy`
//! both ways with every version, timestamp and tombstone; `vkv check` on a
//! PostgreSQL store; `GET /backup` in PostgreSQL mode giving the SQLite
//! snapshot format, from one consistent database snapshot.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::*;
use crate::{admin, fresh_database};

fn vkv_ok(args: &[&str]) -> String {
    let out = run(args);
    let text = output_text(&out);
    assert!(out.status.success(), "vkv {args:?}: {text}");
    text
}

fn vkv_fails(args: &[&str]) -> String {
    let out = run(args);
    let text = output_text(&out);
    assert!(!out.status.success(), "vkv {args:?} succeeded: {text}");
    text
}

fn arg(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Writes a mix of versions, retention, tombstones, a purge and a batch
/// through `c`; returns the keys as they appear in paths.
fn write_mix(c: &mut Client) -> Vec<String> {
    for i in 0..5 {
        assert_eq!(c.put("a", &json!({ "i": i })).status, 200);
    }
    for i in 0..2 {
        assert_eq!(c.put("b", &json!(i)).status, 200);
    }
    assert_eq!(c.request("DELETE", "/delete/b", &[], b"").status, 200);
    assert_eq!(c.put("c", &json!("purged")).status, 200);
    assert_eq!(
        c.request("DELETE", "/delete/c?purge=true", &[], b"").status,
        200
    );
    assert_eq!(c.put("x/%C3%BC%20y", &json!([1, "two", null])).status, 200);
    let puts: Vec<_> = (0..20)
        .map(|i| json!({ "key": format!("batch-{i:02}"), "value": { "n": i } }))
        .collect();
    let body = serde_json::to_vec(&json!({ "puts": puts })).unwrap();
    assert_eq!(c.request("POST", "/batch", &[], &body).status, 200);
    let mut keys: Vec<String> = ["a", "b", "c", "x/%C3%BC%20y"].map(String::from).to_vec();
    keys.extend((0..20).map(|i| format!("batch-{i:02}")));
    keys
}

#[test]
fn copy_postgres_to_sqlite_and_back_keeps_every_version_and_timestamp() {
    let (_, first) = fresh_database();
    let (_, second) = fresh_database();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("from-pg.db");

    let s1 = Server::start_on(&first, &["--max-versions", "3"]);
    let mut c = s1.client();
    let keys = write_mix(&mut c);
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let before = observe(&mut c, &keys);
    let totals = db_totals(&mut c);
    assert_eq!(totals, (23, 27));

    // PostgreSQL (served meanwhile) -> SQLite -> another PostgreSQL database.
    let text = vkv_ok(&["copy", "--from", arg(&first), "--to", arg(&file)]);
    assert!(text.contains("copied 23 keys and 27 versions"), "{text}");
    assert!(!text.contains(&admin_password()), "password in {text}");
    vkv_ok(&["check", "--db", arg(&file)]);
    let text = vkv_ok(&["copy", "--from", arg(&file), "--to", arg(&second)]);
    assert!(text.contains("copied 23 keys and 27 versions"), "{text}");
    let text = vkv_ok(&["check", "--db", arg(&second)]);
    assert!(text.contains("23 keys, 27 versions: ok"), "{text}");

    let s2 = Server::start_on(&second, &["--max-versions", "3"]);
    let mut c2 = s2.client();
    let after = observe(&mut c2, &keys);
    assert_eq!(before.len(), after.len());
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(b, a);
    }
    assert_eq!(db_totals(&mut c2), totals);
    assert_eq!(c2.get("/get/a?version=1").status, 410);
    assert_eq!(c2.put("a", &json!(6)).json()["version"], 6);
    assert_eq!(c2.put("b", &json!("back")).json()["version"], 4);
    // A purged key's numbering too (through SQLite and back): it had 1.
    assert_eq!(c2.put("c", &json!("again")).json()["version"], 2);

    // A non-empty PostgreSQL destination is refused unless --force.
    let text = vkv_fails(&["copy", "--from", arg(&file), "--to", arg(&second)]);
    assert!(
        text.contains("not empty") && text.contains("--force"),
        "{text}"
    );
    assert_eq!(c2.get("/get/a").json()["version"], 6);
}

fn admin_password() -> String {
    let admin = admin();
    let userinfo = admin
        .split("://")
        .nth(1)
        .unwrap()
        .split('@')
        .next()
        .unwrap();
    userinfo
        .split(':')
        .nth(1)
        .unwrap_or("no password")
        .to_string()
}

#[test]
fn check_on_postgres_names_each_problem() {
    let (name, url) = fresh_database();
    {
        let s = Server::start_on(&url, &[]);
        let mut c = s.client();
        for k in ["a", "b", "c"] {
            for i in 0..3 {
                assert_eq!(c.put(k, &json!(i)).status, 200);
            }
        }
        let text = vkv_ok(&["check", "--db", arg(&url)]);
        assert!(text.contains("3 keys, 9 versions: ok"), "{text}");
    }
    let db = pg_url_for(&admin(), &name);
    psql(
        &db,
        "DELETE FROM vkv_versions WHERE key = 'b'::bytea AND version = 2;
         UPDATE vkv_versions SET value = 'not json' WHERE key = 'c'::bytea AND version = 1;
         UPDATE vkv_counters SET versions = versions + 5 WHERE shard = 7;
         INSERT INTO vkv_versions (key, version, ts_ms, value) VALUES ('orphan'::bytea, 1, 0, '1');",
    );
    let text = vkv_fails(&["check", "--db", arg(&url)]);
    for expected in [
        "key \"b\": version 3 follows version 1",
        "key \"c\": version 1 is not valid JSON",
        "counter \"versions\" says",
        "key \"orphan\": 1 versions stored but no row in the keys table",
    ] {
        assert!(text.contains(expected), "{expected:?} not in {text}");
    }
    assert!(!text.contains(&admin_password()), "password in {text}");
}

#[test]
fn backup_in_postgres_mode_is_a_consistent_sqlite_snapshot() {
    let (_, url) = fresh_database();
    let s = Server::start_on(&url, &[]);
    let mut c = s.client();
    for i in 0..2000 {
        assert_eq!(c.put(&format!("pre-{}", i % 100), &json!(i)).status, 200);
    }
    // Writers on ten keys go on during the backup.
    let acks: Arc<Mutex<Vec<(String, u64, u64)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..3)
        .map(|t| {
            let (acks, stop, addr) = (Arc::clone(&acks), Arc::clone(&stop), s.addr);
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                let mut i = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    let key = format!("w{t}-{}", i % 10);
                    let r = c.put(&key, &json!(i));
                    assert_eq!(r.status, 200, "{}", r.text());
                    acks.lock()
                        .unwrap()
                        .push((key, r.json()["version"].as_u64().unwrap(), i));
                    i += 1;
                }
            })
        })
        .collect();
    assert!(poll_until(Duration::from_secs(30), || acks
        .lock()
        .unwrap()
        .len()
        >= 100));
    let before = acks.lock().unwrap().clone();
    let r = c.get("/backup");
    let after_count = acks.lock().unwrap().len();
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.join().unwrap();
    }
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/vnd.sqlite3"));
    assert!(r.body.starts_with(b"SQLite format 3\0"));
    assert!(
        after_count > before.len(),
        "no write was acknowledged while the backup was taken"
    );
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("snap.db");
    std::fs::write(&snap, &r.body).unwrap();
    // One snapshot: heads, versions and counters agree although writes went
    // on while it was read.
    let text = vkv_ok(&["check", "--db", arg(&snap)]);
    assert!(text.contains(": ok"), "{text}");
    // The format `vkv restore` reads ...
    let restored = dir.path().join("restored.db");
    vkv_ok(&["restore", arg(&snap), "--db", arg(&restored)]);
    // ... and `vkv copy` reads, into PostgreSQL again.
    let (_, back) = fresh_database();
    vkv_ok(&["copy", "--from", arg(&snap), "--to", arg(&back)]);
    let b = Server::start_on(&back, &[]);
    let mut bc = b.client();
    for (key, version, i) in &before {
        let got = bc.get(&format!("/get/{key}?version={version}"));
        assert_eq!(got.status, 200, "{key} v{version}: {}", got.text());
        assert_eq!(got.json()["value"], json!(i), "{key} v{version}");
    }
    for k in 0..100 {
        assert_eq!(bc.get(&format!("/get/pre-{k}")).json()["version"], 20);
    }
    let (_, versions) = db_totals(&mut bc);
    assert!(versions >= 2000 + before.len() as u64);
    assert!(versions <= 2000 + after_count as u64);
    // Nothing left in the temporary directory.
    let leftovers: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("vkv.backup-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
