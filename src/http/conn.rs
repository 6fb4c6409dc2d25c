//! The connection layer: vkv's own accept loop and HTTP/1.x connections, on
//! plain std threads and blocking sockets.
//!
//! vkv does not use tiny_http's server: it spawns unbounded threads, can leave
//! a keep-alive connection queued forever, sets no socket timeouts, stops
//! accepting on the first accept error and mis-frames some requests (request
//! smuggling). Here instead:
//! - one accept thread that survives every accept error;
//! - one thread per connection, at most `max_connections` (more get `503`
//!   from the accept thread, which spawns nothing for them);
//! - every wait bounded: `idle_timeout` between requests, `read_timeout` for a
//!   whole request from its first byte and for each write;
//! - strict framing: anything ambiguous is answered `400` and the connection
//!   closed, so no byte after it is ever parsed as a request;
//! - with the `tls` feature and [`HttpServer::start_tls`], each connection
//!   thread runs the TLS handshake itself (bounded by `read_timeout`) and
//!   then speaks HTTP inside the session; the accept thread never waits on
//!   a handshake.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::message::{HttpRequest, HttpResponse, reason_phrase};
use super::parser::{Framing, ParseLimits, Progress, RequestParser};

/// Limits that bound what any one client can cost the server.
#[derive(Debug, Clone)]
pub struct ConnLimits {
    /// Connections served at once (one thread each); beyond it, `503`.
    pub max_connections: usize,
    /// How long an open connection may wait for the next request to start.
    pub idle_timeout: Duration,
    /// How long a whole request (head and body) may take from its first
    /// byte (`408` beyond); also the timeout of every write.
    pub read_timeout: Duration,
    /// Largest request body accepted (`413` beyond).
    pub max_body_bytes: usize,
    /// Longest request line accepted (`414` beyond).
    pub max_request_line: usize,
    /// Largest header section accepted, request line excluded (`431` beyond).
    pub max_header_bytes: usize,
    /// Most header fields accepted in one request (`431` beyond).
    pub max_headers: usize,
}

impl ConnLimits {
    /// The limits the request parser checks.
    pub fn parse_limits(&self) -> ParseLimits {
        ParseLimits {
            max_body_bytes: self.max_body_bytes,
            max_request_line: self.max_request_line,
            max_header_bytes: self.max_header_bytes,
            max_headers: self.max_headers,
        }
    }
}

impl Default for ConnLimits {
    /// 1024 connections, 30 s idle, 10 s per request, 1 MiB bodies, 8 KiB
    /// request line, 16 KiB and 100 headers.
    fn default() -> Self {
        ConnLimits {
            max_connections: 1024,
            idle_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(10),
            max_body_bytes: 1 << 20,
            max_request_line: 8 << 10,
            max_header_bytes: 16 << 10,
            max_headers: 100,
        }
    }
}

/// What answers each request. It runs on the connection's thread (small
/// stack), so it should hand real work off, as `WorkerPool::dispatch` does.
pub type Service = Arc<dyn Fn(HttpRequest) -> HttpResponse + Send + Sync>;

const CONN_STACK: usize = 256 << 10;
const READ_CHUNK: usize = 8 << 10;
/// The accept thread must never wait on a client for long.
const REFUSE_WRITE_TIMEOUT: Duration = Duration::from_millis(100);
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 256 << 10;
const MIN_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_millis(500);

struct ConnEntry {
    stream: TcpStream,
    /// Waiting for the next request: shutdown may close it.
    idle: AtomicBool,
}

struct Shared {
    limits: ConnLimits,
    service: Service,
    /// Serve HTTPS with this configuration.
    #[cfg(feature = "tls")]
    tls: Option<Arc<rustls::ServerConfig>>,
    stopping: AtomicBool,
    /// Open connections by id; its length is the connection count.
    conns: Mutex<HashMap<u64, Arc<ConnEntry>>>,
    /// Notified whenever a connection leaves `conns`.
    closed: Condvar,
}

impl Shared {
    fn conns(&self) -> MutexGuard<'_, HashMap<u64, Arc<ConnEntry>>> {
        self.conns.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn is_tls(&self) -> bool {
        #[cfg(feature = "tls")]
        return self.tls.is_some();
        #[cfg(not(feature = "tls"))]
        false
    }
}

/// Removes a connection from the count when its thread ends, however it ends.
struct Registration<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.shared.conns().remove(&self.id);
        self.shared.closed.notify_all();
    }
}

