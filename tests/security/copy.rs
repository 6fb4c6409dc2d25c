//! `vkv copy --from SRC --to DST`: every version with its timestamp and
//! tombstone, each key's retention bound, counts verified, all or nothing;
//! a non-empty or served destination refused.

use std::path::{Path, PathBuf};

use crate::common::*;

fn copy(from: &Path, to: &Path, extra: &[&str]) -> (bool, String) {
    let mut args = vec![
        "copy",
        "--from",
        from.to_str().unwrap(),
        "--to",
        to.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let out = run(&args);
    (out.status.success(), output_text(&out))
}

#[test]
fn copy_keeps_every_version_timestamp_tombstone_and_retention_bound() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src.db"), dir.path().join("dst.db"));
    let s = Server::start_on(&src, &["--max-versions", "3"]);
    let mut c = s.client();
    // Versions 1 and 2 of `a` fall to retention.
    let keys = write_mix(&mut c);
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let before = observe(&mut c, &keys);
    let stats_before = db_totals(&mut c);
    assert_eq!(stats_before, (23, 3 + 3 + 1 + 20));
    // The change feed and the store's revision come along, and so does what
    // retention and the purge removed (a reader behind it is refused).
    let feed_before = c.get("/changes?after=0").json();
    let revision = c.get("/db/stats").json()["revision"].clone();
    assert_eq!(c.get("/changes?after=1").status, 410);

    // From a live server's file: one read transaction, a consistent copy.
    let (ok, text) = copy(&src, &dst, &[]);
    assert!(ok, "{text}");
    assert!(
        text.contains("copied 23 keys and 27 versions") && text.contains("counts verified"),
        "{text}"
    );
    let (ok, text) = {
        let out = run(&["check", "--db", dst.to_str().unwrap()]);
        (out.status.success(), output_text(&out))
    };
    assert!(ok, "{text}");

    let d = Server::start_on(&dst, &["--max-versions", "3"]);
    let mut dc = d.client();
    assert_eq!(dc.get("/changes?after=0").json(), feed_before);
    assert_eq!(dc.get("/db/stats").json()["revision"], revision);
    assert_eq!(dc.get("/changes?after=1").status, 410);
    let after = observe(&mut dc, &keys);
    assert_eq!(before.len(), after.len());
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(b, a);
    }
    // Spot checks of what the comparison covers.
    assert_eq!(dc.get("/get/a?version=1").status, 410);
    assert_eq!(dc.get("/get/b").status, 404);
    assert_eq!(dc.get("/get/c").status, 404);
    assert_eq!(db_totals(&mut dc), stats_before);
    // Numbering goes on where the source left it, revisions too.
    let put = dc.put("a", &json!(6)).json();
    assert_eq!(put["version"], 6);
    assert_eq!(put["revision"], revision.as_u64().unwrap() + 1);
    assert_eq!(dc.put("b", &json!("back")).json()["version"], 4);
    // A purged key's numbering too: its one version was 1.
    assert_eq!(dc.put("c", &json!("again")).json()["version"], 2);
}

/// A stopped server's database holding `keys`.
fn db_with(path: &Path, keys: &[&str]) -> PathBuf {
    let mut s = Server::start_on(path, &[]);
    let mut c = s.client();
    for k in keys {
        assert_eq!(c.put(k, &json!(k)).status, 200);
    }
    assert!(s.terminate().success());
    path.to_path_buf()
}

#[test]
fn copy_refuses_a_non_empty_served_same_or_missing_store() {
    let dir = tempfile::tempdir().unwrap();
    let src = db_with(&dir.path().join("src.db"), &["s1", "s2"]);
    let dst = db_with(&dir.path().join("dst.db"), &["d1"]);

    let (ok, text) = copy(&src, &dst, &[]);
    assert!(!ok, "{text}");
    assert!(
        text.contains("not empty") && text.contains("--force"),
        "{text}"
    );
    {
        let d = Server::start_on(&dst, &[]);
        let mut c = d.client();
        assert_eq!(c.get("/get/d1").status, 200);
        assert_eq!(c.get("/get/s1").status, 404);
        // Served: refused even with --force, and untouched.
        let (ok, text) = copy(&src, &dst, &["--force"]);
        assert!(!ok, "{text}");
        assert!(text.contains("in use"), "{text}");
        assert_eq!(c.get("/get/d1").status, 200);
    }
    let (ok, text) = copy(&src, &dst, &["--force"]);
    assert!(ok, "{text}");
    let d = Server::start_on(&dst, &[]);
    let mut c = d.client();
    assert_eq!(c.get("/get/d1").status, 404);
    assert_eq!(c.get("/get/s2").json()["value"], "s2");
    assert_eq!(db_totals(&mut c), (2, 2));

    let (ok, text) = copy(&src, &src, &["--force"]);
    assert!(!ok && text.contains("same store"), "{text}");
    let missing = dir.path().join("missing.db");
    let fresh = dir.path().join("fresh.db");
    let (ok, text) = copy(&missing, &fresh, &[]);
    assert!(!ok && text.contains("missing.db"), "{text}");
    assert!(!fresh.exists(), "a failed copy left {}", fresh.display());
}

#[test]
fn copy_of_an_inconsistent_source_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let src = db_with(&dir.path().join("src.db"), &["a", "b", "c"]);
    let conn = rusqlite::Connection::open(&src).unwrap();
    conn.execute_batch("UPDATE counters SET value = 7 WHERE name = 'versions'")
        .unwrap();
    drop(conn);
    let dst = dir.path().join("dst.db");
    let (ok, text) = copy(&src, &dst, &[]);
    assert!(!ok, "{text}");
    assert!(
        text.contains("counters say 3 keys and 7 versions") && text.contains("vkv check"),
        "{text}"
    );
    // The destination was created for the copy and is gone again.
    assert!(!dst.exists());
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("dst"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
