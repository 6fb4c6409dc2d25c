//! Wires the HTTP adapter together: listener -> I/O loop (`conn`) ->
//! bounded queue -> worker pool -> [`App`] -> [`Store`], and answers back
//! through the loop's mailbox.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use super::app::App;
use super::auth::AuthTokens;
use super::completion::Responder;
use super::completion::{Handler, Reply};
use super::conn::{ConnLimits, HttpServer, Service};
use super::cross_site::HostPolicy;
use super::message::HttpRequest;
use super::workers::Counter;
use super::workers::WorkerPool;
use crate::Store;

/// How to serve HTTP.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to listen on (`127.0.0.1:8080`; port 0 picks a free one).
    pub bind: String,
    /// Worker threads running handlers.
    pub workers: usize,
    /// I/O threads, each with its own connections (0 counts as 1).
    pub io_threads: usize,
    /// Requests that may wait for a worker before `503`.
    pub queue_len: usize,
    /// Connection limits and timeouts.
    pub limits: ConnLimits,
    /// The most puts in one `POST /batch`.
    pub max_batch_puts: usize,
    /// Bearer tokens every route but `/health` requires (`None`: open).
    pub auth: Option<Arc<AuthTokens>>,
    /// Host names answered besides loopback ones (`--allowed-hosts`).
    pub allowed_hosts: Vec<String>,
    /// Serve HTTPS with this configuration (`None`: plain HTTP).
    #[cfg(feature = "tls")]
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// A running vkv HTTP server.
pub struct Server {
    http: HttpServer,
    pool: Arc<WorkerPool>,
    store: Store,
}

impl Server {
    /// Binds `config.bind` and starts serving `store`.
    pub fn start(config: ServerConfig, store: Store) -> std::io::Result<Server> {
        let (addr, listeners) = bind(&config.bind, config.io_threads)?;
        let hosts = HostPolicy::new(addr, &config.allowed_hosts);
        let app = Arc::new(
            App::new(store.clone(), config.max_batch_puts)
                .with_auth(config.auth)
                .with_hosts(hosts),
        );
        let metrics = app.metrics();
        let counter: Counter = Arc::new(move |status| metrics.record_unrouted(status));
        let handler: Handler = {
            let app = Arc::clone(&app);
            Arc::new(move |req| app.handle(req))
        };
        let pool = Arc::new(WorkerPool::start_counted(
            config.workers,
            config.queue_len,
            handler,
            Some(counter),
        )?);
        let service: Arc<dyn Service> = Arc::new(Api {
            pool: Arc::clone(&pool),
            app,
        });
        let http = HttpServer::launch(
            listeners,
            config.limits,
            service,
            #[cfg(feature = "tls")]
            config.tls,
        )?;
        Ok(Server { http, pool, store })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.http.local_addr()
    }

    /// Answers parked long polls (so that their connections do not hold up
    /// the stop), stops accepting, lets in-flight requests finish and be
    /// answered, then stops the workers. The store is left open for the
    /// caller to close.
    pub fn shutdown(self) {
        self.store.close_watchers();
        self.http.shutdown();
        match Arc::try_unwrap(self.pool) {
            Ok(pool) => pool.shutdown(),
            Err(_) => log::warn!("a connection outlived shutdown; workers left to exit"),
        }
    }
}

/// What the I/O loop calls: cache hits it answers itself (no hand-off to
/// a worker and back), everything else goes to the worker pool.
struct Api {
    pool: Arc<WorkerPool>,
    app: Arc<App>,
}

impl Service for Api {
    fn call(&self, request: HttpRequest, responder: Responder) {
        self.pool.call(request, responder);
    }

    fn answer_now(&self, request: &HttpRequest) -> Option<Reply> {
        self.app.answer_now(request)
    }

    fn count(&self, status: u16) {
        self.pool.count(status);
    }

    fn spawn(&self, task: Box<dyn FnOnce() + Send>) {
        self.pool.spawn(task);
    }
}

/// Listen backlog: connections the kernel completes before vkv accepts them.
const BACKLOG: i32 = 1024;

/// Binds `addr` with a listen backlog of [`BACKLOG`] instead of std's 128.
/// In a burst of new connections beyond the backlog the kernel drops SYNs,
/// and each dropped client waits a full second for its retransmit
/// (measured: with 500 connections opened at once, a normal client took
/// 1.03 s to be answered). Binds `n` sockets (at least one) to the one
/// address; returns it (port 0 resolved) with them.
fn bind(addr: &str, n: usize) -> std::io::Result<(SocketAddr, Vec<TcpListener>)> {
    use socket2::{Domain, Protocol, Socket, Type};
    use std::net::ToSocketAddrs;
    let mut addr = addr.to_socket_addrs()?.next().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "no address to bind")
    })?;
    let n = n.max(1);
    let mut listeners = Vec::with_capacity(n);
    for _ in 0..n {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        // As std does: a restarted server can bind while old connections linger.
        socket.set_reuse_address(true)?;
        if n > 1 {
            // One socket per I/O thread on one port; the kernel spreads
            // connections over them.
            socket.set_reuse_port(true)?;
        }
        socket.bind(&addr.into())?;
        socket.listen(BACKLOG)?;
        let listener: TcpListener = socket.into();
        // Port 0 picked one: the others take the same.
        addr = listener.local_addr()?;
        listeners.push(listener);
    }
    Ok((addr, listeners))
}
