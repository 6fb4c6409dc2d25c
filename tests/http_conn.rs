//! The connection layer over raw sockets: framing, limits, timeouts,
//! keep-alive, smuggling rejections, connection bounds and starvation.
//!
//! Every client socket has a read timeout, so no test can hang. Tests that
//! measure process-wide things (thread counts) or timing under load take the
//! `SERIAL` lock exclusively; all others share it.

use std::io::{Read, Seek, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

#[path = "support/mod.rs"]
mod support;

use support::raw::Raw;
use support::{Resp, exclusive, poll_until, shared};

use vkv::http::completion::{Deferred, Reply, Responder};
use vkv::http::conn::{ConnLimits, HttpServer, Service};
use vkv::http::message::{FileBody, HttpRequest, HttpResponse};
use vkv::http::workers::WorkerPool;

/// Echoes what it got as JSON; `/count-me` counts its calls, `/panic`
/// panics, `/slow` counts its call and takes 500 ms, `/close` asks to close the connection.
/// Run by a pool of 4 workers, as the real server runs its handlers.
fn test_service(count: Arc<AtomicUsize>) -> Arc<dyn Service> {
    let handler = Arc::new(move |req: &HttpRequest| -> Reply {
        match req.path() {
            "/count-me" => {
                count.fetch_add(1, Ordering::SeqCst);
                HttpResponse::json(200, b"{\"counted\":true}".to_vec())
            }
            "/panic" => panic!("test panic"),
            "/slow" => {
                count.fetch_add(1, Ordering::SeqCst);
                thread::sleep(Duration::from_millis(500));
                HttpResponse::json(200, b"{\"slow\":true}".to_vec())
            }
            "/close" => HttpResponse::json(200, b"{}".to_vec()).closing(),
            // 32 MiB streamed from a file, as /backup streams its snapshot.
            "/file" => {
                let mut file = tempfile::tempfile().unwrap();
                let chunk = vec![b'f'; 1 << 20];
                for _ in 0..32 {
                    file.write_all(&chunk).unwrap();
                }
                file.rewind().unwrap();
                HttpResponse::file(
                    200,
                    "application/octet-stream",
                    FileBody::new(file, 32 << 20),
                )
            }
            _ => {
                let body = serde_json::json!({
                    "method": req.method,
                    "target": req.target,
                    "body_len": req.body.len(),
                    "body": String::from_utf8_lossy(&req.body),
                });
                HttpResponse::json(200, body.to_string().into_bytes())
            }
        }
        .into()
    });
    Arc::new(LoopFirst(WorkerPool::start(4, 1024, handler).unwrap()))
}

/// The pool behind a loop that answers `/now/...` itself (as the real
/// server answers cache hits), echoing the target, and hands `/later/...`
/// on to a thread that answers it (as a PostgreSQL read joins a round).
struct LoopFirst(WorkerPool);

impl Service for LoopFirst {
    fn handle(&self, request: &HttpRequest) -> Reply {
        let path = request.path();
        let on = if path.starts_with("/now/") {
            "loop"
        } else if path.starts_with("/later/") {
            "later"
        } else {
            return self.0.handle(request);
        };
        let body = serde_json::json!({"target": request.target, "on": on});
        let response = HttpResponse::json(200, body.to_string().into_bytes());
        if on == "loop" {
            return response.into();
        }
        Reply::Later(Box::new(move |responder| {
            thread::spawn(move || {
                thread::sleep(Duration::from_millis(50));
                responder.send(response);
            });
        }))
    }

    fn defer(&self, request: HttpRequest, work: Deferred, responder: Responder) {
        self.0.defer(request, work, responder);
    }

    fn spawn(&self, task: Box<dyn FnOnce() + Send>) {
        self.0.spawn(task);
    }
}

struct TestServer {
    server: HttpServer,
    count: Arc<AtomicUsize>,
}

impl TestServer {
    fn start(limits: ConnLimits) -> TestServer {
        let count = Arc::new(AtomicUsize::new(0));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let server = HttpServer::start(listener, limits, test_service(count.clone())).unwrap();
        TestServer { server, count }
    }

    fn client(&self) -> Raw {
        Raw::open(self.server.local_addr())
    }

    fn counted(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }
}

fn default_server() -> TestServer {
    TestServer::start(ConnLimits::default())
}

fn get(target: &str) -> Vec<u8> {
    format!("GET {target} HTTP/1.1\r\nHost: t\r\n\r\n").into_bytes()
}

fn threads_in_process() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("Threads:")).unwrap();
    line["Threads:".len()..].trim().parse().unwrap()
}