/// A running HTTP/1.x server: an accept thread plus one thread per connection.
pub struct HttpServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    acceptor: Option<JoinHandle<()>>,
}

impl HttpServer {
    /// Starts serving `listener` with `service`. Returns once the accept
    /// thread runs.
    pub fn start(
        listener: TcpListener,
        limits: ConnLimits,
        service: Service,
    ) -> io::Result<HttpServer> {
        Self::launch(
            listener,
            limits,
            service,
            #[cfg(feature = "tls")]
            None,
        )
    }

    /// Starts serving HTTPS on `listener`: like [`HttpServer::start`], with
    /// every connection wrapped in a TLS session of `tls`.
    #[cfg(feature = "tls")]
    pub fn start_tls(
        listener: TcpListener,
        limits: ConnLimits,
        service: Service,
        tls: Arc<rustls::ServerConfig>,
    ) -> io::Result<HttpServer> {
        Self::launch(listener, limits, service, Some(tls))
    }

    fn launch(
        listener: TcpListener,
        limits: ConnLimits,
        service: Service,
        #[cfg(feature = "tls")] tls: Option<Arc<rustls::ServerConfig>>,
    ) -> io::Result<HttpServer> {
        listener.set_nonblocking(false)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            limits,
            service,
            #[cfg(feature = "tls")]
            tls,
            stopping: AtomicBool::new(false),
            conns: Mutex::new(HashMap::new()),
            closed: Condvar::new(),
        });
        let for_loop = Arc::clone(&shared);
        let acceptor = thread::Builder::new()
            .name("vkv-accept".into())
            .spawn(move || accept_loop(&listener, &for_loop))?;
        Ok(HttpServer {
            shared,
            addr,
            acceptor: Some(acceptor),
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many connections are open (each has its own thread).
    pub fn open_connections(&self) -> usize {
        self.shared.conns().len()
    }

    /// Stops accepting, closes idle connections, lets requests in flight
    /// finish and their responses be written, and waits for the connection
    /// threads, at most `read_timeout`; connections still open then are cut.
    pub fn shutdown(mut self) {
        self.stop();
        let limits = &self.shared.limits;
        let conns = self.wait_for_connections(Instant::now() + limits.read_timeout);
        // Past the bound: cut the rest (stalled clients) so their threads end.
        for conn in conns.values() {
            let _ = conn.stream.shutdown(Shutdown::Both);
        }
        drop(conns);
        drop(self.wait_for_connections(Instant::now() + LINGER));
    }

    fn wait_for_connections(
        &self,
        deadline: Instant,
    ) -> MutexGuard<'_, HashMap<u64, Arc<ConnEntry>>> {
        let mut conns = self.shared.conns();
        while !conns.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            conns = match self.shared.closed.wait_timeout(conns, left) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        conns
    }

    /// Stops the accept loop and closes idle connections (no waiting for the
    /// busy ones). Idempotent; also run on drop.
    fn stop(&mut self) {
        let Some(acceptor) = self.acceptor.take() else {
            return;
        };
        self.shared.stopping.store(true, SeqCst);
        // The accept thread blocks in accept(); a connection to ourselves wakes
        // it to see the flag. (A nonblocking accept polled with sleeps would
        // also work but adds latency to every accept or burns CPU when idle.)
        if wake_acceptor(self.addr) {
            let _ = acceptor.join();
        } else {
            log::warn!("could not wake the accept thread; leaving it detached");
        }
        // Shutting the read side wakes a thread waiting for the next request
        // (its read returns 0); a response being written still goes out.
        for conn in self.shared.conns().values() {
            if conn.idle.load(SeqCst) {
                let _ = conn.stream.shutdown(Shutdown::Read);
            }
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn wake_acceptor(addr: SocketAddr) -> bool {
    let mut target = addr;
    if addr.ip().is_unspecified() {
        target.set_ip(match addr {
            SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    TcpStream::connect_timeout(&target, Duration::from_secs(1)).is_ok()
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    let mut next_id = 0u64;
    let mut backoff = MIN_BACKOFF;
    loop {
        let accepted = listener.accept();
        if shared.stopping.load(SeqCst) {
            return;
        }
        match accepted {
            Ok((stream, peer)) => {
                backoff = MIN_BACKOFF;
                next_id += 1;
                admit(shared, next_id, stream, peer);
            }
            // One client's handshake went wrong: nothing to wait for.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionAborted | io::ErrorKind::Interrupted
                ) =>
            {
                log::warn!("accept failed: {e}; continuing");
            }
            // Typically out of descriptors (EMFILE/ENFILE) or memory: retrying at
            // once would spin, so back off; the pending clients stay queued.
            Err(e) => {
                log::warn!("accept failed: {e}; retrying in {backoff:?}");
                thread::sleep(backoff);
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Gives the connection its own thread, or refuses it when at the limit.
fn admit(shared: &Arc<Shared>, id: u64, stream: TcpStream, peer: SocketAddr) {
    let conn = Arc::new(ConnEntry {
        stream,
        idle: AtomicBool::new(false),
    });
    {
        let mut conns = shared.conns();
        if conns.len() >= shared.limits.max_connections {
            drop(conns);
            return refuse(
                shared,
                &conn.stream,
                "too many open connections, retry shortly",
            );
        }
        conns.insert(id, Arc::clone(&conn));
    }
    let (for_thread, for_conn) = (Arc::clone(shared), Arc::clone(&conn));
    let spawned = thread::Builder::new()
        .name("vkv-conn".into())
        .stack_size(CONN_STACK)
        .spawn(move || {
            let _registration = Registration {
                shared: &for_thread,
                id,
            };
            serve(&for_thread, &for_conn, peer);
        });
    if let Err(e) = spawned {
        log::warn!("cannot start a connection thread: {e}");
        drop(Registration { shared, id });
        refuse(shared, &conn.stream, "server overloaded, retry shortly");
    }
}

/// Answers `503` from the accept thread, without waiting on the client. A
/// TLS connection is only closed: answering would take a handshake.
fn refuse(shared: &Shared, stream: &TcpStream, detail: &str) {
    let response = HttpResponse::error(503, detail).with_header("Retry-After", "1");
    let _ = stream.set_write_timeout(Some(REFUSE_WRITE_TIMEOUT));
    if !shared.is_tls() {
        let _ = (&*stream).write_all(&encode(&response, &Framing::closing()));
    }
    // Discard what the client already sent (unread data turns our close into
    // a reset that can destroy the 503 before it is read): without blocking,
    // and at most 64 KiB so a flooding client cannot hold the accept thread.
    if stream.set_nonblocking(true).is_ok() {
        let mut sink = [0u8; 4096];
        for _ in 0..16 {
            if !matches!((&*stream).read(&mut sink), Ok(n) if n > 0) {
                break;
            }
        }
    }
    let _ = stream.shutdown(Shutdown::Write);
}

/// Why a request could not be read.
enum Failure {
    /// The client left or the socket failed: close silently.
    Gone,
    /// Answer this (an error) and close.
    Reject(HttpResponse),
}

fn reject(status: u16, detail: &str) -> Failure {
    Failure::Reject(HttpResponse::error(status, detail))
}

/// What a connection reads requests from and writes responses to: the
/// socket itself, or a TLS session over it.
trait Transport: Read + Write {
    /// Ends the session before the socket's write side is shut (TLS sends
    /// `close_notify`); best effort.
    fn close_notify(&mut self) {}
}

impl Transport for &TcpStream {}

#[cfg(feature = "tls")]
impl Transport for rustls::StreamOwned<rustls::ServerConnection, TcpStream> {
    fn close_notify(&mut self) {
        self.conn.send_close_notify();
        let _ = self.flush();
    }
}

/// Serves requests on one connection until it closes.
fn serve(shared: &Shared, conn: &ConnEntry, peer: SocketAddr) {
    let limits = &shared.limits;
    let stream = &conn.stream;
    let _ = stream.set_nodelay(true);
    let _ = stream.set_write_timeout(Some(limits.read_timeout));
    #[cfg(feature = "tls")]
    if let Some(tls) = &shared.tls {
        match tls_handshake(tls, stream, limits.read_timeout) {
            Ok(session) => serve_on(shared, conn, peer, session),
            Err(e) => log::debug!("TLS handshake with {peer} failed: {e}"),
        }
        return;
    }
    serve_on(shared, conn, peer, stream);
}

/// Runs the server side of a TLS handshake on `stream`, all of it within
/// `timeout`; the session then owns a duplicate of the socket (the original
/// stays in `conns` so that shutdown can still close it).
#[cfg(feature = "tls")]
fn tls_handshake(
    config: &Arc<rustls::ServerConfig>,
    stream: &TcpStream,
    timeout: Duration,
) -> io::Result<rustls::StreamOwned<rustls::ServerConnection, TcpStream>> {
    let mut session =
        rustls::ServerConnection::new(Arc::clone(config)).map_err(io::Error::other)?;
    let mut sock = stream.try_clone()?;
    let deadline = Instant::now() + timeout;
    loop {
        while session.wants_write() {
            session.write_tls(&mut sock)?;
        }
        if !session.is_handshaking() {
            break;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        stream.set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
        match session.read_tls(&mut sock) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        if let Err(e) = session.process_new_packets() {
            // Tell the client why (the alert), then give up.
            let _ = session.write_tls(&mut sock);
            return Err(io::Error::new(io::ErrorKind::InvalidData, e));
        }
    }
    Ok(rustls::StreamOwned::new(session, sock))
}

/// Serves requests over `io` (the connection's socket or its TLS session)
/// until the connection closes.
fn serve_on<T: Transport>(shared: &Shared, conn: &ConnEntry, peer: SocketAddr, io: T) {
    let limits = &shared.limits;
    let stream = &conn.stream;
    let mut rd = Reader {
        io,
        sock: stream,
        buf: Vec::with_capacity(READ_CHUNK),
        deadline: Instant::now(),
        timeout: None,
    };
    loop {
        // Pipelined bytes already buffered start the next request at once.
        if rd.buf.is_empty() && !wait_for_request(shared, conn, &mut rd) {
            return;
        }
        rd.deadline = Instant::now() + limits.read_timeout;
        let (request, mut framing) = match read_request(&mut rd, limits, peer) {
            Ok(read) => read,
            Err(Failure::Gone) => return,
            Err(Failure::Reject(response)) => {
                if write_response(&mut rd.io, &response, &Framing::closing()).is_ok() {
                    linger_close(&mut rd);
                }
                return;
            }
        };
        let response = call_service(shared, request);
        framing.close |= response.close || shared.stopping.load(SeqCst);
        if write_response(&mut rd.io, &response, &framing).is_err() {
            return;
        }
        if framing.close {
            return linger_close(&mut rd);
        }
    }
}

/// Writes one response: the head (with a small body, in one write), then a
/// file body streamed in chunks. Fails, so that the connection is closed,
/// when the file ends before its announced length.
fn write_response<T: Transport>(
    io: &mut T,
    response: &HttpResponse,
    framing: &Framing,
) -> io::Result<()> {
    io.write_all(&encode(response, framing))?;
    if let Some(file) = &response.file
        && !framing.head_only
        && !is_bodyless(response.status)
    {
        let sent = io::copy(&mut file.reader(), io)?;
        if sent != file.len() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "response body file shorter than announced",
            ));
        }
    }
    io.flush()
}

/// Waits up to `idle_timeout` for the next request's first byte; false when
/// the connection should end (timeout, client gone, or shutting down).
fn wait_for_request<T: Transport>(shared: &Shared, conn: &ConnEntry, rd: &mut Reader<T>) -> bool {
    // Published before checking `stopping`, while shutdown sets `stopping`
    // before scanning `idle`: one of the two always sees the other.
    conn.idle.store(true, SeqCst);
    let alive = !shared.stopping.load(SeqCst)
        && matches!(rd.read_once(shared.limits.idle_timeout), Ok(n) if n > 0);
    conn.idle.store(false, SeqCst);
    alive
}

fn call_service(shared: &Shared, request: HttpRequest) -> HttpResponse {
    let method = request.method.clone();
    catch_unwind(AssertUnwindSafe(|| (shared.service)(request))).unwrap_or_else(|_| {
        log::error!("service panicked on a {method} request: answered 500");
        HttpResponse::error(500, "internal error (logged)")
    })
}

/// Sends FIN (after TLS `close_notify`), then discards (never parses) what
/// the client still sends for a moment: closing with unread data makes the
/// kernel reset the connection, which can destroy our last response before
/// the client reads it.
fn linger_close<T: Transport>(rd: &mut Reader<T>) {
    rd.io.close_notify();
    let stream = rd.sock;
    let _ = stream.shutdown(Shutdown::Write);
    let deadline = Instant::now() + LINGER;
    let (mut sink, mut total) = ([0u8; 4096], 0);
    while total < LINGER_BYTES {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match (&*stream).read(&mut sink) {
            Ok(n) if n > 0 => total += n,
            _ => return,
        }
    }
}

/// The connection: its transport, a buffer of bytes read but not yet
/// consumed, and the deadline of the request being read.
struct Reader<'a, T> {
    /// Where request bytes come from and responses go.
    io: T,
    /// The socket under `io`, for its timeouts.
    sock: &'a TcpStream,
    buf: Vec<u8>,
    deadline: Instant,
    /// The read timeout currently set on the socket.
    timeout: Option<Duration>,
}

impl<T: Transport> Reader<'_, T> {
    /// One read of up to `READ_CHUNK` bytes appended to `buf`; `Ok(0)` is EOF.
    fn read_once(&mut self, timeout: Duration) -> io::Result<usize> {
        // Skipped when unchanged: saves a syscall per keep-alive request.
        let timeout = Some(timeout.max(Duration::from_millis(1)));
        if self.timeout != timeout {
            self.sock.set_read_timeout(timeout)?;
            self.timeout = timeout;
        }
        let len = self.buf.len();
        self.buf.resize(len + READ_CHUNK, 0);
        let read = loop {
            match self.io.read(&mut self.buf[len..]) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        self.buf.truncate(len + *read.as_ref().unwrap_or(&0));
        read
    }

    /// Reads more of the current request, which must arrive by the deadline.
    fn more(&mut self) -> Result<(), Failure> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(reject(408, "request not received in time"));
        }
        match self.read_once(left) {
            Ok(0) => Err(Failure::Gone),
            Ok(_) => Ok(()),
            Err(e) if is_timeout(&e) => Err(reject(408, "request not received in time")),
            Err(_) => Err(Failure::Gone),
        }
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Reads one whole request and decides how its response is framed.
fn read_request<T: Transport>(
    rd: &mut Reader<T>,
    limits: &ConnLimits,
    peer: SocketAddr,
) -> Result<(HttpRequest, Framing), Failure> {
    let mut parser = RequestParser::new(limits.parse_limits());
    loop {
        let (used, progress) = parser
            .feed(&rd.buf)
            .map_err(|r| reject(r.status, r.detail))?;
        rd.buf.drain(..used);
        match progress {
            Progress::Complete(mut request, framing) => {
                request.remote = Some(peer);
                return Ok((request, framing));
            }
            Progress::SendContinue => rd
                .io
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .and_then(|()| rd.io.flush())
                .map_err(|_| Failure::Gone)?,
            Progress::Incomplete => rd.more()?,
        }
    }
}

/// 1xx, 204 and 304 responses never carry a body (RFC 9110 6.4.1).
fn is_bodyless(status: u16) -> bool {
    status < 200 || status == 204 || status == 304
}

/// The whole response as one buffer, so it goes out in one write; for a
/// file body, only the head (`write_response` streams the file after it).
fn encode(response: &HttpResponse, framing: &Framing) -> Vec<u8> {
    let status = response.status;
    let bodyless = is_bodyless(status);
    let mut out = Vec::with_capacity(192 + response.body.len());
    // Writing into a Vec cannot fail: the results are ignored.
    let _ = write!(out, "HTTP/1.1 {status} {}\r\nDate: ", reason_phrase(status));
    push_date(&mut out);
    out.extend_from_slice(b"\r\n");
    if response.header("content-type").is_none() {
        out.extend_from_slice(b"Content-Type: application/json\r\n");
    }
    for (name, value) in &response.headers {
        // Framing headers are ours alone; a value with CR/LF would inject headers.
        let ours = ["content-length", "connection", "date", "transfer-encoding"];
        if ours.iter().any(|o| name.eq_ignore_ascii_case(o))
            || value.bytes().any(|b| b == b'\r' || b == b'\n')
        {
            continue;
        }
        let _ = write!(out, "{name}: {value}\r\n");
    }
    let unknown = framing.head_only && response.length_unknown;
    if !bodyless && !unknown {
        let _ = write!(out, "Content-Length: {}\r\n", response.body_len());
    }
    if framing.close {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if framing.echo_keep_alive {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !framing.head_only && !bodyless && response.file.is_none() {
        out.extend_from_slice(&response.body);
    }
    out
}

thread_local! {
    /// The formatted `Date` and the second it is for, per thread.
    static DATE: std::cell::RefCell<(u64, String)> = const { std::cell::RefCell::new((0, String::new())) };
}

fn push_date(out: &mut Vec<u8>) {
    let now = SystemTime::now();
    let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    DATE.with_borrow_mut(|(cached, text)| {
        if *cached != second || text.is_empty() {
            *text = httpdate::fmt_http_date(now);
            *cached = second;
        }
        out.extend_from_slice(text.as_bytes());
    });
}
