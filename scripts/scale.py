#!/usr/bin/env python3
"""Scale benchmark: thousands of keep-alive connections and parked long polls.

    scripts/scale.py                        # both parts, default flags
    scripts/scale.py --part connections     # (a) only
    scripts/scale.py --connections 3000 --watchers 3000
    scripts/scale.py -- --max-connections 20000 --max-watchers 20000

It builds the release binary (unless --no-build), starts vkv on a fresh
temporary database with its default flags (plus --log-level warn and any
arguments after `--`) and measures, with one client process on epoll:

(a) CONNECTIONS keep-alive connections opened spread over SPREAD seconds,
    each sending one GET of a stored key: how many got 200 (and what the
    others got), the server's threads (/proc/PID/status Threads) and RSS
    while they are all open and idle, and memory per idle connection
    (RSS with them open minus RSS before, divided by the connections still
    open).
(b) WATCHERS long polls (GET /get/{key}?wait_after=1&timeout=...) on KEYS
    keys, opened spread over SPREAD seconds; once they are parked (the
    vkv_watchers gauge of /metrics, or no change for 2 s), one put to each
    key: every watcher must be answered 200 with version 2; reports the
    time from the last put sent (and from its acknowledgement, and from the
    first put sent) to the last watcher's answer, as read (an upper bound),
    and threads and RSS while parked.

The issue 10 targets are checked and printed (200 for every connection,
threads <= 16, RSS <= 64 MiB, <= 4 KiB per idle connection, every watcher
woken with the new version within 1 s of the last put); the exit status is
1 if any is missed. One JSON line per part ends the output.

The client raises its own RLIMIT_NOFILE (as root also the hard limit); vkv
is started with the limits this script was started with, so that what vkv
does with its own limit is what is measured.
"""

import argparse
import errno
import json
import os
import resource
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TARGET_THREADS = 16
TARGET_RSS_KIB = 64 * 1024
TARGET_PER_CONN_BYTES = 4096
TARGET_WAKE_S = 1.0


def proc_status(pid):
    """VmRSS, VmHWM (KiB) and Threads of a process, from /proc."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                name, _, rest = line.partition(":")
                if name in ("VmRSS", "VmHWM", "Threads"):
                    out[name] = int(rest.split()[0])
    except OSError:
        pass
    return out


def raise_nofile(want):
    """Raises this process's open-files limit to at least `want` if it can."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < want:
        try:  # root may raise the hard limit too (up to fs.nr_open)
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
            return want
        except (ValueError, OSError):
            pass
    new = hard if hard != resource.RLIM_INFINITY else max(soft, want)
    resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    return new


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Conn:
    """One client connection: a request to send, a response to read."""

    __slots__ = ("sock", "out", "inbuf", "status", "body", "error", "done_at", "key")

    def __init__(self, sock, request, key=None):
        self.sock = sock
        self.out = request
        self.inbuf = b""
        self.status = None
        self.body = None
        self.error = None
        self.done_at = None
        self.key = key

    def parse(self):
        """True once one whole response (Content-Length framed) is in."""
        head_end = self.inbuf.find(b"\r\n\r\n")
        if head_end < 0:
            return False
        head = self.inbuf[:head_end].decode("latin-1").split("\r\n")
        length = 0
        for h in head[1:]:
            name, _, value = h.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        if len(self.inbuf) < head_end + 4 + length:
            return False
        parts = head[0].split(" ")
        self.status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else -1
        self.body = self.inbuf[head_end + 4 : head_end + 4 + length]
        return True

    def receive(self):
        """Reads what arrived; True once the response is whole (then
        done_at is set). Raises OSError if the server closed first."""
        data = self.sock.recv(65536)
        if not data:
            raise OSError(0, "closed by the server before an answer")
        self.inbuf += data
        if not self.parse():
            return False
        self.done_at = time.monotonic()
        return True


def request_bytes(method, path, body=b""):
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    if body or method == "POST":
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


