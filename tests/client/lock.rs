//! `vkv lock`: holders never overlap, tokens increase, a killed holder's
//! lock frees itself within its TTL and a second.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Server, vkv};
use crate::{Ran, on, url, vkv_with};

/// `vkv lock l [OPTIONS] --endpoints ENDPOINT -- sh -c SCRIPT`, to its end.
fn lock_running(endpoint: &str, options: &[&str], script: &str) -> Ran {
    let mut args = vec!["lock", "l"];
    args.extend_from_slice(options);
    args.extend(["--endpoints", endpoint, "--", "sh", "-c", script]);
    vkv_with(&args, &[], b"")
}

/// `vkv lock l --ttl TTL` without a command, once it holds the lock: the
/// process and the line it printed (the token).
fn holder(s: &Server, ttl: &str) -> (Child, String) {
    let mut holder = vkv()
        .args(["lock", "l", "--ttl", ttl, "--endpoints", &url(s)])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(holder.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (holder, line)
}

#[test]
fn two_lockers_never_overlap_and_their_tokens_increase() {
    let s = Server::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let script = format!(
        "echo start $VKV_LOCK_TOKEN >> {0}; sleep 0.2; echo end $VKV_LOCK_TOKEN >> {0}",
        log.display()
    );
    let endpoint = url(&s);
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let (script, endpoint) = (script.clone(), endpoint.clone());
            std::thread::spawn(move || {
                for _ in 0..4 {
                    let r = lock_running(&endpoint, &[], &script);
                    r.code(0);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 16, "{text}");
    let mut last = 0u64;
    for pair in lines.chunks(2) {
        let start = pair[0].strip_prefix("start ").expect(&text);
        let end = pair[1].strip_prefix("end ").expect(&text);
        assert_eq!(start, end, "overlap: {text}");
        let token: u64 = start.parse().unwrap();
        assert!(token > last, "tokens must increase: {text}");
        last = token;
    }
    // The command's status is the lock's.
    let r = lock_running(&endpoint, &[], "exit 7");
    r.code(7);
}

#[test]
fn a_killed_holder_frees_the_lock_within_its_ttl_and_a_second() {
    let s = Server::start(&[]);
    let (mut holder, line) = holder(&s, "2s");
    let first: u64 = line.trim().parse().expect("the token");
    // Held: the lock key exists.
    let r = vkv_with(&["get", "l", "--endpoints", &url(&s)], &[], b"");
    r.code(0);
    holder.kill().unwrap();
    holder.wait().unwrap();
    let killed = Instant::now();
    let endpoint = url(&s);
    let r = lock_running(&endpoint, &["--ttl", "2s"], "echo $VKV_LOCK_TOKEN");
    let took = killed.elapsed();
    let second: u64 = r.code(0).out().parse().unwrap();
    assert!(second > first);
    assert!(took < Duration::from_secs(3), "took {took:?}");
    // Released: the key is gone.
    on(&s, &["get", "l"]).code(3);
}

#[test]
fn sigterm_to_a_holder_without_a_command_revokes_its_lease() {
    let s = Server::start(&[]);
    let mut c = s.client();
    let (mut holder, line) = holder(&s, "30s");
    assert!(line.trim().parse::<u64>().is_ok(), "{line:?}");
    assert_eq!(c.get("/get/l").status, 200);
    let pid = libc::pid_t::try_from(holder.id()).unwrap();
    // SAFETY: kill(2) of our own child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = crate::common::wait_timeout(&mut holder, Duration::from_secs(10)).unwrap();
    assert_eq!(status.code(), Some(128 + libc::SIGTERM));
    // Freed at once, not after the 30 s TTL.
    assert_eq!(c.get("/get/l").status, 404);
    assert_eq!(c.get("/leases").json()["leases"], crate::common::json!([]));
}
