#!/usr/bin/env python3
"""The change feed's benchmark (issue 22's targets), against etcd 3.4 in the
same run.

    scripts/bench-feed.py [--vkv target/release/vkv] [--only fanout,etcd,idle,catchup,postgres]

Each phase starts a release vkv on a fresh SQLite file (and, for `etcd`,
Debian's etcd on a temporary data directory), on free ports:

- fanout: STREAMS Server-Sent Events streams on the prefix `feed/` while
  `wrk -t1 -c32` puts to 100 keys under it at full rate for DURATION s;
  then wrk alone on another prefix, before and after (the "without
  streams" figure). Every stream must receive every change in order,
  none missed or repeated (checked by revision: the run fails otherwise);
  delivery lag (commit timestamp to receipt, and put sent to receipt)
  p50/p99, events delivered per second, vkv's peak RSS and threads.
- etcd: the same number of watchers through etcd's JSON gateway
  (`POST /v3/watch`, one connection each) on the same prefix, the same
  put load (`POST /v3/kv/put`), the same checks; etcd alone too.
- idle: IDLE streams open and idle: vkv's threads and RSS; then one put,
  which every stream must receive.
- catchup: CHANGES changes preloaded with /batch (1,000 a batch), then read
  through the feed as NDJSON and as pages of 1,000.
- postgres (only when asked for): two replicas on one database of a
  throw-away PostgreSQL cluster (scripts/pg-cluster.sh; a binary built
  with --features postgres), the streams on one, the fan-out's put load on
  the other: cross-replica lag and the same checks.

The readers are READERS processes, each one selector loop over its share
of the sockets, and one more for the streams whose lag is sampled (one in
20), so that a busy reader's backlog does not count as the server's lag.
A stream the server closes (a reader too far behind) is opened again after
its last revision, and one refused with 503 (busy) is tried again a second
later, as clients do; both are counted, and the check of every change in
order, once, spans them. Everything runs on this machine's cores: vkv,
etcd, wrk and the readers compete for them, and the figures include that.

Prints a table per phase and JSON lines; exits 1 if a check or a target
fails (targets: lag p99 <= 100 ms, RSS <= 64 MiB, PUT with streams >=
0.7x without, events/s >= 3x etcd's with a lower lag p99; idle: <= 16
threads, <= 64 MiB; catch-up <= 5 s). Standard library only; needs wrk
and, for `etcd`, /usr/bin/etcd (apt-get install -y wrk etcd-server).
"""

import argparse
import calendar
import http.client
import multiprocessing
import os
import re
import selectors
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl  # noqa: E402

PREFIX = "feed/"
KEYS = 100
MIB = 1024

# ------------------------------------------------------------------ readers --

# vkv: one change per event; its revision first in the object (a progress
# mark's data is {"revision":N} alone).
SSE_REVISION = re.compile(rb'^data: \{"revision":(\d+),"key"', re.M)
SSE_TIMES = re.compile(rb'"timestamp":"([^"]+)","value":\{"t":(\d+)\}')
SSE_EVENT = re.compile(rb"^event: (\w+)\ndata: ([^\n]*)", re.M)
ETCD_REVISION = re.compile(rb'"mod_revision":"(\d+)"')
ETCD_VALUE = re.compile(rb'"value":"([A-Za-z0-9+/=]*)"')
T_IN_VALUE = re.compile(rb'"t":(\d+)')

_epoch_of_second = {}


def rfc3339_seconds(ts):
    """2026-12-06T03:01:02.345Z as seconds since the epoch (cached per second)."""
    head = ts[:19]
    base = _epoch_of_second.get(head)
    if base is None:
        base = calendar.timegm(time.strptime(head.decode(), "%Y-%m-%dT%H:%M:%S"))
        _epoch_of_second[head] = base
    frac = ts[20:-1]
    return base + (int(frac) / 10 ** len(frac) if frac else 0)


