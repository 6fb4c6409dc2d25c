//! The clients: threads doing every kind of operation on a few hot keys
//! through keep-alive connections, recording each ([`crate::history`]).
//!
//! - Roaming clients pick a replica per operation: a write through one
//!   and a read through another follow each other closely.
//! - Sticky clients use one replica only, so that a frozen replica does
//!   not hold up the load on the others (every roaming client soon waits
//!   on the frozen one).
//! - One probe per replica only puts, on keys of its own that no other
//!   replica writes: the gaps between its acknowledgements are the write
//!   stalls of that replica (`faults::stalls`).
//! - Readers use one replica and only read the hot keys (latest,
//!   conditional, by version), as fast as it answers: most of a run's
//!   checked reads, most of them from the cache, the reads a stale cache
//!   would show up in.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::history::{Clock, Conn, Kind, Op, Outcome, perform};

/// A small PRNG (splitmix64); each thread seeds its own from the run's
/// seed, so a run replays from its seed (thread interleaving aside).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `lo..hi` (`lo` if the range is empty).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        lo + self.next() % (hi - lo)
    }
}

/// The keys of a run: the hot keys every client uses, then each replica's
/// probe keys.
pub struct Keys {
    pub names: Vec<String>,
    pub hot: usize,
    pub probes_per_replica: usize,
}

impl Keys {
    pub fn new(hot: usize, replicas: usize) -> Keys {
        let probes_per_replica = 4;
        let mut names: Vec<String> = (0..hot).map(|i| format!("k{i}")).collect();
        for r in 0..replicas {
            names.extend((0..probes_per_replica).map(|i| format!("probe{r}-{i}")));
        }
        Keys {
            names,
            hot,
            probes_per_replica,
        }
    }

    fn probes(&self, replica: usize) -> Vec<u16> {
        let first = self.hot + replica * self.probes_per_replica;
        (first..first + self.probes_per_replica)
            .map(|k| k as u16)
            .collect()
    }
}

/// How many clients of each sort.
#[derive(Clone, Copy)]
pub struct Clients {
    pub roaming: usize,
    pub sticky_per_replica: usize,
    pub probes: bool,
    pub readers_per_replica: usize,
}

/// Running clients.
pub struct Workload {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Vec<Op>>>,
}

/// What a client thread works with.
#[derive(Clone)]
struct Client {
    thread: u64,
    /// The replicas it may use: (index, address).
    replicas: Vec<(u8, SocketAddr)>,
    keys: Vec<u16>,
    names: Arc<Vec<String>>,
    clock: Clock,
    stop: Arc<AtomicBool>,
    seed: u64,
    probe: bool,
    reader: bool,
}

impl Workload {
    pub fn start(
        addrs: &[SocketAddr],
        keys: &Keys,
        clients: Clients,
        clock: Clock,
        seed: u64,
    ) -> Workload {
        let stop = Arc::new(AtomicBool::new(false));
        let names = Arc::new(keys.names.clone());
        let all: Vec<(u8, SocketAddr)> = addrs
            .iter()
            .enumerate()
            .map(|(i, a)| (i as u8, *a))
            .collect();
        let hot: Vec<u16> = (0..keys.hot as u16).collect();
        let mut plans = Vec::new();
        let base = Client {
            thread: 0,
            replicas: all.clone(),
            keys: hot.clone(),
            names,
            clock,
            stop: Arc::clone(&stop),
            seed,
            probe: false,
            reader: false,
        };
        for _ in 0..clients.roaming {
            plans.push(base.clone());
        }
        for r in &all {
            for _ in 0..clients.sticky_per_replica {
                plans.push(Client {
                    replicas: vec![*r],
                    ..base.clone()
                });
            }
            for _ in 0..clients.readers_per_replica {
                plans.push(Client {
                    replicas: vec![*r],
                    reader: true,
                    ..base.clone()
                });
            }
            if clients.probes {
                plans.push(Client {
                    replicas: vec![*r],
                    keys: keys.probes(usize::from(r.0)),
                    probe: true,
                    ..base.clone()
                });
            }
        }
        let threads = plans
            .into_iter()
            .enumerate()
            .map(|(t, mut c)| {
                c.thread = t as u64 + 1;
                std::thread::Builder::new()
                    .name(format!("checker-client-{t}"))
                    .spawn(move || c.run())
                    .expect("spawn a client")
            })
            .collect();
        Workload { stop, threads }
    }

