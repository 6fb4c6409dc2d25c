//! A damaged database file is never served as if it were sound: a small
//! one is refused at start, a large one is checked in the background right
//! after start, and from the first sign of damage `/health` is unavailable,
//! writes are refused and every answer is a 503 with a clear detail, never
//! a 500.

use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use crate::common::{Server, poll_until, shared};
use std::time::Duration;

/// A stopped server's database with `keys` keys of `pad`-byte values.
fn database(dir: &Path, keys: usize, pad: usize) -> std::path::PathBuf {
    let db = dir.join("kv.db");
    let mut s = Server::start_on(&db, &[]);
    let mut c = s.client();
    let value = "x".repeat(pad);
    for chunk in (0..keys).collect::<Vec<_>>().chunks(200) {
        let puts: Vec<_> = chunk
            .iter()
            .map(|i| serde_json::json!({"key": format!("k{i:05}"), "value": value}))
            .collect();
        let body = serde_json::to_vec(&serde_json::json!({ "puts": puts })).unwrap();
        let r = c.request("POST", "/batch", &[], &body);
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert!(s.terminate().success());
    db
}

/// Overwrites page `n` (1-based, 4 KiB pages) with zeros.
fn zero_page(db: &Path, n: u64) {
    let mut f = std::fs::OpenOptions::new().write(true).open(db).unwrap();
    f.seek(SeekFrom::Start((n - 1) * 4096)).unwrap();
    f.write_all(&[0u8; 4096]).unwrap();
    f.sync_all().unwrap();
}

#[test]
fn a_small_corrupt_database_is_refused_at_start() {
    let _g = shared();
    let dir = tempfile::tempdir().unwrap();
    let db = database(dir.path(), 4_000, 10);
    zero_page(&db, 2);
    let Err((status, log)) = Server::try_start_on(&db, &[], &[]) else {
        panic!("vkv served a database whose page 2 is zeros");
    };
    assert!(!status.map(|s| s.success()).unwrap_or(true));
    let log = log.join("\n");
    assert!(log.contains("kv.db") && log.contains("corrupt"), "{log}");
}

#[test]
fn a_large_corrupt_database_turns_unavailable_and_never_answers_500() {
    let _g = shared();
    let dir = tempfile::tempdir().unwrap();
    // About 12 MB: over the size checked before serving.
    let db = database(dir.path(), 4_000, 3_000);
    let pages = std::fs::metadata(&db).unwrap().len() / 4096;
    assert!(pages * 4096 > 8 << 20, "{pages} pages");
    zero_page(&db, pages / 2);

    let s = Server::start_on(&db, &[]);
    let mut c = s.client();
    assert!(
        poll_until(Duration::from_secs(30), || c.get("/health").status == 503),
        "health never noticed the damage:\n{}",
        s.log_text()
    );
    let h = c.get("/health").json();
    assert_eq!(h["status"], "unavailable");
    assert!(h["detail"].as_str().unwrap().contains("corrupt"), "{h}");
    // No more writes, with a clear answer.
    let r = c.request("POST", "/put/new", &[], br#"{"value": 1}"#);
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.detail().contains("corrupt"), "{}", r.text());
    // Reads answer what they can; damage is a 503, never a 500.
    let mut unreadable = 0;
    for i in (0..4_000).step_by(7) {
        let r = c.get(&format!("/get/k{i:05}"));
        match r.status {
            200 => {}
            503 => {
                assert!(r.detail().contains("corrupt"), "{}", r.text());
                unreadable += 1;
            }
            other => panic!("GET k{i:05}: {other} {}", r.text()),
        }
    }
    println!("{unreadable} of 572 sampled keys unreadable");
    for path in ["/keys?limit=1000", "/db/stats", "/history/k00001"] {
        let r = c.get(path);
        assert!(
            matches!(r.status, 200 | 503),
            "{path}: {} {}",
            r.status,
            r.text()
        );
    }
}