class Stream:
    """One watch: its socket, HTTP framing, and what it has received."""

    def __init__(self, index, sample):
        self.index, self.sample = index, sample
        self.sock = None
        self.raw = b""
        self.head_done = False
        self.need = 0  # bytes left in the current chunk
        self.skip = 0  # CRLF after a chunk still to skip
        self.pending = b""  # de-chunked bytes not yet a whole event
        self.ready = False
        self.last = None  # last revision received
        self.events = 0
        self.error = None
        self.drops = 0
        self.ended = False  # the server sent the last chunk
        self.retry_at = None  # when to connect again
        self.retries = 0

    def dechunk(self, data):
        raw = self.raw + data if self.raw else data
        out, pos, n = [], 0, len(raw)
        while pos < n:
            if self.need:
                take = min(self.need, n - pos)
                out.append(raw[pos:pos + take])
                pos += take
                self.need -= take
                if not self.need:
                    self.skip = 2
            elif self.skip:
                take = min(self.skip, n - pos)
                pos += take
                self.skip -= take
            else:
                i = raw.find(b"\r\n", pos)
                if i < 0:
                    break
                size = int(raw[pos:i].split(b";")[0], 16)
                pos = i + 2
                if size == 0:
                    self.ended = True
                    break
                self.need = size
        self.raw = raw[pos:]
        return b"".join(out)

    def check(self, revisions):
        """Every revision must follow the previous one: nothing missed or
        repeated (every change under the prefix is one put, one revision)."""
        if not revisions:
            return
        revs = list(map(int, revisions))
        first = revs[0]
        if self.last is not None and first != self.last + 1:
            self.fail(f"after revision {self.last} came {first}")
        elif revs != list(range(first, first + len(revs))):
            self.fail(f"revisions out of order or repeated after {first}")
        self.last = revs[-1]
        self.events += len(revs)

    def fail(self, why):
        if self.error is None:
            self.error = why


