//! The fault schedule: one fault at a time, each short, at random moments,
//! until a deadline; every kind of fault comes once in each shuffled round
//! of 13 (about 20 s: the default run of 20 s has most of them, a longer
//! one all). And the write stalls they cause on the replicas they did not
//! touch.

use std::fmt;
use std::time::{Duration, Instant};

use crate::cluster::{ConnKind, Db, Replica};
use crate::history::{Clock, Nanos, Op, Outcome, secs};
use crate::workload::{Keys, Rng};

/// One fault.
#[derive(Clone, Debug)]
pub enum Fault {
    /// SIGSTOP, then SIGCONT after this long; `in_write`: at a moment
    /// its writer is inside a transaction (between two round trips), when
    /// one is found within a few tries.
    Freeze {
        replica: usize,
        hold: Duration,
        in_write: bool,
    },
    /// SIGKILL, then a restart after this long.
    Kill { replica: usize, down: Duration },
    /// `pg_terminate_backend` on every connection of this kind.
    Terminate(ConnKind),
    /// `pg_ctl restart -m fast` or `-m immediate`.
    Restart(&'static str),
    /// Tables locked ACCESS EXCLUSIVE in a psql session for this long.
    Lock {
        tables: &'static str,
        hold: Duration,
    },
    /// Every connection slot but the superusers' taken for this long.
    Slots { hold: Duration },
}

impl Fault {
    /// The kind's name, as `VKV_CHECKER_FAULTS` lists it.
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::Freeze { .. } => "freeze",
            Fault::Kill { .. } => "kill",
            Fault::Terminate(_) => "terminate",
            Fault::Restart(_) => "restart",
            Fault::Lock { .. } => "lock",
            Fault::Slots { .. } => "slots",
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Freeze {
                replica,
                hold,
                in_write,
            } => write!(
                f,
                "freeze replica {replica}{} for {:.2}s",
                if *in_write { " inside a write" } else { "" },
                hold.as_secs_f64()
            ),
            Fault::Kill { replica, down } => write!(
                f,
                "kill replica {replica}, restart after {:.2}s",
                down.as_secs_f64()
            ),
            Fault::Terminate(kind) => write!(f, "terminate {} connections", kind.name()),
            Fault::Restart(mode) => write!(f, "restart PostgreSQL -m {mode}"),
            Fault::Lock { tables, hold } => {
                write!(f, "lock {tables} for {:.2}s", hold.as_secs_f64())
            }
            Fault::Slots { hold } => {
                write!(
                    f,
                    "take every connection slot for {:.2}s",
                    hold.as_secs_f64()
                )
            }
        }
    }
}

impl Fault {
    /// The name it is counted under in the summary.
    pub fn family(&self) -> String {
        match self {
            Fault::Freeze { in_write, .. } => if *in_write {
                "freeze inside a write"
            } else {
                "freeze"
            }
            .into(),
            Fault::Kill { .. } => "kill".into(),
            Fault::Terminate(k) => format!("terminate {}", k.name()),
            Fault::Restart(m) => format!("restart -m {m}"),
            Fault::Lock { .. } => "lock".into(),
            Fault::Slots { .. } => "slots".into(),
        }
    }

    /// The replica it takes away, if any.
    fn replica(&self) -> Option<usize> {
        match self {
            Fault::Freeze { replica, .. } | Fault::Kill { replica, .. } => Some(*replica),
            _ => None,
        }
    }
}

/// A fault as it happened.
pub struct Applied {
    pub fault: Fault,
    /// When the fault began: for a freeze inside a write, the freeze that
    /// caught the replica inside one (the short freezes before it, each
    /// thawed within 0.1 s, are tries, not this fault).
    pub start: Nanos,
    pub end: Nanos,
    /// What it did (backends terminated, slots taken...).
    pub note: String,
    /// A freeze: the database's busy backends at moments into it.
    pub activity: String,
    /// The machine's total time with a task waiting on the disk (see
    /// [`io_stalled`]) when the fault began, and when it ended.
    pub io_at_start: Nanos,
    pub io_at_end: Nanos,
}

