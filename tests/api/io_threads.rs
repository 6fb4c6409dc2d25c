//! Several I/O threads (`--io-threads`): each serves the connections of its
//! own socket on the one port; the connection limit holds for all of them
//! together; writes through all of them stay exact.

use std::io::Read;
use std::time::Duration;

use serde_json::json;

use crate::common::{Client, Server, metric, poll_until};

/// The names of the server's threads that serve connections.
fn io_threads(s: &Server) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(format!("/proc/{}/task", s.pid()))
        .map(|tasks| {
            tasks
                .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
                .map(|n| n.trim().to_string())
                .filter(|n| n.starts_with("vkv-io"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn the_connection_limit_holds_across_io_threads() {
    let s = Server::start(&["--io-threads", "3", "--max-connections", "4"]);
    // A thread names itself once it runs: look until all three have.
    assert!(
        poll_until(Duration::from_secs(10), || io_threads(&s)
            == ["vkv-io", "vkv-io-1", "vkv-io-2"]),
        "{:?}",
        io_threads(&s)
    );
    // Three parked long polls and `c`, parked too, fill the 4 connections,
    // wherever the kernel put them; none is idle, so no thread may make
    // room, and every new connection is refused, whichever thread takes it.
    let mut c = s.client();
    let park = |w: &mut Client, timeout: u32| {
        let request = format!(
            "GET /get/m?wait_after=0&timeout={timeout} HTTP/1.1\r\nHost: localhost\r\n\r\n"
        );
        w.send_raw(request.as_bytes()).unwrap();
    };
    let mut parked: Vec<Client> = (0..3).map(|_| s.client()).collect();
    for w in &mut parked {
        park(w, 300);
    }
    assert!(poll_until(Duration::from_secs(10), || {
        metric(&mut c, "vkv_watchers") == Some(3.0)
    }));
    park(&mut c, 300);
    // A probe asks for /health and closes: 200 if it got in, else 503.
    let probe = || {
        let mut t = std::net::TcpStream::connect(s.addr).unwrap();
        t.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = std::io::Write::write_all(
            &mut t,
            b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        );
        let mut answer = String::new();
        let _ = t.read_to_string(&mut answer);
        answer
    };
    assert!(poll_until(Duration::from_secs(10), || probe()
        .starts_with("HTTP/1.1 503")));
    for _ in 0..12 {
        let answer = probe();
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer:?}");
    }
    // A parked client that leaves frees its place for a new connection.
    parked.pop();
    assert!(poll_until(Duration::from_secs(10), || probe()
        .starts_with("HTTP/1.1 200")));
    drop(parked);
}

#[test]
fn writes_through_every_io_thread_are_exact() {
    let s = Server::start(&["--io-threads", "3"]);
    let (threads, each) = (12, 40);
    std::thread::scope(|scope| {
        for t in 0..threads {
            let s = &s;
            scope.spawn(move || {
                // A connection per thread: the kernel spreads them over
                // the I/O threads.
                let mut c = s.client();
                for i in 0..each {
                    let r = c.put("shared", &json!({"t": t, "i": i}));
                    assert_eq!(r.status, 200, "{}", r.text());
                    assert_eq!(
                        c.get(&format!("/get/own{t}")).status,
                        if i == 0 { 404 } else { 200 }
                    );
                    assert_eq!(c.put(&format!("own{t}"), &json!(i)).status, 200);
                }
            });
        }
    });
    let mut c = s.client();
    let latest = c.get("/get/shared").json();
    assert_eq!(latest["version"], json!(threads * each));
    for t in 0..threads {
        let own = c.get(&format!("/get/own{t}")).json();
        assert_eq!(own["version"], json!(each));
        assert_eq!(own["value"], json!(each - 1));
    }
}
