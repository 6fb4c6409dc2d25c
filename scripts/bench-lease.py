#!/usr/bin/env python3
"""Leases under load (issue 23's targets), against etcd 3.4 in the same run.

    scripts/bench-lease.py [--vkv target/release/vkv] [--only keepalive,rates,expiry,postgres]

- keepalive: LEASES leases (TTL 30 s, enough for granting them all
  on a busy machine; one key attached to each) kept alive
  once a second each for SECONDS s over CONNECTIONS keep-alive
  connections (one selector loop): every keepalive must answer 200 and no
  lease or key may expire; vkv's CPU over the run, in cores.
- rates: lease grants (`POST /leases`, etcd `POST /v3/lease/grant`) and
  keepalives (`POST /leases/{id}/keepalive`, etcd `POST
  /v3/lease/keepalive`, over 1,000 leases) per second, `wrk -t1 -c32` for
  DURATION s each.
- expiry: EXPIRING leases with a TTL of 5 s, one key each, granted at once;
  one watch on their prefix (vkv: the change feed as Server-Sent Events;
  etcd: `POST /v3/watch`) receives each key's end: the lag from each
  lease's deadline (its grant sent + TTL) to that event, p50/p99/max; a
  key that ends more than 1 ms (vkv's deadline granularity) before that
  deadline counts as early (a failure).
- postgres (only when asked for): two replicas on one database of a
  throw-away PostgreSQL cluster (scripts/pg-cluster.sh; --vkv a binary
  built with --features postgres). PG_LEASES leases (TTL 30 s, one key
  each), half granted through each replica, kept alive once a second each
  for SECONDS s over CONNECTIONS connections, half to each replica; each
  lease's keepalives alternate replicas. Every keepalive must answer 200,
  no lease or key may expire, and at the end every key must be readable
  on both replicas with an expires_at in the future; CPU over the run, in
  cores, of each replica, of both, and of PostgreSQL (all its processes);
  keepalive latency.

vkv and etcd each start fresh (a release vkv on a fresh SQLite file or
database, Debian's etcd on a temporary data directory), on free ports;
everything, wrk, PostgreSQL and this script included, shares the
machine's cores.

Prints a table per phase and JSON lines; exits 1 if a check or a target
fails (targets: no lease expires and vkv uses <= 0.5 core while keeping
LEASES alive, and the two replicas together while keeping PG_LEASES
alive; grants/s and keepalives/s >= 2x etcd's; expiry lag p99 no worse
than etcd's). Standard library only; needs wrk and /usr/bin/etcd, and
Debian's postgresql for `postgres`.
"""

import argparse
import base64
import datetime
import json
import os
import re
import selectors
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl  # noqa: E402


# -------------------------------------------------------------- keepalive ---