/// How long, in all since boot, some task of this machine waited on the
/// disk (`some` in `/proc/pressure/io`, the kernel's pressure stall
/// information); 0 where the kernel does not say. Here that is mostly
/// PostgreSQL flushing its WAL: the commit time the stall bound allows.
/// This machine's virtual disk has been seen to take 9 s over one
/// `fdatasync` (`pg_stat_activity`: `IO/WALSync` for 8.8 s), which stops
/// every replica's commits whatever vkv does; a stall is reported with
/// this part of it, and judged without it.
pub fn io_stalled() -> Nanos {
    std::fs::read_to_string("/proc/pressure/io")
        .ok()
        .and_then(|psi| {
            let some = psi.lines().find(|l| l.starts_with("some"))?;
            let total = some
                .split_whitespace()
                .find_map(|f| f.strip_prefix("total="))?;
            total.parse::<u64>().ok()
        })
        .map_or(0, |micros| micros * 1_000)
}

/// The kinds of fault, one round.
fn round(rng: &mut Rng, replicas: usize) -> Vec<Fault> {
    let mut ms = |lo, hi| Duration::from_millis(rng.range(lo, hi));
    let mut deck = Vec::new();
    deck.push(Fault::Freeze {
        replica: 0,
        hold: ms(200, 1500),
        in_write: false,
    });
    // Long enough that a stall past the bound shows.
    deck.push(Fault::Freeze {
        replica: 0,
        hold: ms(2500, 3000),
        in_write: true,
    });
    deck.push(Fault::Kill {
        replica: 0,
        down: ms(0, 500),
    });
    for kind in [
        ConnKind::Listen,
        ConnKind::Writer,
        ConnKind::Reads,
        ConnKind::All,
    ] {
        deck.push(Fault::Terminate(kind));
    }
    deck.push(Fault::Restart("fast"));
    deck.push(Fault::Restart("immediate"));
    deck.push(Fault::Lock {
        tables: "vkv_keys",
        hold: ms(1000, 2000),
    });
    deck.push(Fault::Lock {
        tables: "vkv_keys, vkv_versions",
        hold: ms(1000, 2000),
    });
    deck.push(Fault::Slots {
        hold: ms(1000, 1500),
    });
    for f in &mut deck {
        if let Fault::Freeze { replica, .. } | Fault::Kill { replica, .. } = f {
            *replica = rng.range(0, replicas as u64) as usize;
        }
    }
    // Fisher-Yates.
    for i in (1..deck.len()).rev() {
        let j = rng.range(0, i as u64 + 1) as usize;
        deck.swap(i, j);
    }
    deck
}

/// Applies faults one after another, with quiet gaps of 0.3 to 0.8 s, until
/// `until` (no fault starts less than 3 s before it).
pub fn run(
    db: &Db,
    replicas: &mut [Replica],
    clock: &Clock,
    until: Instant,
    rng: &mut Rng,
) -> Vec<Applied> {
    let mut applied = Vec::new();
    let mut deck = Vec::new();
    // Only these kinds (`VKV_CHECKER_FAULTS=freeze,kill`), to chase one.
    let kinds: Option<Vec<String>> = std::env::var("VKV_CHECKER_FAULTS")
        .ok()
        .map(|v| v.split(',').map(|k| k.trim().to_string()).collect());
    loop {
        std::thread::sleep(Duration::from_millis(rng.range(300, 800)));
        if Instant::now() + Duration::from_secs(3) > until {
            break;
        }
        if deck.is_empty() {
            deck = round(rng, replicas.len());
            deck.retain(|f| {
                kinds
                    .as_ref()
                    .is_none_or(|k| k.iter().any(|k| k == f.kind()))
            });
            assert!(!deck.is_empty(), "VKV_CHECKER_FAULTS names no fault kind");
        }
        let fault = deck.pop().expect("a full deck");
        let (start, io_at_start) = (clock.now(), io_stalled());
        let (held, note, activity) = apply(db, replicas, &fault, clock);
        applied.push(Applied {
            fault,
            start: held.unwrap_or(start),
            end: clock.now(),
            note,
            activity,
            io_at_start,
            io_at_end: io_stalled(),
        });
    }
    applied
}

