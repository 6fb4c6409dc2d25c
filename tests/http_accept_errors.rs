//! The accept loop survives accept errors (here EMFILE: out of descriptors).
//!
//! Alone in its own test binary because it lowers RLIMIT_NOFILE for the whole
//! process. The scenario is deterministic: fill the descriptor table with
//! `/dev/null` handles, connect one client with the last free descriptor (the
//! kernel completes the handshake; the server's accept() then fails with
//! EMFILE), then free the descriptors and check that the same client, and a
//! new one, are answered.

use std::fs::File;
use std::io::ErrorKind;
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[path = "support/mod.rs"]
mod support;

use support::poll_until;
use support::raw::Raw;

use vkv::http::completion::Reply;
use vkv::http::conn::{ConnLimits, HttpServer};
use vkv::http::message::{HttpRequest, HttpResponse};
use vkv::http::workers::WorkerPool;

/// Counts the warnings the accept loop logs.
struct CountingLogger(AtomicUsize);

impl log::Log for CountingLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::Level::Warn
    }
    fn log(&self, record: &log::Record) {
        if record.level() <= log::Level::Warn && record.args().to_string().contains("accept failed")
        {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    fn flush(&self) {}
}

static LOGGER: CountingLogger = CountingLogger(AtomicUsize::new(0));

fn set_fd_limit(soft: libc::rlim_t) -> libc::rlim_t {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a valid, local rlimit struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        let old = limit.rlim_cur;
        limit.rlim_cur = soft.min(limit.rlim_max);
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
        old
    }
}

/// The status of the answer to one request on `client`.
fn ask(client: &mut Raw) -> u16 {
    client.send(b"GET /again HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    client.expect_response("GET /again").status
}

#[test]
fn accept_loop_survives_descriptor_exhaustion() {
    log::set_logger(&LOGGER).unwrap();
    log::set_max_level(log::LevelFilter::Warn);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let handler = Arc::new(|_req: &HttpRequest| -> Reply {
        HttpResponse::json(200, b"{\"status\":\"ok\"}".to_vec()).into()
    });
    let service = Arc::new(WorkerPool::start(1, 16, handler).unwrap());
    let server = HttpServer::start(listener, ConnLimits::default(), service).unwrap();
    let addr = server.local_addr();

    let open_now = std::fs::read_dir("/proc/self/fd").unwrap().count() as libc::rlim_t;
    let old_limit = set_fd_limit(open_now + 32);
    let mut fillers = Vec::new();
    loop {
        match File::open("/dev/null") {
            Ok(f) => fillers.push(f),
            Err(e) if e.raw_os_error() == Some(libc::EMFILE) => break,
            Err(e) => panic!("unexpected error filling descriptors: {e}"),
        }
    }
    fillers.pop();
    let mut pending = Raw::over(TcpStream::connect(addr).unwrap());
    // The server now fails to accept it, and must keep trying.
    poll_until(Duration::from_secs(5), || {
        LOGGER.0.load(Ordering::SeqCst) >= 3
    });
    let failures = LOGGER.0.load(Ordering::SeqCst);
    assert!(
        failures >= 3,
        "accept never failed ({failures} warnings): the scenario did not exhaust descriptors"
    );

    drop(fillers);
    set_fd_limit(old_limit);
    let started = Instant::now();
    assert_eq!(ask(&mut pending), 200, "the pending client");
    assert_eq!(ask(&mut Raw::open(addr)), 200, "a new client");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "recovery took {:?}",
        started.elapsed()
    );
    let kind = TcpStream::connect(addr).map(|_| ()).map_err(|e| e.kind());
    assert_ne!(kind, Err(ErrorKind::ConnectionRefused));
    server.shutdown();
}