class KeepAliveConn:
    """One keep-alive connection sending a round's keepalives one after
    another."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setblocking(False)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.leases, self.next, self.buf = [], 0, b""
        self.ok = self.failed = 0
        self.latencies, self.sent_at = [], 0.0
        self.failures = []

    def busy(self):
        return self.next < len(self.leases)

    def start_round(self, leases):
        """Starts a round over `leases` unless the last is still going;
        whether it did."""
        if self.busy():
            return False
        self.leases, self.next = leases, 0
        if leases:
            self.send()
        return True

    def send(self):
        lease = self.leases[self.next]
        self.sent_at = time.time()
        self.sock.sendall(f"POST /leases/{lease}/keepalive HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                          "Content-Length: 0\r\n\r\n".encode())

    def readable(self):
        data = self.sock.recv(65536)
        if not data:
            raise RuntimeError("the server closed a keepalive connection")
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end]
            m = re.search(rb"(?i)content-length: *(\d+)", head)
            length = int(m.group(1)) if m else 0
            if len(self.buf) < end + 4 + length:
                return
            body = self.buf[end + 4:end + 4 + length]
            self.buf = self.buf[end + 4 + length:]
            self.latencies.append(time.time() - self.sent_at)
            if head.startswith(b"HTTP/1.1 200"):
                self.ok += 1
            else:
                self.failed += 1
                if len(self.failures) < 3:
                    self.failures.append(f"{head.split(b' ', 2)[1].decode()} {body[:200].decode()}")
            self.next += 1
            if self.next < len(self.leases):
                self.send()


def keep_alive(conns, schedule, seconds):
    """Starts a round of keepalives once a second for `seconds` s, round r
    being `schedule(r)`'s [(connection, leases)] (one still busy with its
    last round skips this one: late), then waits up to 10 s for the last
    answers. (elapsed seconds, late rounds, keepalives left unanswered)."""
    sel = selectors.DefaultSelector()
    for c in conns:
        sel.register(c.sock, selectors.EVENT_READ, c)
    start = time.time()
    late, next_round, r = 0, start, 0
    while time.time() < start + seconds:
        if time.time() >= next_round:
            for c, leases in schedule(r):
                if not c.start_round(leases):
                    late += 1
            r += 1
            next_round += 1.0
        for key, _ in sel.select(max(0.0, min(0.05, next_round - time.time()))):
            key.data.readable()
    # The last round's answers.
    deadline = time.time() + 10
    while any(c.busy() for c in conns) and time.time() < deadline:
        for key, _ in sel.select(0.05):
            key.data.readable()
    elapsed = time.time() - start
    sel.close()
    return elapsed, late, sum(len(c.leases) - c.next for c in conns)


def grant_leases(server, n, ttl, key_prefix):
    """n leases with one key each, attached 1,000 at a time right after
    their grants (one /batch); their ids."""
    c = server.conn()
    ids = []
    for lo in range(0, n, 1000):
        chunk = []
        for _ in range(lo, min(n, lo + 1000)):
            st, body = bl.request(server, "POST", "/leases", {"ttl": ttl}, conn=c)
            if st != 201:
                bl.die(f"POST /leases answered {st}: {body}")
            chunk.append(body["id"])
        puts = [{"key": f"{key_prefix}{lo + i}", "value": lo + i, "lease": lease}
                for i, lease in enumerate(chunk)]
        st, body = bl.request(server, "POST", "/batch", {"puts": puts}, conn=c)
        if st != 200:
            bl.die(f"/batch answered {st}: {body}")
        ids += chunk
    c.close()
    return ids


def phase_keepalive(args, targets):
    vkv = bl.start_vkv(args.vkv, nice=args.nice)
    try:
        t0 = time.time()
        ids = grant_leases(vkv, args.leases, "30s", "ka/")
        granted_in = time.time() - t0
        conns = [KeepAliveConn(vkv.port) for _ in range(args.connections)]
        shares = [(c, ids[i::args.connections]) for i, c in enumerate(conns)]
        busy = bl.machine_busy()
        expired0 = bl.metric(vkv, "vkv_expirations_total") or 0
        cpu0 = bl.cpu_seconds(vkv.pid)
        elapsed, late_rounds, _ = keep_alive(conns, lambda r: shares, args.seconds)
        cpu = bl.cpu_seconds(vkv.pid) - cpu0
        expired = (bl.metric(vkv, "vkv_expirations_total") or 0) - expired0
        live = bl.metric(vkv, "vkv_leases")
        status = bl.proc_status(vkv.pid)
        lat = [x for c in conns for x in c.latencies]
        ok = sum(c.ok for c in conns)
        failed = sum(c.failed for c in conns)
        for f in [f for c in conns for f in c.failures][:5]:
            print(f"  keepalive failed: {f}", file=sys.stderr)
        for c in conns:
            c.sock.close()
        row = {"leases": args.leases, "seconds": round(elapsed, 1), "connections": args.connections,
               "keepalives_ok": ok, "keepalives_failed": failed,
               "keepalives_per_s": round(ok / elapsed), "late_rounds": late_rounds,
               "p50_ms": round(bl.percentile(lat, 50) * 1e3, 2), "p99_ms": round(bl.percentile(lat, 99) * 1e3, 2),
               "expired_keys": int(expired), "leases_live_at_end": live,
               "vkv_cpu_cores": round(cpu / elapsed, 3), "rss_mib": round(status["VmRSS"] / 1024, 1),
               "threads": status["Threads"], "granted_in_s": round(granted_in, 1),
               "machine_busy_before_pct": busy}
    finally:
        vkv.stop()
    bl.table(f"keepalive: {args.leases:,} leases (TTL 30 s, one key each) kept alive once a second "
             f"for {args.seconds} s over {args.connections} connections", [row],
             [("keepalives_ok", "ok"), ("keepalives_failed", "failed"), ("keepalives_per_s", "per s"),
              ("late_rounds", "late"), ("p50_ms", "p50 ms"), ("p99_ms", "p99 ms"),
              ("expired_keys", "expired"), ("leases_live_at_end", "live"),
              ("vkv_cpu_cores", "vkv cores"), ("rss_mib", "RSS MiB"), ("threads", "threads")])
    none_expired = (row["keepalives_failed"] == 0 and row["expired_keys"] == 0
                    and row["leases_live_at_end"] == args.leases)
    targets.append((f"keepalive: none of {args.leases:,} leases expires", none_expired))
    targets.append((f"keepalive: vkv CPU {row['vkv_cpu_cores']} cores <= 0.5", row["vkv_cpu_cores"] <= 0.5))
    bl.json_line({"phase": "keepalive", **row})


# ------------------------------------------------------------------ rates ---

VKV_GRANT = """
local headers = { ["Content-Type"] = "application/json" }
request = function()
  return wrk.format("POST", "/leases", headers, '{"ttl":"1h"}')