/// Applies `fault`; for a freeze, also when the freeze that held began and
/// the database's busy backends a lease into it.
fn apply(
    db: &Db,
    replicas: &mut [Replica],
    fault: &Fault,
    clock: &Clock,
) -> (Option<Nanos>, String, String) {
    let note = match fault {
        Fault::Freeze {
            replica,
            hold,
            in_write,
        } => {
            let r = &mut replicas[*replica];
            let (mut tries, mut found) = (1, false);
            r.freeze();
            let mut held = clock.now();
            while *in_write && tries < 20 {
                std::thread::sleep(Duration::from_millis(30));
                found = db.idle_in_transaction(r);
                if found {
                    break;
                }
                r.thaw();
                std::thread::sleep(Duration::from_millis(50));
                tries += 1;
                r.freeze();
                held = clock.now();
            }
            // What the database does through the freeze: before the
            // writer's idle limit, after it, and once a lease has passed
            // (by then nothing should wait for the frozen replica any
            // more), for the report of a stall past the bound.
            let mut activity = String::new();
            let since = Instant::now();
            for ms in [300, 800, 1200, 2000] {
                let at = Duration::from_millis(ms);
                if at >= *hold {
                    break;
                }
                std::thread::sleep(at.saturating_sub(since.elapsed()));
                let busy = by_replica(db.activity(), replicas);
                activity.push_str(&format!("  {ms} ms into the freeze:\n{busy}\n"));
            }
            std::thread::sleep(hold.saturating_sub(since.elapsed()));
            replicas[*replica].thaw();
            let note = match (*in_write, found) {
                (false, _) => String::new(),
                (true, true) => format!("inside after {tries} tries"),
                (true, false) => format!("never inside in {tries} tries"),
            };
            return (Some(held), note, activity);
        }
        Fault::Kill { replica, down } => {
            replicas[*replica].kill();
            std::thread::sleep(*down);
            let t = Instant::now();
            replicas[*replica].restart();
            format!("back in {:.2}s", t.elapsed().as_secs_f64())
        }
        Fault::Terminate(kind) => {
            // Right after another fault a replica may still be reconnecting:
            // wait (a little) for something to terminate.
            let mut n = 0;
            crate::common::poll_until(Duration::from_secs(2), || {
                n = db.terminate(*kind);
                n > 0
            });
            format!("{n} backends")
        }
        Fault::Restart(mode) => {
            let t = Instant::now();
            db.pg.restart(mode);
            format!("{:.2}s", t.elapsed().as_secs_f64())
        }
        Fault::Lock { tables, hold } => match db.lock_tables(tables, *hold) {
            Some(mut session) => {
                let ended =
                    crate::common::wait_timeout(&mut session, *hold + Duration::from_secs(10));
                if ended.is_none() {
                    let _ = session.kill();
                    let _ = session.wait();
                }
                String::new()
            }
            None => "never held".into(),
        },
        Fault::Slots { hold } => format!("{} connections held", db.hog_slots(*hold)),
    };
    (None, note, String::new())
}

/// Undoes what a fault may have left: every replica running and thawed.
pub fn heal(replicas: &mut [Replica]) {
    for r in replicas {
        if r.frozen {
            r.thaw();
        }
        if !r.alive() {
            r.restart();
        }
    }
}

/// `activity` with each backend's client port named by the replica it
/// belongs to.
fn by_replica(activity: String, replicas: &[Replica]) -> String {
    let mut out = activity;
    for r in replicas {
        for port in r.ports() {
            out = out.replace(
                &format!(" port {port} "),
                &format!(" replica {} port {port} ", r.index),
            );
        }
    }
    out
}

