//! `vkv changes`: one page of the change feed, one line per change, then
//! the revision to resume after; a loop over it reads every change once;
//! `410` exits 3 naming where to start again.

use serde_json::Value;

use crate::common::feed::{changes_after, json_lines, revision};
use crate::common::{Server, free_port, json};
use crate::{on, url, vkv_with};

/// `vkv changes ARGS -o json` against `s`: the change objects, and the
/// last line (`{"revision","next_after"}`).
#[track_caller]
fn json_page(s: &Server, args: &[&str]) -> (Vec<Value>, Value) {
    let mut all = vec!["changes"];
    all.extend(args);
    all.extend(["-o", "json"]);
    let r = on(s, &all);
    let mut lines = json_lines(r.code(0).out());
    let last = lines.pop().expect("a last line");
    (lines, last)
}

#[test]
fn a_page_of_a_prefix_after_a_revision_then_only_what_came_after_its_resume_revision() {
    let s = Server::start(&[]);
    let mut c = s.client();
    let r0 = revision(&c.put("app/old", &json!("before")));
    // Without --after: no change, the revision now (a starting point).
    assert_eq!(
        on(&s, &["changes", "--prefix", "app/"]).code(0).out(),
        format!("next_after\t{r0}")
    );
    let r1 = revision(&c.put("app/a", &json!({"n": 1})));
    revision(&c.put("other/x", &json!(1)));
    let r2 = revision(&c.request("DELETE", "/delete/app/a", &[], b""));
    let r = on(
        &s,
        &["changes", "--prefix", "app/", "--after", &r0.to_string()],
    );
    assert_eq!(
        r.code(0).out(),
        format!("{r1}\tcreate\tapp/a\t1\t{{\"n\":1}}\n{r2}\tdelete\tapp/a\t2\nnext_after\t{r2}"),
        "app/old came before r0; other/x is not under the prefix"
    );
    // The resume revision: the next page has only what came since.
    let r3 = revision(&c.put("app/b", &json!("b")));
    let r4 = revision(&c.put("other/y", &json!(2)));
    let r = on(
        &s,
        &["changes", "--prefix", "app/", "--after", &r2.to_string()],
    );
    assert_eq!(
        r.code(0).out(),
        format!("{r3}\tcreate\tapp/b\t1\t\"b\"\nnext_after\t{r4}"),
        "the page covers the store up to r4, other/y included"
    );
    let r = on(
        &s,
        &["changes", "--prefix", "app/", "--after", &r4.to_string()],
    );
    assert_eq!(r.code(0).out(), format!("next_after\t{r4}"));
    // An endpoint that does not answer is passed over, as for any read.
    let endpoints = format!("http://127.0.0.1:{},{}", free_port(), url(&s));
    let after = r2.to_string();
    let r = vkv_with(
        &[
            "changes",
            "--prefix",
            "app/",
            "--after",
            &after,
            "--endpoints",
            &endpoints,
        ],
        &[],
        b"",
    );
    assert_eq!(
        r.code(0).out(),
        format!("{r3}\tcreate\tapp/b\t1\t\"b\"\nnext_after\t{r4}")
    );
    // Every key without --prefix.
    let r = on(&s, &["changes", "--after", &r3.to_string()]);
    assert_eq!(
        r.code(0).out(),
        format!("{r4}\tcreate\tother/y\t1\t2\nnext_after\t{r4}")
    );
}

