//! A database that goes away at run time: 503 with Retry-After (never 500,
//! never a hang), `/health` unavailable, and recovery without a restart
//! (issue 11, point 11).

use std::time::{Duration, Instant};

use crate::common::{Server, json, pg_url_for, poll_until, psql};
use crate::{admin, fresh_database};

#[test]
fn a_database_that_goes_away_answers_503_and_comes_back_without_a_restart() {
    let _serial = crate::common::shared();
    let (name, url) = fresh_database();
    let s = Server::start_on(&url, &["--read-timeout", "5s"]);
    let mut c = s.client();
    assert_eq!(c.put("before", &json!("kept")).status, 200);
    assert_eq!(c.get("/get/before").status, 200);

    // Away: no new connections, every existing one cut.
    let admin_url = admin();
    psql(
        &admin_url,
        &format!("ALTER DATABASE {name} WITH ALLOW_CONNECTIONS false"),
    );
    psql(
        &admin_url,
        &format!(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '{name}'"
        ),
    );
    for path in ["/put/during", "/get/before", "/get/never-written"] {
        let started = Instant::now();
        let r = if path.starts_with("/put") {
            c.put("during", &json!("refused"))
        } else {
            c.get(path)
        };
        assert_eq!(r.status, 503, "{path}: {} {}", r.status, r.text());
        assert!(r.header("retry-after").is_some(), "{path}: no Retry-After");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{path} took {:?}",
            started.elapsed()
        );
    }
    // A version in the cache is not served without a lease either: another
    // replica may have purged it meanwhile.
    let r = c.get("/get/before?version=1");
    assert_eq!(r.status, 503, "{}", r.text());
    let h = c.get("/health");
    assert_eq!(h.status, 503, "{}", h.text());
    assert_eq!(h.json()["status"], "unavailable");

    // Back: the same process serves again.
    psql(
        &admin_url,
        &format!("ALTER DATABASE {name} WITH ALLOW_CONNECTIONS true"),
    );
    assert!(
        poll_until(Duration::from_secs(20), || c
            .put("after", &json!("ok"))
            .status
            == 200),
        "writes did not come back"
    );
    assert!(poll_until(Duration::from_secs(20), || c
        .get("/health")
        .status
        == 200));
    assert_eq!(c.get("/get/before").json()["value"], "kept");
    assert_eq!(c.get("/get/after").json()["value"], "ok");
    let db = pg_url_for(&admin_url, &name);
    // The refused write left nothing behind.
    assert_eq!(
        psql(
            &db,
            "SELECT count(*) FROM vkv_versions WHERE key = 'during'::bytea"
        ),
        "0"
    );
}