/// The longest time a healthy replica completed no write while another
/// was frozen or killed, or until the next fault began.
pub struct Stall {
    /// Index into the applied faults.
    pub fault: usize,
    pub replica: usize,
    /// On the keys only that replica's probe writes.
    pub probe: Nanos,
    /// On the hot keys every client writes.
    pub hot: Nanos,
    /// How long in the window some task waited on the disk (from the
    /// fault's start to the next's).
    pub io: Nanos,
}

impl Stall {
    /// The stall on the probe's keys less the time some task waited on
    /// the disk meanwhile (commits flushing, or a disk that stopped): what
    /// vkv is answerable for.
    pub fn net(&self) -> Nanos {
        self.probe.saturating_sub(self.io)
    }
}

/// The stalls of every freeze and kill, on every other replica.
pub fn stalls(ops: &[Op], keys: &Keys, applied: &[Applied], replicas: usize) -> Vec<Stall> {
    // Completion times of acknowledged writes per replica, probe and hot.
    let mut done: Vec<[Vec<Nanos>; 2]> = (0..replicas).map(|_| [vec![], vec![]]).collect();
    for op in ops {
        if !op.kind.writes() || !matches!(op.outcome, Outcome::Written(_) | Outcome::Purged(_)) {
            continue;
        }
        let hot = usize::from(op.key) < keys.hot;
        done[usize::from(op.replica)][usize::from(hot)].push(op.end);
    }
    for d in &mut done {
        d[0].sort_unstable();
        d[1].sort_unstable();
    }
    let mut out = Vec::new();
    for (f, a) in applied.iter().enumerate() {
        let Some(taken) = a.fault.replica() else {
            continue;
        };
        let to = window_end(applied, f);
        let io_to = applied.get(f + 1).map_or(a.io_at_end, |n| n.io_at_start);
        let io = io_to.saturating_sub(a.io_at_start);
        for (r, d) in done.iter().enumerate() {
            if r == taken {
                continue;
            }
            out.push(Stall {
                fault: f,
                replica: r,
                probe: longest_gap(&d[0], a.start, to),
                hot: longest_gap(&d[1], a.start, to),
                io,
            });
        }
    }
    out
}

/// Where the window of fault `f` ends: when the next fault began (its
/// aftermath too: a thawed or restarted replica must not stall the others
/// either), or at its own end for the last.
pub fn window_end(applied: &[Applied], f: usize) -> Nanos {
    applied
        .get(f + 1)
        .map_or(applied[f].end, |next| next.start.max(applied[f].end))
}

/// The longest interval within `[from, to]` with no time of `sorted` in it.
fn longest_gap(sorted: &[Nanos], from: Nanos, to: Nanos) -> Nanos {
    let first = sorted.partition_point(|&t| t < from);
    let mut last = from;
    let mut longest = 0;
    for &t in sorted[first..].iter().take_while(|&&t| t <= to) {
        longest = longest.max(t - last);
        last = t;
    }
    longest.max(to - last)
}

/// One line per stall above `bound` (less the disk waits).
pub fn describe_stalls(stalls: &[Stall], applied: &[Applied], bound: Nanos) -> String {
    let mut out = String::new();
    for s in stalls.iter().filter(|s| s.net() > bound) {
        let a = &applied[s.fault];
        out.push_str(&format!(
            "    replica {} completed no write for {} (disk waits {} of the window) during \"{}\" [{} .. {}]\n",
            s.replica,
            secs(s.probe),
            secs(s.io),
            a.fault,
            secs(a.start),
            secs(window_end(applied, s.fault))
        ));
    }
    out
}

#[test]
fn gaps_count_the_edges_of_the_window() {
    assert_eq!(longest_gap(&[], 10, 50), 40);
    assert_eq!(longest_gap(&[5, 20, 30, 60], 10, 50), 20);
    assert_eq!(longest_gap(&[12, 45], 10, 50), 33);
}
