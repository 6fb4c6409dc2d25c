//! `GET /backup`, `vkv restore` and `vkv check`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common::*;

const SQLITE_MAGIC: &[u8] = b"SQLite format 3\0";

/// Downloads `/backup` into `dest`, checking the headers; returns the size.
fn download(c: &mut Client, dest: &Path) -> usize {
    let r = c.get("/backup");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/vnd.sqlite3"));
    assert_eq!(
        r.header("content-disposition"),
        Some("attachment; filename=\"vkv-backup.db\"")
    );
    assert!(r.body.starts_with(SQLITE_MAGIC), "not a SQLite file");
    std::fs::write(dest, &r.body).unwrap();
    r.body.len()
}

/// Puts `n` versions of 1 KiB values over `keys` keys with batches.
fn preload(c: &mut Client, keys: usize, n: usize) {
    let pad = "x".repeat(1000);
    let mut puts = Vec::new();
    for i in 0..n {
        puts.push(json!({ "key": format!("pre-{}", i % keys), "value": { "i": i, "pad": pad } }));
        if puts.len() == 500 || i + 1 == n {
            let body = serde_json::to_vec(&json!({ "puts": puts })).unwrap();
            let r = c.request("POST", "/batch", &[], &body);
            assert_eq!(r.status, 200, "{}", r.text());
            puts.clear();
        }
    }
}

