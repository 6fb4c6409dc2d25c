//! `vkv lease grant|keepalive|revoke|show|ls`: the leases keys expire with
//! (`/leases`).

use std::time::Duration;

use serde::Deserialize;

use super::args::{LeaseCommand, Output};
use super::backoff::Backoff;
use super::commands::parse;
use super::exit::{Failure, code};
use super::failover::Client;
use super::http::Request;
use super::output;

/// A lease as `/leases` answers it.
#[derive(Deserialize)]
struct Lease {
    id: u64,
    ttl: String,
    expires_at: String,
}

#[derive(Deserialize)]
struct Detail {
    #[serde(flatten)]
    lease: Lease,
    remaining_ms: u64,
    keys: Vec<String>,
    more_keys: bool,
}

#[derive(Deserialize)]
struct Leases {
    leases: Vec<Lease>,
}

#[derive(Deserialize)]
struct Revoked {
    id: u64,
    expired_keys: u64,
}

/// `POST /leases` for `ttl` (as the server takes it: `10s`, `5m`, ...);
/// the new lease's id.
pub fn grant_lease(client: &mut Client, ttl: &str) -> Result<(u64, Vec<u8>), Failure> {
    let body = serde_json::json!({ "ttl": ttl }).to_string();
    let r = client.expect_ok(Request {
        method: "POST",
        body: Some(body.as_bytes()),
        ..Request::get("/leases".to_string())
    })?;
    let lease: Lease = parse(client, &r.body)?;
    Ok((lease.id, r.body))
}

/// `POST /leases/{id}/keepalive`.
pub fn keepalive_once(client: &mut Client, id: u64) -> Result<Vec<u8>, Failure> {
    let r = client.expect_ok(Request {
        method: "POST",
        ..Request::get(format!("/leases/{id}/keepalive"))
    })?;
    Ok(r.body)
}

/// `DELETE /leases/{id}`.
pub fn revoke_lease(client: &mut Client, id: u64) -> Result<Vec<u8>, Failure> {
    let r = client.expect_ok(Request {
        method: "DELETE",
        ..Request::get(format!("/leases/{id}"))
    })?;
    Ok(r.body)
}

fn lease_line(l: &Lease) -> String {
    format!("{}\t{}\t{}", l.id, l.ttl, l.expires_at)
}

pub fn lease(command: &LeaseCommand) -> Result<(), Failure> {
    match command {
        LeaseCommand::Grant(a) => {
            let mut client = Client::new(&a.connect)?;
            let (id, body) = grant_lease(&mut client, &a.ttl)?;
            match a.output {
                Output::Json => output::raw(&body),
                Output::Text => output::line(&id.to_string()),
            }
        }
        LeaseCommand::Keepalive(a) => {
            let mut client = Client::new(&a.connect)?;
            let Some(every) = a.every else {
                let body = keepalive_once(&mut client, a.id)?;
                return print_lease(&client, &body, a.output);
            };
            let mut backoff = Backoff::new("lease keepalive");
            loop {
                match keepalive_once(&mut client, a.id) {
                    Ok(body) => {
                        if backoff.recovered() {
                            eprintln!("vkv lease keepalive: {} answers again", client.endpoint());
                        }
                        print_lease(&client, &body, a.output)?;
                        std::thread::sleep(every);
                    }
                    Err(f) if f.code == code::UNAVAILABLE => backoff.wait(&f),
                    Err(f) => return Err(f),
                }
            }
        }
        LeaseCommand::Revoke(a) => {
            let mut client = Client::new(&a.connect)?;
            let body = revoke_lease(&mut client, a.id)?;
            match a.output {
                Output::Json => output::raw(&body),
                Output::Text => {
                    let r: Revoked = parse(&client, &body)?;
                    output::line(&format!(
                        "revoked lease {}: {} keys expired",
                        r.id, r.expired_keys
                    ))
                }
            }
        }
        LeaseCommand::Show(a) => {
            let mut client = Client::new(&a.connect)?;
            let r = client.expect_ok(Request::get(format!("/leases/{}?limit=1000", a.id)))?;
            if a.output == Output::Json {
                return output::raw(&r.body);
            }
            let d: Detail = parse(&client, &r.body)?;
            output::line(&format!(
                "id\t{}\nttl\t{}\nexpires_at\t{}\nremaining\t{}",
                d.lease.id,
                d.lease.ttl,
                d.lease.expires_at,
                humantime::format_duration(Duration::from_millis(d.remaining_ms))
            ))?;
            for k in &d.keys {
                output::line(&format!("key\t{k}"))?;
            }
            if d.more_keys {
                output::line("key\t...")?;
            }
            Ok(())
        }
        LeaseCommand::Ls(a) => {
            let mut client = Client::new(&a.connect)?;
            let r = client.expect_ok(Request::get("/leases".to_string()))?;
            if a.output == Output::Json {
                return output::raw(&r.body);
            }
            let all: Leases = parse(&client, &r.body)?;
            for l in &all.leases {
                output::line(&lease_line(l))?;
            }
            Ok(())
        }
    }
}

fn print_lease(client: &Client, body: &[u8], o: Output) -> Result<(), Failure> {
    match o {
        Output::Json => output::raw(body),
        Output::Text => output::line(&lease_line(&parse(client, body)?)),
    }
}
