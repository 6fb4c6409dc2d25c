//! `vkv check` on any backend: SQLite files get SQLite's own checks
//! (with SQLite's own `integrity_check`); every other store is checked over
//! its dump (one consistent snapshot, see the bulk seam in `storage`), for
//! the same invariants: each key's versions dense from its `first_kept` to
//! its `latest`, the head agreeing with its newest version, no version
//! without a head, every value JSON, the counters equal to the real counts,
//! and the revisions: unique (per revision and place in its batch),
//! never decreasing with the version within a key, none above the store's
//! revision counter.

use std::path::{Path, PathBuf};

use crate::storage;
use crate::storage::maintenance::{CheckError, CheckReport};
use crate::storage::seam::{KeyHead, Record, Totals};

/// Checks the store at `location` (safe while servers run on it).
pub fn check(location: &Path) -> Result<CheckReport, CheckError> {
    if let Some(checked) = storage::open::check_file(location) {
        return checked;
    }
    let shown = storage::location::display_location(location);
    let fail = |reason: String| CheckError {
        path: PathBuf::from(&shown),
        reason,
    };
    let mut dump = storage::open::open_export(location).map_err(|e| fail(e.to_string()))?;
    let mut report = CheckReport {
        path: PathBuf::from(&shown),
        schema_version: dump.schema_version(),
        ..CheckReport::default()
    };
    let counters = dump.counters().map_err(|e| fail(e.to_string()))?;
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
    /// Every (revision, place) seen, to find a repeated one.
    revisions: std::collections::HashSet<(u64, u64)>,
    /// The highest revision seen, and the store's counter.
    highest: u64,
    counter: Option<(u64, u64)>,
}

impl Walk {
    fn record(&mut self, record: Record, r: &mut CheckReport) {
        match record {
            Record::Head(h) => {
                self.end_key(r);
                self.totals.keys += 1;
                self.key = Some((h.key.clone(), Some(h)));
            }
            // No head and no version: nothing to check.
            Record::Purged { .. } => self.end_key(r),
            // Checked by the backend's own checks (a SQLite file's).
            Record::Deadline(_) | Record::Lease(_) => self.end_key(r),
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
                if self.count > 0 && v.version != self.last + 1 {
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

    /// Judges the key just read.
    fn end_key(&mut self, r: &mut CheckReport) {
        let Some((key, head)) = self.key.take() else {
            return;
        };
        let n = std::mem::take(&mut self.count);
        match head {
            None => r.problem(format!(
                "key {key:?}: {n} versions stored but no row in the keys table"
            )),
            Some(h) if n == 0 => r.problem(format!(
                "key {key:?}: no versions stored, but the keys table says latest {}",
                h.latest
            )),
            Some(h) => {
                let expected = (h.latest + 1).saturating_sub(h.first_kept);
                if n != expected || self.first != h.first_kept || self.last != h.latest {
                    r.problem(format!(
                        "key {key:?}: versions {} to {} stored ({n}), the keys table says \
                         first_kept {} and latest {}",
                        self.first, self.last, h.first_kept, h.latest
                    ));
                } else if self.last_deleted != h.deleted || self.last_ts != h.ts_ms {
                    r.problem(format!(
                        "key {key:?}: the keys table disagrees with version {} on deleted or \
                         timestamp",
                        h.latest
                    ));
                }
            }
        }
    }
}
