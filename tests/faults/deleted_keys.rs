//! Listing live keys does not depend on how many deleted keys the store
//! holds: `/keys?limit=1` with 100,000 deleted keys before the first live
//! one took 9-10 ms (a scan of all of them) against 0.3 ms normally.

use std::time::{Duration, Instant};

use crate::common::{Client, Server, exclusive, json};

/// Median time of `n` GETs of `path`.
fn median(c: &mut Client, path: &str, n: usize) -> Duration {
    let mut t: Vec<Duration> = (0..n)
        .map(|_| {
            let start = Instant::now();
            assert_eq!(c.get(path).status, 200);
            start.elapsed()
        })
        .collect();
    t.sort();
    t[n / 2]
}

#[test]
fn listing_keys_skips_deleted_keys_without_visiting_them() {
    let _g = exclusive();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("kv.db");
    {
        let mut s = Server::start_on(&db, &[]);
        let mut c = s.client();
        assert_eq!(c.put("zz-live", &json!(1)).status, 200);
        assert_eq!(c.put("d-template", &json!(1)).status, 200);
        assert_eq!(
            c.request("DELETE", "/delete/d-template", &[], b"").status,
            200
        );
        assert!(s.terminate().success());
    }
    {
        // 100,000 deleted keys sorting before the live one, written the
        // way vkv writes a deleted key (a version and a tombstone, each a
        // revision of its own, after the three above).
        let mut conn = rusqlite::Connection::open(&db).unwrap();
        let tx = conn.transaction().unwrap();
        for i in 0..100_000i64 {
            let key = format!("d{i:06}");
            tx.execute(
                "INSERT INTO versions (key, version, ts_ms, value, deleted, revision, created)
                 VALUES (?1, 1, 0, '1', 0, ?2, 1), (?1, 2, 0, 'null', 1, ?2 + 1, 0)",
                rusqlite::params![key, 4 + 2 * i],
            )
            .unwrap();
            tx.execute(
                "INSERT INTO keys (key, latest, ts_ms, deleted, first_kept) VALUES (?1, 2, 0, 1, 1)",
                [&key],
            )
            .unwrap();
        }
        tx.execute_batch(
            "UPDATE counters SET value = value + 100000 WHERE name = 'keys';
             UPDATE counters SET value = value + 200000 WHERE name = 'versions';
             UPDATE counters SET value = value + 200000 WHERE name = 'revision';",
        )
        .unwrap();
        tx.commit().unwrap();
    }
    let s = Server::start_on(&db, &[]);
    let mut c = s.client();
    let b = c.get("/keys?limit=1").json();
    assert_eq!(b["keys"][0]["key"], "zz-live", "{b}");
    assert_eq!(b["next_after"], json!(null), "{b}");
    // Against a request that does a single lookup, in the same run, so the
    // machine's load cancels out: a scan of 100,000 rows is tens of times
    // slower, an index seek about the same.
    let list = median(&mut c, "/keys?limit=1", 31);
    let get = median(&mut c, "/history/zz-live?limit=1", 31);
    println!("/keys?limit=1 median {list:?}, /history median {get:?}");
    assert!(
        list < get * 5,
        "/keys?limit=1 took {list:?} against {get:?} for /history"
    );
}
