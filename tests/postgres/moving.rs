//! Moving data in and out of PostgreSQL (issue 11, point 10): `vkv copy`
//! both ways with every version, timestamp and tombstone; `vkv check` on a
//! PostgreSQL store; `GET /backup` in PostgreSQL mode giving the SQLite
//! snapshot format, from one consistent database snapshot.

use std::path::Path;

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

    // A PostgreSQL destination that a replica serves is refused (a
    // non-empty one with no replica is refused unless --force: see
    // copy_into_a_database_served_by_replicas_is_refused_naming_them).
    let text = vkv_fails(&["copy", "--from", arg(&file), "--to", arg(&second)]);
    assert!(text.contains("served by running vkv replicas"), "{text}");
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
        // Issue 21, item 14: the schema version is the database's (it
        // said 1).
        assert!(text.contains(": schema version 6, "), "{text}");
    }
    let db = pg_url_for(&admin(), &name);
    psql(
        &db,
        "DELETE FROM vkv_versions WHERE key = 'b'::bytea AND version = 2;
         UPDATE vkv_versions SET value = 'not json' WHERE key = 'c'::bytea AND version = 1;
         UPDATE vkv_counters SET versions = versions + 5 WHERE shard = 7;
         UPDATE vkv_versions SET revision = 1, seq = 1 WHERE key = 'a'::bytea AND version = 3;
         INSERT INTO vkv_versions (key, version, ts_ms, value) VALUES ('orphan'::bytea, 1, 0, '1');",
    );
    let text = vkv_fails(&["check", "--db", arg(&url)]);
    for expected in [
        "key \"b\": version 3 follows version 1",
        "key \"c\": version 1 is not valid JSON",
        "counter \"versions\" says",
        "key \"orphan\": 1 versions stored but no row in the keys table",
        "key \"a\": version 3 has revision 1, below version 2's",
        "key \"orphan\": a change has no revision",
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
    let writers = Writers::start(s.addr);
    writers.wait_for(100);
    let before = writers.acks();
    let r = c.get("/backup");
    let after_count = writers.acks().len();
    writers.stop();
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
    for (key, version, i, _) in &before {
        let got = bc.get(&format!("/get/{key}?version={version}"));
        assert_eq!(got.status, 200, "{key} v{version}: {}", got.text());
        let written = Writers::value(key, *i);
        assert_eq!(got.json()["value"], written, "{key} v{version}");
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

#[test]
fn restore_refuses_a_postgresql_target_and_says_to_copy() {
    let _serial = crate::common::shared();
    let (_, url) = fresh_database();
    let dir = tempfile::tempdir().unwrap();
    let snapshot = dir.path().join("snap.db");
    std::fs::write(&snapshot, b"").unwrap();
    let text = vkv_fails(&["restore", arg(&snapshot), "--db", arg(&url)]);
    assert!(text.contains("replaces a SQLite file"), "{text}");
    assert!(text.contains("vkv copy"), "{text}");
}

/// Issue 21, item 14: the PostgreSQL build's `--help` says `--db` also
/// takes a PostgreSQL URL (it said "SQLite database file" only).
#[test]
fn help_says_db_takes_a_postgres_url() {
    for args in [&["--help"][..], &["check", "--help"]] {
        let text = vkv_ok(args);
        let db = text
            .split("--db <DB>")
            .nth(1)
            .unwrap_or_else(|| panic!("no --db in {text}"));
        let db = db.split("\n      --").next().unwrap();
        assert!(
            db.contains("SQLite database file") && db.contains("postgres://"),
            "vkv {args:?}, --db: {db}"
        );
    }
}

/// Issue 21, item 3: `vkv copy --force` into a database that live replicas
/// serve is refused, naming them: the load notifies nobody, and a replica
/// went on answering its cached version 31 after the copy and after puts.
/// A replica with a read lease is named by its lease row; one without
/// leases (`--read-lease 0`, which confirms reads by version number only)
/// by its LISTEN connection. Nothing is written; once they are stopped the
/// copy goes through.
#[test]
fn copy_into_a_database_served_by_replicas_is_refused_naming_them() {
    let (_, source) = fresh_database();
    let (name, target) = fresh_database();
    let src = Server::start_on(&source, &[]);
    assert_eq!(src.client().put("k", &json!("copied")).status, 200);
    let mut leased = Server::start_on(&target, &[]);
    let mut plain = Server::start_on(&target, &["--read-lease", "0"]);
    let mut c = leased.client();
    for i in 0..31 {
        assert_eq!(c.put("k", &json!(i)).status, 200);
    }
    assert_eq!(c.get("/get/k").json()["version"], 31);
    let db = pg_url_for(&admin(), &name);
    let held = poll_until(std::time::Duration::from_secs(10), || {
        psql(
            &db,
            "SELECT count(*) FROM vkv_replicas WHERE lease_until > clock_timestamp()",
        ) == "1"
    });
    assert!(held, "the leased replica holds no lease");
    let id = psql(&db, "SELECT id FROM vkv_replicas");
    let args = [
        "copy",
        "--force",
        "--from",
        arg(&source),
        "--to",
        arg(&target),
    ];
    let text = vkv_fails(&args);
    assert!(
        text.contains("is served by running vkv replicas")
            && text.contains(&format!("replica {id} holds a read lease until")),
        "{text}"
    );
    // Both replicas' LISTEN connections are named.
    assert_eq!(text.matches("a vkv listening from").count(), 2, "{text}");
    assert!(!text.contains(&admin_password()), "password in {text}");
    assert_eq!(c.get("/get/k").json()["version"], 31);
    assert_eq!(plain.client().get("/get/k").json()["version"], 31);

    // The leased one stopped: its lease row went with it (writers elsewhere
    // do not wait it out), and the other one (no lease) still refuses it.
    assert!(leased.terminate().success());
    assert_eq!(
        psql(
            &db,
            &format!("SELECT count(*) FROM vkv_replicas WHERE id = {id}")
        ),
        "0",
        "a cleanly stopped replica left its lease row"
    );
    let text = vkv_fails(&args);
    assert!(
        !text.contains("replica ") && text.matches("a vkv listening from").count() == 1,
        "{text}"
    );
    assert!(plain.terminate().success());
    // No replica now: a non-empty destination still needs --force.
    let text = vkv_fails(&["copy", "--from", arg(&source), "--to", arg(&target)]);
    assert!(
        text.contains("not empty") && text.contains("--force"),
        "{text}"
    );
    let text = vkv_ok(&args);
    assert!(text.contains("copied 1 keys and 1 versions"), "{text}");
    let s = Server::start_on(&target, &[]);
    let got = s.client().get("/get/k").json();
    assert_eq!(
        (got["value"].clone(), got["version"].clone()),
        (json!("copied"), json!(1))
    );
}
