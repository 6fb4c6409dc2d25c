//! Start-up on PostgreSQL: bad input is a clear error and a non-zero exit
//! (never a password in the log); the schema is created once however many
//! replicas start at once, and a newer one is refused (issue 11, points 4
//! and 11).

use std::path::PathBuf;

use crate::common::{Server, pg_url_for, psql};
use crate::{admin, fresh_database};

/// Starts vkv on `url`, expects it to refuse; returns its log.
fn refused(url: &str) -> String {
    let Err((status, log)) = Server::try_start_on(&PathBuf::from(url), &[], &[]) else {
        panic!("vkv started on {url}");
    };
    assert!(
        status.is_some_and(|s| !s.success()),
        "exit status {status:?}"
    );
    log.join("\n")
}

#[test]
fn a_wrong_password_is_refused_and_never_logged() {
    let _serial = crate::common::shared();
    let (name, _) = fresh_database();
    let url = pg_url_for(&admin(), &name);
    let (head, rest) = url.split_once('@').unwrap();
    let user = head.rsplit_once(':').unwrap().0;
    let wrong = format!("{user}:not-the-password-5e3@{rest}");
    let log = refused(&wrong);
    assert!(log.contains("password authentication failed"), "{log}");
    assert!(
        !log.contains("not-the-password-5e3"),
        "password logged: {log}"
    );
    assert!(log.contains(":***@"), "{log}");
}

#[test]
fn an_unknown_host_is_refused() {
    let _serial = crate::common::shared();
    let log = refused("postgres://vkv:secret@no-such-host.invalid:5432/kv?connect_timeout=3");
    assert!(
        log.contains("cannot open PostgreSQL database postgres://vkv:***@no-such-host.invalid"),
        "{log}"
    );
    assert!(!log.contains("secret"), "{log}");
}

#[test]
fn a_missing_database_is_refused() {
    let _serial = crate::common::shared();
    let url = pg_url_for(&admin(), "vkv_no_such_database");
    let log = refused(&url);
    assert!(
        log.contains("database \"vkv_no_such_database\" does not exist"),
        "{log}"
    );
}

#[test]
fn five_replicas_starting_at_once_create_the_schema_once() {
    let _serial = crate::common::shared();
    let (name, url) = fresh_database();
    let servers: Vec<Server> = (0..5)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || Server::start_on(&url, &[]))
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().expect("a replica failed to start"))
        .collect();
    let db = pg_url_for(&admin(), &name);
    assert_eq!(psql(&db, "SELECT schema_version FROM vkv_meta"), "6");
    assert_eq!(psql(&db, "SELECT count(*) FROM vkv_counters"), "64");
    let created = servers
        .iter()
        .filter(|s| {
            s.log_text()
                .contains("created the PostgreSQL schema (vkv schema version 6)")
        })
        .count();
    assert_eq!(created, 1, "the schema was created {created} times");
    for s in &servers {
        assert!(!s.log_text().contains("upgraded"), "{}", s.log_text());
    }
    for s in &servers {
        assert_eq!(s.client().put("k", &serde_json::json!(1)).status, 200);
    }
    assert_eq!(
        crate::common::history(&mut servers[0].client(), "k"),
        vec![1, 2, 3, 4, 5]
    );
}

#[test]
fn a_newer_schema_is_refused() {
    let _serial = crate::common::shared();
    let (name, url) = fresh_database();
    let mut s = Server::start_on(&url, &[]);
    assert!(s.terminate().success());
    let db = pg_url_for(&admin(), &name);
    psql(&db, "UPDATE vkv_meta SET schema_version = 99");
    let log = refused(url.to_str().unwrap());
    assert!(
        log.contains("schema version 99, newer than this vkv supports"),
        "{log}"
    );
    assert_eq!(psql(&db, "SELECT schema_version FROM vkv_meta"), "99");
}

#[test]
fn a_schema_1_database_is_migrated_and_keeps_its_data() {
    let _serial = crate::common::shared();
    let (name, url) = fresh_database();
    let mut s = Server::start_on(&url, &[]);
    assert_eq!(s.client().put("k", &serde_json::json!("kept")).status, 200);
    assert!(s.terminate().success());
    // Back to what a schema-1 vkv left behind.
    let db = pg_url_for(&admin(), &name);
    psql(
        &db,
        "DROP INDEX vkv_keys_live; ALTER TABLE vkv_keys DROP COLUMN purged_latest;
         DROP TABLE vkv_replicas, vkv_acks, vkv_purges, vkv_revision, vkv_deadlines, vkv_leases;
         ALTER TABLE vkv_versions DROP COLUMN revision, DROP COLUMN seq, DROP COLUMN created,
             DROP COLUMN expired;
         UPDATE vkv_meta SET schema_version = 1",
    );
    let s = Server::start_on(&url, &[]);
    assert!(
        s.log_text()
            .contains("PostgreSQL schema upgraded from vkv schema version 1 to 6"),
        "{}",
        s.log_text()
    );
    assert_eq!(psql(&db, "SELECT schema_version FROM vkv_meta"), "6");
    let mut c = s.client();
    assert_eq!(c.get("/get/k").json()["value"], "kept");
    // Schema 5's revisions: the existing version numbered, the counter
    // after it.
    assert_eq!(c.get("/get/k").json()["revision"], 1);
    assert_eq!(c.get("/db/stats").json()["revision"], 1);
    // Schema 2's purge: the numbering continues.
    assert_eq!(
        c.request("DELETE", "/delete/k?purge=true", &[], b"").status,
        200
    );
    let again = c.put("k", &serde_json::json!("again")).json();
    assert_eq!(again["version"], 2);
    assert_eq!(again["revision"], 3);
}