class Reader:
    """A selector loop over a share of the streams (in its own process)."""

    def __init__(self, kind, port, indices, sample_every, after):
        self.kind, self.port, self.after = kind, port, after
        self.streams = [Stream(i, i % sample_every == 0) for i in indices]
        self.sel = selectors.DefaultSelector()
        self.lag_commit, self.lag_sent = [], []
        self.last_event_at = 0.0
        self.reconnects = 0  # the server closed a stream: resumed
        self.refused = 0  # 503 (busy) when opening: tried again
        self.waiting = []  # streams to connect again

    def request(self, s):
        if self.kind == "vkv":
            resume = s.last if s.last is not None else self.after
            q = f"/changes?prefix={PREFIX}" + (f"&after={resume}" if resume is not None else "")
            return (f"GET {q} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n").encode()
        start = (s.last + 1) if s.last is not None else self.after + 1
        body = ('{"create_request":{"key":"%s","range_end":"%s","start_revision":%d}}'
                % (bl.b64(PREFIX), bl.b64(bl.prefix_end(PREFIX)), start)).encode()
        return (b"POST /v3/watch HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n" % len(body)) + body

    def connect(self, s):
        sock = socket.create_connection(("127.0.0.1", self.port))
        sock.setblocking(False)
        sock.sendall(self.request(s))
        s.sock, s.raw, s.head_done, s.need, s.skip, s.pending = sock, b"", False, 0, 0, b""
        s.ended, s.retry_at = False, None
        self.sel.register(sock, selectors.EVENT_READ, s)

    def again(self, s, delay):
        """Closes `s` and connects it again after `delay` s, resuming after
        its last revision, as a client does (at most 100 times)."""
        if s.sock is not None:
            self.sel.unregister(s.sock)
            s.sock.close()
            s.sock = None
        s.retries += 1
        if s.retries > 100:
            s.fail("closed or refused 100 times")
            return
        s.retry_at = time.time() + delay
        self.waiting.append(s)

    def open_all(self):
        for n, s in enumerate(self.streams):
            self.connect(s)
            if n % 200 == 199:
                self.poll(0)

    def poll(self, timeout):
        if self.waiting:
            now = time.time()
            due = [s for s in self.waiting if s.retry_at <= now]
            self.waiting = [s for s in self.waiting if s.retry_at > now]
            for s in due:
                self.connect(s)
        for key, _ in self.sel.select(timeout):
            s = key.data
            try:
                data = s.sock.recv(1 << 18)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if data:
                self.receive(s, data)
            if s.sock is not None and (not data or s.ended) and s.error is None:
                # Closed by the server (a reader too far behind, or stalled
                # longer than its timeout): resume after the last revision.
                self.reconnects += 1
                self.again(s, 0.05)

    def receive(self, s, data):
        now = time.time()
        if not s.head_done:
            s.raw += data
            end = s.raw.find(b"\r\n\r\n")
            if end < 0:
                return
            head, data = s.raw[:end], s.raw[end + 4:]
            s.raw = b""
            s.head_done = True
            if head.startswith(b"HTTP/1.1 503"):
                # Busy (the worker queue is full): try again, as a client does.
                self.refused += 1
                self.again(s, 1.0)
                return
            if not head.startswith(b"HTTP/1.1 200") or b"chunked" not in head.lower():
                s.fail(f"answer {head[:200]!r}")
                return
            if self.kind == "vkv":
                s.ready = True
        body = s.pending + s.dechunk(data)
        cut = body.rfind(b"\n\n" if self.kind == "vkv" else b"\n")
        if cut < 0:
            s.pending = body
            return
        block, s.pending = body[:cut + 1], body[cut + 1:]
        if self.kind == "vkv":
            self.vkv_block(s, block, now)
        else:
            self.etcd_block(s, block, now)

    def vkv_block(self, s, block, now):
        if b"event: " in block:
            for name, data in SSE_EVENT.findall(block):
                if name == b"slow":
                    s.drops += 1
                elif name != b"progress":
                    s.fail(f"event {name.decode()}: {data[:200].decode(errors='replace')}")
        revs = SSE_REVISION.findall(block)
        if revs:
            s.check(revs)
            self.last_event_at = now
            if s.sample:
                for ts, sent in SSE_TIMES.findall(block):
                    self.lag_commit.append(now - rfc3339_seconds(ts))
                    self.lag_sent.append(now - int(sent) / 1e6)

    def etcd_block(self, s, block, now):
        if not s.ready and b'"created":true' in block:
            s.ready = True
        if b'"canceled":true' in block or b'"compact_revision"' in block or b'"error"' in block:
            s.fail(f"watch ended: {block[:200]!r}")
        revs = ETCD_REVISION.findall(block)
        if revs:
            s.check(revs)
            self.last_event_at = now
            if s.sample:
                import base64
                for v in ETCD_VALUE.findall(block):
                    m = T_IN_VALUE.search(base64.b64decode(v))
                    if m:
                        self.lag_sent.append(now - int(m.group(1)) / 1e6)


def reader_main(pipe, kind, port, indices, sample_every, after):
    r = Reader(kind, port, indices, sample_every, after)
    try:
        r.open_all()
        while not all(s.ready or s.error for s in r.streams):
            r.poll(0.05)
        pipe.send(("ready", sum(1 for s in r.streams if s.error)))
        until, deadline = None, None
        while True:
            if pipe.poll():
                until, seconds = pipe.recv()
                deadline = time.time() + seconds
            if until is not None and (all(s.error or (s.last or 0) >= until for s in r.streams)
                                      or time.time() > deadline):
                break
            r.poll(0.02)
    except Exception as e:  # reported, not raised: the parent fails the run
        pipe.send(("result", {"fatal": repr(e)}))
        return
    pipe.send(("result", {
        "events": sum(s.events for s in r.streams),
        "complete": sum(1 for s in r.streams if s.error is None and (s.last or 0) >= until),
        "errors": [f"stream {s.index}: {s.error}" for s in r.streams if s.error][:5],
        "error_count": sum(1 for s in r.streams if s.error),
        "behind": [f"stream {s.index}: at {s.last}" for s in r.streams
                   if s.error is None and (s.last or 0) < until][:5],
        "drops": sum(s.drops for s in r.streams),
        "reconnects": r.reconnects,
        "refused": r.refused,
        "last_event_at": r.last_event_at,
        "lag_commit": r.lag_commit,
        "lag_sent": r.lag_sent,
    }))