/// Sends `request` on a fresh connection; expects `status` and a close.
fn expect_rejected(server: &TestServer, request: &[u8], status: u16) -> Resp {
    let mut client = server.client();
    client.send(request);
    let resp = client.expect_response("the answer");
    assert_eq!(
        resp.status,
        status,
        "{:?}: {resp:?}",
        String::from_utf8_lossy(request)
    );
    assert_eq!(resp.header("connection"), Some("close"));
    assert!(
        client.closed_within(Duration::from_secs(3)),
        "connection left open after {status}"
    );
    resp
}

#[test]
fn keep_alive_serves_several_requests_on_one_connection() {
    let _g = shared();
    let server = default_server();
    let mut client = server.client();
    for i in 0..5 {
        client.send(&get(&format!("/item/{i}?v=1")));
        let resp = client.expect_response("the answer");
        assert_eq!(resp.status, 200);
        assert_eq!(resp.json()["target"], format!("/item/{i}?v=1"));
        assert_eq!(resp.header("connection"), None);
        assert_eq!(resp.header("content-type"), Some("application/json"));
        assert!(resp.header("date").is_some_and(|d| d.ends_with(" GMT")));
    }
    assert_eq!(server.server.open_connections(), 1);
}

#[test]
fn pipelined_requests_in_one_write_are_answered_in_order() {
    let _g = shared();
    let server = default_server();
    let mut client = server.client();
    let mut burst = get("/a");
    burst.extend_from_slice(b"POST /b HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello");
    burst.extend_from_slice(&get("/c"));
    client.send(&burst);
    let targets: Vec<_> = (0..3)
        .map(|_| client.expect_response("the answer").json())
        .collect();
    assert_eq!(targets[0]["target"], "/a");
    assert_eq!(targets[1]["target"], "/b");
    assert_eq!(targets[1]["body"], "hello");
    assert_eq!(targets[2]["target"], "/c");
}

/// The loop stops reading a socket once a read leaves it empty (the next
/// bytes bring a new event): a request that arrives in pieces, a body
/// after its head, and a request the client half-closes right after must
/// all still be read in full and answered.
#[test]
fn requests_arriving_in_pieces_or_with_the_close_are_answered() {
    let _g = shared();
    let server = default_server();
    let mut client = server.client();
    client.s.set_nodelay(true).unwrap();
    let pieces: [&[u8]; 4] = [
        b"POST /pie",
        b"ces HTTP/1.1\r\nHost: t\r\nContent-Le",
        b"ngth: 5\r\n\r\n",
        b"hello",
    ];
    for _ in 0..3 {
        for piece in pieces {
            client.send(piece);
            thread::sleep(Duration::from_millis(20));
        }
        let resp = client.expect_response("the answer");
        assert_eq!(resp.status, 200);
        assert_eq!(resp.json()["target"], "/pieces");
        assert_eq!(resp.json()["body"], "hello");
    }

    // The request and the FIN in one go: answered, then closed.
    let mut client = server.client();
    client.send(&get("/last"));
    client.s.shutdown(std::net::Shutdown::Write).unwrap();
    let resp = client.expect_response("the answer");
    assert_eq!(resp.json()["target"], "/last");
    assert!(
        client.closed_within(Duration::from_secs(3)),
        "the half-closed connection stayed open"
    );
}

#[test]
fn http_1_0_closes_unless_keep_alive_is_asked() {
    let _g = shared();
    let server = default_server();
    let mut client = server.client();
    client.send(b"GET /old HTTP/1.0\r\n\r\n");
    let resp = client.expect_response("the answer");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("connection"), Some("close"));
    assert!(client.closed_within(Duration::from_secs(3)));

    let mut client = server.client();
    for _ in 0..2 {
        client.send(b"GET /old HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
        let resp = client.expect_response("the answer");
        assert_eq!(resp.status, 200);
        assert_eq!(resp.header("connection"), Some("keep-alive"));
    }
}

#[test]
fn connection_close_and_response_close_end_the_connection() {
    let _g = shared();
    let server = default_server();
    let mut client = server.client();
    client.send(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_eq!(
        client.expect_response("the answer").header("connection"),
        Some("close")
    );
    assert!(client.closed_within(Duration::from_secs(3)));

    let mut client = server.client();
    client.send(&get("/close"));
    assert_eq!(
        client.expect_response("the answer").header("connection"),
        Some("close")
    );
    assert!(client.closed_within(Duration::from_secs(3)));
}

#[test]
fn head_sends_the_length_but_no_body() {
    let _g = shared();
    let server = default_server();
    let mut client = server.client();
    client.send(&get("/same"));
    let full = client.expect_response("the answer");
    client.send(b"HEAD /same HTTP/1.1\r\nHost: t\r\n\r\n");
    let head = client
        .head_response(Duration::from_secs(10))
        .expect("HEAD answered");
    assert_eq!(head.status, 200);
    let get_len = full.body.len().to_string();
    let echoed = full.json();
    assert_eq!(echoed["method"], "GET");
    // The HEAD body would differ only in the method name: "HEAD" vs "GET".
    assert_eq!(
        head.header("content-length")
            .unwrap()
            .parse::<usize>()
            .unwrap(),
        get_len.parse::<usize>().unwrap() + 1
    );
    // Had a body been written, it would be parsed as the next response here.
    client.send(&get("/after"));
    assert_eq!(
        client.expect_response("the answer").json()["target"],
        "/after"
    );
}

#[test]
fn expect_100_continue_is_answered_before_the_body() {
    let _g = shared();
    let server = default_server();
    let mut client = server.client();
    client.send(
        b"POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 2000\r\nExpect: 100-continue\r\n\r\n",
    );
    let interim = client.expect_response("the answer");
    assert_eq!(interim.status, 100);
    client.send(&[b'x'; 2000]);
    let resp = client.expect_response("the answer");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json()["body_len"], 2000);

    expect_rejected(
        &server,
        b"POST / HTTP/1.1\r\nContent-Length: 3\r\nExpect: magic\r\n\r\nabc",
        417,
    );
}

