//! The ceiling server for benchmarks: vkv's own `HttpServer` + `WorkerPool`
//! (as the real server wires them), answering every request with a fixed
//! `{"status":"ok"}`: no routing, no cache, no database.
//!
//! `cargo run --release --example http_ceiling -- [--bind ADDR] [--workers N]`
//! (defaults: 127.0.0.1:8090, 4 workers). Prints `listening on ADDR` on stderr.

use std::net::TcpListener;
use std::sync::Arc;

use vkv::http::completion::Reply;
use vkv::http::conn::{ConnLimits, HttpServer, Service};
use vkv::http::message::{HttpRequest, HttpResponse};
use vkv::http::workers::WorkerPool;

fn main() -> std::io::Result<()> {
    let mut bind = "127.0.0.1:8090".to_owned();
    let mut workers = 4usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--bind", Some(addr)) => bind = addr,
            ("--workers", Some(n)) => workers = n.parse().map_err(std::io::Error::other)?,
            _ => {
                return Err(std::io::Error::other(
                    "usage: http_ceiling [--bind ADDR] [--workers N]",
                ));
            }
        }
    }
    let handler = Arc::new(|_req: &HttpRequest| -> Reply {
        HttpResponse::json(200, b"{\"status\":\"ok\"}".to_vec()).into()
    });
    let service: Arc<dyn Service> = Arc::new(WorkerPool::start(workers, 1024, handler)?);
    let server = HttpServer::start(TcpListener::bind(&bind)?, ConnLimits::default(), service)?;
    eprintln!("listening on {}", server.local_addr());
    loop {
        std::thread::park();
    }
}