def open_and_ask(addr, requests, spread, deadline_s, on_tick=None, until=None):
    """Opens one connection per (request, key), spread evenly over `spread`
    seconds, sends each its request and reads one response, all on one
    epoll selector. Returns the connections (answered or not) and keeps
    them open. Stops when every connection has an answer or an error, when
    `until()` says so, or at the deadline. `on_tick` runs every ~50 ms."""
    sel = selectors.EpollSelector()
    conns = []
    n = len(requests)
    start = time.monotonic()
    deadline = start + deadline_s
    pending = 0
    i = 0
    last_tick = 0.0
    while True:
        now = time.monotonic()
        # Open every connection whose start time has come.
        while i < n and now >= start + spread * i / max(n, 1):
            req, key = requests[i]
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            c = Conn(s, req, key)
            conns.append(c)
            try:
                rc = s.connect_ex(addr)
                if rc not in (0, errno.EINPROGRESS):
                    raise OSError(rc, os.strerror(rc))
                sel.register(s, selectors.EVENT_WRITE, c)
                pending += 1
            except OSError as e:
                c.error = f"connect: {e.strerror or e}"
                s.close()
            i += 1
        if on_tick is not None and now - last_tick >= 0.05:
            last_tick = now
            on_tick()
        if i >= n and pending == 0:
            break
        if until is not None and i >= n and until():
            break
        if now >= deadline:
            break
        wait = 0.05
        if i < n:
            wait = min(wait, max(0.0, start + spread * i / n - now))
        for k, ev in sel.select(timeout=wait):
            c = k.data
            try:
                if ev & selectors.EVENT_WRITE and c.out:
                    err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        raise OSError(err, os.strerror(err))
                    sent = c.sock.send(c.out)
                    c.out = c.out[sent:]
                    if not c.out:
                        sel.modify(c.sock, selectors.EVENT_READ, c)
                    continue
                if ev & selectors.EVENT_READ and c.receive():
                    sel.unregister(c.sock)
                    pending -= 1
            except OSError as e:
                c.error = e.strerror or str(e)
                try:
                    sel.unregister(c.sock)
                except (KeyError, ValueError):
                    pass
                c.sock.close()
                pending -= 1
    sel.close()
    return conns, time.monotonic() - start


def tally(conns):
    """{status or error: count}."""
    out = {}
    for c in conns:
        k = str(c.status) if c.status is not None else (c.error or "no answer")
        out[k] = out.get(k, 0) + 1
    return out


def samples(conns):
    """One body for each status other than 200, to say why."""
    out = {}
    for c in conns:
        if c.status is not None and c.status != 200 and str(c.status) not in out:
            out[str(c.status)] = c.body.decode("utf-8", "replace")[:200]
    return out


def still_open(conns):
    """Connections the server has not closed (a non-blocking peek)."""
    alive = 0
    for c in conns:
        if c.error is not None or c.sock.fileno() < 0:
            continue
        try:
            if c.sock.recv(1, socket.MSG_PEEK) == b"":
                continue  # EOF: closed by the server
        except BlockingIOError:
            pass
        except OSError:
            continue
        alive += 1
    return alive


def close_all(conns):
    for c in conns:
        try:
            c.sock.close()
        except OSError:
            pass


