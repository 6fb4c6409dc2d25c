//! The checker: each key's history against what vkv promises.
//!
//! Versions are dense per key and every write takes the next one, so a
//! key's writes are totally ordered by their version numbers: checking a
//! read needs no search over orders (as a general linearizability checker
//! would), only bounds from the writes around it in time.
//!
//! - A write acknowledged (200) has the version it was told. A write
//!   answered 503, timed out or cut off is *unknown*: it may have happened,
//!   at any time after it began (its end is open). A read that returns its
//!   value tells its version.
//! - A read returns a version at least the highest acknowledged before the
//!   read began, and written by a write that began before the read ended.
//! - A read that finds the key deleted or absent while a put acknowledged
//!   before it began is the latest must have a delete or purge that began
//!   before the read ended to explain it; a version that a purge
//!   acknowledged before the read began had removed is never served.
//! - No two writes have the same version (so a conditional write has one
//!   winner per expected version), and an acknowledged conditional write
//!   took the version after the one it expected.
//! - Every acknowledged write is in the key's final `/history`, unless a
//!   purge may have come after it.

use std::collections::HashMap;

use crate::history::{History, Kind, Nanos, Outcome, secs};

/// One broken promise: the key, what, and the operations that show it
/// (indexes into [`History::ops`]).
pub struct Violation {
    pub key: String,
    pub what: String,
    pub ops: Vec<usize>,
}

/// What the checker found.
#[derive(Default)]
pub struct Report {
    pub reads_checked: u64,
    pub writes_acked: u64,
    pub writes_unknown: u64,
    /// Unknown writes whose version a read revealed.
    pub writes_inferred: u64,
    pub violations: Vec<Violation>,
}

impl Report {
    /// How many violations of each sort (their text, numbers left out).
    pub fn classes(&self) -> std::collections::BTreeMap<String, usize> {
        let mut out = std::collections::BTreeMap::new();
        for v in &self.violations {
            let head = v.what.split([':', '(']).next().unwrap_or(&v.what);
            let mut class = String::new();
            for c in head.trim().chars() {
                if !c.is_ascii_digit() {
                    class.push(c);
                } else if !class.ends_with('N') {
                    class.push('N');
                }
            }
            *out.entry(class).or_insert(0) += 1;
        }
        out
    }

    /// The violations, each with its operations, at most `max` of them.
    pub fn describe(&self, h: &History, max: usize) -> String {
        let mut out = String::new();
        for v in self.violations.iter().take(max) {
            out.push_str(&format!("key {}: {}\n", v.key, v.what));
            for &i in &v.ops {
                out.push_str(&format!("    {}\n", h.ops[i].describe(&h.keys)));
            }
        }
        if self.violations.len() > max {
            out.push_str(&format!("... and {} more\n", self.violations.len() - max));
        }
        out
    }
}

/// Each key's versions as its final `/history` lists them: (version,
/// deleted).
pub type Finals = HashMap<u16, Vec<(u64, bool)>>;

/// A write that may have happened.
struct Write {
    op: usize,
    /// Acknowledged, or revealed by a read.
    version: Option<u64>,
    start: Nanos,
    /// `None`: unknown outcome, so no end.
    end: Option<Nanos>,
    tomb: bool,
}

/// A purge that may have happened.
struct Purge {
    op: usize,
    start: Nanos,
    end: Option<Nanos>,
}