#[test]
fn chunked_body_is_decoded() {
    let _g = shared();
    let server = default_server();
    let mut client = server.client();
    client.send(
        b"POST /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: Chunked \r\n\r\n\
          5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: skipped\r\n\r\n",
    );
    let resp = client.expect_response("the answer");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json()["body"], "hello world");
    client.send(&get("/next"));
    assert_eq!(
        client.expect_response("the answer").json()["target"],
        "/next"
    );

    let malformed: [&[u8]; 3] = [
        b"zz\r\nhello\r\n0\r\n\r\n",
        b"5\r\nhelloXX0\r\n\r\n",
        b"5\nhello\r\n0\r\n\r\n",
    ];
    for body in malformed {
        let mut request = b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        request.extend_from_slice(body);
        expect_rejected(&server, &request, 400);
    }
}

#[test]
fn ambiguous_framing_is_rejected_and_the_smuggled_request_never_runs() {
    let _g = shared();
    let server = default_server();
    let smuggled = "GET /count-me HTTP/1.1\r\nHost: t\r\n\r\n";
    let variants = [
        "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: gzip, chunked\r\n",
        "Transfer-Encoding: chunked, chunked\r\n",
        "Transfer-Encoding: xchunked\r\n",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: \r\n",
        "Content-Length: 0\r\nContent-Length: 5\r\n",
        "Content-Length: +0\r\n",
        "Content-Length: 0, 0\r\n",
    ];
    for framing in variants {
        let request = format!("POST / HTTP/1.1\r\nHost: t\r\n{framing}\r\n0\r\n\r\n{smuggled}");
        let resp = expect_rejected(&server, request.as_bytes(), 400);
        assert!(resp.json()["detail"].is_string());
    }
    // Transfer-Encoding on HTTP/1.0 is faulty framing too.
    let request =
        format!("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}");
    expect_rejected(&server, request.as_bytes(), 400);
    assert_eq!(server.counted(), 0, "a smuggled request was executed");

    // Control: with sound framing, the same second request does run.
    let mut client = server.client();
    client.send(
        format!(
            "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n{smuggled}"
        )
        .as_bytes(),
    );
    assert_eq!(client.expect_response("the answer").status, 200);
    assert_eq!(client.expect_response("the answer").status, 200);
    assert_eq!(server.counted(), 1);
}

#[test]
fn invalid_request_heads_get_400() {
    let _g = shared();
    let server = default_server();
    expect_rejected(&server, b"GET / HTTP/1.1\r\nX-A: a\rb\r\n\r\n", 400);
    expect_rejected(&server, b"GET / HTTP/1.1\r\nX-A: a\x01b\r\n\r\n", 400);
    expect_rejected(
        &server,
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n",
        400,
    );
    expect_rejected(&server, b"GET /\xff\xfe HTTP/1.1\r\n\r\n", 400);
    expect_rejected(&server, b"GET / HTTP/2.0\r\n\r\n", 400);
    expect_rejected(&server, b"GARBAGE\r\n\r\n", 400);
}

#[test]
fn host_must_be_sent_once_and_absolute_form_targets_are_routed_by_path() {
    let _g = shared();
    let server = default_server();
    let missing = expect_rejected(&server, b"GET /count-me HTTP/1.1\r\n\r\n", 400);
    assert_eq!(missing.json()["detail"], "missing Host header");
    let twice = b"GET /count-me HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n";
    assert_eq!(
        expect_rejected(&server, twice, 400).json()["detail"],
        "more than one Host header"
    );
    assert_eq!(server.counted(), 0);
    // HTTP/1.0 has no Host requirement.
    let mut client = server.client();
    client.send(b"GET /old HTTP/1.0\r\n\r\n");
    assert_eq!(client.expect_response("the answer").status, 200);

    let mut client = server.client();
    client
        .send(b"GET http://example.com:8080/get/k?version=2 HTTP/1.1\r\nHost: example.com\r\n\r\n");
    let resp = client.expect_response("the answer");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json()["target"], "/get/k?version=2");
}

