//! `vkv watch`: one line per version, in order, none twice, across a
//! server's restart.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::feed::{json_lines, wait_parked};
use crate::common::{Client, Server, json, poll_until, vkv, wait_timeout};
use crate::{on, url, vkv_with};

/// A running `vkv watch`, its stdout lines collected as they come.
pub struct Watch {
    pub child: Child,
    pub lines: Arc<Mutex<Vec<String>>>,
    pub errors: Arc<Mutex<Vec<String>>>,
}

impl Watch {
    pub fn start(args: &[&str]) -> Watch {
        let mut child = vkv()
            .arg("watch")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn vkv watch");
        let collect = |pipe: Box<dyn std::io::Read + Send>| {
            let lines = Arc::new(Mutex::new(Vec::new()));
            let sink = Arc::clone(&lines);
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    sink.lock().unwrap().push(line);
                }
            });
            lines
        };
        let lines = collect(Box::new(child.stdout.take().unwrap()));
        let errors = collect(Box::new(child.stderr.take().unwrap()));
        Watch {
            child,
            lines,
            errors,
        }
    }

    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// The lines of stderr so far.
    pub fn errors(&self) -> Vec<String> {
        self.errors.lock().unwrap().clone()
    }

    /// Whether a line of stderr so far contains `needle`.
    pub fn said(&self, needle: &str) -> bool {
        self.errors().iter().any(|l| l.contains(needle))
    }

    /// Waits until a line of stderr contains `needle`; fails the test if
    /// none does within 20 s.
    #[track_caller]
    pub fn wait_said(&self, needle: &str) {
        let came = poll_until(Duration::from_secs(20), || self.said(needle));
        assert!(came, "no {needle:?} on stderr: {:?}", self.errors());
    }

    /// Waits until `n` lines came; fails the test if they do not.
    #[track_caller]
    pub fn wait_for(&self, n: usize) -> Vec<String> {
        let came = poll_until(Duration::from_secs(30), || self.lines().len() >= n);
        assert!(
            came,
            "expected {n} lines, got {:?}; stderr {:?}",
            self.lines(),
            self.errors()
        );
        self.lines()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn one_line_per_change_from_the_latest_version_on() {
    let s = Server::start(&[]);
    let mut c = s.client();
    assert_eq!(c.put("k", &json!("before")).status, 200);
    let w = Watch::start(&["k", "--endpoints", &url(&s)]);
    // The watch starts after version 1; wait until it is parked.
    wait_parked(&mut c, 1);
    assert_eq!(c.put("k", &json!({"n": 2})).status, 200);
    assert_eq!(w.wait_for(1), ["2\t{\"n\":2}"]);
    assert_eq!(c.put("k", &json!("three")).status, 200);
    assert_eq!(c.request("DELETE", "/delete/k", &[], b"").status, 200);
    assert_eq!(c.put("k", &json!(5)).status, 200);
    let lines = w.wait_for(4);
    assert_eq!(
        lines,
        ["2\t{\"n\":2}", "3\t\"three\"", "4\tdeleted", "5\t5"],
        "every version once, in order"
    );
}

#[test]
fn after_and_count_replay_every_version_then_exit() {
    let s = Server::start(&[]);
    let mut c = s.client();
    for v in ["a", "b"] {
        assert_eq!(c.put("k", &json!(v)).status, 200);
    }
    assert_eq!(c.request("DELETE", "/delete/k", &[], b"").status, 200);
    assert_eq!(c.put("k", &json!({"x": [1]})).status, 200);
    // Versions 1 to 4 exist: all four, read back from the history, then
    // exit after --count.
    let r = on(&s, &["watch", "k", "--after", "0", "--count", "4"]);
    assert_eq!(
        r.code(0).out(),
        "1\t\"a\"\n2\t\"b\"\n3\tdeleted\n4\t{\"x\":[1]}"
    );
    let r = on(
        &s,
        &["watch", "k", "--after", "1", "--count", "2", "-o", "json"],
    );
    let rows = json_lines(r.code(0).out());
    assert_eq!(rows[0]["key"], json!("k"));
    assert_eq!(rows[0]["version"], json!(2));
    assert_eq!(rows[0]["value"], json!("b"));
    assert!(rows[0]["timestamp"].as_str().is_some());
    assert_eq!(rows[1]["version"], json!(3));
    assert_eq!(rows[1]["deleted"], json!(true));
}

#[test]
fn a_key_that_does_not_exist_yet_is_waited_for() {
    let s = Server::start(&[]);
    let w = Watch::start(&["new", "--endpoints", &url(&s), "--poll", "1s"]);
    let mut c = s.client();
    // Several polls time out meanwhile: they print nothing.
    wait_parked(&mut c, 1);
    assert_eq!(c.put("new", &json!(true)).status, 200);
    assert_eq!(w.wait_for(1), ["1\ttrue"]);
}

#[test]
fn refusals_end_the_watch_with_their_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "reader-Ts93bc read\n").unwrap();
    let s = Server::start_on(
        &dir.path().join("kv.db"),
        &["--auth-tokens", tokens.to_str().unwrap()],
    );
    let r = vkv_with(&["watch", "k", "--endpoints", &url(&s)], &[], b"");
    r.code(5);
    // An invalid key is not retried either.
    let r = vkv_with(
        &["watch", "", "--after", "0", "--endpoints", &url(&s)],
        &[("VKV_TOKEN", "reader-Ts93bc")],
        b"",
    );
    assert_eq!(r.code, 1, "{r:?}");
}

#[test]
fn the_watch_survives_a_server_restart_and_resumes_where_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("kv.db");
    let mut s = Server::start_on(&db, &[]);
    let addr = s.addr.to_string();
    let mut c = s.client();
    assert_eq!(c.put("k", &json!(1)).status, 200);
    let w = Watch::start(&["k", "--endpoints", &url(&s)]);
    wait_parked(&mut c, 1);
    assert_eq!(c.put("k", &json!(2)).status, 200);
    w.wait_for(1);

    // Killed outright: the long poll's connection drops.
    s.kill();
    w.wait_said("retrying");
    // Two writes while the watch is away would be missed by a watch that
    // only asks for the latest: it reads them from the history.
    let s = Server::start_on(&db, &["--bind", &addr]);
    let mut c = Client::connect(s.addr);
    assert_eq!(c.put("k", &json!(3)).status, 200);
    assert_eq!(c.put("k", &json!(4)).status, 200);
    let lines = w.wait_for(3);
    wait_parked(&mut c, 1);
    assert_eq!(c.put("k", &json!(5)).status, 200);
    let lines_after = w.wait_for(4);
    assert_eq!(lines_after, ["2\t2", "3\t3", "4\t4", "5\t5"], "{lines:?}");
    assert!(w.said("resuming after version"), "{:?}", w.errors());
    // Still running: a watch ends only when interrupted (or --count).
    let mut w = w;
    assert!(w.child.try_wait().unwrap().is_none());
    w.child.kill().unwrap();
    assert!(wait_timeout(&mut w.child, Duration::from_secs(10)).is_some());
}
