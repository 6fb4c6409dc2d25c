//! `vkv check`, and the verification of a restore, on any backend: the
//! backend's own checks first (a SQLite file's `PRAGMA integrity_check`,
//! format and schema), then one walk over the store's dump (one consistent
//! snapshot, see the bulk seam in `storage`) for vkv's invariants, the same
//! for every backend:
//!
//! - each key's versions dense from its `first_kept` to its `latest`, the
//!   head agreeing with its newest version (deleted, timestamp), no
//!   version without a head, no head without a version, every value JSON,
//!   only tombstones marked as expiries;
//! - the counters equal to the real counts of keys and versions;
//! - the revisions: above 0, unique (per revision and place in its batch,
//!   purges included), never decreasing with the version within a key,
//!   none above the store's revision counter, the compacted one not above
//!   it either; a purge removing only changes before its own;
//! - a purged key has no head;
//! - a deadline belongs to a live key and to the version that set it (its
//!   latest), and a key on a lease names a lease that exists.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::storage;
use crate::storage::maintenance::{CheckError, CheckReport};
use crate::storage::seam::{DeadlineRow, KeyHead, Record, Totals};
use crate::version::Deadline;

/// Checks the store at `location` (safe while servers run on it).
pub fn check(location: &Path) -> Result<CheckReport, CheckError> {
    let shown = storage::location::display_location(location);
    let mut report = CheckReport {
        path: PathBuf::from(&shown),
        ..CheckReport::default()
    };
    if !storage::open::check_own(location, &mut report)? {
        return Ok(report);
    }
    let mut dump = match storage::open::open_export(location) {
        Ok(dump) => dump,
        Err(e) if !report.is_ok() => {
            report.problem(format!("cannot read the store: {e}"));
            return Ok(report);
        }
        Err(e) => {
            return Err(CheckError {
                path: PathBuf::from(&shown),
                reason: e.to_string(),
            });
        }
    };
    report.schema_version = dump.schema_version();
    let counters = match dump.counters() {
        Ok(counters) => counters,
        Err(e) => {
            report.problem(format!("reading the counters failed: {e}"));
            return Ok(report);
        }
    };
    let mut walk = Walk::default();
    let streamed = dump.for_each(&mut |record| {
        walk.record(record, &mut report);
        Ok(())
    });
    if let Err(e) = streamed {
        report.problem(format!("reading the store failed: {e}"));
        return Ok(report);
    }
    walk.end_key(&mut report);
    walk.end_revisions(&mut report);
    walk.end_deadlines(&mut report);
    report.keys = walk.totals.keys;
    report.versions = walk.totals.versions;
    for (name, counter, real) in [
        ("keys", counters.keys, walk.totals.keys),
        ("versions", counters.versions, walk.totals.versions),
    ] {
        if counter != real {
            report.problem(format!(
                "counter {name:?} says {counter}, but there are {real} {name}"
            ));
        }
    }
    Ok(report)
}

/// The state of a walk over a dump: the key being read and what was seen.
#[derive(Default)]
struct Walk {
    totals: Totals,
    /// The key whose records are being read, and its head if it has one.
    key: Option<(String, Option<KeyHead>)>,
    /// Versions of that key: count, first, last, and the last one's flags.
    count: u64,
    first: u64,
    last: u64,
    last_deleted: bool,
    last_ts: i64,
    /// The last version's revision (within the key).
    last_revision: u64,
    /// Every key's head: its latest version and whether it is deleted
    /// (for the purged keys and deadlines, which come after every key).
    heads: HashMap<String, (u64, bool)>,
    /// Every (revision, place) seen, to find a repeated one.
    revisions: HashSet<(u64, u64)>,
    /// The highest revision seen, and the store's counter.
    highest: u64,
    counter: Option<(u64, u64)>,
    /// The deadlines and the leases, judged at the end.
    deadlines: Vec<DeadlineRow>,
    leases: HashSet<u64>,
}

