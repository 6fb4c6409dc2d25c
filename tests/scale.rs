//! Scale, black box: thousands of connections and parked long polls on a
//! server with its default flags, one client hoarding connections past
//! `--max-connections` (idle, re-opened or trickling partial requests),
//! closed watchers giving their slots back, and the open-files limit vkv
//! sets itself. The real binary over real sockets,
//! sized for CI (a few thousand); `scripts/scale.py` runs the 10,000 of
//! issue 10.
//!
//! Tests that count threads or hold thousands of sockets run alone
//! (`exclusive`).

#[path = "support/mod.rs"]
mod common;

use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::raw::Raw;
use common::{Server, exclusive, json, metric, poll_until, raise_fd_limit, shared};

/// Connections and watchers the big tests open: thousands, CI-sized.
const MANY: usize = 3_000;
/// Threads the server may run whatever the number of clients (issue 10).
const MAX_THREADS: usize = 16;
/// How long a fresh client may wait when others hoard connections.
const FRESH_CLIENT_LIMIT: Duration = Duration::from_secs(1);

/// `n` raw connections, each sent `request(i)`, opened spread over about a
/// second as issue 10 has its clients arrive (not in one instant: a burst
/// of thousands in one instant overflows `--queue-len` by design, 503).
fn open_spread(addr: SocketAddr, n: usize, request: impl Fn(usize) -> Vec<u8>) -> Vec<Raw> {
    let start = Instant::now();
    let spread = Duration::from_secs(1);
    (0..n)
        .map(|i| {
            // Pacing of the load, not synchronization: client i waits for
            // its place in the second.
            let at = spread.mul_f64(i as f64 / n as f64);
            if let Some(wait) = at.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
            send(addr, &request(i))
        })
        .collect()
}

/// A raw connection that sent `request` (nothing read yet).
fn send(addr: SocketAddr, request: &[u8]) -> Raw {
    let mut r = Raw::open(addr);
    r.send(request);
    r
}

/// How long an answer may take (thousands of clients on two cores).
const ANSWER_WAIT: Duration = Duration::from_secs(60);

/// The next response on `r`: status and body, or what happened instead.
fn answer(r: &mut Raw) -> Result<(u16, Vec<u8>), String> {
    answer_within(r, ANSWER_WAIT)
}

/// [`answer`], waiting at most `limit`.
fn answer_within(r: &mut Raw, limit: Duration) -> Result<(u16, Vec<u8>), String> {
    match r.response(limit) {
        Some(resp) => Ok((resp.status, resp.body)),
        None if r.eof => Err("closed without an answer".into()),
        None => Err(format!("no answer within {limit:?}")),
    }
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").into_bytes()
}

/// Statuses (or errors) seen, with how many of each, for a failure message.
fn tally(results: &[Result<(u16, Vec<u8>), String>]) -> Vec<(String, usize)> {
    let mut out: Vec<(String, usize)> = Vec::new();
    for r in results {
        let k = match r {
            Ok((status, _)) => status.to_string(),
            Err(e) => e.clone(),
        };
        match out.iter_mut().find(|(seen, _)| *seen == k) {
            Some((_, n)) => *n += 1,
            None => out.push((k, 1)),
        }
    }
    out
}

#[test]
fn thousands_of_keep_alive_connections_are_all_answered_by_a_few_threads() {
    let _g = exclusive();
    let fds = raise_fd_limit();
    assert!(fds as usize > MANY + 200, "descriptor limit {fds} too low");
    let s = Server::start(&[]);
    assert_eq!(s.client().put("k", &json!("v")).status, 200);
    let mut conns = open_spread(s.addr, MANY, |_| get("/get/k"));
    let results: Vec<_> = conns.iter_mut().map(answer).collect();
    let ok = results
        .iter()
        .filter(|r| matches!(r, Ok((200, body)) if body.starts_with(b"{\"key\":\"k\"")))
        .count();
    assert_eq!(ok, MANY, "answers: {:?}", tally(&results));
    // All of them open and idle now: the server holds them without a
    // thread each.
    let threads = s.threads();
    assert!(
        threads <= MAX_THREADS,
        "{threads} threads with {MANY} open connections"
    );
    // Still keep-alive: each answers a second request.
    for c in conns.iter_mut().step_by(100) {
        c.send(&get("/get/k"));
        let r = answer(c);
        assert!(matches!(r, Ok((200, _))), "second request: {r:?}");
    }
}