#[test]
fn a_panicking_service_answers_500_and_keeps_serving() {
    let _g = shared();
    let server = default_server();
    let mut client = server.client();
    client.send(&get("/panic"));
    assert_eq!(client.expect_response("the answer").status, 500);
    client.send(&get("/fine"));
    assert_eq!(client.expect_response("the answer").status, 200);
    drop(client);
    poll_until(Duration::from_secs(3), || {
        server.server.open_connections() == 0
    });
    assert_eq!(server.server.open_connections(), 0);
}

#[test]
fn oversized_request_line_and_headers_are_refused() {
    let _g = shared();
    let server = default_server();
    let long_target = format!("/{}", "a".repeat(9 * 1024));
    expect_rejected(&server, &get(&long_target), 414);
    // Just under the limit is fine.
    let mut client = server.client();
    client.send(&get(&format!("/{}", "a".repeat(8000))));
    assert_eq!(client.expect_response("the answer").status, 200);

    let big_header = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "b".repeat(17 * 1024));
    expect_rejected(&server, big_header.as_bytes(), 431);
    let many: String = (0..101).map(|i| format!("X-H{i}: v\r\n")).collect();
    expect_rejected(
        &server,
        format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes(),
        431,
    );
}

#[test]
fn oversized_bodies_get_413_without_the_body_being_read() {
    let _g = shared();
    let server = default_server();
    let started = Instant::now();
    // The 10 MiB body is never sent: the answer must not wait for it.
    expect_rejected(
        &server,
        b"POST / HTTP/1.1\r\nContent-Length: 10485760\r\n\r\n",
        413,
    );
    expect_rejected(
        &server,
        b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
        413,
    );
    assert!(started.elapsed() < Duration::from_secs(5));

    let mut chunked = b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    chunked.extend_from_slice(format!("{:x}\r\n", 2 << 20).as_bytes());
    expect_rejected(&server, &chunked, 413);
}

#[test]
fn idle_connections_are_closed_after_the_idle_timeout() {
    let _g = shared();
    let limits = ConnLimits {
        idle_timeout: Duration::from_millis(300),
        ..ConnLimits::default()
    };
    let server = TestServer::start(limits);
    let mut client = server.client();
    client.send(&get("/once"));
    assert_eq!(client.expect_response("the answer").status, 200);
    let started = Instant::now();
    assert!(client.closed_within(Duration::from_secs(3)));
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(2),
        "closed after {waited:?}"
    );
    // A silent client that never sends a byte is closed the same way.
    let mut silent = server.client();
    assert!(silent.closed_within(Duration::from_secs(3)));
}

#[test]
fn a_slow_loris_is_cut_off_at_the_read_timeout() {
    let _g = shared();
    let limits = ConnLimits {
        read_timeout: Duration::from_secs(1),
        ..ConnLimits::default()
    };
    let server = TestServer::start(limits);
    let mut client = server.client();
    let started = Instant::now();
    client.send(b"GET / HTTP/1.1\r\n");
    let mut cut_off = None;
    for i in 0..25 {
        thread::sleep(Duration::from_millis(200));
        // Each byte resets any per-read timeout; only a request deadline stops this.
        if client
            .s
            .write_all(format!("X-{i}: v\r\n").as_bytes())
            .is_err()
        {
            break;
        }
        client.read_some(Duration::from_millis(1));
        if client.eof || !client.buf.is_empty() {
            cut_off = Some(started.elapsed());
            break;
        }
    }
    let cut_off = cut_off.expect("slow loris was never cut off");
    assert!(
        cut_off < Duration::from_millis(2500),
        "cut off after {cut_off:?}"
    );
    assert_eq!(client.expect_response("the answer").status, 408);
}

#[test]
fn connection_limit_bounds_threads_and_refuses_with_503() {
    let _g = exclusive();
    // No connection gets old enough to be closed to make room (that is
    // `at_the_limit_the_longest_idle_or_stalled_connection_makes_room`).
    let limits = ConnLimits {
        max_connections: 8,
        read_timeout: Duration::from_secs(5),
        evict_after: Duration::from_secs(60),
        ..ConnLimits::default()
    };
    let server = TestServer::start(limits);
    let before = threads_in_process();
    let stallers: Vec<Raw> = (0..200)
        .map(|_| {
            let mut c = server.client();
            c.send(b"POST /stall HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nhalf");
            c
        })
        .collect();
    // Each of the 200 is accepted (the first 8 kept, the others refused)
    // before the count is taken.
    assert!(
        poll_until(Duration::from_secs(10), || server.server.open_connections()
            == 8),
        "{} connections open",
        server.server.open_connections()
    );
    let during = threads_in_process();
    assert!(
        during <= before + 8 + 2,
        "threads grew from {before} to {during}"
    );
    assert_eq!(server.server.open_connections(), 8);
    let mut refused = 0;
    for mut c in stallers {
        c.read_some(Duration::from_millis(20));
        if c.buf.starts_with(b"HTTP/1.1 503") {
            refused += 1;
            let resp = c.expect_response("the answer");
            assert_eq!(resp.header("retry-after"), Some("1"));
            assert_eq!(resp.header("connection"), Some("close"));
        } else {
            assert!(c.buf.is_empty() && !c.eof, "unexpected {:?}", c.text());
        }
    }
    assert_eq!(refused, 192);
}

