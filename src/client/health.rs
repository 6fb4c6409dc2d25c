//! `vkv health`: `GET /health` on the server's own `--bind` address, for
//! container health checks in images without curl. Over TLS when the
//! server serves it (its `--tls-cert` is set, as in a container whose
//! environment has `VKV_TLS_CERT`) or when asked (`--tls`, `--cacert`).
//! Prints `healthy`, or names the address and the reason; exit 0 or 1
//! (what container runtimes expect of a health check).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, ToSocketAddrs};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use super::endpoint::{Endpoint, Scheme};
use super::exit::detail;
use super::http::{Conn, Error, Request};
use super::tls::{Roots, Trust};

/// How long the probe waits to connect and for the answer.
const TIMEOUT: Duration = Duration::from_secs(3);

/// What `vkv health` was told.
pub struct Probe<'a> {
    /// The server's `--bind` address (a wildcard is probed on loopback).
    pub bind: &'a str,
    /// `--tls`: probe over TLS.
    pub tls: bool,
    /// `--cacert`: the CA certificates to check the server's with.
    pub cacert: Option<&'a Path>,
    /// The server's own `--tls-cert`, when set: TLS, and the certificate
    /// the server must present.
    pub server_cert: Option<&'a Path>,
}

pub fn run(probe: &Probe<'_>) -> ExitCode {
    match check(probe) {
        Ok(()) => {
            println!("healthy");
            ExitCode::SUCCESS
        }
        Err(why) => {
            eprintln!("vkv health: unhealthy: {why}");
            ExitCode::FAILURE
        }
    }
}

fn check(probe: &Probe<'_>) -> Result<(), String> {
    let mut addr = probe
        .bind
        .to_socket_addrs()
        .map_err(|e| format!("--bind {}: {e}", probe.bind))?
        .next()
        .ok_or_else(|| format!("--bind {} resolves to no address", probe.bind))?;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr.ip() {
            IpAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
            IpAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
        });
    }
    let tls = probe.tls || probe.cacert.is_some() || probe.server_cert.is_some();
    let endpoint = Endpoint {
        scheme: if tls { Scheme::Https } else { Scheme::Http },
        host: addr.ip().to_string(),
        port: addr.port(),
        base: String::new(),
    };
    let url = format!("{endpoint}/health");
    let trust = if tls {
        // The probe connects to an IP address, which the certificate
        // rarely names: the chain is checked, not the name.
        let roots = match (probe.cacert, probe.server_cert) {
            (Some(ca), _) => Roots::CaFile(ca.to_path_buf()),
            (None, Some(own)) => Roots::Pinned(own.to_path_buf()),
            (None, None) => Roots::System,
        };
        Some(Trust::new(&roots, false).map_err(|e| format!("{url}: {e}"))?)
    } else {
        None
    };
    let answer = Conn::open(&endpoint, trust.as_ref(), TIMEOUT)
        .and_then(|mut conn| conn.send(&Request::get("/health".to_string())));
    match answer {
        Ok(r) if r.status == 200 => Ok(()),
        Ok(r) => Err(format!("{url}: {} {}", r.status, detail(&r.body))),
        Err(e @ (Error::Lost(_) | Error::Protocol(_))) if !tls => Err(format!(
            "{url}: {e} (if the server serves TLS, probe with --tls or --cacert)"
        )),
        Err(e) => Err(format!("{url}: {e}")),
    }
}
