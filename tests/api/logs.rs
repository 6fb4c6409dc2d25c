//! What vkv logs when it starts and stops: sentences an operator reads
//! (issue 21, item 15), on SQLite and on PostgreSQL.

use std::time::Duration;

use crate::common::{Server, metric, on_postgres, poll_until};

/// A fresh database is one line ("created ... schema version N"), not one
/// line per migration step; PostgreSQL's first read lease is not "taken
/// again"; a stop names its signal ("SIGTERM received: stopping
/// gracefully"), not `signal Some(15)`; a restart on the same database
/// logs no schema line at all.
#[test]
fn start_and_stop_are_logged_in_words() {
    let mut s = Server::start(&[]);
    let mut c = s.client();
    assert_eq!(c.put("k", &serde_json::json!(1)).status, 200);
    if on_postgres() {
        assert!(
            poll_until(Duration::from_secs(10), || {
                metric(&mut c, "vkv_read_lease_held") == Some(1.0)
            }),
            "no read lease taken"
        );
    }
    assert!(s.terminate().success());
    let log = s.log_text();
    let schema: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("schema version"))
        .collect();
    let created = if on_postgres() {
        "created the PostgreSQL schema (vkv schema version 6)".to_string()
    } else {
        format!(
            "created database schema version {}",
            vkv::db::SCHEMA_VERSION
        )
    };
    assert!(
        schema.len() == 1 && schema[0].contains(&created),
        "schema lines: {schema:#?}"
    );
    assert!(
        log.contains("SIGTERM received: stopping gracefully"),
        "{log}"
    );
    assert!(!log.contains("Some("), "{log}");
    assert!(!log.contains("taken again"), "{log}");
    if on_postgres() {
        assert!(log.contains("read lease taken: "), "{log}");
    }
    // Again on the same database: nothing to create or upgrade; SIGINT.
    let mut again = Server::start_on(&s.db, &[]);
    again.signal("INT");
    let stopped = poll_until(Duration::from_secs(20), || {
        again.exited().is_some() && again.log_text().contains("stopped")
    });
    let log = again.log_text();
    assert!(stopped, "no stop on SIGINT:\n{log}");
    assert!(!log.contains("schema version"), "{log}");
    assert!(
        log.contains("SIGINT received: stopping gracefully"),
        "{log}"
    );
}