#[test]
fn a_normal_client_is_served_while_stallers_hold_connections() {
    let _g = exclusive();
    let limits = ConnLimits {
        max_connections: 256,
        read_timeout: Duration::from_secs(5),
        evict_after: Duration::from_secs(60),
        ..ConnLimits::default()
    };
    let server = TestServer::start(limits);
    let before = threads_in_process();
    let _stallers: Vec<Raw> = (0..200)
        .map(|_| {
            let mut c = server.client();
            c.send(b"GET /stall HTTP/1.1\r\nHost: t\r\n");
            c
        })
        .collect();
    let started = Instant::now();
    let mut client = server.client();
    client.send(&get("/normal"));
    assert_eq!(client.expect_response("the answer").status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
    assert!(threads_in_process() <= before + 201 + 2);
    // One more beyond the limit is still refused at once.
    let mut extra: Vec<Raw> = (0..60).map(|_| server.client()).collect();
    let last = extra.last_mut().unwrap();
    last.send(&get("/extra"));
    assert_eq!(last.expect_response("the answer").status, 503);
}

#[test]
fn shutdown_finishes_in_flight_requests_and_closes_idle_ones() {
    let _g = shared();
    let server = default_server();
    let addr = server.server.local_addr();
    let mut idle = server.client();
    idle.send(&get("/warm"));
    assert_eq!(idle.expect_response("the answer").status, 200);
    let mut busy = server.client();
    busy.send(&get("/slow"));
    assert!(poll_until(Duration::from_secs(5), || server.counted() == 1));
    let started = Instant::now();
    let stopper = thread::spawn(move || server.server.shutdown());
    assert!(
        idle.closed_within(Duration::from_secs(3)),
        "idle connection left open"
    );
    let resp = busy.expect_response("the answer");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("connection"), Some("close"));
    stopper.join().unwrap();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(
        TcpStream::connect(addr).is_err(),
        "still accepting after shutdown"
    );
}

/// How long each connection of a burst waited for its first answer, per
/// round: 32 keep-alive connections opened at once, each sending requests
/// for 1 s.
fn first_answer_waits(addr: SocketAddr, rounds: usize) -> Vec<Duration> {
    (0..rounds)
        .map(|_| {
            let start = Arc::new(Barrier::new(32));
            let clients: Vec<_> = (0..32)
                .map(|_| {
                    let start = start.clone();
                    thread::spawn(move || {
                        start.wait();
                        let began = Instant::now();
                        let mut client = Raw::open(addr);
                        let mut first = None;
                        while began.elapsed() < Duration::from_secs(1) || first.is_none() {
                            client.send(&get("/burst"));
                            assert_eq!(client.expect_response("the answer").status, 200);
                            first.get_or_insert(began.elapsed());
                            thread::sleep(Duration::from_millis(5));
                        }
                        first.unwrap()
                    })
                })
                .collect();
            clients
                .into_iter()
                .map(|c| c.join().unwrap())
                .max()
                .unwrap()
        })
        .collect()
}

