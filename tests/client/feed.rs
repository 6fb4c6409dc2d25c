//! `vkv watch --prefix`: the change feed of a prefix, one line per change,
//! in revision order, none twice, across a server's restart; `410` ends it
//! with exit code 3.

use crate::common::feed::{changes_after, json_lines, revision, wait_parked};
use crate::common::{Client, Server, Writers, json};
use crate::watch::Watch;
use crate::{on, url};

#[test]
fn a_prefix_watch_prints_creates_updates_deletes_and_expiries_in_order() {
    let s = Server::start(&[]);
    let mut c = s.client();
    assert_eq!(c.put("app/old", &json!("before")).status, 200);
    let w = Watch::start(&["--prefix", "app/", "--endpoints", &url(&s)]);
    wait_parked(&mut c, 1);
    let r1 = revision(&c.put("app/a", &json!({"n": 1})));
    revision(&c.put("other/x", &json!(1)));
    let r2 = revision(&c.put("app/a", &json!("two")));
    let r3 = revision(&c.request("DELETE", "/delete/app/a", &[], b""));
    let r = c.request(
        "POST",
        "/put/app/t?ttl=1s",
        &[("Content-Type", "application/json")],
        br#"{"value": true}"#,
    );
    let r4 = revision(&r);
    let lines = w.wait_for(5);
    assert_eq!(
        lines[..4],
        [
            format!("{r1}\tcreate\tapp/a\t1\t{{\"n\":1}}"),
            format!("{r2}\tupdate\tapp/a\t2\t\"two\""),
            format!("{r3}\tdelete\tapp/a\t3"),
            format!("{r4}\tcreate\tapp/t\t1\ttrue"),
        ],
        "other/x is not under the prefix; app/old came before the watch"
    );
    let expiry: Vec<&str> = lines[4].split('\t').collect();
    assert_eq!(expiry[1..], ["expire", "app/t", "2"], "{lines:?}");
    assert!(expiry[0].parse::<u64>().unwrap() > r4);
    assert_eq!(w.lines().len(), 5, "nothing twice");
}

#[test]
fn after_zero_replays_the_feed_as_json_and_count_ends_it() {
    let s = Server::start(&[]);
    let mut c = s.client();
    let r1 = revision(&c.put("p/a", &json!(1)));
    let r2 = revision(&c.put("q", &json!(2)));
    let r3 = revision(&c.put("p/b", &json!([1, 2])));
    assert!(r1 < r2 && r2 < r3);
    let r = on(
        &s,
        &[
            "watch", "--prefix", "p/", "--after", "0", "--count", "2", "-o", "json",
        ],
    );
    let rows = json_lines(r.code(0).out());
    assert_eq!(
        rows,
        changes_after(&mut c, "p/", 0),
        "the feed's objects, as sent"
    );
    assert_eq!(rows[1]["revision"], json!(r3));
    assert_eq!(rows[1]["value"], json!([1, 2]));
    // --after a revision: only what came after it.
    let r = on(
        &s,
        &[
            "watch",
            "--prefix",
            "p/",
            "--after",
            &r1.to_string(),
            "--count",
            "1",
        ],
    );
    assert_eq!(r.code(0).out(), format!("{r3}\tcreate\tp/b\t1\t[1,2]"));
    // A KEY and --prefix together is a usage error.
    on(&s, &["watch", "k", "--prefix", "p/"]).code(2);
}

#[test]
fn changes_removed_by_retention_end_the_watch_with_code_3_naming_the_oldest_revision() {
    let s = Server::start(&["--max-versions", "2"]);
    let mut c = s.client();
    let r0 = revision(&c.put("first", &json!(0)));
    let r1 = revision(&c.put("r", &json!(1)));
    revision(&c.put("r", &json!(2)));
    revision(&c.put("r", &json!(3)));
    // Version 1 of r (revision r1) is gone: a watch after r0 would miss it.
    let r = on(&s, &["watch", "--prefix", "", "--after", &r0.to_string()]);
    r.code(3);
    assert!(
        r.stderr
            .contains(&format!("oldest revision to watch after is {r1}")),
        "{r:?}"
    );
    assert!(r.stdout.is_empty(), "nothing printed before the gap: {r:?}");
    // From there on, the feed is whole.
    let r = on(
        &s,
        &[
            "watch",
            "--prefix",
            "",
            "--after",
            &r1.to_string(),
            "--count",
            "2",
        ],
    );
    assert_eq!(r.code(0).out().lines().count(), 2);
}

#[test]
fn a_prefix_watch_resumes_across_a_restart_with_no_gap_and_no_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("kv.db");
    let mut s = Server::start_on(&db, &[]);
    let addr = s.addr.to_string();
    let mut c = s.client();
    let start = revision(&c.put("w-start", &json!(0)));
    let w = Watch::start(&[
        "--prefix",
        "w",
        "--after",
        &start.to_string(),
        "-o",
        "json",
        "--endpoints",
        &url(&s),
    ]);
    // Three writers under the prefix while the watch follows.
    let writers = Writers::start(s.addr);
    writers.wait_for(300);
    let before = writers.stop().len();
    w.wait_for(before);

    s.kill();
    w.wait_said("retrying");
    // Writes while the watch is away, and after it is back.
    let s = Server::start_on(&db, &["--bind", &addr]);
    let writers = Writers::start(s.addr);
    writers.wait_for(300);
    let after = writers.stop().len();
    let mut c = Client::connect(s.addr);
    let want = changes_after(&mut c, "w", start);
    assert_eq!(want.len(), before + after);
    let lines = w.wait_for(want.len());
    let got: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(got.len(), want.len(), "a change printed twice");
    assert!(got == want, "the watch differs from the feed");
    assert!(w.said("resuming after revision"), "{:?}", w.errors());
}
