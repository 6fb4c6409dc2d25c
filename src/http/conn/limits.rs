//! The limits that bound what any one client can cost the server.

use std::time::Duration;

use crate::http::parser::ParseLimits;

/// Limits that bound what any one client can cost the server.
#[derive(Debug, Clone)]
pub struct ConnLimits {
    /// Connections open at once; beyond it the longest idle one is closed
    /// to make room, or the new one is answered `503`.
    pub max_connections: usize,
    /// How long an open connection may wait for the next request to start.
    pub idle_timeout: Duration,
    /// How long a whole request (head and body) may take from its first
    /// byte (`408` beyond); also how long a write may make no progress.
    pub read_timeout: Duration,
    /// Largest request body accepted (`413` beyond).
    pub max_body_bytes: usize,
    /// Longest request line accepted (`414` beyond).
    pub max_request_line: usize,
    /// Largest header section accepted, request line excluded (`431` beyond).
    pub max_header_bytes: usize,
    /// Most header fields accepted in one request (`431` beyond).
    pub max_headers: usize,
    /// At the connection limit, only a connection with nothing in flight
    /// for at least this long is closed to make room. Zero by default: a
    /// client that re-opens connections as fast as they are closed would
    /// otherwise keep every connection inside the grace and lock everyone
    /// out.
    pub evict_after: Duration,
    /// Bytes that answers not yet sent may hold in all (see
    /// `src/http/output.rs`); beyond it the connections whose writes have
    /// stalled the longest are closed.
    pub max_output_bytes: usize,
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
    /// 16,384 connections, 30 s idle, 10 s per request, 1 MiB bodies,
    /// 8 KiB request line, 16 KiB and 100 headers, eviction without grace,
    /// 64 MiB of unsent answers.
    fn default() -> Self {
        ConnLimits {
            max_connections: 16_384,
            idle_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(10),
            max_body_bytes: 1 << 20,
            max_request_line: 8 << 10,
            max_header_bytes: 16 << 10,
            max_headers: 100,
            evict_after: Duration::ZERO,
            max_output_bytes: 64 << 20,
        }
    }
}