class Readers:
    """`streams` watches split over `processes` reader processes."""

    def __init__(self, kind, port, streams, processes, after, sample_every=20):
        self.procs, self.pipes = [], []
        # The sampled streams (every `sample_every`th) get a process of their
        # own, lightly loaded, so that their lag is the server's delivery and
        # not a busy reader's backlog; the others check every change.
        sampled = list(range(0, streams, sample_every))
        rest = [i for i in range(streams) if i % sample_every]
        shares = [sampled] + [rest[p::processes] for p in range(processes)]
        for indices in shares:
            if not indices:
                continue
            parent, child = multiprocessing.Pipe()
            proc = multiprocessing.Process(target=reader_main,
                                           args=(child, kind, port, indices, sample_every, after))
            proc.start()
            self.procs.append(proc)
            self.pipes.append(parent)

    def wait_ready(self, seconds=120):
        failed = 0
        for pipe in self.pipes:
            if not pipe.poll(seconds):
                bl.die("a reader did not open its streams in time")
            tag, value = pipe.recv()
            if tag != "ready":
                bl.die(f"a reader failed: {value}")
            failed += value
        return failed

    def finish(self, until, seconds, on_wait=None):
        """Tells the readers the last revision; merges what they report."""
        for pipe in self.pipes:
            pipe.send((until, seconds))
        out = {"events": 0, "complete": 0, "errors": [], "error_count": 0, "behind": [],
               "drops": 0, "reconnects": 0, "refused": 0, "last_event_at": 0.0, "lag_commit": [],
               "lag_sent": []}
        for pipe in self.pipes:
            while not pipe.poll(0.2):
                if on_wait:
                    on_wait()
            tag, r = pipe.recv()
            if "fatal" in r:
                bl.die(f"a reader failed: {r['fatal']}")
            for k in ("events", "complete", "error_count", "drops", "reconnects", "refused"):
                out[k] += r[k]
            for k in ("errors", "behind", "lag_commit", "lag_sent"):
                out[k] += r[k]
            out["last_event_at"] = max(out["last_event_at"], r["last_event_at"])
        for proc in self.procs:
            proc.join()
        return out


# ----------------------------------------------------------------- phases ---

def vkv_put_lua(prefix):
    return bl.LUA_CLOCK + """
local n = 0
local headers = { ["Content-Type"] = "application/json" }
request = function()
  n = n + 1
  return wrk.format("POST", "/put/%s" .. (n %% %d), headers,
    string.format('{"value":{"t":%%d}}', now_us()))
end
""" % (prefix + "k", KEYS)


def etcd_put_lua(prefix):
    keys = ", ".join(f'"{bl.b64(f"{prefix}k{i}")}"' for i in range(KEYS))
    return bl.LUA_CLOCK + bl.LUA_BASE64 + """
local keys = { %s }
local n = 0
local headers = { ["Content-Type"] = "application/json" }
request = function()
  n = n + 1
  local value = base64(string.format('{"t":%%d}', now_us()))
  return wrk.format("POST", "/v3/kv/put", headers,
    string.format('{"key":"%%s","value":"%%s"}', keys[n %% #keys + 1], value))
end
""" % keys


def ms(seconds):
    return None if seconds is None else round(seconds * 1000, 2)


def settled(revision, server):
    """The store's revision once the puts still in flight when wrk stopped
    have committed."""
    last = revision(server)
    while True:
        time.sleep(0.3)
        now = revision(server)
        if now == last:
            return now
        last = now


