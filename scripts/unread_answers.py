#!/usr/bin/env python3
"""Clients that pipeline large GETs and never read (issue 21 item 7).

Starts VKV (default target/debug/vkv) on a fresh database, puts one value of
about SIZE bytes (default 1 MiB), reads it once (so the cache holds it), then
opens CLIENTS connections, each with a receive buffer of RCVBUF bytes (set
before connecting, so the window stays small), each sending PIPELINE GETs of
that value in one write and never reading; they stay open HOLD seconds more.
From before the first of them until then, a fresh client opens a new
connection for each GET of a small key (every 10 ms); its latencies give
the p50/p99/max. Prints one JSON line: RSS (VmRSS, MiB) before the attack,
its peak during it (VmHWM, reset before the attack), the growth, and the
fresh client's latencies in ms.

  scripts/unread_answers.py [--vkv PATH] [--clients 1500] [--pipeline 4]
      [--size 1048576] [--rcvbuf 4096] [--hold 3]
      [--max-growth-mib 256] [--max-p99-ms 100] [-- extra vkv flags]

Then checks the targets: RSS growth at most MAX_GROWTH_MIB, the fresh
client's p99 under MAX_P99_MS and every one of its GETs answered 200. Exits 1
naming each target missed (2: vkv did not start). NICE=-10 runs vkv at that
niceness (root only below 0), for a loaded machine.
"""
import argparse, json, os, re, resource, socket, subprocess, sys, tempfile, threading, time


def rss_mib(pid, field="VmRSS"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def request(host, port, raw, timeout=10):
    """Sends raw bytes on a new connection, reads one response."""
    s = socket.create_connection((host, port), timeout=timeout)
    try:
        s.sendall(raw)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                raise RuntimeError("closed before the head")
            data += chunk
        head, body = data.split(b"\r\n\r\n", 1)
        status = int(head.split()[1])
        m = re.search(rb"(?i)content-length:\s*(\d+)", head)
        length = int(m.group(1)) if m else 0
        while len(body) < length:
            chunk = s.recv(1 << 20)
            if not chunk:
                raise RuntimeError("closed mid-body")
            body += chunk
        return status, body
    finally:
        s.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vkv", default="target/debug/vkv")
    ap.add_argument("--clients", type=int, default=1500)
    ap.add_argument("--pipeline", type=int, default=4)
    ap.add_argument("--size", type=int, default=1 << 20)
    ap.add_argument("--rcvbuf", type=int, default=4096)
    ap.add_argument("--hold", type=float, default=3.0)
    ap.add_argument("--max-growth-mib", type=float, default=256.0)
    ap.add_argument("--max-p99-ms", type=float, default=100.0)
    ap.add_argument("extra", nargs="*")
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    d = tempfile.mkdtemp()
    log = open(os.path.join(d, "log"), "w+")
    nice = ["nice", "-n", os.environ["NICE"]] if os.environ.get("NICE") else []
    p = subprocess.Popen([*nice, a.vkv, "--bind", "127.0.0.1:0", "--db", os.path.join(d, "kv.db"),
                          "--max-body-bytes", "2MiB", *a.extra], stderr=log)
    try:
        result = run(a, p, log)
    finally:
        p.terminate()
        p.wait()
    print(json.dumps(result))
    missed = []
    if result["rss_growth_mib"] > a.max_growth_mib:
        missed.append(f"RSS grew {result['rss_growth_mib']} MiB, more than {a.max_growth_mib}")
    if result["probe_p99_ms"] >= a.max_p99_ms:
        missed.append(f"fresh-client p99 {result['probe_p99_ms']} ms, not under {a.max_p99_ms}")
    if result["probe_errors"]:
        missed.append(f"{result['probe_errors']} fresh-client GETs failed or were not 200")
    for m in missed:
        print("FAIL: " + m, file=sys.stderr)
    sys.exit(1 if missed else 0)


def run(a, p, log):
    addr = None
    for _ in range(500):
        log.seek(0)
        m = re.search(r"listening on (\S+)", log.read())
        if m:
            addr = m.group(1)
            break
        time.sleep(0.02)
    if not addr:
        print("vkv did not start", file=sys.stderr)
        sys.exit(2)
    host, port = addr.rsplit(":", 1)
    port = int(port)
    body = json.dumps({"value": "x" * (a.size - 2)}).encode()
    put = (b"POST /put/big HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
           b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)) + body
    status, _ = request(host, port, put)
    assert status == 200, status
    small = b'{"value": 1}'
    put = (b"POST /put/small HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
           b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(small)) + small
    assert request(host, port, put)[0] == 200
    get_big = b"GET /get/big HTTP/1.1\r\nHost: localhost\r\n\r\n"
    get_small = b"GET /get/small HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    status, got = request(host, port, get_big + b"")
    assert status == 200 and len(got) > a.size, (status, len(got))
    time.sleep(0.5)
    before = rss_mib(p.pid)
    # Peak RSS from now on: VmHWM starts again from the current RSS.
    with open(f"/proc/{p.pid}/clear_refs", "w") as f:
        f.write("5")
    stop = threading.Event()

    lat = []
    errors = 0

    def probe():
        nonlocal errors
        while not stop.is_set():
            t = time.monotonic()
            try:
                status, _ = request(host, port, get_small, timeout=5)
                if status != 200:
                    errors += 1
            except (OSError, RuntimeError):
                errors += 1
            lat.append((time.monotonic() - t) * 1000)
            time.sleep(0.01)

    threads = [threading.Thread(target=probe)]
    for t in threads:
        t.start()
    socks = []
    t0 = time.monotonic()
    for _ in range(a.clients):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, a.rcvbuf)
        s.connect((host, port))
        s.setblocking(False)
        try:
            s.send(get_big * a.pipeline)
        except BlockingIOError:
            pass
        socks.append(s)
    opened = time.monotonic() - t0
    time.sleep(a.hold)
    stop.set()
    for t in threads:
        t.join()
    peak = rss_mib(p.pid, "VmHWM")
    lat.sort()
    pct = lambda q: round(lat[min(len(lat) - 1, int(q * len(lat)))], 1)
    for s in socks:
        s.close()
    return {
        "clients": a.clients, "pipeline": a.pipeline, "size": a.size, "rcvbuf": a.rcvbuf,
        "open_s": round(opened, 2),
        "rss_before_mib": round(before, 1), "rss_peak_mib": round(peak, 1),
        "rss_growth_mib": round(peak - before, 1),
        "probe_p50_ms": pct(0.5), "probe_p99_ms": pct(0.99), "probe_max_ms": round(lat[-1], 1),
        "probes": len(lat), "probe_errors": errors,
    }


if __name__ == "__main__":
    main()
