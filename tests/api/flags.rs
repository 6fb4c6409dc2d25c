//! Flags are checked at start: a value past its maximum is refused with a
//! message naming the flag, before anything is opened or served.

use crate::common::{Server, output_text, pg_url_for, psql, run};

#[test]
fn durations_and_sizes_past_their_maximum_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("kv.db");
    for (flag, value, says) in [
        ("--read-timeout", "400000000000y", "maximum"),
        ("--read-timeout", "25h", "maximum"),
        ("--idle-timeout", "2days", "maximum"),
        ("--read-timeout", "0s", "above zero"),
        ("--cache-size", "1000000000000", "not in"),
        ("--cache-bytes", "65G", "maximum"),
        ("--cache-bytes", "18446744073709551615G", "maximum"),
        ("--cache-bytes", "12parsecs", "unit"),
        ("--max-body-bytes", "2G", "maximum"),
        ("--max-body-bytes", "0", "above zero"),
        ("--max-output-bytes", "65G", "maximum"),
        ("--max-output-bytes", "0", "above zero"),
        ("--max-watchers", "99999999", "not in"),
        ("--max-versions", "18446744073709551615", "not in"),
        ("--io-threads", "0", "not in"),
        ("--io-threads", "65", "not in"),
        ("--read-lease", "50ms", "100ms to 60s"),
        ("--read-lease", "2m", "100ms to 60s"),
        ("--read-lease", "soon", "try 1s"),
    ] {
        let out = run(&[
            "--bind",
            "127.0.0.1:0",
            "--db",
            db.to_str().unwrap(),
            flag,
            value,
        ]);
        let text = output_text(&out);
        assert!(!out.status.success(), "{flag} {value} accepted:\n{text}");
        assert!(
            text.contains(flag) && text.contains(says),
            "{flag} {value}:\n{text}"
        );
        assert!(!db.exists(), "{flag} {value}: the database was touched");
    }
}

#[test]
fn sizes_take_units_and_the_cache_budget_is_shown() {
    let s = Server::start(&["--cache-bytes", "3MiB", "--max-body-bytes", "2M"]);
    let mut c = s.client();
    let st = c.get("/cache/stats").json();
    assert_eq!(st["max_bytes"], 3 << 20, "{st}");
    assert_eq!(st["bytes"], 0, "{st}");
    // A 1.5 MB body is under the 2 MiB limit.
    let big = format!("{{\"value\": \"{}\"}}", "x".repeat(1_500_000));
    let r = c.request("POST", "/put/big", &[], big.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
}

/// Issue 21, item 13: with the port taken, start-up fails before the
/// database is touched: no SQLite file (nor `-wal`/`-shm`) is created, no
/// PostgreSQL schema is made. It used to create and migrate it, then fail.
#[test]
fn a_port_in_use_refuses_start_up_before_the_database_is_created() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("other.db");
    let mut stores = vec![db.to_str().unwrap().to_string()];
    let pg = crate::common::pg_admin_url().map(|admin| {
        let name = format!("vkvt_port_taken_{}", std::process::id());
        psql(&admin, &format!("DROP DATABASE IF EXISTS {name}"));
        psql(&admin, &format!("CREATE DATABASE {name}"));
        (admin, name)
    });
    if let Some((admin, name)) = &pg {
        stores.push(pg_url_for(admin, name));
    }
    for store in &stores {
        let out = run(&["--bind", &addr, "--db", store]);
        let text = output_text(&out);
        assert!(!out.status.success(), "started on a taken port:\n{text}");
        assert!(text.contains(&format!("cannot listen on {addr}")), "{text}");
    }
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "a failed start left {left:?}");
    if let Some((admin, name)) = pg {
        let url = pg_url_for(&admin, &name);
        let tables = psql(
            &url,
            "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'vkv%'",
        );
        assert_eq!(tables, "0", "a failed start made vkv's tables");
        psql(&admin, &format!("DROP DATABASE {name}"));
    }
}