def fanout(server, kind, args, put_server=None):
    """Put load alone, with the streams, alone again; one row of figures.
    The streams are on `server`, the puts on `put_server` (default: the
    same)."""
    put_server = put_server or server
    lua_alone = vkv_put_lua("base/") if kind == "vkv" else etcd_put_lua("base/")
    lua_feed = vkv_put_lua(PREFIX) if kind == "vkv" else etcd_put_lua(PREFIX)
    revision = bl.vkv_revision if kind == "vkv" else bl.etcd_revision
    busy = bl.machine_busy()
    alone1 = bl.wrk(put_server.url, lua_alone, args.duration, nice=args.nice)
    start = settled(revision, put_server)
    readers = Readers(kind, server.port, args.streams, args.readers, start)
    failed_open = readers.wait_ready()
    sampler = bl.Sampler(server.pid)
    sampler.poll()
    cpu0 = bl.tree_cpu_seconds(server.pid)
    stop = threading.Event()

    def sample():
        while not stop.wait(0.25):
            sampler.poll()
    t = threading.Thread(target=sample, daemon=True)
    t.start()
    t0 = time.time()
    loaded = bl.wrk(put_server.url, lua_feed, args.duration, nice=args.nice)
    final = settled(revision, put_server)
    res = readers.finish(final, args.drain, on_wait=sampler.poll)
    stop.set()
    t.join()
    cpu = bl.tree_cpu_seconds(server.pid) - cpu0
    alone2 = bl.wrk(put_server.url, lua_alone, args.duration, nice=args.nice)
    changes = final - start
    expected = changes * args.streams
    delivered_in = max(res["last_event_at"], t0 + 1e-3) - t0
    alone_rps = (alone1["rps"] + alone2["rps"]) / 2
    row = {
        "server": kind,
        "streams": args.streams,
        "puts_per_s_alone": alone_rps,
        "puts_per_s_alone_each": [alone1["rps"], alone2["rps"]],
        "puts_per_s_streams": loaded["rps"],
        "put_ratio": round(loaded["rps"] / alone_rps, 3) if alone_rps else None,
        "put_p99_ms": loaded["p99_ms"],
        "put_errors": loaded["non_2xx"] + loaded["socket_errors"],
        "changes": changes,
        "events_expected": expected,
        "events_received": res["events"],
        "streams_complete": res["complete"],
        "stream_errors": res["error_count"] + failed_open,
        "slow_drops": res["drops"],
        "reconnects": res["reconnects"],
        "refused": res["refused"],
        "events_per_s": round(res["events"] / delivered_in, 1),
        "delivered_in_s": round(delivered_in, 2),
        "lag_commit_p50_ms": ms(bl.percentile(res["lag_commit"], 50)),
        "lag_commit_p99_ms": ms(bl.percentile(res["lag_commit"], 99)),
        "lag_sent_p50_ms": ms(bl.percentile(res["lag_sent"], 50)),
        "lag_sent_p99_ms": ms(bl.percentile(res["lag_sent"], 99)),
        "lag_samples": len(res["lag_sent"]),
        "server_cpu_s": round(cpu, 2),
        "peak_rss_mib": round(sampler.rss_kb / MIB, 1),
        "peak_threads": sampler.threads,
        "machine_busy_before_pct": busy,
    }
    row["ok"] = (res["error_count"] == 0 and failed_open == 0 and res["events"] == expected
                 and res["complete"] == args.streams and row["put_errors"] == 0)
    for e in res["errors"] + res["behind"]:
        print(f"  {kind}: {e}", file=sys.stderr)
    return row