end
"""
ETCD_GRANT = """
local headers = { ["Content-Type"] = "application/json" }
request = function()
  return wrk.format("POST", "/v3/lease/grant", headers, '{"TTL":3600}')
end
"""


def keepalive_lua(kind, ids):
    listed = ", ".join(f'"{i}"' for i in ids)
    path = '"/leases/" .. id .. "/keepalive", {}, ""' if kind == "vkv" else \
        '"/v3/lease/keepalive", headers, \'{"ID":\' .. id .. \'}\''
    return """
local ids = { %s }
local n = 0
local headers = { ["Content-Type"] = "application/json" }
request = function()
  n = n + 1
  local id = ids[n %% #ids + 1]
  return wrk.format("POST", %s)
end
""" % (listed, path)


def grant_many(server, kind, n):
    c = server.conn()
    ids = []
    for _ in range(n):
        if kind == "vkv":
            st, body = bl.request(server, "POST", "/leases", {"ttl": "1h"}, conn=c)
            ids.append(body["id"])
        else:
            st, body = bl.request(server, "POST", "/v3/lease/grant", {"TTL": 3600}, conn=c)
            ids.append(body["ID"])
        if st not in (200, 201):
            bl.die(f"{kind} grant answered {st}: {body}")
    c.close()
    return ids


def phase_rates(args, targets):
    rows = []
    for kind in ("vkv", "etcd"):
        server = bl.start_vkv(args.vkv, nice=args.nice) if kind == "vkv" else bl.start_etcd(nice=args.nice)
        try:
            ids = grant_many(server, kind, 1000)
            for what, lua in (("grant", VKV_GRANT if kind == "vkv" else ETCD_GRANT),
                              ("keepalive", keepalive_lua(kind, ids))):
                busy = bl.machine_busy()
                cpu0 = bl.tree_cpu_seconds(server.pid)
                r = bl.wrk(server.url, lua, args.duration, nice=args.nice)
                cpu = bl.tree_cpu_seconds(server.pid) - cpu0
                rows.append({"server": kind, "operation": what, "per_s": r["rps"], "p50_ms": r["p50_ms"],
                             "p99_ms": r["p99_ms"], "errors": r["non_2xx"] + r["socket_errors"],
                             "cpu_us_per_op": round(cpu * 1e6 / max(1, r["requests"]), 1),
                             "machine_busy_before_pct": busy})
        finally:
            server.stop()
    bl.table(f"rates: wrk -t1 -c32 for {args.duration} s each (keepalives over 1,000 leases)", rows,
             [("server", "server"), ("operation", "operation"), ("per_s", "per s"), ("p50_ms", "p50 ms"),
              ("p99_ms", "p99 ms"), ("cpu_us_per_op", "CPU us/op"), ("errors", "errors")])
    by = {(r["server"], r["operation"]): r for r in rows}
    for what in ("grant", "keepalive"):
        v, e = by[("vkv", what)], by[("etcd", what)]
        ratio = round(v["per_s"] / e["per_s"], 2) if e["per_s"] else None
        targets.append((f"{what}s/s: vkv {ratio}x etcd >= 2x, no errors",
                        ratio is not None and ratio >= 2 and v["errors"] == 0 and e["errors"] == 0))
    for r in rows:
        bl.json_line({"phase": "rates", **r})


# ----------------------------------------------------------------- expiry ---

def follow(server, kind, prefix, want, seen, ready, stop):
    """Records when each key under `prefix` ends (vkv: an `expire` change;
    etcd: a DELETE event) until `want` did."""
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.settimeout(0.5)
    if kind == "vkv":
        sock.sendall(f"GET /changes?prefix={prefix}&values=false HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     "Accept: text/event-stream\r\n\r\n".encode())
        pattern = re.compile(rb'"key":"([^"]+)","version":\d+,"operation":"expire"')
    else:
        body = json.dumps({"create_request": {"key": bl.b64(prefix),
                                              "range_end": bl.b64(bl.prefix_end(prefix))}}).encode()
        sock.sendall(b"POST /v3/watch HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(body) + body)
        pattern = re.compile(rb'"type":"DELETE","kv":\{"key":"([^"]+)"')
    buf = b""
    while len(seen) < want and not stop.is_set():
        try:
            data = sock.recv(1 << 16)
        except socket.timeout:
            continue
        if not data:
            break
        now = time.time()
        buf += data
        if not ready.is_set() and (b"200 OK" in buf and (kind == "vkv" or b'"created":true' in buf)):
            ready.set()
        cut = buf.rfind(b"\n")
        block, buf = buf[:cut + 1], buf[cut + 1:]
        for key in pattern.findall(block):
            seen.setdefault(key.decode() if kind == "vkv" else base64.b64decode(key).decode(), now)
    sock.close()


def phase_expiry(args, targets):
    rows = []
    for kind in ("vkv", "etcd"):
        server = bl.start_vkv(args.vkv, nice=args.nice) if kind == "vkv" else bl.start_etcd(nice=args.nice)
        try:
            seen, ready, stop = {}, threading.Event(), threading.Event()
            t = threading.Thread(target=follow, args=(server, kind, "exp/", args.expiring, seen, ready, stop))
            t.start()
            if not ready.wait(10):
                bl.die(f"{kind}: the watch did not start")
            busy = bl.machine_busy()
            c = server.conn()
            deadline_of = {}
            for i in range(args.expiring):
                key = f"exp/{i}"
                # The deadline is at most TTL after the grant was sent: a key
                # seen ending before then ended early.
                deadline_of[key] = time.time() + 5
                if kind == "vkv":
                    st, body = bl.request(server, "POST", "/leases", {"ttl": "5s"}, conn=c)
                    lease = body["id"]
                    st, body = bl.request(server, "POST", f"/put/{key}?lease={lease}", {"value": i}, conn=c)
                else:
                    st, body = bl.request(server, "POST", "/v3/lease/grant", {"TTL": 5}, conn=c)
                    lease = body["ID"]
                    st, body = bl.request(server, "POST", "/v3/kv/put",
                                          {"key": bl.b64(key), "value": bl.b64(str(i)), "lease": lease}, conn=c)
                if st != 200:
                    bl.die(f"{kind}: put with a lease answered {st}: {body}")
            c.close()
            t.join(timeout=60)
            stop.set()
            t.join()
            lags = [seen[k] - d for k, d in deadline_of.items() if k in seen]
            # vkv keeps deadlines in whole milliseconds: up to 1 ms before
            # the client's clock is the same millisecond.
            early = sum(1 for x in lags if x < -0.001)
            rows.append({"server": kind, "leases": args.expiring, "ended": len(lags), "early": early,
                         "earliest_ms": round(min(lags) * 1e3, 2) if lags else None,
                         "lag_p50_ms": round(bl.percentile(lags, 50) * 1e3, 1) if lags else None,
                         "lag_p99_ms": round(bl.percentile(lags, 99) * 1e3, 1) if lags else None,
                         "lag_max_ms": round(max(lags) * 1e3, 1) if lags else None,
                         "machine_busy_before_pct": busy})
        finally:
            server.stop()
    bl.table(f"expiry: {args.expiring:,} leases of 5 s, one key each; lag = event received - "
             "(grant sent + 5 s)", rows,
             [("server", "server"), ("ended", "ended"), ("early", "early"), ("earliest_ms", "earliest ms"),
              ("lag_p50_ms", "p50 ms"),
              ("lag_p99_ms", "p99 ms"), ("lag_max_ms", "max ms")])
    v, e = rows
    targets.append((f"expiry: all {args.expiring:,} vkv keys ended, none early",
                    v["ended"] == args.expiring and v["early"] == 0))
    targets.append((f"expiry lag p99: vkv {v['lag_p99_ms']} ms <= etcd {e['lag_p99_ms']} ms",
                    v["lag_p99_ms"] is not None and (e["lag_p99_ms"] is None or v["lag_p99_ms"] <= e["lag_p99_ms"])))
    for r in rows:
        bl.json_line({"phase": "expiry", **r})


# --------------------------------------------------------------- postgres ---

def check_keys(replicas, keys):
    """Reads every key on every replica: (answers 200, of those with an
    expires_at in the future, the least time left in seconds); prints the
    first five that fail."""
    readable = future = 0
    least, failures = None, []
    for server in replicas:
        c = server.conn()
        for key in keys:
            st, body = bl.request(server, "GET", f"/get/{key}", conn=c)
            expires_at = body.get("expires_at") if st == 200 and isinstance(body, dict) else None
            left = None if expires_at is None else \
                datetime.datetime.fromisoformat(expires_at).timestamp() - time.time()
            readable += st == 200
            if left is not None:
                least = left if least is None else min(least, left)
            if left is not None and left > 0:
                future += 1
            else:
                failures.append(f"GET /get/{key} on :{server.port} answered {st}: {body}")
        c.close()
    for f in failures[:5]:
        print(f"  {f}", file=sys.stderr)
    return readable, future, least


def phase_postgres(args, targets):
    """PG_LEASES leases on two replicas of one PostgreSQL database, half
    granted through each; every lease's keepalives alternate replicas."""
    with bl.pg_database("leasebench") as pg:
        replicas = []
        try:
            for _ in range(2):
                replicas.append(bl.start_vkv(args.vkv, nice=args.nice, db=pg.url))
            a, b = replicas
            t0 = time.time()
            half = args.pg_leases // 2
            ids = grant_leases(a, half, "30s", "pgka/a/") + grant_leases(b, args.pg_leases - half, "30s", "pgka/b/")
            keys = [f"pgka/a/{i}" for i in range(half)] + [f"pgka/b/{i}" for i in range(args.pg_leases - half)]
            granted_in = time.time() - t0
            # Groups of leases, each with a connection to either replica;
            # round r sends group g through replica (g + r) % 2, so every
            # lease's keepalives alternate replicas, half of each round's
            # through each.
            groups = max(1, args.connections // 2)
            shares = [ids[g::groups] for g in range(groups)]
            pairs = [(KeepAliveConn(a.port), KeepAliveConn(b.port)) for _ in range(groups)]
            conns = [c for pair in pairs for c in pair]
            busy = bl.machine_busy()
            expired0 = sum(bl.metric(r, "vkv_expirations_total") or 0 for r in replicas)
            cpu0 = [bl.cpu_seconds(r.pid) for r in replicas]
            pg0 = pg.cpu_seconds()
            elapsed, late, unanswered = keep_alive(
                conns, lambda r: [(pairs[g][(g + r) % 2], shares[g]) for g in range(groups)], args.seconds)
            cpu = [bl.cpu_seconds(r.pid) - c0 for r, c0 in zip(replicas, cpu0)]
            pg_cpu = pg.cpu_seconds() - pg0
            for c in conns:
                c.sock.close()
            expired = sum(bl.metric(r, "vkv_expirations_total") or 0 for r in replicas) - expired0
            live = [None if n is None else int(n) for n in (bl.metric(r, "vkv_leases") for r in replicas)]
            readable, future, least = check_keys(replicas, keys)
            for f in [f for c in conns for f in c.failures][:5]:
                print(f"  keepalive failed: {f}", file=sys.stderr)
            lat = [x for c in conns for x in c.latencies]
            ok = sum(c.ok for c in conns)
            row = {"leases": args.pg_leases, "seconds": round(elapsed, 1), "connections": len(conns),
                   "keepalives_ok": ok, "keepalives_failed": sum(c.failed for c in conns),
                   "keepalives_unanswered": unanswered,
                   "keepalives_via_a": sum(c.ok + c.failed for pair in pairs for c in pair[:1]),
                   "keepalives_via_b": sum(c.ok + c.failed for pair in pairs for c in pair[1:]),
                   "keepalives_per_s": round(ok / elapsed), "late_rounds": late,
                   "p50_ms": round(bl.percentile(lat, 50) * 1e3, 2) if lat else None,
                   "p99_ms": round(bl.percentile(lat, 99) * 1e3, 2) if lat else None,
                   "expired_keys": int(expired), "leases_live_at_end": live,
                   "keys_readable": readable, "keys_expires_at_future": future, "keys_checked": 2 * len(keys),
                   "least_time_left_s": round(least, 1) if least is not None else None,
                   "vkv_a_cores": round(cpu[0] / elapsed, 3), "vkv_b_cores": round(cpu[1] / elapsed, 3),
                   "vkv_cores": round(sum(cpu) / elapsed, 3), "postgres_cores": round(pg_cpu / elapsed, 3),
                   "rss_mib": [round(bl.proc_status(r.pid)["VmRSS"] / 1024, 1) for r in replicas],
                   "granted_in_s": round(granted_in, 1), "machine_busy_before_pct": busy}
        finally:
            for r in replicas:
                r.stop()
    shown = {**row, **{k: f"{row[k]:.3f}" for k in ("vkv_a_cores", "vkv_b_cores", "vkv_cores", "postgres_cores")}}
    bl.table(f"PostgreSQL keepalive: {args.pg_leases:,} leases (TTL 30 s, one key each) on two replicas "
             f"(half granted through each), kept alive once a second for {args.seconds} s, each lease "
             f"alternating replicas, over {len(conns)} connections", [shown],
             [("keepalives_ok", "ok"), ("keepalives_failed", "failed"), ("keepalives_unanswered", "unanswered"),
              ("keepalives_per_s", "per s"), ("late_rounds", "late"), ("p50_ms", "p50 ms"), ("p99_ms", "p99 ms"),
              ("expired_keys", "expired"), ("keys_expires_at_future", "keys live"),
              ("vkv_a_cores", "A cores"), ("vkv_b_cores", "B cores"), ("vkv_cores", "vkv cores"),
              ("postgres_cores", "PG cores")])
    print(f"  live leases at the end (A, B): {live}; keys read on both replicas: {readable} of "
          f"{row['keys_checked']} answered 200, {future} with expires_at in the future (least left "
          f"{row['least_time_left_s']} s); keepalives via A / B: {row['keepalives_via_a']} / "
          f"{row['keepalives_via_b']}; granted in {row['granted_in_s']} s; RSS (A, B) {row['rss_mib']} MiB")
    none_expired = (row["keepalives_failed"] == 0 and unanswered == 0 and ok > 0 and row["expired_keys"] == 0
                    and live == [args.pg_leases] * 2 and readable == future == row["keys_checked"])
    targets.append((f"PostgreSQL keepalive: every keepalive 200 and none of {args.pg_leases:,} leases or keys "
                    "expires (every key readable on both replicas, expires_at in the future)", none_expired))
    targets.append((f"PostgreSQL keepalive: vkv CPU {row['vkv_cores']} cores (both replicas) <= 0.5",
                    row["vkv_cores"] <= 0.5))
    bl.json_line({"phase": "postgres", **row})


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vkv", default=os.environ.get("VKV_BIN", "target/release/vkv"))
    ap.add_argument("--only", default=os.environ.get("PHASES", "keepalive,rates,expiry"))
    ap.add_argument("--leases", type=int, default=int(os.environ.get("LEASES", 10_000)))
    ap.add_argument("--pg-leases", type=int, default=int(os.environ.get("PG_LEASES", 1000)))
    ap.add_argument("--seconds", type=int, default=int(os.environ.get("KEEPALIVE_SECONDS", 60)))
    ap.add_argument("--connections", type=int, default=int(os.environ.get("CONNECTIONS", 100)))
    ap.add_argument("--duration", type=int, default=int(os.environ.get("DURATION", 10)))
    ap.add_argument("--expiring", type=int, default=int(os.environ.get("EXPIRING", 1000)))
    ap.add_argument("--nice", type=int, default=int(os.environ.get("NICE", 0)))
    args = ap.parse_args()
    args.only = args.only.split(",")
    if not os.access(args.vkv, os.X_OK):
        bl.die(f"{args.vkv} is not an executable: cargo build --release")
    if "rates" in args.only:
        bl.need_wrk()
    targets = []
    print(f"== bench-lease: {os.cpu_count()} CPUs, machine {bl.machine_busy()}% busy before the start")
    if "keepalive" in args.only:
        phase_keepalive(args, targets)
    if "rates" in args.only:
        phase_rates(args, targets)
    if "expiry" in args.only:
        phase_expiry(args, targets)
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
