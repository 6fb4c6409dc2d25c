//! The database becomes unwritable under a running server: its file system
//! turns read-only, or its directory is removed. Writes answer `503` with a
//! detail, reads of what is cached or still readable answer, and `/health`
//! reports the fault.
//!
//! A read-only *directory* alone is no fault for a running server (SQLite in
//! WAL mode writes only to files it already has open), and as root a
//! `chmod` would not even stop that; what does is the file system going
//! read-only, as ext4 does on a disk error. So the test makes a real ext4
//! file system on a loop device and forces that error.

use crate::common::{Server, db_totals, history, json, shared};
use crate::fsutil::Ext4Loop;

/// Writes 3 versions of keys `k0`..`k3` and reads each latest (caching it).
fn seed(c: &mut crate::common::Client) {
    for k in 0..4 {
        for v in 1..=3 {
            let r = c.put(&format!("k{k}"), &json!({"k": k, "v": v}));
            assert_eq!(r.status, 200, "{}", r.text());
        }
        assert_eq!(c.get(&format!("/get/k{k}")).status, 200);
    }
}

#[test]
fn read_only_file_system_refuses_writes_with_503_and_health_reports_it() {
    let _g = shared();
    let fs = Ext4Loop::mount(32 << 20);
    let db = fs.path().join("kv.db");
    let s = Server::start_on(&db, &[]);
    let mut c = s.client();
    seed(&mut c);
    let totals = db_totals(&mut c);
    assert_eq!(c.get("/health").status, 200);

    fs.force_read_only();

    for i in 0..5 {
        let r = c.put("k0", &json!({"after": i}));
        assert_eq!(r.status, 503, "{}\n{}", r.text(), s.log_text());
        let detail = r.detail();
        assert!(
            detail.contains("unavailable") && detail.contains("Read-only file system"),
            "detail does not say what is wrong: {detail:?}"
        );
    }
    // A write to a new key fails the same way.
    let r = c.put("new", &json!(1));
    assert_eq!(r.status, 503, "{}", r.text());

    let h = c.get("/health");
    assert_eq!(h.status, 503, "health missed the fault: {}", h.text());
    let hj = h.json();
    assert_eq!(hj["status"], "unavailable");
    assert!(
        hj["detail"]
            .as_str()
            .is_some_and(|d| d.contains("Read-only file system")),
        "{hj}"
    );

    // Reads keep answering: cached latest versions and the file itself.
    for k in 0..4 {
        let r = c.get(&format!("/get/k{k}"));
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["value"], json!({"k": k, "v": 3}));
        let r = c.get(&format!("/get/k{k}?version=2"));
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["value"], json!({"k": k, "v": 2}));
        assert_eq!(history(&mut c, &format!("k{k}")), vec![1, 2, 3]);
    }
    assert_eq!(c.get("/get/new").status, 404);
    assert_eq!(db_totals(&mut c), totals, "a refused write left a version");
    // Still unhealthy: the probe write fails too.
    assert_eq!(c.get("/health").status, 503);
}

#[test]
fn vanished_database_directory_refuses_writes_and_health_reports_it() {
    let _g = shared();
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    std::fs::create_dir(&data).expect("mkdir");
    let db = data.join("kv.db");
    let s = Server::start_on(&db, &[]);
    let mut c = s.client();
    seed(&mut c);
    assert_eq!(c.get("/health").status, 200);

    std::fs::remove_dir_all(&data).expect("remove the database directory");

    // Health sees it before any write fails.
    let h = c.get("/health");
    assert_eq!(
        h.status,
        503,
        "health missed the vanished file: {}",
        h.text()
    );
    let hj = h.json();
    assert!(
        hj["detail"]
            .as_str()
            .is_some_and(|d| d.contains("kv.db") && d.contains("gone")),
        "{hj}"
    );

    // SQLite alone would go on "committing" into the unlinked files, and
    // every such acknowledged write would be lost: vkv refuses them.
    for i in 0..3 {
        let r = c.put("k1", &json!({"after": i}));
        assert_eq!(r.status, 503, "{}\n{}", r.text(), s.log_text());
        assert!(
            r.detail().contains("gone") && r.detail().contains("kv.db"),
            "{}",
            r.text()
        );
    }
    let r = c.put("brand-new", &json!(1));
    assert_eq!(r.status, 503, "{}", r.text());

    // Cached reads still answer.
    for k in 0..4 {
        let r = c.get(&format!("/get/k{k}"));
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["value"], json!({"k": k, "v": 3}));
    }
    // The server itself is fine: other endpoints answer.
    assert_eq!(c.get("/cache/stats").status, 200);
    assert_eq!(c.get("/health").status, 503);
}
