#!/usr/bin/env python3
"""What each vkv operation costs on PostgreSQL: statements (= round trips
to PostgreSQL), and CPU on each side, per operation.

    scripts/pg-costs.py [N]        # N operations of each kind (default 2000)

Starts a throw-away PostgreSQL cluster (scripts/pg-cluster.sh, with
pg_stat_statements loaded) and a release vkv built with --features postgres
on a fresh database (--cache-size 100), then for each operation runs N
requests one after another on one keep-alive connection (no concurrency,
so no group commit: the cost of one operation alone) and reports:
- statements per operation, from pg_stat_statements (BEGIN and COMMIT
  count; every statement is one round trip: vkv prepares each statement
  once per connection and sends no pipelined batches), and which ones;
- vkv CPU and PostgreSQL CPU (all of the cluster's processes) per
  operation, in microseconds, from /proc/PID/stat (10 ms ticks: N large
  enough that this is fine);
- wall time per operation (latency on this machine, client included).
Needs: python3, Debian's postgresql, cargo. Run as root (the cluster runs
as the postgres user) or as a user that can run initdb.
"""

import http.client
import json
import os
import subprocess
import sys
import tempfile
import time

N = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def children(pid):
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
        if ppid == pid:
            out.append(int(name))
    return out


def pg_cpu(postmaster):
    total = 0.0
    for p in [postmaster] + children(postmaster):
        try:
            total += cpu_seconds(p)
        except OSError:
            pass
    return total


def psql(url, sql):
    return subprocess.run(["psql", url, "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql],
                          check=True, capture_output=True, text=True).stdout.strip()


def main():
    subprocess.run(["cargo", "build", "--release", "--features", "postgres", "--bin", "vkv"],
                   cwd=ROOT, check=True)
    pgdir = tempfile.mkdtemp(prefix="vkv-costs-pg.")
    env = dict(os.environ, PG_SERVER_OPTS="-c shared_preload_libraries=pg_stat_statements "
               "-c pg_stat_statements.track=all")
    admin = subprocess.run([f"{ROOT}/scripts/pg-cluster.sh", "start", pgdir], env=env,
                           check=True, capture_output=True, text=True).stdout.strip()
    vkv = None
    try:
        psql(admin, "CREATE EXTENSION pg_stat_statements")
        psql(admin, "CREATE DATABASE costs")
        with open(f"{pgdir}/data/postmaster.pid") as f:
            postmaster = int(f.readline())
        url = admin.rsplit("/", 1)[0] + "/costs"
        log = open(f"{pgdir}/vkv.log", "w")
        vkv = subprocess.Popen([f"{ROOT}/target/release/vkv", "--bind", "127.0.0.1:0", "--db", url,
                                "--cache-size", "100", "--log-level", "info"],
                               stderr=log)
        addr = None
        for _ in range(300):
            time.sleep(0.1)
            with open(f"{pgdir}/vkv.log") as f:
                for line in f:
                    if "listening on " in line:
                        addr = line.split("listening on ")[1].split()[0]
            if addr:
                break
        if not addr:
            sys.exit("vkv did not start: " + open(f"{pgdir}/vkv.log").read())
        host, port = addr.rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        headers = {"Content-Type": "application/json"}

        def req(method, path, body=None):
            conn.request(method, path, body=body, headers=headers)
            r = conn.getresponse()
            data = r.read()
            if r.status >= 300:
                sys.exit(f"{method} {path}: {r.status} {data[:200]!r}")
            return data

        # 2,000 keys with 3 versions: more keys than the cache holds.
        for v in range(3):
            puts = [{"key": f"k{i}", "value": {"v": v, "i": i}} for i in range(2000)]
            for chunk in range(0, 2000, 500):
                req("POST", "/batch", json.dumps({"puts": puts[chunk:chunk + 500]}))
        req("POST", "/put/hot", json.dumps({"value": "x"}))

        ops = [
            ("put (existing key, alone)", lambda i: req("POST", f"/put/k{i % 2000}", json.dumps({"value": i}))),
            ("put (new key, alone)", lambda i: req("POST", f"/put/new{i}", json.dumps({"value": i}))),
            ("batch of 10 puts", lambda i: req("POST", "/batch", json.dumps(
                {"puts": [{"key": f"b{i}-{j}", "value": j} for j in range(10)]}))),
            ("get latest, cached", lambda i: req("GET", "/get/hot")),
            ("get latest, not cached", lambda i: req("GET", f"/get/k{(i * 7) % 2000}")),
            ("get ?version=1 (old)", lambda i: req("GET", f"/get/k{(i * 7) % 2000}?version=1")),
            ("history, 3 versions", lambda i: req("GET", f"/history/k{i % 2000}?limit=10")),
            ("keys, 100 per page", lambda i: req("GET", "/keys?prefix=k1&limit=100")),
            ("delete", lambda i: req("DELETE", f"/delete/new{i}")),
            ("db/stats", lambda i: req("GET", "/db/stats")),
            ("health", lambda i: req("GET", "/health")),
        ]
        dbid = psql(admin, "SELECT oid FROM pg_database WHERE datname = 'costs'")
        rows = []
        for name, op in ops:
            op(0)  # warm: statements prepared, cache as in steady state
            psql(admin, "SELECT pg_stat_statements_reset()")
            v0, p0, t0 = cpu_seconds(vkv.pid), pg_cpu(postmaster), time.monotonic()
            for i in range(1, N + 1):
                op(i)
            t1, v1, p1 = time.monotonic(), cpu_seconds(vkv.pid), pg_cpu(postmaster)
            stats = psql(admin, "SELECT calls, regexp_replace(left(query, 70), '\\s+', ' ', 'g') "
                                f"FROM pg_stat_statements WHERE dbid = {dbid} ORDER BY calls DESC")
            calls = [(int(line.split("|", 1)[0]), line.split("|", 1)[1])
                     for line in stats.splitlines() if line]
            total = sum(c for c, _ in calls)
            rows.append((name, total / N, (v1 - v0) / N * 1e6, (p1 - p0) / N * 1e6,
                         (t1 - t0) / N * 1e3, calls))
        size = psql(url, "SELECT pg_total_relation_size('vkv_versions') + pg_total_relation_size('vkv_keys')")
        stats = json.loads(req("GET", "/db/stats"))
        print(f"\n== on disk: {int(size)} bytes for {stats['total_versions']} versions of "
              f"{stats['total_keys']} keys (tables and indexes, WAL not counted): "
              f"{int(size) / stats['total_versions']:.0f} bytes per version")
        print(f"\n== cost per operation, {N} sequential operations each, one connection")
        print(f"{'operation':28} {'statements':>10} {'vkv CPU us':>11} {'PG CPU us':>10} {'wall ms':>8}")
        for name, st, vc, pc, ms, _ in rows:
            print(f"{name:28} {st:10.2f} {vc:11.0f} {pc:10.0f} {ms:8.3f}")
        print("\n== statements behind each operation (calls per operation)")
        for name, _, _, _, _, calls in rows:
            print(f"{name}:")
            for c, q in calls:
                if c / N >= 0.01:
                    print(f"   {c / N:5.2f}  {q}")
    finally:
        if vkv:
            vkv.terminate()
            vkv.wait(timeout=20)
        subprocess.run([f"{ROOT}/scripts/pg-cluster.sh", "stop", pgdir])


if __name__ == "__main__":
    main()