#[test]
fn json_pages_are_the_feeds_objects_and_a_loop_over_next_after_reads_each_change_once() {
    let s = Server::start(&[]);
    let mut c = s.client();
    for i in 0..4 {
        revision(&c.put(&format!("p/{i}"), &json!(i)));
        revision(&c.put("q", &json!(i)));
    }
    // Two puts under p/ in one revision: a page never splits them.
    let r = c.request(
        "POST",
        "/batch",
        &[("Content-Type", "application/json")],
        br#"{"puts":[{"key":"p/x","value":"x"},{"key":"p/y","value":[1,2]}]}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let results = r.json()["results"].clone();
    let b = results[0]["revision"].as_u64().expect("a revision");
    assert_eq!(results[1]["revision"], json!(b));
    revision(&c.put("q", &json!("last")));
    let (changes, last) = json_page(&s, &["--after", "0"]);
    assert_eq!(changes.len(), 11, "every change kept: {changes:?}");
    assert_eq!(last, json!({"revision": b + 1, "next_after": b + 1}));

    // The loop a script runs, one change a page.
    let (mut after, mut got, mut pages) = (0, Vec::new(), Vec::new());
    loop {
        let (changes, last) = json_page(
            &s,
            &[
                "--prefix",
                "p/",
                "--after",
                &after.to_string(),
                "--limit",
                "1",
            ],
        );
        let next = last["next_after"].as_u64().expect("next_after");
        assert!(next >= after, "next_after {next} went back from {after}");
        if changes.is_empty() {
            break;
        }
        pages.push(changes.len());
        got.extend(changes);
        after = next;
    }
    assert_eq!(
        got,
        changes_after(&mut c, "p/", 0),
        "the feed's objects, each once"
    );
    assert_eq!(pages, [1, 1, 1, 1, 2], "the batch came whole");
    assert_eq!(got[5]["value"], json!([1, 2]));
    assert_eq!(got[5]["revision"], json!(b));
}

#[test]
fn changes_removed_by_a_purge_or_retention_exit_3_naming_the_oldest_revision() {
    let s = Server::start(&["--max-versions", "2"]);
    let mut c = s.client();
    let r0 = revision(&c.put("k/first", &json!(0)));
    let r1 = revision(&c.put("k/gone", &json!(1)));
    let r2 = revision(&c.put("k/kept", &json!(2)));
    let rp = revision(&c.request("DELETE", "/delete/k/gone?purge=true", &[], b""));
    // The purge removed the change at r1: a page after r0 would miss it.
    let r = on(
        &s,
        &["changes", "--prefix", "k/", "--after", &r0.to_string()],
    );
    r.code(3);
    assert!(
        r.stderr.starts_with("vkv changes: ")
            && r.stderr
                .contains(&format!("oldest revision to read after is {r1}")),
        "{r:?}"
    );
    assert!(r.stdout.is_empty(), "nothing printed before the gap: {r:?}");
    let r = on(
        &s,
        &["changes", "--prefix", "k/", "--after", &r1.to_string()],
    );
    assert_eq!(
        r.code(0).out(),
        format!("{r2}\tcreate\tk/kept\t1\t2\n{rp}\tpurge\tk/gone\t1\nnext_after\t{rp}"),
        "the purge is itself a change, without the value"
    );
    // Retention: two more versions of k/kept remove its first (at r2).
    revision(&c.put("k/kept", &json!(3)));
    revision(&c.put("k/kept", &json!(4)));
    let r = on(&s, &["changes", "--after", &r1.to_string(), "-o", "json"]);
    r.code(3);
    assert!(
        r.stderr
            .contains(&format!("oldest revision to read after is {r2}")),
        "{r:?}"
    );
    let (changes, _) = json_page(&s, &["--after", &r2.to_string()]);
    assert_eq!(changes.len(), 3, "the purge and the two puts: {changes:?}");
}

#[test]
fn bad_flags_are_usage_errors_and_no_server_is_unavailable() {
    let dead = format!("http://127.0.0.1:{}", free_port());
    for (args, says) in [
        (&["--after", "x"][..], "--after"),
        (&["--after", "9223372036854775808"], "--after"),
        (&["--limit", "0"], "--limit"),
        (&["--limit", "1001"], "--limit"),
        (&["--follow"], "--follow"),
        (&["some/key"], "some/key"),
    ] {
        let mut all = vec!["changes"];
        all.extend(args);
        all.extend(["--endpoints", &dead]);
        let r = vkv_with(&all, &[], b"");
        r.code(2);
        assert!(r.stderr.contains(says), "{args:?}: {r:?}");
    }
    let r = vkv_with(&["changes", "--after", "0", "--endpoints", &dead], &[], b"");
    r.code(6);
    assert!(r.stdout.is_empty(), "{r:?}");
    assert!(r.stderr.starts_with("vkv changes: "), "{r:?}");
}

#[test]
fn help_says_how_to_resume_and_that_following_is_watch_prefix() {
    let r = vkv_with(&["changes", "--help"], &[], b"");
    let text = &r.code(0).stdout;
    for words in [
        "next_after",
        "--after",
        "--limit",
        "--follow",
        "vkv watch --prefix",
        "410",
    ] {
        assert!(text.contains(words), "no {words:?} in {text}");
    }
}