#[test]
fn backup_during_writes_restores_every_acknowledged_version() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_on(&dir.path().join("kv.db"), &["--sync", "normal"]);
    // Big enough (about 45 MB) that the snapshot takes a while.
    preload(&mut s.client(), 100, 10_000);

    let writers = Writers::start(s.addr);
    writers.wait_for(100);
    // Everything acknowledged before the backup request is sent.
    let before: Vec<Ack> = writers.acks();
    let started = Instant::now();
    let snapshot = dir.path().join("snap.db");
    let size = download(&mut s.client(), &snapshot);
    let finished = Instant::now();
    // Some writes acknowledged after the backup too.
    writers.wait_for(writers.acks().len() + 10);
    let acks = writers.stop();
    let during = acks
        .iter()
        .filter(|a| a.3 > started && a.3 < finished)
        .count();
    eprintln!(
        "snapshot of {size} bytes in {:?}; {during} writes acknowledged meanwhile",
        finished - started
    );
    // Writes were not stopped by the backup.
    assert!(during > 0, "no write was acknowledged during the backup");
    assert!(size > 10_000_000, "snapshot of {size} bytes");

    let restored = dir.path().join("restored.db");
    let out = run(&[
        "restore",
        snapshot.to_str().unwrap(),
        "--db",
        restored.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", output_text(&out));
    let out = run(&["check", "--db", restored.to_str().unwrap()]);
    assert!(out.status.success(), "{}", output_text(&out));

    let r = Server::start_on(&restored, &[]);
    let mut c = r.client();
    for (key, version, i, _) in &before {
        let got = c.get(&format!("/get/{key}?version={version}"));
        assert_eq!(got.status, 200, "{key} v{version}: {}", got.text());
        let written = Writers::value(key, *i);
        assert_eq!(got.json()["value"], written, "{key} v{version}");
    }
    // The preload is whole: each key's 100 versions, the last one intact.
    for k in 0..100 {
        let h = c.get(&format!("/history/pre-{k}?limit=1")).json();
        assert_eq!(h["versions"][0]["version"], 100, "pre-{k}: {h}");
        let last = c.get(&format!("/get/pre-{k}")).json();
        assert_eq!(last["value"]["i"], 9_900 + k, "pre-{k}");
    }
    // Whatever else the snapshot has is a prefix of what was acknowledged.
    let stats = c.get("/db/stats").json();
    let total = stats["total_versions"].as_u64().unwrap();
    assert!(total >= 10_000 + before.len() as u64, "{stats}");
    assert!(total <= 10_000 + acks.len() as u64, "{stats}");
}

#[test]
fn head_backup_sends_no_body_and_streams_keep_framing() {
    let s = Server::start(&[]);
    let mut c = s.client();
    for i in 0..50 {
        assert_eq!(c.put(&format!("k{i}"), &json!(i)).status, 200);
    }
    let head = c.request("HEAD", "/backup", &[], b"");
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-type"), Some("application/vnd.sqlite3"));
    // HEAD takes no snapshot (a full copy of the database), so it cannot
    // know the length and must not send one (RFC 9110 8.6).
    assert_eq!(head.header("content-length"), None, "{:?}", head.headers);
    // Had HEAD sent a body, this would read it as a status line.
    let r = c.get("/get/k7");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["value"], 7);
    assert!(
        !s.log_text().contains("backup snapshot"),
        "HEAD took a snapshot:\n{}",
        s.log_text()
    );
    // A streamed body is exactly Content-Length long: the next response on
    // the same connection starts right after it.
    let dir = tempfile::tempdir().unwrap();
    download(&mut c, &dir.path().join("b.db"));
    assert_eq!(c.get("/get/k8").json()["value"], 8);
    assert!(
        poll_until(Duration::from_secs(10), || s
            .log_text()
            .contains("backup snapshot")),
        "GET took no snapshot?"
    );
    // No temporary file is left next to the database.
    let leftovers: Vec<String> = std::fs::read_dir(s.db.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("backup"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// Names in `dir` containing `part`.
fn files_with(dir: &Path, part: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(part))
        .collect()
}

/// Polls until a file whose name contains `part` appears in `dir`.
fn wait_for_file(dir: &Path, part: &str) {
    assert!(
        poll_until(Duration::from_secs(30), || !files_with(dir, part)
            .is_empty()),
        "no {part} file appeared"
    );
}

/// SIGKILL during `GET /backup` and during `vkv restore` leaves their
/// temporary files (a full copy each); the next start under the database's
/// lock removes them, but not a backup file whose process is still alive.
#[test]
fn files_left_by_a_killed_backup_or_restore_are_removed_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("kv.db");
    let mut s = Server::start_on(&db, &["--sync", "normal"]);
    let mut c = s.client();
    // Big enough (about 15 MB) that copies take a while.
    preload(&mut c, 100, 10_000);
    let snapshot = dir.path().join("snap.db");
    download(&mut c, &snapshot);
    assert!(s.terminate().success());

    // A restore under way when it is killed.
    let mut restore = vkv()
        .args(["restore", snapshot.to_str().unwrap(), "--force", "--db"])
        .arg(&db)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for_file(dir.path(), "kv.db.restore-");
    restore.kill().unwrap();
    restore.wait().unwrap();
    assert!(!files_with(dir.path(), "kv.db.restore-").is_empty());

    let mut s = Server::start_on(&db, &[]);
    let log = s.log_text();
    assert!(log.contains("left by an interrupted restore"), "{log}");
    assert_eq!(files_with(dir.path(), ".tmp"), Vec::<String>::new());

    // A backup under way when the server is killed.
    let addr = s.addr;
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        let mut t = std::net::TcpStream::connect(addr).unwrap();
        let _ = t.write_all(format!("GET /backup HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes());
        let _ = t.read_to_end(&mut Vec::new());
    });
    wait_for_file(dir.path(), "kv.db.backup-");
    s.kill();
    assert!(!files_with(dir.path(), "kv.db.backup-").is_empty());

    // A backup file of a process that is alive (this test) stays.
    let alive = format!("kv.db.backup-{}-7.tmp", std::process::id());
    std::fs::write(dir.path().join(&alive), b"in use").unwrap();

    let s = Server::start_on(&db, &[]);
    let log = s.log_text();
    assert!(log.contains("left by an interrupted backup"), "{log}");
    assert_eq!(files_with(dir.path(), ".tmp"), vec![alive], "{log}");
    // The database is the one the killed restore did not replace.
    let stats = s.client().get("/db/stats").json();
    assert_eq!(stats["total_versions"], 10_000, "{stats}");
}

/// A terminated server's database with keys `a` (3 versions), `b` (2) and
/// `c` (deleted): path of the file, in `dir`.
fn small_db(dir: &Path) -> PathBuf {
    let db = dir.join("small.db");
    let mut s = Server::start_on(&db, &[]);
    let mut c = s.client();
    for (k, n) in [("a", 3), ("b", 2), ("c", 1)] {
        for i in 0..n {
            assert_eq!(c.put(k, &json!({ "k": k, "i": i })).status, 200);
        }
    }
    assert_eq!(c.request("DELETE", "/delete/c", &[], b"").status, 200);
    assert!(s.terminate().success());
    // Checkpointed on close: the file alone is the whole database.
    let wal = PathBuf::from(format!("{}-wal", db.display()));
    assert_eq!(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0), 0);
    db
}

