//! Wires the HTTP adapter together: listener -> I/O loop (`conn`) ->
//! bounded queue -> worker pool -> [`App`] -> [`Store`], and answers back
//! through the loop's mailbox.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use super::app::App;
use super::auth::AuthTokens;
use super::completion::{Deferred, Handler, Lane, Reply, Responder};
use super::conn::{ConnLimits, HttpServer, Service};
use super::cross_site::{HostPolicy, Origins};
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
    /// Origins whose cross-origin writes are accepted (`--allowed-origins`,
    /// as `cross_site::parse_origin` gives them).
    pub allowed_origins: Vec<String>,
    /// Origins CORS answers (`--cors-origins`; `*`: any).
    pub cors_origins: Vec<String>,
    /// Serve HTTPS with this configuration (`None`: plain HTTP).
    #[cfg(feature = "tls")]
    pub tls: Option<crate::http::tls::TlsConfig>,
}

/// A running vkv HTTP server.
pub struct Server {
    http: HttpServer,
    pool: Arc<WorkerPool>,
    /// The threads that answer `/health` and `/metrics`.
    probes: Arc<WorkerPool>,
    store: Store,
}

/// Listening sockets bound and not yet served (see [`Server::bind`]).
pub struct Listening {
    config: ServerConfig,
    addr: SocketAddr,
    listeners: Vec<TcpListener>,
}

impl Listening {
    /// The address bound (port 0 resolved).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Starts serving `store` on the bound sockets.
    pub fn serve(self, store: Store) -> std::io::Result<Server> {
        let Listening {
            config,
            addr,
            listeners,
        } = self;
        let hosts = HostPolicy::new(addr, &config.allowed_hosts);
        let app = Arc::new(
            App::new(store.clone(), config.max_batch_puts)
                .with_auth(config.auth)
                .with_hosts(hosts)
                .with_origins(Origins::new(&config.allowed_origins, &config.cors_origins)),
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
            Arc::clone(&handler),
            Some(Arc::clone(&counter)),
        )?);
        let probes = Arc::new(WorkerPool::start_named(
            "vkv-probe",
            PROBE_THREADS,
            PROBE_QUEUE,
            handler,
            Some(counter),
        )?);
        let service: Arc<dyn Service> = Arc::new(Api {
            pool: Arc::clone(&pool),
            probes: Arc::clone(&probes),
            app,
        });
        let http = HttpServer::launch(
            listeners,
            config.limits,
            service,
            #[cfg(feature = "tls")]
            config.tls.map(|t| t.0),
        )?;
        Ok(Server {
            http,
            pool,
            probes,
            store,
        })
    }
}

/// Threads answering `/health` and `/metrics` (two: a scrape does not
/// wait for a health check's second on a sick database).
const PROBE_THREADS: usize = 2;

/// `/health` and `/metrics` requests that may wait for the probes' threads;
/// beyond it, `503` at once.
const PROBE_QUEUE: usize = 64;

impl Server {
    /// Binds `config.bind` (connections wait in the listen backlog until
    /// [`Listening::serve`]). The binary binds before it opens the store,
    /// so a port in use refuses start-up before a database is created.
    pub fn bind(config: ServerConfig) -> std::io::Result<Listening> {
        let (addr, listeners) = bind(&config.bind, config.io_threads)?;
        Ok(Listening {
            config,
            addr,
            listeners,
        })
    }

    /// Binds `config.bind` and starts serving `store`.
    pub fn start(config: ServerConfig, store: Store) -> std::io::Result<Server> {
        Server::bind(config)?.serve(store)
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
        for pool in [self.pool, self.probes] {
            match Arc::try_unwrap(pool) {
                Ok(pool) => pool.shutdown(),
                Err(_) => log::warn!("a connection outlived shutdown; workers left to exit"),
            }
        }
    }
}

/// What the I/O loop calls: [`App::handle`] on the loop's thread, which
/// answers what it can at once (cache hits, no hand-off to a worker and
/// back); what may block runs on the worker pool, `/health` and `/metrics`
/// on threads of their own (so that they answer, within their own bounds,
/// while every worker waits on a sick database).
struct Api {
    pool: Arc<WorkerPool>,
    probes: Arc<WorkerPool>,
    app: Arc<App>,
}

impl Service for Api {
    fn handle(&self, request: &HttpRequest) -> Reply {
        self.app.handle(request)
    }

    fn defer(&self, request: HttpRequest, work: Deferred, responder: Responder) {
        match work.lane {
            Lane::Workers => self.pool.defer(request, work, responder),
            Lane::Probes => self.probes.defer(request, work, responder),
        }
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
