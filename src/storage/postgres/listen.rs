//! Watch across replicas: one connection per replica `LISTEN`s on the
//! channel every write transaction `NOTIFY`s (one payload per key written,
//! sent by PostgreSQL only at commit), on a thread of its own (blocking
//! iteration with a timeout: no async runtime of ours). A key some watcher
//! here waits on is read again and handed to the watchers. After the
//! connection is lost and comes back, every parked watcher is re-checked,
//! so a notification sent meanwhile is never missed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use postgres::Client;
use postgres::fallible_iterator::FallibleIterator;

use super::Target;
use super::apply::CHANNEL;
use super::reads::PgReads;
use crate::storage::Reads;
use crate::watch::Watchers;

/// How often the thread looks at the stop flag while idle.
const TICK: Duration = Duration::from_millis(250);

/// Starts the listening thread; it stops when `stop` is set.
pub(crate) fn start(
    target: Target,
    reads: Arc<PgReads>,
    watchers: Arc<Watchers>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("vkv-pg-listen".into())
        .spawn(move || run(&target, &reads, &watchers, &stop))?;
    Ok(())
}

fn run(target: &Target, reads: &PgReads, watchers: &Watchers, stop: &AtomicBool) {
    let mut failing = false;
    while !stop.load(Ordering::Acquire) {
        let mut client = match target
            .connect()
            .and_then(|mut c| c.batch_execute(&format!("LISTEN {CHANNEL}")).map(|()| c))
        {
            Ok(c) => c,
            Err(e) => {
                if !failing {
                    log::warn!("PostgreSQL LISTEN connection failed ({e}); retrying");
                    failing = true;
                }
                std::thread::sleep(TICK);
                continue;
            }
        };
        if failing {
            log::info!("PostgreSQL LISTEN connection is back; re-checking parked watchers");
            failing = false;
        }
        // Whatever was committed while no one listened.
        for key in watchers.watched_keys() {
            wake(reads, watchers, &key);
        }
        if let Err(e) = listen(&mut client, reads, watchers, stop) {
            log::warn!("PostgreSQL LISTEN connection lost ({e}); reconnecting");
            failing = true;
        }
    }
    log::debug!("PostgreSQL listener stopped");
}

/// Serves notifications until the connection fails or `stop` is set.
fn listen(
    client: &mut Client,
    reads: &PgReads,
    watchers: &Watchers,
    stop: &AtomicBool,
) -> Result<(), postgres::Error> {
    while !stop.load(Ordering::Acquire) {
        {
            let mut notifications = client.notifications();
            let mut iter = notifications.timeout_iter(TICK);
            while let Some(n) = iter.next()? {
                if let Some(key) = unhex(n.payload()) {
                    wake(reads, watchers, &key);
                }
            }
        }
        if client.is_closed() {
            // Seen as an error on the next round; make it one now.
            client.simple_query("")?;
        }
    }
    Ok(())
}

/// Hands the latest version of `key` to its watchers, if it has any.
fn wake(reads: &PgReads, watchers: &Watchers, key: &str) {
    if !watchers.is_watched(key) {
        return;
    }
    match reads.latest(key) {
        Ok(Some(v)) => watchers.notify(&Arc::new(v)),
        Ok(None) => {}
        Err(e) => log::warn!("cannot read key '{key}' for its watchers: {e}"),
    }
}

/// The key a payload names (hex of its bytes).
fn unhex(payload: &str) -> Option<String> {
    let bytes = payload.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    let raw = bytes
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(raw).ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn payloads_round_trip_any_key() {
        for key in ["a", "app/a b", "\u{0}nul", "é/ü/日本"] {
            let payload = super::super::apply::hex(key.as_bytes());
            assert_eq!(super::unhex(&payload).as_deref(), Some(key));
        }
        assert_eq!(super::unhex("zz"), None);
        assert_eq!(super::unhex("abc"), None);
    }
}