fn copy_with(src: &Path, name: &str, sql: &str) -> PathBuf {
    let dst = src.with_file_name(name);
    std::fs::copy(src, &dst).unwrap();
    let conn = rusqlite::Connection::open(&dst).unwrap();
    conn.execute_batch(sql).unwrap();
    drop(conn);
    dst
}

fn check(db: &Path) -> (bool, String) {
    let out = run(&["check", "--db", db.to_str().unwrap()]);
    (out.status.success(), output_text(&out))
}

#[test]
fn check_passes_on_a_good_database_and_names_each_problem() {
    let dir = tempfile::tempdir().unwrap();
    let db = small_db(dir.path());
    let (ok, text) = check(&db);
    assert!(ok, "{text}");
    assert!(
        text.contains("3 keys, 7 versions") && text.contains("ok"),
        "{text}"
    );

    let cases = [
        (
            "DELETE FROM versions WHERE key = 'a' AND version = 2;",
            &["\"a\"", "2 versions stored", "counter \"versions\""][..],
        ),
        (
            "DELETE FROM versions WHERE key = 'b' AND version = 2;
             UPDATE counters SET value = value - 1 WHERE name = 'versions';",
            &["\"b\"", "newest stored version is 1"][..],
        ),
        (
            "UPDATE counters SET value = 99 WHERE name = 'keys';",
            &["counter \"keys\" says 99"][..],
        ),
        (
            "DELETE FROM keys WHERE key = 'b';
             UPDATE counters SET value = value - 1 WHERE name = 'keys';",
            &["\"b\"", "no row in the keys table"][..],
        ),
        (
            "UPDATE keys SET deleted = 0 WHERE key = 'c';",
            &["\"c\"", "disagrees"][..],
        ),
        (
            "UPDATE versions SET value = '{oops' WHERE key = 'a' AND version = 1;",
            &["\"a\"", "version 1 is not valid JSON"][..],
        ),
        (
            "UPDATE versions SET expired = 1 WHERE key = 'a' AND version = 1;",
            &[
                "\"a\"",
                "version 1 is marked as an expiry but is not a tombstone",
            ][..],
        ),
        (
            "INSERT INTO purged (key, latest) VALUES ('a', 1);",
            &["\"a\"", "marked purged at version 1 but has versions up to"][..],
        ),
        (
            "UPDATE versions SET revision = 0 WHERE key = 'b' AND version = 1;",
            &["\"b\"", "a change has no revision"][..],
        ),
        ("PRAGMA application_id = 7;", &["not a vkv database"][..]),
    ];
    for (i, (sql, expected)) in cases.iter().enumerate() {
        let bad = copy_with(&db, &format!("bad{i}.db"), sql);
        let (ok, text) = check(&bad);
        assert!(!ok, "check passed after {sql}: {text}");
        for e in *expected {
            assert!(text.contains(e), "{e:?} not reported after {sql}:\n{text}");
        }
    }

    // Damage below SQLite's level: garbage over the middle of the file.
    let torn = dir.path().join("torn.db");
    let mut bytes = std::fs::read(&db).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid..].fill(0xA5);
    std::fs::write(&torn, &bytes).unwrap();
    let (ok, text) = check(&torn);
    assert!(!ok, "{text}");

    let (ok, text) = check(&dir.path().join("missing.db"));
    assert!(!ok);
    assert!(text.contains("missing.db"), "{text}");
}

#[test]
fn check_runs_against_a_live_server() {
    let s = Server::start(&[]);
    let mut c = s.client();
    for i in 0..20 {
        assert_eq!(c.put(&format!("k{}", i % 3), &json!(i)).status, 200);
    }
    let (ok, text) = check(&s.db);
    assert!(ok, "{text}");
    assert!(text.contains("3 keys, 20 versions"), "{text}");
    // The server is unaffected.
    assert_eq!(c.put("k0", &json!("after")).status, 200);
}