#[test]
fn thousands_of_parked_watchers_are_all_woken_by_puts() {
    let _g = exclusive();
    let fds = raise_fd_limit();
    assert!(fds as usize > MANY + 200, "descriptor limit {fds} too low");
    const KEYS: usize = 10;
    let s = Server::start(&[]);
    let mut c = s.client();
    for k in 0..KEYS {
        assert_eq!(c.put(&format!("w{k}"), &json!(1)).json()["version"], 1);
    }
    let mut watchers = open_spread(s.addr, MANY, |i| {
        get(&format!("/get/w{}?wait_after=1&timeout=120", i % KEYS))
    });
    let mut parked = None;
    let all_parked = poll_until(Duration::from_secs(60), || {
        parked = metric(&mut c, "vkv_watchers");
        parked == Some(MANY as f64)
    });
    assert!(
        all_parked,
        "parked watchers: {parked:?} of {MANY}; {} of them already answered or closed",
        answered_early(&watchers)
    );
    let threads = s.threads();
    assert!(
        threads <= MAX_THREADS,
        "{threads} threads with {MANY} parked watchers"
    );
    for k in 0..KEYS {
        assert_eq!(c.put(&format!("w{k}"), &json!(2)).json()["version"], 2);
    }
    let results: Vec<_> = watchers.iter_mut().map(answer).collect();
    let woken = results
        .iter()
        .filter(|r| {
            matches!(r, Ok((200, body))
                if serde_json::from_slice::<serde_json::Value>(body)
                    .is_ok_and(|v| v["version"] == 2))
        })
        .count();
    assert_eq!(woken, MANY, "answers: {:?}", tally(&results));
}

/// How many of `conns` have something to read (an answer or a close).
fn answered_early(conns: &[Raw]) -> usize {
    conns
        .iter()
        .filter(|c| {
            c.s.set_nonblocking(true).expect("nonblocking");
            let readable =
                !matches!(c.s.peek(&mut [0u8; 1]), Err(e) if e.kind() == ErrorKind::WouldBlock);
            c.s.set_nonblocking(false).expect("blocking");
            readable
        })
        .count()
}

/// Serves a fresh client (a new connection, one GET /health), returning
/// the status and how long it took.
fn fresh_client(addr: SocketAddr) -> (Result<u16, String>, Duration) {
    let start = Instant::now();
    let mut s = send(addr, &get("/health"));
    let r = answer_within(&mut s, Duration::from_secs(10)).map(|(status, _)| status);
    (r, start.elapsed())
}

/// Five fresh clients one after another, each answered `200`; the longest
/// any of them took.
fn fresh_clients(addr: SocketAddr) -> Duration {
    let mut worst = Duration::ZERO;
    for round in 0..5 {
        let (r, took) = fresh_client(addr);
        assert_eq!(r, Ok(200), "fresh client {round}");
        worst = worst.max(took);
    }
    worst
}

#[test]
fn idle_sockets_past_the_connection_limit_do_not_lock_out_a_fresh_client() {
    // Issue 9, item 6: a client holding more idle sockets than
    // --max-connections.
    let _g = shared();
    const LIMIT: usize = 40;
    let s = Server::start(&["--max-connections", &LIMIT.to_string()]);
    // LIMIT keep-alive connections, each answered once and then idle...
    let mut hoard: Vec<Raw> = (0..LIMIT).map(|_| send(s.addr, &get("/health"))).collect();
    for h in &mut hoard {
        assert!(matches!(answer(h), Ok((200, _))));
    }
    // ...and LIMIT more that connect and send nothing.
    for _ in 0..LIMIT {
        hoard.push(Raw::open(s.addr));
    }
    let worst = fresh_clients(s.addr);
    assert!(
        worst < FRESH_CLIENT_LIMIT,
        "a fresh client waited {worst:?} with {} hoarded",
        2 * LIMIT
    );
}