#[test]
fn bursts_of_keep_alive_connections_never_starve() {
    let _g = exclusive();
    let handler = Arc::new(|_req: &HttpRequest| -> vkv::http::completion::Reply {
        HttpResponse::json(200, b"{\"status\":\"ok\"}".to_vec()).into()
    });
    let service: Arc<dyn Service> = Arc::new(WorkerPool::start(4, 1024, handler).unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let server = HttpServer::start(listener, ConnLimits::default(), service).unwrap();
    let waits = first_answer_waits(server.local_addr(), 20);
    let worst = waits.iter().max().unwrap();
    eprintln!("vkv: worst first-answer wait over 20 bursts: {worst:?}");
    assert!(
        *worst < Duration::from_secs(1),
        "a connection waited {worst:?} for its first answer: {waits:?}"
    );
}

/// Bare tiny_http 0.12 as `examples/tiny_http_bare.rs` runs it: its own
/// accept loop and per-connection task pool, a channel, 4 workers. Leaked.
fn start_bare_tiny_http() -> SocketAddr {
    let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let addr = server.server_addr().to_ip().unwrap();
    let (tx, rx) = crossbeam_channel::bounded::<tiny_http::Request>(1024);
    thread::spawn(move || {
        for request in server.incoming_requests() {
            let _ = tx.send(request);
        }
    });
    for _ in 0..4 {
        let rx = rx.clone();
        thread::spawn(move || {
            let json = tiny_http::Header::from_bytes("Content-Type", "application/json").unwrap();
            for request in rx.iter() {
                let body = tiny_http::Response::from_string("{\"status\":\"ok\"}");
                let _ = request.respond(body.with_header(json.clone()));
            }
        });
    }
    addr
}

/// The same bursts against bare tiny_http: shows the starvation vkv's own
/// connection layer avoids. A connection that waits about as long as the
/// others hold theirs (1 s) was queued behind them; an unstarved one waits a
/// few ms. Ignored because it is meant to fail; run with `--ignored
/// --nocapture` to see how often.
///
/// Its task pool starts with 4 threads and keeps extra idle ones for 5 s, so
/// on one server mostly the first burst starves; a fresh server per round
/// shows the race in every round.
#[test]
#[ignore]
fn starvation_reproduces_on_bare_tiny_http() {
    let _g = exclusive();
    let starved = |waits: &[Duration]| {
        waits
            .iter()
            .filter(|w| **w >= Duration::from_millis(500))
            .count()
    };
    let same_server = first_answer_waits(start_bare_tiny_http(), 20);
    let fresh: Vec<Duration> = (0..10)
        .flat_map(|_| first_answer_waits(start_bare_tiny_http(), 1))
        .collect();
    eprintln!(
        "tiny_http, one server: {}/20 rounds starved (>= 500 ms), worst per round {same_server:?}",
        starved(&same_server)
    );
    eprintln!(
        "tiny_http, fresh server per round: {}/10 rounds starved, worst per round {fresh:?}",
        starved(&fresh)
    );
    assert!(
        starved(&same_server) + starved(&fresh) > 0,
        "no starvation this time"
    );
}

/// Issue 9 item 6: a client holding every connection (idle keep-alives and
/// requests stalled half-way) cannot lock others out: at the limit, a new
/// connection closes the one idle or stalled the longest and is served.
#[test]
fn at_the_limit_the_longest_idle_or_stalled_connection_makes_room() {
    let _g = exclusive();
    let limits = ConnLimits {
        max_connections: 8,
        ..ConnLimits::default()
    };
    let server = TestServer::start(limits);
    let mut old: Vec<Raw> = (0..4)
        .map(|_| {
            let mut c = server.client();
            c.send(&get("/warm"));
            assert_eq!(c.expect_response("the answer").status, 200);
            c
        })
        .collect();
    for _ in 0..4 {
        let mut c = server.client();
        c.send(b"POST /stall HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nhalf");
        old.push(c);
    }
    poll_until(Duration::from_secs(5), || {
        server.server.open_connections() >= 8
    });
    assert_eq!(server.server.open_connections(), 8);
    // No grace by default: however young, a connection with nothing in
    // flight makes room (else re-opening clients could lock everyone out).
    let mut fresh = Vec::new();
    for i in 0..8 {
        let started = Instant::now();
        let mut c = server.client();
        c.send(&get(&format!("/fresh/{i}")));
        let resp = c.expect_response("the answer");
        assert_eq!(resp.status, 200, "fresh client {i}: {resp:?}");
        assert!(started.elapsed() < Duration::from_secs(1));
        fresh.push(c);
    }
    for (i, c) in old.iter_mut().enumerate() {
        assert!(
            c.closed_within(Duration::from_secs(3)),
            "old connection {i} was not closed"
        );
    }
    assert_eq!(server.server.open_connections(), 8);
    // One more closes the fresh connection idle the longest (the first),
    // not a newer one.
    let mut extra = server.client();
    extra.send(&get("/extra"));
    assert_eq!(extra.expect_response("the answer").status, 200);
    assert!(
        fresh[0].closed_within(Duration::from_secs(3)),
        "the longest idle connection was not closed"
    );
    for (i, c) in fresh.iter_mut().enumerate().skip(1) {
        c.send(&get("/again"));
        assert_eq!(
            c.expect_response("the answer").status,
            200,
            "fresh client {i} lost its connection"
        );
    }
}

/// Issue 9 item 16: a client that sends a whole oversized body before
/// reading (as Node's fetch does) gets the 413, not a reset: the server
/// keeps reading and discarding for a bounded time after answering.
#[test]
fn a_client_still_sending_an_oversized_body_reads_the_413() {
    let _g = shared();
    let server = default_server();
    for round in 0..3 {
        let mut client = server.client();
        let body = vec![b'x'; 8 << 20];
        client.send(
            format!(
                "POST /big HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        );
        client
            .s
            .write_all(&body)
            .unwrap_or_else(|e| panic!("round {round}: the body could not be sent: {e}"));
        let resp = client.expect_response("the answer");
        assert_eq!(resp.status, 413);
        assert_eq!(resp.header("connection"), Some("close"));
        assert!(client.closed_within(Duration::from_secs(3)));
    }
}

/// Issue 9 item 10 (connection part): timeouts too large for an `Instant`
/// mean "no deadline", never an overflow panic: requests are served, kept
/// alive, and shutdown still returns.
#[test]
fn timeouts_too_large_for_an_instant_never_overflow() {
    let _g = shared();
    let limits = ConnLimits {
        idle_timeout: Duration::MAX,
        read_timeout: Duration::MAX,
        evict_after: Duration::MAX,
        ..ConnLimits::default()
    };
    let server = TestServer::start(limits);
    let mut client = server.client();
    for i in 0..3 {
        client.send(&get(&format!("/huge/{i}")));
        assert_eq!(client.expect_response("the answer").status, 200);
    }
    drop(client);
    let started = Instant::now();
    let TestServer { server, .. } = server;
    server.shutdown();
    assert!(started.elapsed() < Duration::from_secs(3));
}

/// A large file body (as /backup sends) going to a client that reads slowly
/// stalls nobody: the loop writes what the socket takes and serves others
/// meanwhile; the body arrives whole and the connection stays usable.
#[test]
fn a_large_file_body_to_a_slow_reader_stalls_no_other_connection() {
    let _g = shared();
    let server = default_server();
    let mut slow = server.client();
    slow.send(&get("/file"));
    // Nothing is read from `slow`: its socket buffers fill up while the
    // others are served.
    for i in 0..20 {
        let started = Instant::now();
        let mut other = server.client();
        other.send(&get(&format!("/other/{i}")));
        assert_eq!(other.expect_response("the answer").status, 200);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "another client waited {:?}",
            started.elapsed()
        );
    }
    let resp = slow.expect_response("the answer");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body.len(), 32 << 20);
    assert!(resp.body.iter().all(|&b| b == b'f'));
    slow.send(&get("/after-file"));
    assert_eq!(
        slow.expect_response("the answer").json()["target"],
        "/after-file"
    );
}

#[test]
fn answers_from_the_loop_and_from_workers_keep_pipelined_order() {
    let _g = shared();
    let server = default_server();
    let mut client = server.client();
    let mut burst = Vec::new();
    let targets = ["/now/1", "/slow", "/now/2", "/later/3", "/w/4", "/now/5"];
    for t in targets {
        burst.extend_from_slice(&get(t));
    }
    burst.extend_from_slice(b"HEAD /now/6 HTTP/1.1\r\nHost: t\r\n\r\n");
    client.send(&burst);
    for t in targets {
        let resp = client.expect_response("the answer");
        assert_eq!(resp.status, 200);
        if t == "/slow" {
            // Taken 500 ms on a worker while the loop had the rest ready.
            assert_eq!(resp.json()["slow"], true);
            continue;
        }
        assert_eq!(resp.json()["target"], t);
        let on = match t.split('/').nth(1) {
            Some("now") => Some("loop"),
            Some("later") => Some("later"),
            _ => None, // a worker's echo has no "on"
        };
        assert_eq!(resp.json()["on"].as_str(), on, "{t}");
    }
    let head = client
        .head_response(Duration::from_secs(10))
        .expect("HEAD answered");
    assert_eq!(head.status, 200);
    assert!(head.header("content-length").is_some());
    // Nothing after the HEAD's head: the next request's answer comes next.
    client.send(&get("/now/7"));
    assert_eq!(
        client.expect_response("the answer").json()["target"],
        "/now/7"
    );
}

/// A client that pipelines loop-answered requests without end, reading its
/// answers as fast as they come, must not hold the loop: another client is
/// answered while the first still has most of its requests outstanding.
#[test]
fn a_client_pipelining_without_end_does_not_starve_the_others() {
    let _g = exclusive();
    let server = default_server();
    let addr = server.server.local_addr();
    const N: usize = 200_000;
    let flood = Raw::open(addr);
    let mut writer = flood.s.try_clone().unwrap();
    let answered = Arc::new(AtomicUsize::new(0));
    let reader = {
        let answered = answered.clone();
        let mut stream = flood.s.try_clone().unwrap();
        thread::spawn(move || {
            // Counts answers by their status lines; bodies never contain one.
            let mut chunk = vec![0u8; 1 << 16];
            let mut tail = Vec::new();
            while answered.load(Ordering::SeqCst) < N {
                let n = stream.read(&mut chunk).unwrap();
                assert!(n > 0, "flooding client closed");
                tail.extend_from_slice(&chunk[..n]);
                let lines = tail.windows(9).filter(|w| w == b"HTTP/1.1 ").count();
                let keep = tail.len().saturating_sub(8);
                tail.drain(..keep);
                answered.fetch_add(lines, Ordering::SeqCst);
            }
        })
    };
    let sender = thread::spawn(move || {
        let one = get("/now/flood");
        let batch: Vec<u8> = one.iter().copied().cycle().take(one.len() * 1000).collect();
        for _ in 0..N / 1000 {
            writer.write_all(&batch).unwrap();
        }
    });
    // Wait until the flood is being answered, then ask from another client.
    assert!(
        support::poll_until(Duration::from_secs(10), || answered.load(Ordering::SeqCst)
            > 1000),
        "the flood is not being answered"
    );
    let mut other = Raw::open(addr);
    other.send(&get("/now/other"));
    assert_eq!(
        other.expect_response("the answer").json()["target"],
        "/now/other"
    );
    let done = answered.load(Ordering::SeqCst);
    assert!(
        done < N / 2,
        "the other client was answered only after {done} of {N} flood answers"
    );
    sender.join().unwrap();
    reader.join().unwrap();
    assert_eq!(answered.load(Ordering::SeqCst), N);
}

/// Parks `/poll` on the loop (as a long poll parks) with a deadline 100 ms
/// away; its expiry answers with the name of the thread it ran on. Every
/// other request goes to one worker with room for one waiting request:
/// `/block` holds the worker until `release` is sent to.
struct ExpiryOnWorker(WorkerPool);

impl Service for ExpiryOnWorker {
    fn handle(&self, request: &HttpRequest) -> Reply {
        if request.path() != "/poll" {
            return self.0.handle(request);
        }
        Reply::Later(Box::new(|responder| {
            let deadline = Instant::now() + Duration::from_millis(100);
            let slot = Arc::new(std::sync::Mutex::new(None::<Responder>));
            let taken = Arc::clone(&slot);
            responder.park(Some(deadline), move || {
                let thread = thread::current().name().unwrap_or("").to_string();
                let body = serde_json::json!({ "expired_on": thread });
                if let Some(responder) = taken.lock().unwrap().take() {
                    responder.send(HttpResponse::json(200, body.to_string().into_bytes()));
                }
            });
            *slot.lock().unwrap() = Some(responder);
        }))
    }

    fn defer(&self, request: HttpRequest, work: Deferred, responder: Responder) {
        self.0.defer(request, work, responder);
    }

    fn spawn(&self, task: Box<dyn FnOnce() + Send>) {
        self.0.spawn(task);
    }
}

/// A parked request's expiry may read the store, which can block: it runs
/// on a worker even when the workers' queue is full, never on the loop's
/// thread, and the loop goes on serving meanwhile.
#[test]
fn a_long_poll_expiry_with_the_queue_full_does_not_run_on_the_loop() {
    let _g = shared();
    let (release, held) = std::sync::mpsc::channel::<()>();
    let (started, blocked) = std::sync::mpsc::channel::<()>();
    let (held, started) = (std::sync::Mutex::new(held), std::sync::Mutex::new(started));
    let handler = Arc::new(move |req: &HttpRequest| -> Reply {
        if req.path() == "/block" {
            let _ = started.lock().unwrap().send(());
            let _ = held.lock().unwrap().recv_timeout(Duration::from_secs(10));
        }
        HttpResponse::json(200, b"{}".to_vec()).into()
    });
    let pool = WorkerPool::start(1, 1, handler).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let server = HttpServer::start(
        listener,
        ConnLimits::default(),
        Arc::new(ExpiryOnWorker(pool)),
    )
    .unwrap();
    let addr = server.local_addr();
    let mut blocker = Raw::open(addr);
    blocker.send(&get("/block"));
    blocked.recv_timeout(Duration::from_secs(5)).unwrap();
    // The worker holds /block; one more fills the queue, the next is refused.
    let mut queued = Raw::open(addr);
    queued.send(&get("/queued"));
    let full = poll_until(Duration::from_secs(5), || {
        let mut probe = Raw::open(addr);
        probe.send(&get("/probe"));
        probe.expect_response("a refusal").status == 503
    });
    assert!(full, "the queue never filled");
    let mut poll = Raw::open(addr);
    poll.send(&get("/poll"));
    // The deadline (a time, not a condition) passes with the queue still
    // full; the loop still answers.
    thread::sleep(Duration::from_millis(300));
    let mut other = Raw::open(addr);
    other.send(&get("/probe"));
    assert_eq!(other.expect_response("a refusal").status, 503);
    release.send(()).unwrap();
    let answer = poll.expect_response("the expired poll");
    assert_eq!(answer.status, 200);
    let thread = answer.json()["expired_on"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(thread.starts_with("vkv-worker"), "expired on {thread:?}");
    assert_eq!(blocker.expect_response("/block").status, 200);
    assert_eq!(queued.expect_response("/queued").status, 200);
    drop(server);
}