#[test]
fn restore_refuses_to_overwrite_without_force_or_under_a_server() {
    let dir = tempfile::tempdir().unwrap();
    let db = small_db(dir.path());
    let s = Server::start(&[]);
    let mut c = s.client();
    assert_eq!(c.put("live", &json!("data")).status, 200);
    let snapshot = dir.path().join("snap.db");
    download(&mut c, &snapshot);

    // An existing target, no --force: refused, untouched.
    let before = std::fs::read(&db).unwrap();
    let out = run(&[
        "restore",
        snapshot.to_str().unwrap(),
        "--db",
        db.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let text = output_text(&out);
    assert!(
        text.contains("already exists") && text.contains("--force"),
        "{text}"
    );
    assert_eq!(std::fs::read(&db).unwrap(), before);

    // The database of a running server: refused even with --force.
    let out = run(&[
        "restore",
        snapshot.to_str().unwrap(),
        "--db",
        s.db.to_str().unwrap(),
        "--force",
    ]);
    assert!(!out.status.success());
    let text = output_text(&out);
    assert!(
        text.contains("in use") && text.contains(&format!("pid {} holds the lock", s.pid())),
        "{text}"
    );
    assert_eq!(c.get("/get/live").json()["value"], "data");

    // --force via the environment.
    let mut forced = vkv();
    forced
        .args([
            "restore",
            snapshot.to_str().unwrap(),
            "--db",
            db.to_str().unwrap(),
        ])
        .env("VKV_RESTORE_FORCE", "true");
    let out = forced.output().unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    let r = Server::start_on(&db, &[]);
    assert_eq!(r.client().get("/get/live").json()["value"], "data");
    assert_eq!(r.client().get("/get/a").status, 404);
}

#[test]
fn restore_with_force_replaces_the_database_and_drops_its_old_log() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&[]);
    assert_eq!(s.client().put("from-snapshot", &json!(1)).status, 200);
    let snapshot = dir.path().join("snap.db");
    download(&mut s.client(), &snapshot);

    // A database killed mid-flight: its last commits are only in the WAL.
    let db = dir.path().join("old.db");
    let mut old = Server::start_on(&db, &[]);
    assert_eq!(old.client().put("only-in-old", &json!(1)).status, 200);
    old.kill();
    let wal = PathBuf::from(format!("{}-wal", db.display()));
    assert!(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0) > 0);

    let out = run(&[
        "restore",
        snapshot.to_str().unwrap(),
        "--db",
        db.to_str().unwrap(),
        "--force",
    ]);
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(!wal.exists(), "the old write-ahead log was left behind");
    let r = Server::start_on(&db, &[]);
    let mut c = r.client();
    assert_eq!(c.get("/get/from-snapshot").status, 200);
    assert_eq!(c.get("/get/only-in-old").status, 404);
    let (ok, text) = check(&db);
    assert!(ok, "{text}");
}

#[test]
fn restore_refuses_snapshots_that_fail_verification() {
    let dir = tempfile::tempdir().unwrap();
    let good = small_db(dir.path());
    let target = dir.path().join("target.db");
    let t = target.to_str().unwrap();

    let garbage = dir.path().join("garbage.db");
    std::fs::write(&garbage, vec![7u8; 10_000]).unwrap();
    let foreign = dir.path().join("foreign.db");
    rusqlite::Connection::open(&foreign)
        .unwrap()
        .execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
        .unwrap();
    let holed = copy_with(
        &good,
        "holed.db",
        "DELETE FROM versions WHERE key = 'a' AND version = 2;",
    );
    let newer = copy_with(&good, "newer.db", "PRAGMA user_version = 99;");
    let cases = [
        (&garbage, "not a readable SQLite database"),
        (&foreign, "not a vkv database"),
        (&holed, "\"a\""),
        (&newer, "unsupported schema version 99"),
        (&dir.path().join("absent.db"), "absent.db"),
    ];
    for (snapshot, expected) in cases {
        let out = run(&["restore", snapshot.to_str().unwrap(), "--db", t]);
        let text = output_text(&out);
        assert!(!out.status.success(), "{}: {text}", snapshot.display());
        assert!(text.contains(expected), "{expected:?} not in: {text}");
        assert!(!target.exists(), "{} was restored", snapshot.display());
    }
    // Nothing half-done is left next to the target.
    let leftovers: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // The good one goes in.
    let out = run(&["restore", good.to_str().unwrap(), "--db", t]);
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(output_text(&out).contains("3 keys, 7 versions"));
}
