//! `vkv watch --prefix P`: one line per change of the keys under a prefix,
//! from the change feed (`GET /changes`), for as long as it runs.
//!
//! Long polls (`GET /changes?prefix=P&after=R&wait=S`) one after another,
//! each resuming after the last revision the previous answer covered
//! (`next_after`): a page never ends inside a revision, so every change is
//! printed once, in revision order. When no endpoint answers (a dropped
//! connection, a server restarting), the poll is tried again with backoff,
//! on every endpoint, from the same revision. A `410` (retention or a
//! purge removed a change after it) ends the watch: nothing is skipped
//! silently.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::args::{Output, WatchArgs};
use super::backoff::{Backoff, Retrying};
use super::commands::parse;
use super::endpoint::query_value;
use super::exit::{Failure, code, detail};
use super::failover::Client;
use super::http::Request;
use super::output::{self, compact};

/// One answer of `GET /changes`, each change kept as sent (for `-o json`).
#[derive(Deserialize)]
struct Page<'a> {
    #[serde(borrow)]
    changes: Vec<&'a RawValue>,
    revision: u64,
    next_after: Option<u64>,
}

/// What a text line shows of a change.
#[derive(Deserialize)]
struct Change<'a> {
    revision: u64,
    key: String,
    version: u64,
    operation: String,
    #[serde(borrow, default)]
    value: Option<&'a RawValue>,
}

/// A `410`'s body: the smallest `after` the server answers now.
#[derive(Deserialize)]
struct Gone {
    oldest_revision: Option<u64>,
}

struct Follower<'a> {
    args: &'a WatchArgs,
    prefix: &'a str,
    client: Client,
    /// The revision the last answer covered (or the one to start after).
    after: u64,
    printed: u64,
    backoff: Backoff,
}

pub fn follow(args: &WatchArgs, prefix: &str) -> Result<(), Failure> {
    let client = Client::new(&args.connect)?;
    let mut f = Follower {
        args,
        prefix,
        client,
        after: 0,
        printed: 0,
        backoff: Backoff::new("watch"),
    };
    f.after = match args.after {
        Some(r) => r,
        None => f.retrying(Follower::now)?,
    };
    while !f.done() {
        f.retrying(Follower::poll)?;
    }
    Ok(())
}

impl Retrying for Follower<'_> {
    fn backoff(&mut self) -> &mut Backoff {
        &mut self.backoff
    }

    fn resuming(&self) -> String {
        format!(
            "vkv watch: connected to {}, resuming after revision {}",
            self.client.endpoint(),
            self.after
        )
    }
}

impl Follower<'_> {
    fn done(&self) -> bool {
        self.args.count.is_some_and(|n| self.printed >= n)
    }

    /// The store's revision now (`GET /changes` without `after`).
    fn now(&mut self) -> Result<u64, Failure> {
        let target = format!("/changes?prefix={}&values=false", query_value(self.prefix));
        let r = self.client.call(Request::get(target))?;
        let r = self.client.ok(r)?;
        let page: Page<'_> = parse(&self.client, &r.body)?;
        Ok(page.revision)
    }

    /// One long poll; prints what it brought.
    fn poll(&mut self) -> Result<(), Failure> {
        let secs = self.args.poll.as_secs();
        let target = format!(
            "/changes?prefix={}&after={}&wait={secs}&limit=1000",
            query_value(self.prefix),
            self.after
        );
        let req = Request {
            // The server answers within `secs`; the connection's timeout
            // on top, for the answer to travel.
            timeout: Some(self.args.poll + self.args.connect.timeout),
            ..Request::get(target)
        };
        let r = self.client.call(req)?;
        if r.status == 410 {
            let oldest = serde_json::from_slice::<Gone>(&r.body)
                .ok()
                .and_then(|g| g.oldest_revision);
            let oldest = oldest.map_or("unknown".to_string(), |o| o.to_string());
            return Err(Failure::new(
                code::NOT_FOUND,
                format!(
                    "changes after revision {} are gone (removed by retention or a purge); \
                     the oldest revision to watch after is {oldest}: list the keys again \
                     (vkv ls) and watch with --after {oldest} or later ({}: {})",
                    self.after,
                    self.client.endpoint(),
                    detail(&r.body)
                ),
            ));
        }
        let r = self.client.ok(r)?;
        let page: Page<'_> = parse(&self.client, &r.body)?;
        for raw in &page.changes {
            if self.done() {
                return Ok(());
            }
            self.print(raw)?;
        }
        let next = page.next_after.unwrap_or(page.revision);
        // A server behind this one (a restored backup) must not move the
        // watch backwards: the next poll would print changes again.
        self.after = self.after.max(next);
        Ok(())
    }

    fn print(&mut self, raw: &RawValue) -> Result<(), Failure> {
        let line = match self.args.output {
            Output::Json => compact(raw.get()),
            Output::Text => {
                let c: Change<'_> = parse(&self.client, raw.get().as_bytes())?;
                let mut line = format!("{}\t{}\t{}\t{}", c.revision, c.operation, c.key, c.version);
                if let Some(v) = c.value {
                    line.push('\t');
                    line.push_str(&compact(v.get()));
                }
                line
            }
        };
        output::line(&line)?;
        self.printed += 1;
        Ok(())
    }
}