impl Walk {
    fn record(&mut self, record: Record, r: &mut CheckReport) {
        match record {
            Record::Head(h) => {
                self.end_key(r);
                self.totals.keys += 1;
                self.heads.insert(h.key.clone(), (h.latest, h.deleted));
                self.key = Some((h.key.clone(), Some(h)));
            }
            Record::Purged { key, latest } => {
                self.end_key(r);
                if let Some((head, _)) = self.heads.get(&key) {
                    r.problem(format!(
                        "key {key:?}: marked purged at version {latest} but has versions up to \
                         {head}"
                    ));
                }
            }
            Record::Deadline(d) => {
                self.end_key(r);
                self.deadlines.push(d);
            }
            Record::Lease(l) => {
                self.end_key(r);
                self.leases.insert(l.id);
            }
            Record::PurgeLog {
                revision,
                key,
                removed,
                ..
            } => {
                self.end_key(r);
                self.revision(r, &key, revision, 0);
                if removed >= revision {
                    r.problem(format!(
                        "key {key:?}: its purge at revision {revision} says it removed changes \
                         up to {removed}"
                    ));
                }
            }
            Record::Revision { current, compacted } => {
                self.end_key(r);
                self.counter = Some((current, compacted));
            }
            Record::Version(v) => {
                self.totals.versions += 1;
                if self.key.as_ref().is_none_or(|(k, _)| *k != v.key) {
                    self.end_key(r);
                    self.key = Some((v.key.clone(), None));
                }
                if self.count > 0 && Some(v.version) != self.last.checked_add(1) {
                    r.problem(format!(
                        "key {:?}: version {} follows version {} (not dense)",
                        v.key, v.version, self.last
                    ));
                }
                // Versions of one batch share its revision.
                if self.count > 0 && v.revision < self.last_revision {
                    r.problem(format!(
                        "key {:?}: version {} has revision {}, below version {}'s ({})",
                        v.key, v.version, v.revision, self.last, self.last_revision
                    ));
                }
                self.last_revision = v.revision;
                self.revision(r, &v.key, v.revision, v.seq);
                if self.count == 0 {
                    self.first = v.version;
                }
                self.count += 1;
                self.last = v.version;
                self.last_deleted = v.deleted;
                self.last_ts = v.ts_ms;
                if v.expired && !v.deleted {
                    r.problem(format!(
                        "key {:?}: version {} is marked as an expiry but is not a tombstone",
                        v.key, v.version
                    ));
                }
                if serde_json::from_str::<serde::de::IgnoredAny>(&v.value).is_err() {
                    r.problem(format!(
                        "key {:?}: version {} is not valid JSON",
                        v.key, v.version
                    ));
                }
            }
        }
    }

    /// Notes one change's revision: unique with its place, above 0.
    fn revision(&mut self, r: &mut CheckReport, key: &str, revision: u64, seq: u64) {
        if revision == 0 {
            r.problem(format!("key {key:?}: a change has no revision"));
        }
        if !self.revisions.insert((revision, seq)) {
            r.problem(format!(
                "key {key:?}: revision {revision} (place {seq}) is used twice"
            ));
        }
        self.highest = self.highest.max(revision);
    }

    /// Judges the revisions against the store's counters.
    fn end_revisions(&mut self, r: &mut CheckReport) {
        match self.counter {
            Some((current, compacted)) => {
                if self.highest > current {
                    r.problem(format!(
                        "revision {} is stored, but the store's revision is {current}",
                        self.highest
                    ));
                }
                if compacted > current {
                    r.problem(format!(
                        "the compacted revision {compacted} is above the store's revision \
                         {current}"
                    ));
                }
            }
            None => r.problem("the dump holds no revision counters".to_string()),
        }
    }

    /// Judges each deadline against its key's head and the leases.
    fn end_deadlines(&mut self, r: &mut CheckReport) {
        for d in std::mem::take(&mut self.deadlines) {
            let key = &d.key;
            match self.heads.get(key) {
                None => r.problem(format!(
                    "key {key:?}: has a deadline but no row in the keys table"
                )),
                Some((_, true)) => {
                    r.problem(format!("key {key:?}: deleted, but still has a deadline"))
                }
                Some((latest, false)) if *latest != d.version => r.problem(format!(
                    "key {key:?}: its deadline was set by version {}, but its latest is {latest}",
                    d.version
                )),
                Some(_) => {}
            }
            if let Deadline::Lease(lease) = d.deadline
                && !self.leases.contains(&lease)
            {
                r.problem(format!(
                    "key {key:?}: attached to lease {lease}, which does not exist"
                ));
            }
        }
    }

    /// Judges the key just read against its head.
    fn end_key(&mut self, r: &mut CheckReport) {
        let Some((key, head)) = self.key.take() else {
            return;
        };
        let n = std::mem::take(&mut self.count);
        let Some(h) = head else {
            r.problem(format!(
                "key {key:?}: {n} versions stored but no row in the keys table"
            ));
            return;
        };
        if n == 0 {
            r.problem(format!(
                "key {key:?}: no versions stored, but the keys table says latest {}",
                h.latest
            ));
            return;
        }
        let expected = h.latest.saturating_add(1).saturating_sub(h.first_kept);
        if n != expected {
            r.problem(format!(
                "key {key:?}: {n} versions stored, expected latest - first_kept + 1 = \
                 {expected} (first_kept {}, latest {})",
                h.first_kept, h.latest
            ));
        }
        if self.first != h.first_kept {
            r.problem(format!(
                "key {key:?}: oldest stored version is {}, the keys table says first_kept {}",
                self.first, h.first_kept
            ));
        }
        if self.last != h.latest {
            r.problem(format!(
                "key {key:?}: newest stored version is {}, the keys table says latest {}",
                self.last, h.latest
            ));
        } else if self.last_deleted != h.deleted || self.last_ts != h.ts_ms {
            r.problem(format!(
                "key {key:?}: the keys table disagrees with version {} on deleted or timestamp",
                h.latest
            ));
        }
    }
}
