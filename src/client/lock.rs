//! `vkv lock NAME [-- COMMAND...]`: a lock held with a lease (etcdctl
//! lock's model). A lease is granted and kept alive by a thread; the lock
//! is a create-only put (`if_version=0`) of NAME with the lease, retried
//! after a long poll on NAME while another holds it. The put's revision
//! is the fencing token (`VKV_LOCK_TOKEN`): it strictly increases from one
//! holder to the next. The lease is revoked when COMMAND exits, or on
//! SIGINT/SIGTERM; a holder killed outright loses the lock when its lease
//! runs out.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use serde::Deserialize;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use super::args::{Connect, LockArgs};
use super::backoff::Backoff;
use super::commands::parse;
use super::endpoint::path_key;
use super::exit::{Failure, code, detail};
use super::failover::Client;
use super::http::Request;
use super::lease::{grant_lease, keepalive_once, revoke_lease};
use super::output;

#[derive(Deserialize)]
struct Taken {
    revision: u64,
}

#[derive(Deserialize)]
struct Held {
    current_version: Option<u64>,
}

/// Runs the lock; the exit code (COMMAND's status with a command).
pub fn lock(a: &LockArgs) -> Result<u8, Failure> {
    let ttl = humantime::parse_duration(&a.ttl)
        .map_err(|e| Failure::usage(format!("--ttl {}: {e}", a.ttl)))?;
    let every = (ttl / 3).max(Duration::from_millis(100));
    let mut client = Client::new(&a.connect)?;
    let (lease, _) = grant_lease(&mut client, &a.ttl)?;
    let stop = Arc::new(AtomicBool::new(false));
    let child = Arc::new(AtomicU32::new(0));
    keep_alive(a.connect.clone(), lease, every, Arc::clone(&stop))?;
    on_signals(a.connect.clone(), lease, Arc::clone(&child))?;

    let token = match acquire(&mut client, a, lease) {
        Ok(t) => t,
        Err(f) => {
            let _ = revoke_lease(&mut client, lease);
            return Err(f);
        }
    };
    let Some((program, rest)) = a.command.split_first() else {
        output::line(&token.to_string())?;
        // Held until a signal: the signal thread revokes and exits.
        loop {
            std::thread::park();
        }
    };
    let spawned = std::process::Command::new(program)
        .args(rest)
        .env("VKV_LOCK_TOKEN", token.to_string())
        .spawn();
    let status = match spawned {
        Ok(mut c) => {
            child.store(c.id(), Ordering::SeqCst);
            let status = c.wait();
            child.store(0, Ordering::SeqCst);
            status
        }
        Err(e) => Err(e),
    };
    stop.store(true, Ordering::SeqCst);
    let revoked = revoke_lease(&mut client, lease);
    let status = status.map_err(|e| Failure::other(format!("cannot run {program}: {e}")))?;
    if let Err(f) = revoked
        && f.code != code::NOT_FOUND
    {
        eprintln!("vkv lock: revoking lease {lease}: {f}");
    }
    Ok(exit_code(status))
}

/// COMMAND's exit code, or 128 + the signal that ended it.
fn exit_code(status: std::process::ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => u8::try_from(c).unwrap_or(1),
        (None, Some(s)) => u8::try_from(128 + s).unwrap_or(1),
        _ => 1,
    }
}

/// Takes the lock: the fencing token (the put's revision).
fn acquire(client: &mut Client, a: &LockArgs, lease: u64) -> Result<u64, Failure> {
    let body = format!("{{\"value\":{lease}}}");
    let mut backoff = Backoff::new("lock");
    loop {
        let r = client.call(Request {
            method: "POST",
            body: Some(body.as_bytes()),
            ..Request::get(format!(
                "/put/{}?if_version=0&lease={lease}",
                path_key(&a.name)
            ))
        });
        let r = match r {
            Ok(r) => r,
            Err(f) if f.code == code::UNAVAILABLE => {
                backoff.wait(&f);
                continue;
            }
            Err(f) => return Err(f),
        };
        match r.status {
            200 => {
                let t: Taken = parse(client, &r.body)?;
                return Ok(t.revision);
            }
            409 => {
                let held: Held = parse(client, &r.body)?;
                if let Some(v) = held.current_version {
                    wait_after(client, a, v)?;
                }
            }
            s => {
                return Err(Failure::from_status(
                    s,
                    &detail(&r.body),
                    &client.endpoint().to_string(),
                ));
            }
        }
    }
}

/// Long-polls NAME until a version after `version` (a release or an
/// expiry) or the poll's time runs out.
fn wait_after(client: &mut Client, a: &LockArgs, version: u64) -> Result<(), Failure> {
    let secs = 30;
    let req = Request {
        timeout: Some(Duration::from_secs(secs) + a.connect.timeout),
        ..Request::get(format!(
            "/get/{}?wait_after={version}&timeout={secs}",
            path_key(&a.name)
        ))
    };
    match client.call(req) {
        Ok(_) => Ok(()),
        Err(f) if f.code == code::UNAVAILABLE => Ok(()),
        Err(f) => Err(f),
    }
}

/// A thread that keeps `lease` alive every `every` until `stop`.
fn keep_alive(
    connect: Connect,
    lease: u64,
    every: Duration,
    stop: Arc<AtomicBool>,
) -> Result<(), Failure> {
    let mut client = Client::new(&connect)?;
    std::thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            std::thread::sleep(every);
            if stop.load(Ordering::SeqCst) {
                return;
            }
            match keepalive_once(&mut client, lease) {
                Ok(_) => {}
                Err(f) if f.code == code::NOT_FOUND => {
                    eprintln!("vkv lock: lease {lease} is gone: the lock is no longer held");
                    return;
                }
                Err(f) => eprintln!("vkv lock: keepalive of lease {lease}: {f}"),
            }
        }
    });
    Ok(())
}

/// On SIGINT or SIGTERM: passes it to COMMAND if one runs (its exit then
/// revokes the lease), else revokes the lease and exits 128 + signal.
fn on_signals(connect: Connect, lease: u64, child: Arc<AtomicU32>) -> Result<(), Failure> {
    let mut signals = Signals::new([SIGINT, SIGTERM])
        .map_err(|e| Failure::other(format!("cannot handle signals: {e}")))?;
    let mut client = Client::new(&connect)?;
    std::thread::spawn(move || {
        for signal in signals.forever() {
            let pid = child.load(Ordering::SeqCst);
            if pid != 0 {
                if let Ok(pid) = libc::pid_t::try_from(pid) {
                    // SAFETY: kill(2) with a pid of our own child.
                    unsafe { libc::kill(pid, signal) };
                }
                continue;
            }
            let _ = revoke_lease(&mut client, lease);
            std::process::exit(128 + signal);
        }
    });
    Ok(())
}
