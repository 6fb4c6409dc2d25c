//! The unmitigated comparison for benchmarks: bare `tiny_http` 0.12 (its own
//! accept loop and per-connection thread pool), one thread moving requests
//! into a channel, 4 workers answering a fixed `{"status":"ok"}`.
//!
//! It shows what vkv's own connection layer avoids: unbounded connection
//! threads and keep-alive connections left queued behind others (see the
//! ignored test `starvation_reproduces_on_bare_tiny_http` in
//! `tests/http_conn.rs`).
//!
//! `cargo run --release --example tiny_http_bare -- [--bind ADDR] [--workers N]`
//! (defaults: 127.0.0.1:8090, 4 workers). Prints `listening on ADDR` on stderr.

use std::thread;

fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut bind = "127.0.0.1:8090".to_owned();
    let mut workers = 4usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--bind", Some(addr)) => bind = addr,
            ("--workers", Some(n)) => workers = n.parse()?,
            _ => return Err("usage: tiny_http_bare [--bind ADDR] [--workers N]".into()),
        }
    }
    let server = tiny_http::Server::http(&bind)?;
    eprintln!("listening on {}", server.server_addr());
    let (tx, rx) = crossbeam_channel::bounded::<tiny_http::Request>(1024);
    let json = tiny_http::Header::from_bytes("Content-Type", "application/json")
        .map_err(|()| "bad header")?;
    let workers: Vec<_> = (0..workers.max(1))
        .map(|_| {
            let (rx, json) = (rx.clone(), json.clone());
            thread::spawn(move || {
                for request in rx.iter() {
                    let response = tiny_http::Response::from_string("{\"status\":\"ok\"}");
                    let _ = request.respond(response.with_header(json.clone()));
                }
            })
        })
        .collect();
    for request in server.incoming_requests() {
        if tx.send(request).is_err() {
            break;
        }
    }
    drop(tx);
    for worker in workers {
        let _ = worker.join();
    }
    Ok(())
}