def http(base, method, path, body=None):
    req = urllib.request.Request(base + path, data=body, method=method)
    if body is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class KeepAlive:
    """One keep-alive client connection, opened at once (so that it counts
    among the server's connections from the start) and re-opened if the
    server closes it."""

    def __init__(self, addr):
        self.addr = addr
        self.sock = None
        self._open()

    def _open(self):
        self.sock = socket.create_connection(self.addr, timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def request(self, method, path, body=b""):
        """(status, body), or None if three tries failed."""
        for _ in range(3):
            try:
                if self.sock is None:
                    self._open()
                self.sock.sendall(request_bytes(method, path, body))
                r = Conn(self.sock, b"")
                while not r.parse():
                    data = self.sock.recv(65536)
                    if not data:
                        raise OSError(0, "closed")
                    r.inbuf += data
                return r.status, r.body
            except OSError:
                self.close()
        return None

    def close(self):
        if self.sock is not None:
            self.sock.close()
        self.sock = None


def watchers_gauge(conn):
    """The vkv_watchers gauge of /metrics, or None."""
    r = conn.request("GET", "/metrics")
    if r is None or r[0] != 200:
        return None
    for line in r[1].decode().splitlines():
        if line.startswith("vkv_watchers "):
            return int(float(line.split()[1]))
    return None


def settle(pid, seconds=1.0):
    """Waits `seconds`, then samples the server's status."""
    time.sleep(seconds)
    return proc_status(pid)


def part_connections(args, base, addr, pid, checks):
    n = args.connections
    http(base, "POST", "/put/scale", b'{"value": "scale"}')
    before = settle(pid, 0.5)
    peak = {"threads": before.get("Threads", 0)}

    def tick():
        t = proc_status(pid).get("Threads", 0)
        peak["threads"] = max(peak["threads"], t)

    req = request_bytes("GET", "/get/scale")
    print(f"== (a) {n} keep-alive connections over {args.spread} s, one GET /get/scale each")
    conns, took = open_and_ask(addr, [(req, None)] * n, args.spread, args.deadline, tick)
    counts = tally(conns)
    ok = counts.get("200", 0)
    held = settle(pid, 1.0)
    alive = still_open(conns)
    peak["threads"] = max(peak["threads"], held.get("Threads", 0))
    delta_kib = held.get("VmRSS", 0) - before.get("VmRSS", 0)
    per_conn = delta_kib * 1024 / alive if alive else None
    close_all(conns)
    after = settle(pid, 1.0)
    print(f"answers: {counts} in {took:.2f} s")
    for status, body in samples(conns).items():
        print(f"  a {status} said: {body}")
    print(f"still open after 1 s idle: {alive}")
    print(
        f"server threads: before {before.get('Threads')}, while open {held.get('Threads')}, "
        f"peak {peak['threads']}, after close {after.get('Threads')}"
    )
    print(
        f"server RSS MiB: before {before.get('VmRSS', 0) / 1024:.1f}, while open "
        f"{held.get('VmRSS', 0) / 1024:.1f}, after close {after.get('VmRSS', 0) / 1024:.1f}, "
        f"peak (VmHWM) {after.get('VmHWM', 0) / 1024:.1f}"
    )
    if per_conn is not None:
        print(f"memory per idle connection: {per_conn:.0f} bytes (RSS delta / {alive} open)")
    checks.append((f"(a) all {n} answered 200", ok == n, f"{ok}"))
    checks.append((f"(a) threads <= {TARGET_THREADS}", peak["threads"] <= TARGET_THREADS, f"peak {peak['threads']}"))
    checks.append((
        "(a) RSS <= 64 MiB while open",
        held.get("VmRSS", 1 << 30) <= TARGET_RSS_KIB,
        f"{held.get('VmRSS', 0) / 1024:.1f} MiB",
    ))
    checks.append((
        "(a) <= 4 KiB per idle connection",
        per_conn is not None and alive == n and per_conn <= TARGET_PER_CONN_BYTES,
        f"{per_conn:.0f} B over {alive} open" if per_conn is not None else "none open",
    ))
    return {
        "part": "connections",
        "connections": n,
        "spread_s": args.spread,
        "answers": counts,
        "ok": ok,
        "open_after_idle": alive,
        "seconds_to_answer_all": round(took, 3),
        "threads_before": before.get("Threads"),
        "threads_open": held.get("Threads"),
        "threads_peak": peak["threads"],
        "threads_after_close": after.get("Threads"),
        "rss_kib_before": before.get("VmRSS"),
        "rss_kib_open": held.get("VmRSS"),
        "rss_kib_after_close": after.get("VmRSS"),
        "hwm_kib": after.get("VmHWM"),
        "bytes_per_idle_connection": round(per_conn) if per_conn is not None else None,
    }


def part_watchers(args, base, addr, pid, checks):
    n, keys = args.watchers, args.keys
    for k in range(keys):
        status, body = http(base, "POST", f"/put/w{k}", b'{"value": 1}')
        if status != 200 or json.loads(body).get("version") != 1:
            raise SystemExit(f"preload of w{k}: {status} {body[:200]!r} (want a fresh version 1)")
    # The two connections the script itself needs, opened first.
    metrics = KeepAlive(addr)
    putter = KeepAlive(addr)
    before = settle(pid, 0.5)
    print(f"== (b) {n} long polls on {keys} keys over {args.spread} s, then one put per key")
    requests = [
        (request_bytes("GET", f"/get/w{i % keys}?wait_after=1&timeout={args.watch_timeout}"), i % keys)
        for i in range(n)
    ]
    # Phase 1: open them all, collecting early answers (503s on a server
    # that refuses them), until the gauge shows every one parked or the
    # early answers plus the gauge account for all of them.
    state = {"gauge": 0, "stable_since": time.monotonic(), "last": -1, "asked": 0.0}

    def parked_all():
        now = time.monotonic()
        if now - state["asked"] < 0.1:
            return False
        state["asked"] = now
        g = watchers_gauge(metrics)
        if g != state["last"]:
            state["last"], state["stable_since"] = g, now
        state["gauge"] = g or 0
        return g == n or now - state["stable_since"] > 2.0

    peak = {"threads": before.get("Threads", 0)}

    def tick():
        peak["threads"] = max(peak["threads"], proc_status(pid).get("Threads", 0))

    conns, took = open_and_ask(addr, requests, args.spread, args.deadline, tick, until=parked_all)
    early = tally([c for c in conns if c.status is not None or c.error is not None])
    parked = settle(pid, 0.5)
    gauge = watchers_gauge(metrics)
    peak["threads"] = max(peak["threads"], parked.get("Threads", 0))
    print(f"opened in {took:.2f} s; answered before any put: {early or 'none'}; vkv_watchers {gauge}")
    print(
        f"server while parked: threads {parked.get('Threads')} (peak {peak['threads']}), "
        f"RSS {parked.get('VmRSS', 0) / 1024:.1f} MiB (before {before.get('VmRSS', 0) / 1024:.1f})"
    )
    # Phase 2: one put per key on a keep-alive connection, while the
    # selector keeps reading the watchers' answers. Connections already
    # answered (refused watchers) are closed first, as their clients would.
    for c in conns:
        if c.status is not None:
            c.sock.close()
    waiting = [c for c in conns if c.status is None and c.error is None]
    sel = selectors.EpollSelector()
    for c in waiting:
        sel.register(c.sock, selectors.EVENT_READ, c)
    remaining = len(waiting)

    def pump(timeout):
        nonlocal remaining
        for k, _ in sel.select(timeout=timeout):
            c = k.data
            try:
                if c.receive():
                    sel.unregister(c.sock)
                    remaining -= 1
            except OSError as e:
                c.error = e.strerror or str(e)
                sel.unregister(c.sock)
                remaining -= 1

    def put(k):
        r = putter.request("POST", f"/put/w{k}", b'{"value": 2}')
        return r[0] if r is not None else None

    first_put = time.monotonic()
    put_errors = 0
    last_sent = first_put
    for k in range(keys):
        last_sent = time.monotonic()
        if put(k) != 200:
            put_errors += 1
        pump(0)
    last_ack = time.monotonic()
    end = last_ack + args.watch_timeout
    while remaining > 0 and time.monotonic() < end:
        pump(0.05)
    putter.close()
    metrics.close()
    sel.close()
    answered = [c for c in waiting if c.status is not None]
    right = sum(1 for c in answered if c.status == 200 and json.loads(c.body).get("version") == 2)
    last = max((c.done_at for c in answered), default=None)
    after_last_ack = (last - last_ack) if last is not None else None
    # Answers are stamped when read, so this is an upper bound.
    after_last_sent = (last - last_sent) if last is not None else None
    after_first_put = (last - first_put) if last is not None else None
    all_counts = tally(conns)
    close_all(conns)
    print(f"puts: {keys} in {last_ack - first_put:.3f} s, {put_errors} not 200")
    print(f"watchers: {all_counts}; {right} of {n} answered 200 with version 2")
    for status, body in samples(conns).items():
        print(f"  a {status} said: {body}")
    if last is not None:
        print(
            f"last watcher answer read {after_last_sent * 1000:.0f} ms after the last put was sent, "
            f"{after_last_ack * 1000:+.0f} ms after its ack ({after_first_put * 1000:.0f} ms after "
            "the first put was sent; the writer wakes watchers before it acks)"
        )
    checks.append((f"(b) all {n} watchers woken with version 2", right == n and put_errors == 0, f"{right}"))
    checks.append((
        f"(b) last answer within {TARGET_WAKE_S} s of the last put",
        right == n and after_last_sent is not None and after_last_sent <= TARGET_WAKE_S,
        f"{after_last_sent:.3f} s" if after_last_sent is not None else "none",
    ))
    checks.append((f"(b) threads <= {TARGET_THREADS} while parked", peak["threads"] <= TARGET_THREADS, f"peak {peak['threads']}"))
    return {
        "part": "watchers",
        "watchers": n,
        "keys": keys,
        "spread_s": args.spread,
        "answered_before_puts": early,
        "parked_gauge": gauge,
        "answers": all_counts,
        "woken_with_new_version": right,
        "put_errors": put_errors,
        "puts_s": round(last_ack - first_put, 3),
        "last_answer_after_last_put_sent_s": round(after_last_sent, 3) if after_last_sent is not None else None,
        "last_answer_after_last_put_ack_s": round(after_last_ack, 3) if after_last_ack is not None else None,
        "last_answer_after_first_put_s": round(after_first_put, 3) if after_first_put is not None else None,
        "threads_parked": parked.get("Threads"),
        "threads_peak": peak["threads"],
        "rss_kib_before": before.get("VmRSS"),
        "rss_kib_parked": parked.get("VmRSS"),
    }


def main():
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--part", choices=["connections", "watchers", "both"], default="both")
    p.add_argument("--connections", type=int, default=10_000)
    p.add_argument("--watchers", type=int, default=10_000)
    p.add_argument("--keys", type=int, default=100)
    p.add_argument("--spread", type=float, default=1.0, help="seconds over which connections open")
    p.add_argument("--deadline", type=float, default=60.0, help="seconds to wait for the answers")
    p.add_argument("--watch-timeout", type=int, default=120, help="long-poll timeout= in seconds")
    p.add_argument("--bin", default=os.path.join(ROOT, "target/release/vkv"))
    p.add_argument("--no-build", action="store_true", help="do not run cargo build --release")
    p.add_argument("vkv_args", nargs="*", help="extra vkv flags, after --")
    args = p.parse_args()

    if not args.no_build and args.bin == os.path.join(ROOT, "target/release/vkv"):
        print("== building the release binary")
        subprocess.run(["cargo", "build", "--release", "--bin", "vkv"], cwd=ROOT, check=True)
    server_limits = resource.getrlimit(resource.RLIMIT_NOFILE)
    work = tempfile.mkdtemp(prefix="vkv-scale.")
    port = free_port()
    log = open(os.path.join(work, "vkv.log"), "w+")
    cmd = [args.bin, "--bind", f"127.0.0.1:{port}", "--db", os.path.join(work, "kv.db"), "--log-level", "warn"]
    cmd += args.vkv_args
    env = {k: v for k, v in os.environ.items() if not k.startswith("VKV_")}
    server = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=log, env=env,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, server_limits),
    )
    base = f"http://127.0.0.1:{port}"
    addr = ("127.0.0.1", port)
    try:
        for _ in range(300):
            try:
                if http(base, "GET", "/health")[0] == 200:
                    break
            except OSError:
                pass
            if server.poll() is not None:
                log.seek(0)
                raise SystemExit(f"vkv exited ({server.returncode}):\n{log.read()}")
            time.sleep(0.1)
        else:
            raise SystemExit("vkv did not answer /health within 30 s")
        want = max(args.connections, args.watchers) + 1000
        got = raise_nofile(want)
        soft, hard = server_limits
        print(f"vkv {' '.join(cmd[1:])} (pid {server.pid}, started with RLIMIT_NOFILE {soft}/{hard})")
        print(f"client RLIMIT_NOFILE: {got}")
        if got < want - 900:
            print(f"warning: the client can open only {got} files", file=sys.stderr)
        checks, lines = [], []
        if args.part in ("connections", "both"):
            lines.append(part_connections(args, base, addr, server.pid, checks))
        if args.part in ("watchers", "both"):
            lines.append(part_watchers(args, base, addr, server.pid, checks))
        print("== targets (issue 10)")
        for name, ok, seen in checks:
            print(f"{'ok  ' if ok else 'MISS'} {name}: {seen}")
        log.seek(0)
        warnings = [line.rstrip() for line in log if line.strip()]
        if warnings:
            print(f"== vkv log ({len(warnings)} lines, first 5)")
            for line in warnings[:5]:
                print(line)
        print("== JSON lines")
        for line in lines:
            print(json.dumps(line))
        return 0 if all(ok for _, ok, _ in checks) else 1
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