#[test]
fn reopened_partial_requests_do_not_lock_out_a_fresh_client() {
    // Issue 9, item 6: a client that keeps re-opening connections that
    // send half a request head and stall.
    let _g = shared();
    const LIMIT: usize = 40;
    let s = Server::start(&[
        "--max-connections",
        &LIMIT.to_string(),
        "--read-timeout",
        "60s",
    ]);
    let stop = Arc::new(AtomicBool::new(false));
    let opened = Arc::new(AtomicUsize::new(0));
    let addr = s.addr;
    let attacker = {
        let (stop, opened) = (Arc::clone(&stop), Arc::clone(&opened));
        std::thread::spawn(move || {
            let mut held: Vec<TcpStream> = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                // Forget the ones the server closed; re-open up to twice
                // the limit.
                held.retain(|c| {
                    let mut b = [0u8; 1];
                    matches!(c.peek(&mut b), Err(e) if e.kind() == ErrorKind::WouldBlock)
                });
                while held.len() < 2 * LIMIT && !stop.load(Ordering::SeqCst) {
                    let Ok(mut c) = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
                    else {
                        break;
                    };
                    let _ = c.write_all(b"GET /get/x HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad");
                    c.set_nonblocking(true).expect("nonblocking");
                    held.push(c);
                    opened.fetch_add(1, Ordering::SeqCst);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    // The attacker has filled the server (and more) before the first
    // fresh client comes.
    assert!(
        poll_until(Duration::from_secs(20), || opened.load(Ordering::SeqCst)
            >= 2 * LIMIT),
        "the attacker opened only {} connections",
        opened.load(Ordering::SeqCst)
    );
    let worst = fresh_clients(addr);
    stop.store(true, Ordering::SeqCst);
    attacker.join().expect("attacker thread");
    assert!(
        worst < FRESH_CLIENT_LIMIT,
        "a fresh client waited {worst:?} while {} partial requests were (re-)opened",
        opened.load(Ordering::SeqCst)
    );
}

#[test]
fn a_fresh_client_accepted_in_a_burst_of_partial_requests_is_answered() {
    // A whole request that arrived with its connection is read when the
    // connection is let in, before the newcomers accepted after it (in the
    // same turn of the loop) can evict it as the longest idle. The server
    // is stopped while the burst queues in its listen backlog, so the burst
    // is accepted in one turn whatever the machine's load.
    let _g = shared();
    const LIMIT: usize = 40;
    let s = Server::start(&[
        "--max-connections",
        &LIMIT.to_string(),
        "--io-threads",
        "1",
        "--read-timeout",
        "60s",
    ]);
    let partial = b"GET /get/x HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad";
    s.signal("STOP");
    let mut fresh = send(s.addr, &get("/health"));
    let held: Vec<Raw> = (0..2 * LIMIT).map(|_| send(s.addr, partial)).collect();
    s.signal("CONT");
    assert_eq!(
        answer_within(&mut fresh, Duration::from_secs(10)).map(|(status, _)| status),
        Ok(200),
        "a complete request accepted before {} partial ones",
        2 * LIMIT
    );
    drop(held);
}

#[test]
fn trickling_partial_requests_do_not_lock_out_a_fresh_client() {
    // Issue 9, item 6, slowloris: connections that send a request head a
    // few bytes at a time, so they are never quite idle.
    let _g = shared();
    const LIMIT: usize = 40;
    let s = Server::start(&[
        "--max-connections",
        &LIMIT.to_string(),
        "--read-timeout",
        "60s",
    ]);
    let mut slow: Vec<Raw> = (0..LIMIT)
        .map(|_| send(s.addr, b"GET /get/x HTTP/1.1\r\nHost: 127.0.0.1\r\n"))
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let rounds = Arc::new(AtomicUsize::new(0));
    let trickler = {
        let (stop, rounds) = (Arc::clone(&stop), Arc::clone(&rounds));
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                for c in &mut slow {
                    let _ = c.s.write_all(b"X-Pad: a\r\n");
                }
                rounds.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };
    // The trickle has gone on for longer than any grace the server may
    // give a new connection (about a second).
    assert!(poll_until(Duration::from_secs(20), || rounds
        .load(Ordering::SeqCst)
        >= 8));
    let worst = fresh_clients(s.addr);
    stop.store(true, Ordering::SeqCst);
    trickler.join().expect("trickler thread");
    assert!(
        worst < FRESH_CLIENT_LIMIT,
        "a fresh client waited {worst:?} behind {LIMIT} trickling requests"
    );
}

#[test]
fn closed_watchers_free_their_slots_at_once() {
    // Issue 9, item 7: long polls opened and closed must not keep their
    // --max-watchers slots until their timeout.
    let _g = shared();
    const MAX_WATCHERS: usize = 20;
    let s = Server::start(&["--max-watchers", &MAX_WATCHERS.to_string()]);
    let mut c = s.client();
    assert_eq!(c.put("w", &json!(1)).status, 200);
    let watchers: Vec<Raw> = (0..MAX_WATCHERS)
        .map(|_| send(s.addr, &get("/get/w?wait_after=1&timeout=120")))
        .collect();
    let mut parked = None;
    assert!(
        poll_until(Duration::from_secs(20), || {
            parked = metric(&mut c, "vkv_watchers");
            parked == Some(MAX_WATCHERS as f64)
        }),
        "parked: {parked:?}"
    );
    drop(watchers);
    let freed = poll_until(Duration::from_secs(2), || {
        parked = metric(&mut c, "vkv_watchers");
        parked == Some(0.0)
    });
    assert!(
        freed,
        "closed watchers still hold {parked:?} slots 2 s after closing"
    );
    // A new watcher parks (not 503) and is woken by the next version.
    let mut w = send(s.addr, &get("/get/w?wait_after=1&timeout=120"));
    assert!(poll_until(Duration::from_secs(10), || {
        metric(&mut c, "vkv_watchers") == Some(1.0)
    }));
    assert_eq!(c.put("w", &json!(2)).status, 200);
    let (status, body) = answer(&mut w).expect("the new watcher's answer");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let v: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(v["version"], 2);
}

/// Issue 21, item 8: long polls sent together with their FIN (the client
/// half-closes or closes right after sending) must not keep their watcher
/// slots. The FIN was read while the request was with a worker, and no
/// later event came once it parked: 1,200 of them filled
/// `--max-watchers 1000` for their whole timeout. Here 200 against 20
/// slots; then a legitimate watcher must park and be woken.
#[test]
fn long_polls_sent_with_their_fin_free_their_slots() {
    let _g = shared();
    const MAX_WATCHERS: usize = 20;
    let s = Server::start(&["--max-watchers", &MAX_WATCHERS.to_string()]);
    let mut c = s.client();
    assert_eq!(c.put("g", &json!(1)).status, 200);
    assert_eq!(c.put("w", &json!(1)).status, 200);
    for i in 0..10 * MAX_WATCHERS {
        let mut gone = TcpStream::connect(s.addr).expect("connect");
        gone.write_all(&get("/get/g?wait_after=1&timeout=300"))
            .expect("send");
        if i % 2 == 0 {
            gone.shutdown(std::net::Shutdown::Write)
                .expect("half-close");
        }
        // Dropped: closed, holding no socket.
    }
    // A legitimate watcher parks (no answer within a second) instead of
    // being answered 503 at once; tried again while the slots are freed.
    let mut watcher = None;
    let mut refused = 0;
    let parked = poll_until(Duration::from_secs(20), || {
        let mut w = send(s.addr, &get("/get/w?wait_after=1&timeout=120"));
        match answer_within(&mut w, Duration::from_secs(1)) {
            Err(_) => {
                watcher = Some(w);
                true
            }
            Ok((status, _)) => {
                assert_eq!(status, 503);
                refused += 1;
                false
            }
        }
    });
    assert!(parked, "a watcher was refused {refused} times: slots kept");
    let mut held = None;
    assert!(
        poll_until(Duration::from_secs(10), || {
            held = metric(&mut c, "vkv_watchers");
            held == Some(1.0)
        }),
        "watchers held: {held:?}, expected only the legitimate one"
    );
    let mut w = watcher.expect("parked watcher");
    assert_eq!(c.put("w", &json!(2)).status, 200);
    let (status, body) =
        answer_within(&mut w, Duration::from_secs(10)).expect("the watcher's answer");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let v: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(v["version"], 2);
}

/// A connection whose receive buffer is `rcvbuf` bytes (set before
/// connecting, so the window it offers stays that small), that sent
/// `request` and reads nothing yet.
fn send_small_window(addr: SocketAddr, rcvbuf: usize, request: &[u8]) -> Raw {
    let sock =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    sock.set_recv_buffer_size(rcvbuf).expect("SO_RCVBUF");
    sock.connect(&addr.into())
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    let mut r = Raw::over(sock.into());
    r.send(request);
    r
}

/// A field of `/proc/PID/status` in KiB (`VmRSS`, `VmHWM`).
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// A PUT of `body` (a JSON document) to `key`, on a connection of its own.
fn put_raw(addr: SocketAddr, key: &str, body: &[u8]) {
    let mut request = format!(
        "POST /put/{key} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    let mut s = send(addr, &request);
    let (status, answer) = answer(&mut s).expect("put answer");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
}

/// A value of `len` bytes of JSON text (a string), and the PUT body for it.
fn big_value(len: usize) -> (String, Vec<u8>) {
    let value = format!("\"{}\"", "v".repeat(len - 2));
    let body = format!("{{\"value\":{value}}}").into_bytes();
    (value, body)
}

/// Fresh clients (a new connection, one GET of a small key each) until
/// `done` has been set and `after` more were answered; each one's time.
fn probe_until(addr: SocketAddr, done: &AtomicBool, after: usize) -> Vec<Duration> {
    let mut times = Vec::new();
    let mut since_done = 0;
    while since_done < after {
        let finished = done.load(Ordering::SeqCst);
        let start = Instant::now();
        let mut s = send(addr, &get("/get/small"));
        let (status, _) = answer(&mut s).expect("fresh client's answer");
        assert_eq!(status, 200);
        times.push(start.elapsed());
        if finished {
            since_done += 1;
        }
    }
    times
}

/// Issue 21, item 7: 300 clients (1,500 in `scripts/unread_answers.py`)
/// each pipeline 4 GETs of a cached 1 MiB value with a 4 KiB receive
/// buffer and never read. Each answer used to be copied whole into its
/// connection's buffer on the I/O thread: RSS grew by 1 MiB per client
/// (+301 MiB here) and fresh clients waited over a second. Now the value
/// is sent from the cache's own bytes as the socket takes it, and the
/// kernel queues at most 64 KiB per socket: RSS may grow 64 MiB at most
/// and a fresh client's p99 stays under 250 ms (a few ms measured; the
/// bound leaves room for a loaded CI machine). Then the answers are all
/// there, whole, when a client does read.
#[test]
fn clients_not_reading_large_answers_hold_no_memory_and_stall_nobody() {
    let _g = exclusive();
    raise_fd_limit();
    const CLIENTS: usize = 300;
    const PIPELINE: usize = 4;
    let s = Server::start(&["--max-body-bytes", "2MiB"]);
    let (value, body) = big_value(1 << 20);
    put_raw(s.addr, "big", &body);
    put_raw(s.addr, "small", br#"{"value":1}"#);
    // Read once: the cache holds it from now on.
    let (status, got) = answer(&mut send(s.addr, &get("/get/big"))).expect("warm-up read");
    assert_eq!(status, 200);
    assert!(got.len() > 1 << 20);
    let rss_before = status_kib(s.pid(), "VmRSS");
    // Peak RSS from now on: VmHWM starts again from the current RSS.
    std::fs::write(format!("/proc/{}/clear_refs", s.pid()), "5").expect("reset VmHWM");
    let request = get("/get/big").repeat(PIPELINE);
    let done = AtomicBool::new(false);
    let (times, mut readers) = std::thread::scope(|scope| {
        let prober = scope.spawn(|| probe_until(s.addr, &done, 100));
        let readers: Vec<Raw> = (0..CLIENTS)
            .map(|_| send_small_window(s.addr, 4096, &request))
            .collect();
        done.store(true, Ordering::SeqCst);
        (prober.join().expect("prober"), readers)
    });
    let peak = status_kib(s.pid(), "VmHWM");
    let growth_mib = peak.saturating_sub(rss_before) as f64 / 1024.0;
    let mut sorted = times.clone();
    sorted.sort();
    let p99 = sorted[sorted.len() * 99 / 100];
    println!(
        "{CLIENTS} clients not reading: RSS {:.1} MiB before, peak +{growth_mib:.1} MiB; \
         fresh client p99 {p99:?}, max {:?} over {} GETs",
        rss_before as f64 / 1024.0,
        sorted[sorted.len() - 1],
        sorted.len()
    );
    assert!(
        growth_mib <= 64.0,
        "RSS grew {growth_mib:.1} MiB with {CLIENTS} clients not reading"
    );
    assert!(
        p99 < Duration::from_millis(250),
        "fresh client p99 {p99:?} with {CLIENTS} clients not reading"
    );
    // A client that reads at last gets its four answers, whole.
    let reader = &mut readers[CLIENTS / 2];
    for i in 0..PIPELINE {
        let (status, got) = answer(reader).unwrap_or_else(|e| panic!("answer {i}: {e}"));
        assert_eq!(status, 200);
        let v: serde_json::Value = serde_json::from_slice(&got).expect("JSON answer");
        assert_eq!(v["value"].as_str().map(str::len), Some(value.len() - 2));
        assert_eq!(v["version"], 1);
    }
}

/// Issue 21, item 7, the bound in total: answers nobody reads, each its
/// own 1 MiB copy (no cache, so every read made one), past
/// `--max-output-bytes 8MiB`. The server closes the connections that have
/// not read for the longest until what is held is back under the bound
/// (before, all 24 MiB were held until the write timeout); those that
/// stay open still deliver their whole answer.
#[test]
fn unsent_answers_past_the_output_budget_close_the_most_stalled_clients() {
    let _g = shared();
    const CLIENTS: usize = 24;
    let s = Server::start(&[
        "--max-body-bytes",
        "2MiB",
        "--cache-size",
        "0",
        "--max-output-bytes",
        "8MiB",
        "--read-timeout",
        "60s",
    ]);
    let (_, body) = big_value(1 << 20);
    put_raw(s.addr, "big", &body);
    let mut readers: Vec<Raw> = (0..CLIENTS)
        .map(|_| send_small_window(s.addr, 4096, &get("/get/big")))
        .collect();
    // 8 MiB holds at most 8 of the 24 answers (a little less than 1 MiB
    // each is charged: the kernel took some): 16 or more are closed, each
    // close logged with how many went at once.
    let closed = || -> usize {
        s.log_text()
            .lines()
            .filter(|l| l.contains("--max-output-bytes"))
            .filter_map(|l| {
                l.split("closed ")
                    .nth(1)?
                    .split(' ')
                    .next()?
                    .parse::<usize>()
                    .ok()
            })
            .sum()
    };
    let enough = poll_until(Duration::from_secs(20), || closed() >= 15);
    assert!(
        enough,
        "{} connections closed for the output budget:\n{}",
        closed(),
        s.log_text()
    );
    let (mut whole, mut cut) = (0, 0);
    for r in &mut readers {
        match answer_within(r, Duration::from_secs(20)) {
            Ok((200, got)) if got.len() > 1 << 20 => whole += 1,
            Ok((status, got)) => panic!("answered {status} with {} bytes", got.len()),
            Err(_) => cut += 1,
        }
    }
    // The closed ones were cut short; the others go through whole.
    assert!(
        cut >= 15 && whole >= 1,
        "{cut} cut, {whole} whole of {CLIENTS}"
    );
}

/// vkv started with the open-files limit `soft`/`hard`: the child, and its
/// log up to the "listening on" line (whose address is returned).
fn start_with_nofile(
    soft: libc::rlim_t,
    hard: libc::rlim_t,
    args: &[&str],
) -> (KillOnDrop, SocketAddr, Vec<String>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = common::vkv();
    cmd.args(["--bind", "127.0.0.1:0", "--db"])
        .arg(dir.path().join("kv.db"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: setrlimit is async-signal-safe; the closure allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            let r = libc::rlimit {
                rlim_cur: soft,
                rlim_max: hard,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &r) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = KillOnDrop {
        child: cmd.spawn().expect("spawn vkv"),
        _dir: dir,
    };
    let stderr = child.child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let listening = line.contains("listening on ");
            lines.push(line);
            if listening {
                let _ = tx.send(lines.clone());
            }
        }
        let _ = tx.send(lines);
    });
    let lines = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("vkv did not start");
    let addr = lines
        .iter()
        .find_map(|l| l.split("listening on ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in the log:\n{}", lines.join("\n")));
    (child, addr, lines)
}

/// The child vkv, killed when dropped, and its database's directory.
struct KillOnDrop {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The soft and hard "Max open files" of a process, from /proc/PID/limits.
fn nofile_of(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("Max open files line")
        .to_string();
    let mut fields = line["Max open files".len()..].split_whitespace();
    (
        fields.next().expect("soft").to_string(),
        fields.next().expect("hard").to_string(),
    )
}

/// This process's hard open-files limit.
fn own_hard_limit() -> libc::rlim_t {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only the struct passed.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) }, 0);
    r.rlim_max
}

#[test]
fn raises_its_soft_open_files_limit_to_the_hard_limit_and_logs_it() {
    let _g = shared();
    let hard = own_hard_limit().min(1 << 20);
    assert!(hard > 512, "hard limit {hard}: nothing to raise to");
    let (child, addr, log) = start_with_nofile(256, hard, &["--max-connections", "100"]);
    assert_eq!(
        nofile_of(child.child.id()),
        (hard.to_string(), hard.to_string()),
        "soft limit not raised"
    );
    let log = log.join("\n");
    assert!(
        log.contains(&format!("open files limit {hard} (raised from 256)")),
        "{log}"
    );
    assert!(!log.contains("is below"), "a needless warning:\n{log}");
    let (r, _) = fresh_client(addr);
    assert_eq!(r, Ok(200));
}

#[test]
fn warns_at_start_when_the_hard_limit_is_below_what_the_flags_ask() {
    let _g = shared();
    let (child, addr, log) = start_with_nofile(200, 300, &["--max-connections", "1000"]);
    assert_eq!(nofile_of(child.child.id()), ("300".into(), "300".into()));
    let log = log.join("\n");
    assert!(
        log.contains("open files limit 300 (raised from 200)"),
        "{log}"
    );
    assert!(
        log.contains("open files limit 300 is below the") && log.contains("--max-connections 1000"),
        "no warning about the limit:\n{log}"
    );
    // It still serves.
    let (r, _) = fresh_client(addr);
    assert_eq!(r, Ok(200));
}
