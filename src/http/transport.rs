//! The transport under a connection: the non-blocking socket itself, or a
//! rustls session over it (feature `tls`). Both read plaintext and write
//! plaintext; neither ever blocks (`WouldBlock` means: wait for the next
//! readiness event).

use std::io::{self, Read, Write};

use mio::net::TcpStream;

/// Plain TCP or TLS.
pub enum Transport {
    /// HTTP straight on the socket.
    Plain,
    /// HTTP inside a TLS session.
    #[cfg(feature = "tls")]
    Tls(Box<rustls::ServerConnection>),
}

impl Transport {
    /// Reads plaintext into `buf`: `Ok(0)` when the peer closed, `WouldBlock`
    /// when nothing more is there now.
    pub fn read(&mut self, sock: &mut TcpStream, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Plain => sock.read(buf),
            #[cfg(feature = "tls")]
            Transport::Tls(tls) => loop {
                match tls.reader().read(buf) {
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    // TCP closed without close_notify: the peer is gone all the same.
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                    Err(e) => return Err(e),
                }
                if tls.read_tls(sock)? == 0 {
                    return Ok(0);
                }
                if let Err(e) = tls.process_new_packets() {
                    // Tell the client why (the alert), then give up.
                    let _ = tls.write_tls(sock);
                    return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                }
                // Handshake records to send; a full socket waits for writable.
                match flush_tls(tls, sock) {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            },
        }
    }

    /// Writes plaintext; returns how much was taken (TLS takes it into the
    /// session's buffer and sends what the socket accepts).
    pub fn write(&mut self, sock: &mut TcpStream, data: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Plain => sock.write(data),
            #[cfg(feature = "tls")]
            Transport::Tls(tls) => {
                let n = tls.writer().write(data)?;
                flush_tls(tls, sock).map(|_| n).or_else(|e| {
                    if e.kind() == io::ErrorKind::WouldBlock && n > 0 {
                        Ok(n)
                    } else {
                        Err(e)
                    }
                })
            }
        }
    }

    /// Sends what the transport itself still holds (TLS records); true when
    /// nothing is left.
    pub fn flush(&mut self, _sock: &mut TcpStream) -> io::Result<bool> {
        match self {
            Transport::Plain => Ok(true),
            #[cfg(feature = "tls")]
            Transport::Tls(tls) => match flush_tls(tls, _sock) {
                Ok(done) => Ok(done),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
                Err(e) => Err(e),
            },
        }
    }

    /// Whether a read that filled less than its buffer emptied the
    /// socket: true without TLS (rustls may hold decrypted bytes back).
    pub fn short_read_drains(&self) -> bool {
        matches!(self, Transport::Plain)
    }

    /// Whether the transport holds bytes to send (TLS records).
    pub fn wants_write(&self) -> bool {
        match self {
            Transport::Plain => false,
            #[cfg(feature = "tls")]
            Transport::Tls(tls) => tls.wants_write(),
        }
    }

    /// Whether the transport is still setting up (a TLS handshake): no
    /// HTTP can be answered on it yet.
    pub fn handshaking(&self) -> bool {
        match self {
            Transport::Plain => false,
            #[cfg(feature = "tls")]
            Transport::Tls(tls) => tls.is_handshaking(),
        }
    }

    /// Ends the session before the socket's write side is shut (TLS sends
    /// `close_notify`); best effort.
    pub fn close_notify(&mut self, _sock: &mut TcpStream) {
        #[cfg(feature = "tls")]
        if let Transport::Tls(tls) = self {
            tls.send_close_notify();
            let _ = flush_tls(tls, _sock);
        }
    }
}

/// Writes pending TLS records; true when none is left.
#[cfg(feature = "tls")]
fn flush_tls(tls: &mut rustls::ServerConnection, sock: &mut TcpStream) -> io::Result<bool> {
    while tls.wants_write() {
        tls.write_tls(sock)?;
    }
    Ok(true)
}
