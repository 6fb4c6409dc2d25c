//! A database written by a newer vkv (higher schema version) is refused at
//! start, and left untouched. (Corrupt and foreign files, and two servers on
//! one file, are covered in `tests/api/persistence.rs`.)

use crate::common::{Server, json, output_text, run, shared};

#[test]
fn newer_schema_version_is_refused_naming_the_file_and_left_untouched() {
    let _g = shared();
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("from-the-future.db");
    {
        let mut s = Server::start_on(&db, &[]);
        let mut c = s.client();
        assert_eq!(c.put("k", &json!("v")).status, 200);
        s.kill();
    }
    {
        let conn = rusqlite::Connection::open(&db).expect("open with rusqlite");
        let current: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .expect("user_version");
        assert_eq!(current, vkv::db::SCHEMA_VERSION);
        conn.pragma_update(None, "user_version", vkv::db::SCHEMA_VERSION + 1)
            .expect("set user_version");
    }
    let before = std::fs::read(&db).expect("read db");

    let Err((status, log)) = Server::try_start_on(&db, &[], &[]) else {
        panic!("vkv started on a database with a newer schema");
    };
    let status = status.expect("vkv neither started nor exited");
    assert!(!status.success(), "exit status {status:?}");
    let log = log.join("\n");
    assert!(
        log.contains("from-the-future.db") && log.contains("newer"),
        "message should name the file and say it is newer:\n{log}"
    );
    assert!(
        log.contains(&format!("schema version {}", vkv::db::SCHEMA_VERSION + 1)),
        "{log}"
    );
    // Not migrated, not rewritten.
    assert_eq!(std::fs::read(&db).expect("read db"), before);
}

/// A schema-1 file (before `purged` existed) is migrated at start and keeps
/// its data; a purge then continues the numbering.
#[test]
fn a_schema_1_database_is_migrated_and_keeps_its_data() {
    let _g = shared();
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("v1.db");
    {
        let mut s = Server::start_on(&db, &[]);
        let mut c = s.client();
        assert_eq!(c.put("k", &json!("one")).status, 200);
        assert_eq!(c.put("k", &json!("two")).status, 200);
        assert!(s.terminate().success());
    }
    {
        // What a schema-1 vkv left: no `purged` table, no revisions.
        let conn = rusqlite::Connection::open(&db).expect("open with rusqlite");
        conn.execute_batch(
            "DROP INDEX keys_live; DROP TABLE purged;
             DROP TABLE deadlines; DROP TABLE leases; ALTER TABLE versions DROP COLUMN expired;
             DROP INDEX versions_revision;
             ALTER TABLE versions DROP COLUMN revision; ALTER TABLE versions DROP COLUMN seq;
             ALTER TABLE versions DROP COLUMN created; DROP TABLE purges;
             DELETE FROM counters WHERE name IN ('revision', 'compacted');
             PRAGMA user_version = 1;",
        )
        .expect("downgrade");
    }
    // The checker reads it as it is, numbering its versions as the
    // migration will.
    let out = run(&["check", "--db", db.to_str().unwrap()]);
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("schema version 1, 1 keys, 2 versions: ok"),
        "{text}"
    );
    let s = Server::start_on(&db, &[]);
    assert!(
        s.log_text().contains(&format!(
            "database upgraded from schema version 1 to {}",
            vkv::db::SCHEMA_VERSION
        )),
        "{}",
        s.log_text()
    );
    let mut c = s.client();
    assert_eq!(c.get("/get/k").json()["value"], "two");
    // Its versions numbered in commit order; the feed has them.
    assert_eq!(c.get("/get/k").json()["revision"], 2);
    assert_eq!(c.get("/db/stats").json()["revision"], 2);
    let feed = c.get("/changes?after=0").json();
    let ops: Vec<&str> = feed["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|ch| ch["operation"].as_str().unwrap())
        .collect();
    assert_eq!(ops, ["create", "update"], "{feed}");
    assert_eq!(
        c.request("DELETE", "/delete/k?purge=true", &[], b"").status,
        200
    );
    assert_eq!(c.put("k", &json!("three")).json()["version"], 3);
}