/// Checks every key of `h`; `finals` holds the keys' final histories.
pub fn check(h: &History, finals: &Finals) -> Report {
    let mut report = Report::default();
    let by_id: HashMap<u64, usize> = h.ops.iter().enumerate().map(|(i, o)| (o.id, i)).collect();
    let mut per_key: Vec<Vec<usize>> = vec![Vec::new(); h.keys.len()];
    for (i, op) in h.ops.iter().enumerate() {
        per_key[usize::from(op.key)].push(i);
    }
    for (k, ops) in per_key.iter().enumerate() {
        let mut key = Key::new(h, k as u16, ops, &by_id, &mut report);
        key.check_reads(ops, &mut report);
        if let Some(f) = finals.get(&(k as u16)) {
            key.check_final(f, &mut report);
        }
        report.violations.append(&mut key.violations);
    }
    for (i, op) in h.ops.iter().enumerate() {
        if let Outcome::Unexpected(status, _) = op.outcome {
            report.violations.push(Violation {
                key: h.keys[usize::from(op.key)].clone(),
                what: format!("unexpected answer {status}"),
                ops: vec![i],
            });
        }
    }
    report
}

/// One key's writes, indexed for the checks.
struct Key<'a> {
    h: &'a History,
    name: String,
    writes: Vec<Write>,
    purges: Vec<Purge>,
    by_version: HashMap<u64, usize>,
    /// Acknowledged writes by end: ends, running maximum of versions and
    /// which write holds it.
    acked_end: Vec<Nanos>,
    acked_max: Vec<(u64, usize)>,
    /// Acknowledged purges by end: ends, running maximum of the versions
    /// they removed for sure (the highest acknowledged before each began)
    /// and which purge holds it.
    purge_end: Vec<Nanos>,
    purge_cut: Vec<(u64, usize)>,
    /// Deletes by start: starts, running maximum of versions (unknown:
    /// `u64::MAX`).
    delete_start: Vec<Nanos>,
    delete_max: Vec<u64>,
    /// Purges by start: starts, running maximum of ends (unknown: MAX).
    purge_start: Vec<Nanos>,
    purge_end_max: Vec<Nanos>,
    violations: Vec<Violation>,
}