def phase_fanout(args, targets):
    rows = []
    vkv = bl.start_vkv(args.vkv, *args.vkv_flags, nice=args.nice)
    try:
        rows.append(fanout(vkv, "vkv", args))
    finally:
        vkv.stop()
    if "etcd" in args.only:
        etcd = bl.start_etcd(nice=args.nice)
        try:
            rows.append(fanout(etcd, "etcd", args))
        finally:
            etcd.stop()
    bl.table(f"fan-out: {args.streams} streams on {PREFIX}, wrk -t1 -c32 puts to {KEYS} keys for "
             f"{args.duration}s (lag: commit or put sent -> receipt, {args.streams // 20} streams sampled)",
             rows, [("server", "server"), ("puts_per_s_alone", "put/s alone"),
                    ("puts_per_s_streams", "put/s streams"), ("put_ratio", "ratio"),
                    ("events_per_s", "events/s"), ("delivered_in_s", "deliv s"),
                    ("lag_commit_p50_ms", "commit p50"), ("lag_commit_p99_ms", "commit p99"),
                    ("lag_sent_p50_ms", "sent p50"), ("lag_sent_p99_ms", "sent p99"),
                    ("peak_rss_mib", "RSS MiB"), ("peak_threads", "thr"),
                    ("slow_drops", "slow"), ("reconnects", "resumed"), ("stream_errors", "errs"),
                    ("ok", "ok")])
    v = rows[0]
    targets.append(("fan-out: every stream every change, in order, once", v["ok"]))
    lag99 = v["lag_commit_p99_ms"]
    targets.append((f"fan-out: lag p99 {lag99} ms <= 100", lag99 is not None and lag99 <= 100))
    targets.append((f"fan-out: RSS {v['peak_rss_mib']} MiB <= 64", v["peak_rss_mib"] <= 64))
    targets.append((f"fan-out: PUT ratio {v['put_ratio']} >= 0.7", (v["put_ratio"] or 0) >= 0.7))
    if len(rows) > 1:
        e = rows[1]
        targets.append(("etcd: every watcher every change, in order, once", e["ok"]))
        ratio = round(v["events_per_s"] / e["events_per_s"], 2) if e["events_per_s"] else None
        targets.append((f"vs etcd: events/s {ratio}x >= 3x", ratio is not None and ratio >= 3))
        a, b = v["lag_sent_p99_ms"], e["lag_sent_p99_ms"]
        targets.append((f"vs etcd: lag p99 (put sent) {a} < {b} ms", a is not None and b is not None and a < b))
    for r in rows:
        bl.json_line({"phase": "fanout", **r})


def phase_postgres(args, targets):
    """Two vkv replicas on one PostgreSQL database (a throw-away cluster,
    scripts/pg-cluster.sh): the streams on replica B, the put load on
    replica A; the lag is from A's commit to B's stream."""
    with bl.pg_database("feedbench") as pg:
        replicas = []
        try:
            for _ in range(2):
                replicas.append(bl.start_vkv(args.vkv, *args.vkv_flags, nice=args.nice, db=pg.url))
            row = fanout(replicas[1], "vkv", args, put_server=replicas[0])
            row["server"] = "vkv PostgreSQL, streams on B, puts on A"
        finally:
            for r in replicas:
                r.stop()
    bl.table(f"PostgreSQL: {args.streams} streams on replica B, wrk -t1 -c32 puts on replica A for "
             f"{args.duration}s", [row],
             [("puts_per_s_alone", "put/s alone"), ("puts_per_s_streams", "put/s streams"),
              ("events_per_s", "events/s"), ("lag_commit_p50_ms", "commit p50"),
              ("lag_commit_p99_ms", "commit p99"), ("peak_rss_mib", "B RSS MiB"),
              ("slow_drops", "slow"), ("reconnects", "resumed"), ("stream_errors", "errs"), ("ok", "ok")])
    targets.append(("PostgreSQL: every stream every change, in order, once", row["ok"]))
    lag99 = row["lag_commit_p99_ms"]
    targets.append((f"PostgreSQL: cross-replica lag p99 {lag99} ms <= 100", lag99 is not None and lag99 <= 100))
    bl.json_line({"phase": "postgres", **row})