    /// Stops the clients (each finishes the operation it is in, bounded
    /// by the client timeout) and returns every operation.
    pub fn stop(self) -> Vec<Op> {
        self.stop.store(true, Ordering::SeqCst);
        self.threads
            .into_iter()
            .flat_map(|t| t.join().expect("a client thread panicked"))
            .collect()
    }
}

impl Client {
    fn run(self) -> Vec<Op> {
        let mut rng = Rng::new(self.seed ^ self.thread.wrapping_mul(0x2545_f491_4f6c_dd1d));
        let mut conns: Vec<Conn> = self.replicas.iter().map(|(_, a)| Conn::new(*a)).collect();
        // The newest version this client saw of each key: what it asks
        // for by number, conditions on, and waits after.
        let mut known = vec![0u64; self.names.len()];
        let mut ops = Vec::new();
        let mut seq = 0u64;
        while !self.stop.load(Ordering::Relaxed) {
            seq += 1;
            let id = (self.thread << 32) | seq;
            let r = rng.range(0, conns.len() as u64) as usize;
            let key = self.keys[rng.range(0, self.keys.len() as u64) as usize];
            let kind = if self.probe {
                Kind::Put
            } else if self.reader {
                choose_read(&mut rng, known[usize::from(key)])
            } else {
                choose(&mut rng, known[usize::from(key)])
            };
            let op = perform(
                &mut conns[r],
                &self.clock,
                id,
                (key, &self.names[usize::from(key)]),
                self.replicas[r].0,
                kind,
            );
            let k = &mut known[usize::from(key)];
            *k = (*k).max(seen(&op.outcome));
            // A replica or database that is down answers at once: a short
            // pause keeps such answers from crowding out the others (each
            // unknown write also weakens the checks of its key).
            let failed = matches!(op.outcome, Outcome::Unknown(_));
            ops.push(op);
            if failed {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        ops
    }
}

/// The version an answer shows the key at (0: none).
fn seen(outcome: &Outcome) -> u64 {
    match *outcome {
        Outcome::Written(v) | Outcome::Value { version: v, .. } | Outcome::NotModified(v) => v,
        Outcome::Conflict { current } => current,
        Outcome::NotFound {
            deleted_at: Some(v),
        } => v,
        _ => 0,
    }
}

/// The next operation of a hot-key client, `known` being the newest
/// version it saw of the key.
fn choose(rng: &mut Rng, known: u64) -> Kind {
    match rng.range(0, 100) {
        0..40 => Kind::Get,
        40..50 if known > 0 => Kind::GetVersion(rng.range(1, known + 1)),
        50..58 if known > 0 => Kind::GetIfNoneMatch(known),
        58..61 => Kind::Poll {
            after: known,
            timeout_s: 1,
        },
        61..83 => Kind::Put,
        83..93 => Kind::CondPut(known),
        93..98 => Kind::Delete,
        98..100 => Kind::Purge,
        _ => Kind::Get,
    }
}

/// The next operation of a reader, `known` being the newest version it saw
/// of the key.
fn choose_read(rng: &mut Rng, known: u64) -> Kind {
    match rng.range(0, 100) {
        0..15 if known > 0 => Kind::GetVersion(rng.range(1, known + 1)),
        15..30 if known > 0 => Kind::GetIfNoneMatch(known),
        _ => Kind::Get,
    }
}