impl<'a> Key<'a> {
    fn new(
        h: &'a History,
        k: u16,
        ops: &[usize],
        by_id: &HashMap<u64, usize>,
        report: &mut Report,
    ) -> Key<'a> {
        let mut key = Key {
            h,
            name: h.keys[usize::from(k)].clone(),
            writes: Vec::new(),
            purges: Vec::new(),
            by_version: HashMap::new(),
            acked_end: Vec::new(),
            acked_max: Vec::new(),
            purge_end: Vec::new(),
            purge_cut: Vec::new(),
            delete_start: Vec::new(),
            delete_max: Vec::new(),
            purge_start: Vec::new(),
            purge_end_max: Vec::new(),
            violations: Vec::new(),
        };
        let mut write_of_op: HashMap<usize, usize> = HashMap::new();
        for &i in ops {
            let op = &h.ops[i];
            let (version, end) = match op.outcome {
                Outcome::Written(v) => (Some(v), Some(op.end)),
                Outcome::Purged(_) => (None, Some(op.end)),
                Outcome::Unknown(_) => (None, None),
                _ => continue,
            };
            match op.kind {
                Kind::Purge => key.purges.push(Purge {
                    op: i,
                    start: op.start,
                    end,
                }),
                Kind::Put | Kind::CondPut(_) | Kind::Delete => {
                    if end.is_some() {
                        report.writes_acked += 1;
                    } else {
                        report.writes_unknown += 1;
                    }
                    if let (Kind::CondPut(e), Some(v)) = (op.kind, version)
                        && e > 0
                        && v != e + 1
                    {
                        key.violation(
                            format!("a write conditioned on version {e} took version {v}"),
                            vec![i],
                        );
                    }
                    write_of_op.insert(i, key.writes.len());
                    key.writes.push(Write {
                        op: i,
                        version,
                        start: op.start,
                        end,
                        tomb: op.kind == Kind::Delete,
                    });
                }
                _ => {}
            }
        }
        for w in 0..key.writes.len() {
            if let Some(v) = key.writes[w].version {
                key.claim(v, w);
            }
        }
        // What the reads reveal: the version of each value they returned.
        for &i in ops {
            let Outcome::Value { version, writer } = h.ops[i].outcome else {
                continue;
            };
            let Some(writer) = writer else {
                key.violation(
                    format!("version {version} has a value no client wrote"),
                    vec![i],
                );
                continue;
            };
            let Some(&j) = by_id.get(&writer) else {
                key.violation(
                    format!("version {version} has the value of no operation"),
                    vec![i],
                );
                continue;
            };
            if h.ops[j].key != k {
                key.violation(
                    format!("version {version} holds a value written to another key"),
                    vec![i, j],
                );
                continue;
            }
            let Some(&w) = write_of_op.get(&j) else {
                key.violation(
                    format!("version {version} holds the value of a write that was refused"),
                    vec![i, j],
                );
                continue;
            };
            match key.writes[w].version {
                Some(v) if v != version => key.violation(
                    format!("the value written as version {v} was served as version {version}"),
                    vec![i, j],
                ),
                Some(_) => {}
                None => {
                    key.writes[w].version = Some(version);
                    report.writes_inferred += 1;
                    key.claim(version, w);
                }
            }
        }
        key.index();
        key
    }

    fn violation(&mut self, what: String, ops: Vec<usize>) {
        self.violations.push(Violation {
            key: self.name.clone(),
            what,
            ops,
        });
    }

    /// Version `v` is write `w`'s; two writes with one version is a
    /// violation.
    fn claim(&mut self, v: u64, w: usize) {
        match self.by_version.get(&v) {
            Some(&other) if other != w => {
                let ops = vec![self.writes[other].op, self.writes[w].op];
                self.violation(format!("two writes took version {v}"), ops);
            }
            Some(_) => {}
            None => {
                self.by_version.insert(v, w);
            }
        }
    }

    fn index(&mut self) {
        let mut acked: Vec<usize> = (0..self.writes.len())
            .filter(|&w| self.writes[w].end.is_some() && self.writes[w].version.is_some())
            .collect();
        acked.sort_by_key(|&w| self.writes[w].end);
        let mut best = (0u64, usize::MAX);
        for w in acked {
            let v = self.writes[w].version.unwrap_or(0);
            if v > best.0 {
                best = (v, w);
            }
            self.acked_end.push(self.writes[w].end.unwrap_or(0));
            self.acked_max.push(best);
        }
        let mut acked_purges: Vec<usize> = (0..self.purges.len())
            .filter(|&p| self.purges[p].end.is_some())
            .collect();
        acked_purges.sort_by_key(|&p| self.purges[p].end);
        let mut best = (0u64, usize::MAX);
        for p in acked_purges {
            let cut = self.lo(self.purges[p].start).0;
            if cut > best.0 {
                best = (cut, p);
            }
            self.purge_end.push(self.purges[p].end.unwrap_or(0));
            self.purge_cut.push(best);
        }
        let mut deletes: Vec<&Write> = self.writes.iter().filter(|w| w.tomb).collect();
        deletes.sort_by_key(|w| w.start);
        let mut max = 0;
        for d in deletes {
            max = max.max(d.version.unwrap_or(u64::MAX));
            self.delete_start.push(d.start);
            self.delete_max.push(max);
        }
        let mut purges: Vec<&Purge> = self.purges.iter().collect();
        purges.sort_by_key(|p| p.start);
        let mut max = 0;
        for p in purges {
            max = max.max(p.end.unwrap_or(u64::MAX));
            self.purge_start.push(p.start);
            self.purge_end_max.push(max);
        }
    }

    /// The highest version acknowledged before `s`, and its write.
    fn lo(&self, s: Nanos) -> (u64, Option<usize>) {
        let n = self.acked_end.partition_point(|&e| e < s);
        match n {
            0 => (0, None),
            n => {
                let (v, w) = self.acked_max[n - 1];
                (v, (w != usize::MAX).then_some(w))
            }
        }
    }

    /// The highest version a purge acknowledged before `s` removed for
    /// sure, and that purge.
    fn purged(&self, s: Nanos) -> (u64, Option<usize>) {
        let n = self.purge_end.partition_point(|&e| e < s);
        match n {
            0 => (0, None),
            n => {
                let (v, p) = self.purge_cut[n - 1];
                (v, (p != usize::MAX).then_some(p))
            }
        }
    }

    /// The highest version of a delete begun before `e` (MAX: unknown).
    fn delete_before(&self, e: Nanos) -> u64 {
        let n = self.delete_start.partition_point(|&s| s < e);
        if n == 0 { 0 } else { self.delete_max[n - 1] }
    }

    /// The latest end of a purge begun before `e` (MAX: unknown; 0: none).
    fn purge_before(&self, e: Nanos) -> Nanos {
        let n = self.purge_start.partition_point(|&s| s < e);
        if n == 0 { 0 } else { self.purge_end_max[n - 1] }
    }

    fn check_reads(&mut self, ops: &[usize], report: &mut Report) {
        for &i in ops {
            let op = &self.h.ops[i];
            let (s, e) = (op.start, op.end);
            // A long poll answered with what it waited after was answered
            // at its timeout, which vkv counts from when it took the
            // request: after the request began.
            let polled = |v: u64| match op.kind {
                Kind::Poll { after, timeout_s } if v <= after => {
                    (s + timeout_s * 1_000_000_000).min(e)
                }
                _ => s,
            };
            match (op.kind, &op.outcome) {
                (Kind::Get | Kind::GetIfNoneMatch(_) | Kind::Poll { .. }, o) => match *o {
                    Outcome::Value { version, writer } => {
                        let w = writer.and_then(|_| self.by_version.get(&version).copied());
                        self.live(i, version, polled(version), e, w, report);
                    }
                    Outcome::NotModified(v) => {
                        let w = self.by_version.get(&v).copied();
                        self.live(i, v, s, e, w, report);
                    }
                    Outcome::NotFound {
                        deleted_at: Some(t),
                    } => self.tomb(i, t, polled(t), e, report),
                    Outcome::NotFound { deleted_at: None } => self.absent(i, s, e, report),
                    _ => {}
                },
                (Kind::Delete, Outcome::NotFound { deleted_at }) => match *deleted_at {
                    Some(t) => self.tomb(i, t, s, e, report),
                    None => self.absent(i, s, e, report),
                },
                (Kind::Purge, Outcome::NotFound { .. }) => self.absent(i, s, e, report),
                (Kind::CondPut(_), Outcome::Conflict { current: 0 }) => {
                    self.absent(i, s, e, report)
                }
                (Kind::CondPut(_), &Outcome::Conflict { current }) => {
                    self.head(i, current, s, e, report)
                }
                (Kind::CondPut(x), Outcome::Written(_)) if x > 0 => self.head(i, x, s, e, report),
                (Kind::GetVersion(n), o) => self.version_read(i, n, o, report),
                _ => {}
            }
        }
    }

    /// Op `i` read version `v` as the live latest within `[s, e]`.
    fn live(&mut self, i: usize, v: u64, s: Nanos, e: Nanos, w: Option<usize>, r: &mut Report) {
        r.reads_checked += 1;
        let what = match self.h.ops[i].kind {
            Kind::Poll { after, .. } if v <= after => format!(
                "a long poll waiting for a version above {after} answered at its timeout, having missed a newer one"
            ),
            _ => "a stale version".into(),
        };
        self.at_least_lo(i, v, s, w, &what);
        let (cut, p) = self.purged(s);
        if v <= cut
            && let Some(p) = p
        {
            let ops = vec![i, self.purges[p].op];
            self.violation(
                format!("served version {v}, which a purge acknowledged before the read began removed (it removed up to at least {cut})"),
                ops,
            );
        }
        if let Some(w) = w {
            if self.writes[w].tomb {
                let ops = vec![i, self.writes[w].op];
                self.violation(format!("version {v} is a delete, served as a value"), ops);
            }
            self.began_before(i, w, e);
        }
    }

    /// Op `i` found the key's latest is version `c` (live or deleted)
    /// within `[s, e]`.
    fn head(&mut self, i: usize, c: u64, s: Nanos, e: Nanos, r: &mut Report) {
        r.reads_checked += 1;
        let w = self.by_version.get(&c).copied();
        self.at_least_lo(i, c, s, w, "a stale latest version");
        if let Some(&w) = self.by_version.get(&c) {
            self.began_before(i, w, e);
        }
    }

    /// Op `i` found the key deleted at version `t` within `[s, e]`.
    fn tomb(&mut self, i: usize, t: u64, s: Nanos, e: Nanos, r: &mut Report) {
        r.reads_checked += 1;
        let w = self.by_version.get(&t).copied();
        self.at_least_lo(i, t, s, w, "a stale delete");
        if let Some(&w) = self.by_version.get(&t) {
            if !self.writes[w].tomb {
                let ops = vec![i, self.writes[w].op];
                self.violation(format!("version {t} is a put, answered as deleted"), ops);
            }
            self.began_before(i, w, e);
        }
    }

    /// Op `i` found the key with no live version within `[s, e]`.
    fn absent(&mut self, i: usize, s: Nanos, e: Nanos, r: &mut Report) {
        r.reads_checked += 1;
        let (lo, Some(w)) = self.lo(s) else { return };
        if self.writes[w].tomb {
            return;
        }
        let deleted = self.delete_before(e) > lo;
        let purged = self.purge_before(e) > self.writes[w].start;
        if !deleted && !purged {
            let ops = vec![i, self.writes[w].op];
            self.violation(
                format!("answered as deleted or absent, but version {lo} (a put acknowledged before the read began) was live and no delete or purge began before the read ended"),
                ops,
            );
        }
    }

    /// Op `i` asked for version `n`.
    fn version_read(&mut self, i: usize, n: u64, o: &Outcome, r: &mut Report) {
        let (s, e) = (self.h.ops[i].start, self.h.ops[i].end);
        match *o {
            Outcome::Value { version, .. } => {
                r.reads_checked += 1;
                if version != n {
                    self.violation(format!("asked for version {n}, got {version}"), vec![i]);
                }
                let (cut, p) = self.purged(s);
                if n <= cut
                    && let Some(p) = p
                {
                    let ops = vec![i, self.purges[p].op];
                    self.violation(
                        format!("served version {n}, which a purge acknowledged before the read began removed (up to at least {cut})"),
                        ops,
                    );
                }
                if let Some(&w) = self.by_version.get(&n) {
                    self.began_before(i, w, e);
                }
            }
            Outcome::NotFound { deleted_at: None } | Outcome::Gone => {
                r.reads_checked += 1;
                let Some(&w) = self.by_version.get(&n) else {
                    return;
                };
                let wr = &self.writes[w];
                let acked_before = wr.end.is_some_and(|x| x < s);
                if acked_before && !wr.tomb && self.purge_before(e) <= wr.start {
                    let ops = vec![i, wr.op];
                    self.violation(
                        format!("version {n}, acknowledged before the read began and never purged, was not found"),
                        ops,
                    );
                }
            }
            Outcome::NotFound {
                deleted_at: Some(t),
            } => {
                r.reads_checked += 1;
                if let Some(&w) = self.by_version.get(&t)
                    && t == n
                    && !self.writes[w].tomb
                {
                    let ops = vec![i, self.writes[w].op];
                    self.violation(format!("version {t} is a put, answered as deleted"), ops);
                }
            }
            _ => {}
        }
    }

    /// Version `v`, seen by op `i` begun at `s`, is not older than every
    /// version acknowledged before `s`; `seen` (the write of `v`, when
    /// known) is named in the violation too.
    fn at_least_lo(&mut self, i: usize, v: u64, s: Nanos, seen: Option<usize>, what: &str) {
        let (lo, w) = self.lo(s);
        if v < lo
            && let Some(w) = w
        {
            let mut ops = vec![i, self.writes[w].op];
            ops.extend(seen.map(|s| self.writes[s].op));
            self.violation(
                format!(
                    "{what}: version {v}, but version {lo} was acknowledged at {}, before the read (counted from {})",
                    secs(self.writes[w].end.unwrap_or(0)),
                    secs(s)
                ),
                ops,
            );
        }
    }

    /// Write `w`, seen by op `i`, began before `e` (the read's end).
    fn began_before(&mut self, i: usize, w: usize, e: Nanos) {
        if self.writes[w].start >= e {
            let ops = vec![i, self.writes[w].op];
            self.violation(
                "served a version whose write began after the read ended".into(),
                ops,
            );
        }
    }

    /// The key's final history holds every write known to have happened
    /// (unless a purge may have come after it), as what it was, and no
    /// version an acknowledged purge removed.
    fn check_final(&mut self, versions: &[(u64, bool)], _r: &mut Report) {
        let listed: HashMap<u64, bool> = versions.iter().copied().collect();
        let any_purge_end = self.purge_before(u64::MAX);
        for w in 0..self.writes.len() {
            let Some(v) = self.writes[w].version else {
                continue;
            };
            let (start, tomb, op) = (self.writes[w].start, self.writes[w].tomb, self.writes[w].op);
            match listed.get(&v) {
                None if any_purge_end <= start => {
                    self.violation(
                        format!("version {v} was written (acknowledged or read) but is not in the final /history, and no purge came after it"),
                        vec![op],
                    );
                }
                Some(&deleted) if deleted != tomb => {
                    self.violation(
                        format!(
                            "version {v} is listed with deleted={deleted} in the final /history"
                        ),
                        vec![op],
                    );
                }
                _ => {}
            }
        }
        let (cut, p) = self.purged(u64::MAX);
        if let Some(p) = p
            && let Some(&(v, _)) = versions.iter().find(|(v, _)| *v <= cut)
        {
            let ops = vec![self.purges[p].op];
            self.violation(
                format!("version {v} is still in the final /history after a purge removed up to at least {cut}"),
                ops,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Op;

    /// An operation on key 0 from `start` to `end` milliseconds.
    fn op(id: u64, kind: Kind, (start, end): (u64, u64), outcome: Outcome) -> Op {
        Op {
            id,
            key: 0,
            replica: 0,
            kind,
            start: start * 1_000_000,
            end: end * 1_000_000,
            outcome,
        }
    }

    fn value(version: u64, writer: u64) -> Outcome {
        Outcome::Value {
            version,
            writer: Some(writer),
        }
    }

    /// The violations of `ops` (with `finals` as key 0's final history).
    fn violations(ops: Vec<Op>, finals: Option<Vec<(u64, bool)>>) -> Vec<String> {
        let h = History {
            keys: vec!["k".into()],
            ops,
        };
        let mut f = Finals::new();
        if let Some(v) = finals {
            f.insert(0, v);
        }
        check(&h, &f)
            .violations
            .into_iter()
            .map(|v| v.what)
            .collect()
    }

    fn puts() -> Vec<Op> {
        vec![
            op(1, Kind::Put, (0, 10), Outcome::Written(1)),
            op(2, Kind::Put, (20, 30), Outcome::Written(2)),
        ]
    }

    #[test]
    fn a_read_older_than_an_acknowledged_write_is_stale() {
        let mut ops = puts();
        ops.push(op(3, Kind::Get, (40, 41), value(1, 1)));
        let v = violations(ops, None);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(
            v[0].starts_with("a stale version: version 1, but version 2"),
            "{v:?}"
        );
    }

    #[test]
    fn a_read_concurrent_with_a_write_may_see_either() {
        for seen in [value(1, 1), value(2, 2)] {
            let mut ops = puts();
            ops.push(op(3, Kind::Get, (25, 26), seen));
            assert_eq!(violations(ops, None), Vec::<String>::new());
        }
    }

    #[test]
    fn a_write_that_began_after_the_read_ended_cannot_be_seen() {
        let mut ops = puts();
        ops.push(op(3, Kind::Get, (12, 15), value(2, 2)));
        let v = violations(ops, None);
        assert_eq!(
            v,
            ["served a version whose write began after the read ended"]
        );
    }

    #[test]
    fn an_unknown_write_may_have_happened_at_any_time_after_it_began() {
        let mut ops = puts();
        ops.push(op(3, Kind::Put, (35, 40), Outcome::Unknown("503".into())));
        ops.push(op(4, Kind::Get, (500, 501), value(3, 3)));
        ops.push(op(5, Kind::Get, (502, 503), value(2, 2)));
        assert_eq!(violations(ops, None), Vec::<String>::new());
    }

    #[test]
    fn one_value_under_two_versions_or_two_values_under_one_are_violations() {
        let mut ops = puts();
        ops.push(op(3, Kind::GetVersion(1), (40, 41), value(1, 2)));
        assert_eq!(
            violations(ops, None),
            ["the value written as version 2 was served as version 1"]
        );
        let mut ops = puts();
        ops.push(op(3, Kind::CondPut(1), (22, 31), Outcome::Written(2)));
        let v = violations(ops, None);
        assert_eq!(v, ["two writes took version 2"]);
    }

    #[test]
    fn a_key_read_as_absent_needs_a_delete_or_purge_to_explain_it() {
        let absent = Outcome::NotFound { deleted_at: None };
        let mut ops = puts();
        ops.push(op(3, Kind::Get, (40, 41), absent.clone()));
        assert_eq!(violations(ops, None).len(), 1);
        // A delete that began before the read ended, even unknown, does.
        let mut ops = puts();
        ops.push(op(
            3,
            Kind::Delete,
            (39, 45),
            Outcome::Unknown("503".into()),
        ));
        ops.push(op(4, Kind::Get, (40, 41), absent.clone()));
        assert_eq!(violations(ops, None), Vec::<String>::new());
        // And a read after an acknowledged delete must not see the put.
        let mut ops = puts();
        ops.push(op(3, Kind::Delete, (31, 35), Outcome::Written(3)));
        ops.push(op(4, Kind::Get, (40, 41), value(2, 2)));
        assert_eq!(violations(ops, None).len(), 1);
    }

    #[test]
    fn a_purged_version_is_never_served_again() {
        let mut ops = puts();
        ops.push(op(3, Kind::Purge, (31, 35), Outcome::Purged(2)));
        ops.push(op(4, Kind::GetVersion(1), (40, 41), value(1, 1)));
        let v = violations(ops, Some(vec![]));
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].starts_with("served version 1, which a purge"), "{v:?}");
    }

    #[test]
    fn an_acknowledged_write_missing_from_the_final_history_is_lost() {
        let v = violations(puts(), Some(vec![(1, false)]));
        assert_eq!(v.len(), 1);
        assert!(v[0].starts_with("version 2 was written"), "{v:?}");
        assert_eq!(
            violations(puts(), Some(vec![(1, false), (2, false)])),
            Vec::<String>::new()
        );
    }

    #[test]
    fn a_long_poll_answered_at_its_timeout_is_checked_at_its_timeout() {
        let mut ops = puts();
        // Waited after 1 from before version 2 was acknowledged; answered
        // 1 at its 1 s timeout, long after: stale.
        ops.push(op(
            3,
            Kind::Poll {
                after: 1,
                timeout_s: 1,
            },
            (15, 1020),
            value(1, 1),
        ));
        assert_eq!(violations(ops, None).len(), 1);
    }
}
