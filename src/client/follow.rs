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

use super::args::WatchArgs;
use super::backoff::{Backoff, Retrying};
use super::commands::parse;
use super::exit::Failure;
use super::failover::Client;
use super::feed::{self, Page};
use super::http::Request;
use super::output;

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
        let target = feed::target(self.prefix, None, "&values=false");
        let r = self.client.expect_ok(Request::get(target))?;
        let page: Page<'_> = parse(&self.client, &r.body)?;
        Ok(page.revision)
    }

    /// One long poll; prints what it brought.
    fn poll(&mut self) -> Result<(), Failure> {
        let secs = self.args.poll.as_secs();
        let target = feed::target(
            self.prefix,
            Some(self.after),
            &format!("&wait={secs}&limit=1000"),
        );
        let req = Request {
            // The server answers within `secs`; the connection's timeout
            // on top, for the answer to travel.
            timeout: Some(self.args.poll + self.args.connect.timeout),
            ..Request::get(target)
        };
        let r = feed::fetch(&mut self.client, req, self.after, "watch")?;
        let page: Page<'_> = parse(&self.client, &r.body)?;
        for raw in &page.changes {
            if self.done() {
                return Ok(());
            }
            output::line(&feed::line(&self.client, raw, self.args.output)?)?;
            self.printed += 1;
        }
        // A server behind this one (a restored backup) must not move the
        // watch backwards: the next poll would print changes again.
        self.after = self.after.max(page.next_after());
        Ok(())
    }
}