def phase_idle(args, targets):
    vkv = bl.start_vkv(args.vkv, *args.vkv_flags, nice=args.nice)
    try:
        start = bl.vkv_revision(vkv)
        busy = bl.machine_busy()
        t0 = time.time()
        readers = Readers("vkv", vkv.port, args.idle, args.readers, start)
        failed = readers.wait_ready(300)
        opened = time.time() - t0
        time.sleep(2)
        status = bl.proc_status(vkv.pid)
        cpu0 = bl.cpu_seconds(vkv.pid)
        time.sleep(5)
        idle_cpu = bl.cpu_seconds(vkv.pid) - cpu0
        open_streams = bl.metric(vkv, "vkv_feed_streams")
        t1 = time.time()
        st, _ = bl.request(vkv, "POST", f"/put/{PREFIX}k0", {"value": {"t": int(t1 * 1e6)}})
        res = readers.finish(bl.vkv_revision(vkv), 60)
        row = {
            "streams": args.idle, "opened_in_s": round(opened, 2),
            "open_per_metrics": open_streams, "threads": status["Threads"],
            "rss_mib": round(status["VmRSS"] / MIB, 1),
            "cpu_s_over_5s_idle": round(idle_cpu, 2),
            "one_put_reached_all_in_ms": ms(res["last_event_at"] - t1) if res["events"] else None,
            "received": res["events"], "stream_errors": res["error_count"] + failed,
            "refused_then_retried": res["refused"], "reconnects": res["reconnects"],
            "machine_busy_before_pct": busy,
        }
        row["ok"] = st == 200 and res["events"] == args.idle and row["stream_errors"] == 0
        for e in res["errors"] + res["behind"]:
            print(f"  idle: {e}", file=sys.stderr)
    finally:
        vkv.stop()
    bl.table(f"idle: {args.idle} SSE streams", [row],
             [("streams", "streams"), ("opened_in_s", "opened s"), ("threads", "threads"),
              ("rss_mib", "RSS MiB"), ("cpu_s_over_5s_idle", "CPU s/5s"),
              ("one_put_reached_all_in_ms", "1 put to all ms"), ("received", "received"),
              ("refused_then_retried", "503 retried"),
              ("stream_errors", "errs"), ("ok", "ok")])
    targets.append((f"idle: {args.idle} streams all live", row["ok"]))
    targets.append((f"idle: {row['threads']} threads <= 16", row["threads"] <= 16))
    targets.append((f"idle: RSS {row['rss_mib']} MiB <= 64", row["rss_mib"] <= 64))
    bl.json_line({"phase": "idle", **row})


