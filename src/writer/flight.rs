//! The groups the writer has committed (or failed) and not answered yet,
//! in commit order.
//!
//! A backend may hold a committed group's answers for a while (PostgreSQL:
//! until the other replicas holding read leases have acknowledged it, see
//! [`Committer::unsettled`]). Meanwhile the writer commits the next groups,
//! so group size does not collapse while a lease holder is slow. Answers go
//! out in commit order: a group is answered once it and every older group
//! may be.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;

use super::context::{WriterContext, publish};
use super::reply::Reply;
use super::stall::Stall;
use crate::cache::WriteTicket;
use crate::error::StoreError;
use crate::storage::seam::{Committer, Outcomes};

/// One group waiting for its answers.
pub(super) struct Group {
    /// Its replies, or the watchdog's id for them when a stall bound holds
    /// them meanwhile.
    pub replies: Held,
    /// What the commit gave: every operation's outcome, or the failure of
    /// the whole group (then nothing of it committed, or its outcome is
    /// unknown).
    pub outcome: Result<Outcomes, StoreError>,
    /// The cache's tickets, taken before the transaction, one list per
    /// operation (see [`publish`]).
    pub tickets: Vec<Vec<WriteTicket>>,
}

pub(super) enum Held {
    Here(Vec<Reply>),
    Watchdog(u64),
}

impl Held {
    /// The replies, unless the watchdog answered them already.
    pub fn take(self, stall: Option<&Stall>) -> Option<Vec<Reply>> {
        match (self, stall) {
            (Held::Here(replies), _) => Some(replies),
            (Held::Watchdog(id), Some(stall)) => stall.disarm(id),
            (Held::Watchdog(_), None) => None,
        }
    }
}

/// The groups in flight, oldest first.
#[derive(Default)]
pub(super) struct Flight {
    groups: VecDeque<Group>,
    /// How many of `groups` committed (the backend counts its unsettled
    /// groups among these).
    committed: usize,
}

impl Flight {
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    pub fn len(&self) -> usize {
        self.groups.len()
    }

    pub fn push(&mut self, group: Group) {
        if group.outcome.is_ok() {
            self.committed += 1;
        }
        self.groups.push_back(group);
    }

    /// Answers, in order, every group the backend no longer holds.
    pub fn answer(&mut self, conn: &dyn Committer, ctx: &WriterContext, stall: Option<&Stall>) {
        let mut settled = self.committed.saturating_sub(conn.unsettled());
        crate::wake::batch(|| {
            while let Some(front) = self.groups.front() {
                if front.outcome.is_ok() {
                    if settled == 0 {
                        break;
                    }
                    settled -= 1;
                    self.committed -= 1;
                }
                if let Some(group) = self.groups.pop_front() {
                    answer(group, ctx, stall);
                }
            }
        });
    }
}

/// Publishes what `group` committed, then answers its callers.
fn answer(group: Group, ctx: &WriterContext, stall: Option<&Stall>) {
    let Group {
        replies,
        outcome,
        tickets,
    } = group;
    let replies = replies.take(stall);
    match outcome {
        Ok(results) => {
            for (result, tickets) in results.iter().zip(&tickets) {
                if let Ok(done) = result {
                    publish(done, tickets, ctx);
                }
            }
            // Else answered "outcome unknown" by the watchdog meanwhile:
            // what committed is published, so that reads see it.
            if let Some(replies) = replies {
                for (reply, result) in replies.into_iter().zip(results) {
                    reply.send(result);
                }
            }
        }
        Err(e) => {
            for reply in replies.into_iter().flatten() {
                reply.send(Err(e.clone()));
            }
        }
    }
}

/// Counts a committed group in the writer's counters.
pub(super) fn count(ctx: &WriterContext, writes: usize) {
    ctx.counters.batches.fetch_add(1, Ordering::Relaxed);
    ctx.counters.ops.fetch_add(writes as u64, Ordering::Relaxed);
}
