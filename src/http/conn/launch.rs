//! Starting and stopping the I/O loops: one thread per listening socket,
//! and the handle that stops them.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;

use mio::net::TcpListener;
use mio::{Interest, Poll, Waker};

use super::event_loop::{Control, EventLoop, LISTENER, WAKER};
use super::limits::ConnLimits;
use crate::http::completion::{Mailbox, Service};
use crate::http::output::OutputBudget;

/// A running HTTP/1.x server: I/O threads (one by default) that each serve
/// the connections of their own listening socket.
pub struct HttpServer {
    control: Arc<Control>,
    addr: SocketAddr,
    threads: Vec<JoinHandle<()>>,
}

impl HttpServer {
    /// Starts serving `listener` with `service`. Returns once the loop runs.
    pub fn start(
        listener: std::net::TcpListener,
        limits: ConnLimits,
        service: Arc<dyn Service>,
    ) -> io::Result<HttpServer> {
        Self::launch(
            vec![listener],
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
        listener: std::net::TcpListener,
        limits: ConnLimits,
        service: Arc<dyn Service>,
        tls: Arc<rustls::ServerConfig>,
    ) -> io::Result<HttpServer> {
        Self::launch(vec![listener], limits, service, Some(tls))
    }

    /// Starts one I/O loop per listener (sockets bound to one address
    /// with `SO_REUSEPORT`: the kernel spreads new connections over them).
    /// `max_connections` bounds all loops together.
    pub(crate) fn launch(
        listeners: Vec<std::net::TcpListener>,
        limits: ConnLimits,
        service: Arc<dyn Service>,
        #[cfg(feature = "tls")] tls: Option<Arc<rustls::ServerConfig>>,
    ) -> io::Result<HttpServer> {
        let first = listeners
            .first()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no listener"))?;
        let addr = first.local_addr()?;
        let mut parts = Vec::with_capacity(listeners.len());
        for listener in listeners {
            listener.set_nonblocking(true)?;
            let mut listener = TcpListener::from_std(listener);
            let poll = Poll::new()?;
            poll.registry()
                .register(&mut listener, LISTENER, Interest::READABLE)?;
            let waker = Waker::new(poll.registry(), WAKER)?;
            let (mailbox, inbox) = Mailbox::new(waker);
            parts.push((poll, listener, mailbox, inbox));
        }
        let control = Arc::new(Control {
            mailboxes: parts.iter().map(|p| Arc::clone(&p.2)).collect(),
            stopping: AtomicBool::new(false),
            open: AtomicUsize::new(0),
            output: OutputBudget::new(limits.max_output_bytes),
        });
        let mut threads = Vec::with_capacity(parts.len());
        for (i, (poll, listener, mailbox, inbox)) in parts.into_iter().enumerate() {
            let event_loop = EventLoop::new(
                poll,
                listener,
                &limits,
                Arc::clone(&service),
                #[cfg(feature = "tls")]
                tls.clone(),
                Arc::clone(&control),
                mailbox,
                inbox,
            );
            let name = if i == 0 {
                "vkv-io".to_string()
            } else {
                format!("vkv-io-{i}")
            };
            match std::thread::Builder::new()
                .name(name)
                .spawn(move || event_loop.run())
            {
                Ok(thread) => threads.push(thread),
                Err(e) => {
                    // The loops already running stop with the handle.
                    drop(HttpServer {
                        control,
                        addr,
                        threads,
                    });
                    return Err(e);
                }
            }
        }
        Ok(HttpServer {
            control,
            addr,
            threads,
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many connections are open.
    pub fn open_connections(&self) -> usize {
        self.control.open.load(Ordering::Acquire)
    }

    /// Stops accepting, closes idle connections, answers parked requests
    /// (their deadline is brought forward), lets requests in flight finish
    /// and their responses be written (each with `Connection: close`), and
    /// waits for all that at most `read_timeout`; what is still open then
    /// is cut.
    pub fn shutdown(mut self) {
        self.stop();
        for thread in std::mem::take(&mut self.threads) {
            let _ = thread.join();
        }
    }

    fn stop(&self) {
        self.control.stopping.store(true, Ordering::Release);
        for mailbox in &self.control.mailboxes {
            mailbox.wake_now();
        }
    }
}

impl Drop for HttpServer {
    /// Stops the loop without waiting for it (it ends within `read_timeout`).
    fn drop(&mut self) {
        self.stop();
    }
}
