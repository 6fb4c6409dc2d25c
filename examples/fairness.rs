//! Per-connection fairness probe: opens `--connections` keep-alive
//! connections at once, each sending `GET --path` back to back for
//! `--seconds`, and reports how many answers each connection got and how
//! long its first answer took. Exits 1 if any connection waited more than a
//! second for its first answer (the starvation tiny_http 0.12 showed).
//!
//! ```text
//! cargo run --release --example fairness -- --addr 127.0.0.1:8080
//! ```

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

struct Seen {
    first: Option<Duration>,
    answers: u64,
}

fn main() {
    let mut addr = String::from("127.0.0.1:8080");
    let (mut conns, mut secs, mut path) = (32usize, 5u64, String::from("/health"));
    let mut args = std::env::args().skip(1);
    while let (Some(flag), Some(value)) = (args.next(), args.next()) {
        match flag.as_str() {
            "--addr" => addr = value,
            "--connections" => conns = value.parse().unwrap_or(conns),
            "--seconds" => secs = value.parse().unwrap_or(secs),
            "--path" => path = value,
            _ => eprintln!("ignored flag {flag}"),
        }
    }
    let start = Arc::new(Barrier::new(conns));
    let threads: Vec<_> = (0..conns)
        .map(|_| {
            let (addr, path, start) = (addr.clone(), path.clone(), Arc::clone(&start));
            std::thread::spawn(move || run(&addr, &path, secs, &start))
        })
        .collect();
    let seen: Vec<Seen> = threads.into_iter().filter_map(|t| t.join().ok()).collect();
    let mut counts: Vec<u64> = seen.iter().map(|s| s.answers).collect();
    counts.sort_unstable();
    let worst_first = seen.iter().map(|s| s.first.unwrap_or(Duration::MAX)).max();
    let starved = seen
        .iter()
        .filter(|s| s.first.is_none_or(|f| f > Duration::from_secs(1)))
        .count();
    println!(
        "connections={conns} answers_per_connection min={} median={} max={} worst_first_answer_ms={:.1} starved={starved}",
        counts.first().copied().unwrap_or(0),
        counts.get(counts.len() / 2).copied().unwrap_or(0),
        counts.last().copied().unwrap_or(0),
        worst_first.map_or(-1.0, |d| if d == Duration::MAX {
            -1.0
        } else {
            d.as_secs_f64() * 1000.0
        }),
    );
    std::process::exit(i32::from(starved > 0));
}

fn run(addr: &str, path: &str, secs: u64, start: &Barrier) -> Seen {
    let mut seen = Seen {
        first: None,
        answers: 0,
    };
    start.wait();
    let began = Instant::now();
    let Ok(stream) = TcpStream::connect(addr) else {
        return seen;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(secs + 5)));
    let _ = stream.set_nodelay(true);
    let Ok(mut writer) = stream.try_clone() else {
        return seen;
    };
    let mut reader = BufReader::new(stream);
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    while began.elapsed() < Duration::from_secs(secs) {
        if writer.write_all(request.as_bytes()).is_err() || !read_answer(&mut reader) {
            break;
        }
        seen.first.get_or_insert_with(|| began.elapsed());
        seen.answers += 1;
    }
    seen
}

/// Reads one Content-Length-framed response; false on any error.
fn read_answer(reader: &mut BufReader<TcpStream>) -> bool {
    let mut line = String::new();
    let mut len = 0usize;
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return false;
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some(v) = l.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; len];
    reader.read_exact(&mut body).is_ok()
}