def preload(vkv, changes, prefix="c/"):
    batches = changes // 1000

    def load(lo, hi):
        c = vkv.conn()
        for b in range(lo, hi):
            puts = [{"key": f"{prefix}{b % 100}/{i}", "value": {"b": b, "i": i}} for i in range(1000)]
            st, body = bl.request(vkv, "POST", "/batch", {"puts": puts}, conn=c)
            if st != 200:
                bl.die(f"/batch answered {st}: {body}")
    step = (batches + 3) // 4
    threads = [threading.Thread(target=load, args=(i * step, min(batches, (i + 1) * step)))
               for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return batches * 1000


def read_ndjson(vkv, prefix, total, drops):
    """Reads `total` changes from the NDJSON stream; a drop as a slow reader
    resumes after the revision it names (counted in `drops`)."""
    seen, after = 0, 0
    while seen < total:
        c = vkv.conn(timeout=60)
        c.request("GET", f"/changes?prefix={prefix}&after={after}",
                  headers={"Accept": "application/x-ndjson"})
        r = c.getresponse()
        if r.status != 200:
            bl.die(f"NDJSON feed answered {r.status}")
        pending, dropped = b"", False
        while seen < total and not dropped:
            data = r.read1(1 << 20)
            if not data:
                bl.die(f"the NDJSON stream ended after {seen} changes")
            block = pending + data
            cut = block.rfind(b"\n")
            block, pending = block[:cut + 1], block[cut + 1:]
            if b'"detail"' in block:
                m = re.search(rb'^\{"detail":"the reader fell too far behind[^\n]*"revision":(\d+)\}$',
                              block, re.M)
                if not m:
                    bl.die(f"the NDJSON stream ended: {block[-300:]!r}")
                block = block[:m.start()]
                drops.append(int(m.group(1)))
                dropped = True
            seen += block.count(b'"key":')
            revs = re.findall(rb'^\{"revision":(\d+)', block, re.M)
            if revs:
                rev = int(revs[-1])
                if rev < after:
                    bl.die("NDJSON revisions went back")
                after = rev
            if dropped:
                after = drops[-1]
        c.close()
    return seen


def read_pages(vkv, prefix, total, drops):
    """Reads `total` changes as pages of 1,000 on one keep-alive connection.
    The pages are counted and followed by `next_after`, not parsed whole
    (what a client does with the changes is not the feed's cost)."""
    c = vkv.conn(timeout=60)
    after, seen = 0, 0
    while seen < total:
        c.request("GET", f"/changes?prefix={prefix}&after={after}&limit=1000")
        r = c.getresponse()
        page = r.read()
        if r.status != 200:
            bl.die(f"/changes answered {r.status}: {page[:300]!r}")
        n = page.count(b'"key":')
        if not n:
            break
        seen += n
        after = int(re.search(rb'"next_after":(\d+)', page[-200:]).group(1))
    c.close()
    return seen


def phase_catchup(args, targets):
    vkv = bl.start_vkv(args.vkv, *args.vkv_flags, nice=args.nice)
    rows = []
    try:
        t0 = time.time()
        n = preload(vkv, args.changes)
        loaded = time.time() - t0
        for mode, read in (("ndjson", read_ndjson), ("pages of 1000", read_pages)):
            busy = bl.machine_busy()
            cpu0 = bl.cpu_seconds(vkv.pid)
            t0 = time.time()
            drops = []
            seen = read(vkv, "c/", n, drops)
            took = time.time() - t0
            rows.append({"mode": mode, "changes": seen, "seconds": round(took, 2), "slow_drops": len(drops),
                         "changes_per_s": round(seen / took), "vkv_cpu_s": round(bl.cpu_seconds(vkv.pid) - cpu0, 2),
                         "preload_s": round(loaded, 1), "machine_busy_before_pct": busy,
                         "ok": seen == n})
    finally:
        vkv.stop()
    bl.table(f"catch-up: {args.changes:,} changes (preloaded with /batch, 1,000 a batch)", rows,
             [("mode", "mode"), ("changes", "changes"), ("seconds", "seconds"),
              ("changes_per_s", "changes/s"), ("slow_drops", "drops"), ("vkv_cpu_s", "vkv CPU s"),
              ("preload_s", "preload s"),
              ("ok", "ok")])
    for r in rows:
        targets.append((f"catch-up ({r['mode']}): {r['seconds']} s <= 5 for {r['changes']:,}",
                        r["ok"] and r["seconds"] <= 5))
        bl.json_line({"phase": "catchup", **r})


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vkv", default=os.environ.get("VKV_BIN", "target/release/vkv"))
    ap.add_argument("--only", default=os.environ.get("PHASES", "fanout,etcd,idle,catchup"),
                    help="phases, comma-separated (etcd runs with fanout)")
    ap.add_argument("--streams", type=int, default=int(os.environ.get("STREAMS", 1000)))
    ap.add_argument("--idle", type=int, default=int(os.environ.get("IDLE", 10000)))
    ap.add_argument("--changes", type=int, default=int(os.environ.get("CHANGES", 1_000_000)))
    ap.add_argument("--duration", type=int, default=int(os.environ.get("DURATION", 10)))
    ap.add_argument("--drain", type=int, default=60, help="seconds the streams may take to catch up")
    ap.add_argument("--readers", type=int, default=int(os.environ.get("READERS", 2)))
    ap.add_argument("--nice", type=int, default=int(os.environ.get("NICE", 0)))
    args = ap.parse_args()
    args.only = args.only.split(",")
    if not os.access(args.vkv, os.X_OK):
        bl.die(f"{args.vkv} is not an executable: cargo build --release")
    bl.need_wrk()
    # Sockets: the readers' share and the server's, plus room.
    want = max(args.streams, args.idle) + 1024
    bl.raise_nofile(want + 1024)
    args.vkv_flags = ["--max-watchers", str(want), "--max-connections", str(want)]
    targets = []
    print(f"== bench-feed: {os.cpu_count()} CPUs, machine {bl.machine_busy()}% busy before the start, "
          f"vkv flags: {' '.join(args.vkv_flags)}")
    if "fanout" in args.only:
        phase_fanout(args, targets)
    if "idle" in args.only:
        phase_idle(args, targets)
    if "catchup" in args.only:
        phase_catchup(args, targets)
    if "postgres" in args.only:
        phase_postgres(args, targets)
    print("\n== targets")
    for what, ok in targets:
        print(f"  {'ok  ' if ok else 'MISS'} {what}")
    bl.json_line({"phase": "targets", "all_met": all(ok for _, ok in targets),
                  "targets": [{"target": w, "met": ok} for w, ok in targets]})
    sys.exit(0 if all(ok for _, ok in targets) else 1)


if __name__ == "__main__":
    main()
