//! The lock recipe: a create-only put (`if_version=0`) with a lease takes
//! the lock, the version it answers is the fencing token, the holder keeps
//! the lease alive and releases with a conditional delete; the others
//! long-poll the key and try again when it is deleted or expires. A holder
//! whose keepalive process is SIGKILLed loses the lock within its TTL and a
//! second.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::lease::{grant, keepalive, now_ms};
use crate::common::{Client, Server, entries, json, post};

const TTL: &str = "2s";

/// What every contender shares: who holds the lock now (as the clients
/// see it), the highest token seen, and every acquisition.
#[derive(Default)]
struct Book {
    holder: Option<u64>,
    max_token: u64,
    acquired: Vec<(u64, i64)>,
}

/// Tries to take the lock once; the fencing token if it did, else the
/// version seen (to long-poll after).
fn try_lock(c: &mut Client, lease: u64, who: usize) -> Result<u64, u64> {
    let r = post(
        c,
        &format!("/put/lock?if_version=0&lease={lease}"),
        &json!({ "value": who }),
    );
    match r.status {
        200 => Ok(r.json()["version"].as_u64().unwrap()),
        409 => {
            let latest = c.get("/get/lock");
            Err(match latest.status {
                200 => latest.json()["version"].as_u64().unwrap(),
                // Freed meanwhile: try again at once.
                _ => 0,
            })
        }
        s => panic!("lock attempt: {s} {}", r.text()),
    }
}

/// One contender: takes the lock `rounds` times, holding it a little each
/// time (with a keepalive and a fenced write), and releases it.
fn contender(addr: std::net::SocketAddr, who: usize, rounds: usize, book: Arc<Mutex<Book>>) {
    let mut c = Client::connect(addr);
    let mut lease = grant(&mut c, &json!(TTL));
    let mut taken = 0;
    let end = Instant::now() + Duration::from_secs(40);
    while taken < rounds && Instant::now() < end {
        // A lease that ran out during a long wait is replaced.
        let r = keepalive(&mut c, lease);
        if r.status == 404 {
            lease = grant(&mut c, &json!(TTL));
        }
        match try_lock(&mut c, lease, who) {
            Ok(token) => {
                {
                    let mut b = book.lock().unwrap();
                    assert_eq!(b.holder, None, "{who} took token {token} while held");
                    assert!(token > b.max_token, "token {token} after {}", b.max_token);
                    b.holder = Some(token);
                    b.max_token = token;
                    b.acquired.push((token, now_ms()));
                }
                let r = keepalive(&mut c, lease);
                assert_eq!(r.status, 200, "{}", r.text());
                // The guarded resource takes the token with each write.
                assert_eq!(c.put("resource", &json!(token)).status, 200);
                book.lock().unwrap().holder = None;
                let r = c.request(
                    "DELETE",
                    &format!("/delete/lock?if_version={token}"),
                    &[],
                    b"",
                );
                assert_eq!(r.status, 200, "release of {token}: {}", r.text());
                taken += 1;
            }
            Err(0) => {}
            Err(seen) => {
                // Wakes on the release or the expiry (a version above it).
                let r = c.get(&format!("/get/lock?wait_after={seen}&timeout=10"));
                assert!(matches!(r.status, 200 | 404), "{}", r.text());
            }
        }
    }
    assert_eq!(taken, rounds, "contender {who} starved");
}

#[test]
fn only_one_holds_the_lock_and_a_killed_holder_loses_it_within_ttl_and_a_second() {
    let s = Server::start(&[]);
    let mut c = s.client();
    // The first holder takes the lock; a process of its own keeps the lease
    // alive, and is SIGKILLed: no more keepalives, no release.
    let dead = grant(&mut c, &json!(TTL));
    let token = try_lock(&mut c, dead, 99).expect("the first holder takes the lock");
    let keepalive = format!(
        "while :; do curl -s -o /dev/null -X POST http://{}/leases/{dead}/keepalive; \
         sleep 0.2; done",
        s.addr
    );
    let mut holder = std::process::Command::new("sh")
        .args(["-c", &keepalive])
        .spawn()
        .expect("spawn the holder");
    // Held past its first TTL: the holder's keepalives count.
    let granted = now_ms();
    assert!(crate::common::poll_until(Duration::from_secs(10), || {
        now_ms() > granted + 3000
    }));
    assert_eq!(c.get("/get/lock").json()["version"], token);
    holder.kill().expect("SIGKILL the holder");
    let killed = now_ms();
    let _ = holder.wait();
    // A keepalive in flight at the kill may land just after it.
    let deadline = killed + 2000 + 200;

    let book = Arc::new(Mutex::new(Book {
        max_token: token,
        ..Book::default()
    }));
    let (n, rounds) = (4, 4);
    let threads: Vec<_> = (0..n)
        .map(|who| {
            let (addr, book) = (s.addr, Arc::clone(&book));
            std::thread::spawn(move || contender(addr, who, rounds, book))
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let book = book.lock().unwrap();
    assert_eq!(book.acquired.len(), n * rounds);
    let (_, first) = book.acquired[0];
    assert!(
        first <= deadline + 1000,
        "taken at {first}: more than TTL + 1 s after the holder was killed at {killed}"
    );
    assert!(
        first >= killed,
        "taken at {first}, before the kill at {killed}"
    );
    // The resource saw the tokens in order: no stale holder wrote.
    let mut tokens = Vec::new();
    for v in 1..=(n * rounds) as u64 {
        tokens.push(
            c.get(&format!("/get/resource?version={v}")).json()["value"]
                .as_u64()
                .unwrap(),
        );
    }
    assert!(tokens.windows(2).all(|w| w[0] < w[1]), "{tokens:?}");
    let history = entries(&mut c, "lock");
    assert!(history.iter().any(|e| e["operation"] == "expire"));
}
