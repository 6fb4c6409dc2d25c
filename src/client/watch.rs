//! `vkv watch K`: one line per version of a key, for as long as it runs.
//!
//! `--prefix` follows the change feed instead (`follow.rs`).
//!
//! Long polls (`GET /get/K?wait_after=V&timeout=S`) one after another,
//! each resuming after the last version printed. A poll answers with the
//! latest version only; when several versions came between two polls, the
//! ones in between are read from `/history` and `?version=`, so that every
//! version gets its line, in order. When no endpoint answers (a dropped
//! connection, a server restarting), the poll is tried again with backoff,
//! on every endpoint, from the same version: nothing is missed, nothing
//! printed twice.

use super::args::{Output, WatchArgs};
use super::backoff::{Backoff, Retrying};
use super::commands::{Found, history_page, json_string, parse};
use super::endpoint::path_key;
use super::exit::{Failure, detail};
use super::failover::Client;
use super::http::Request;
use super::output::{self, compact};

/// One version of the key, as printed.
enum Change {
    /// Its value, as one-line JSON, and its commit time.
    Value(String, String),
    /// A deletion marker, and its commit time when known.
    Deleted(Option<String>),
}

struct Watcher<'a> {
    args: &'a WatchArgs,
    key: &'a str,
    client: Client,
    /// The last version printed (or the one to start after).
    after: u64,
    printed: u64,
    backoff: Backoff,
}

pub fn watch(args: &WatchArgs) -> Result<(), Failure> {
    let key = match (&args.key, &args.prefix) {
        (_, Some(prefix)) => return super::follow::follow(args, prefix),
        (Some(key), None) => key,
        (None, None) => return Err(Failure::usage("give a KEY or --prefix PREFIX")),
    };
    let client = Client::new(&args.connect)?;
    let mut w = Watcher {
        args,
        key,
        client,
        after: 0,
        printed: 0,
        backoff: Backoff::new("watch"),
    };
    w.after = match args.after {
        Some(v) => v,
        None => w.retrying(Watcher::latest)?,
    };
    loop {
        if w.done() {
            return Ok(());
        }
        w.retrying(Watcher::poll)?;
    }
}

impl Retrying for Watcher<'_> {
    fn backoff(&mut self) -> &mut Backoff {
        &mut self.backoff
    }

    fn resuming(&self) -> String {
        format!(
            "vkv watch: connected to {}, resuming after version {}",
            self.client.endpoint(),
            self.after
        )
    }
}

impl Watcher<'_> {
    fn done(&self) -> bool {
        self.args.count.is_some_and(|n| self.printed >= n)
    }

    /// The key's latest version now, deleted or not (0: none).
    fn latest(&mut self) -> Result<u64, Failure> {
        let key = self.key;
        let r = self
            .client
            .call(Request::get(format!("/history/{}?limit=1", path_key(key))))?;
        if r.status == 404 {
            return Ok(0);
        }
        let r = self.client.ok(r)?;
        let page: super::commands::HistoryPage = parse(&self.client, &r.body)?;
        Ok(page.versions.first().map_or(0, |v| v.version))
    }

    /// One long poll; prints what it brought.
    fn poll(&mut self) -> Result<(), Failure> {
        let secs = self.args.poll.as_secs();
        let target = format!(
            "/get/{}?wait_after={}&timeout={secs}",
            path_key(self.key),
            self.after
        );
        let req = Request {
            // The server answers within `secs`; the connection's timeout
            // on top, for the answer to travel.
            timeout: Some(self.args.poll + self.args.connect.timeout),
            ..Request::get(target)
        };
        let r = self.client.call(req)?;
        let (version, change) = match r.status {
            200 => {
                let found: Found<'_> = parse(&self.client, &r.body)?;
                (
                    found.version,
                    Change::Value(compact(found.value.get()), found.timestamp),
                )
            }
            // A deletion marker: its version is in the ETag.
            404 => match r
                .header("etag")
                .and_then(|t| t.trim_matches('"').parse().ok())
            {
                Some(v) => (v, Change::Deleted(None)),
                // No version at all: the key never existed or was purged;
                // wait for its next first version.
                None => {
                    self.after = 0;
                    return Ok(());
                }
            },
            status => {
                return Err(Failure::from_status(
                    status,
                    &detail(&r.body),
                    &self.client.endpoint().to_string(),
                ));
            }
        };
        if version <= self.after {
            // The poll's time ran out with nothing new.
            return Ok(());
        }
        if version > self.after + 1 {
            self.fill_gap(version)?;
        }
        if !self.done() {
            self.print(version, &change)?;
        }
        self.after = version;
        Ok(())
    }

    /// Prints the versions between `self.after` and `upto` (exclusive)
    /// that still exist, oldest first.
    fn fill_gap(&mut self, upto: u64) -> Result<(), Failure> {
        let key = self.key.to_string();
        let mut missing = Vec::new();
        let mut before = upto;
        loop {
            let limit = (before - self.after - 1).clamp(1, 1000);
            let page = history_page(&mut self.client, &key, Some(before), limit)?;
            let mut reached = page.versions.is_empty();
            for v in &page.versions {
                if v.version <= self.after {
                    reached = true;
                    break;
                }
                missing.push((v.version, v.deleted, v.timestamp.clone()));
            }
            match page.next_before {
                Some(b) if !reached && b > self.after + 1 => before = b,
                _ => break,
            }
        }
        missing.reverse();
        for (version, deleted, timestamp) in missing {
            if self.done() {
                break;
            }
            let change = if deleted {
                Change::Deleted(Some(timestamp))
            } else {
                let r = self.client.call(Request::get(format!(
                    "/get/{}?version={version}",
                    path_key(&key)
                )))?;
                if matches!(r.status, 404 | 410) {
                    // Removed since (retention, purge): nothing to show.
                    continue;
                }
                let r = self.client.ok(r)?;
                let found: Found<'_> = parse(&self.client, &r.body)?;
                Change::Value(compact(found.value.get()), found.timestamp)
            };
            self.print(version, &change)?;
            self.after = version;
        }
        Ok(())
    }

    fn print(&mut self, version: u64, change: &Change) -> Result<(), Failure> {
        let key = json_string(self.key);
        let line = match (self.args.output, change) {
            (Output::Text, Change::Value(v, _)) => format!("{version}\t{v}"),
            (Output::Text, Change::Deleted(_)) => format!("{version}\tdeleted"),
            (Output::Json, Change::Value(v, t)) => format!(
                "{{\"key\":{key},\"version\":{version},\"value\":{v},\"timestamp\":{}}}",
                json_string(t)
            ),
            (Output::Json, Change::Deleted(t)) => format!(
                "{{\"key\":{key},\"version\":{version},\"deleted\":true{}}}",
                t.as_deref()
                    .map(|t| format!(",\"timestamp\":{}", json_string(t)))
                    .unwrap_or_default()
            ),
        };
        output::line(&line)?;
        self.printed += 1;
        Ok(())
    }
}
