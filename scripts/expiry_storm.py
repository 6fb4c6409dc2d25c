#!/usr/bin/env python3
"""An expiry storm: 100,000 keys written with ttl=5s within a second, and an
unrelated writer's puts meanwhile; then the same writer alone.

    scripts/expiry_storm.py [BINARY]        # default target/release/vkv

Prints how long after its deadline each key expired (the server's
vkv_expiry_lag_seconds histogram), and the writer's throughput and
latency with the storm and without it. Each run starts vkv on a fresh
database and a free port.
"""
import http.client
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time

binary = sys.argv[1] if len(sys.argv) > 1 else "target/release/vkv"
KEYS, PER_BATCH, LOADERS = 100_000, 1000, 4


def start():
    d = tempfile.mkdtemp()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = subprocess.Popen(
        [binary, "--bind", f"127.0.0.1:{port}", "--db", os.path.join(d, "kv.db"),
         "--log-level", "warn"])
    for _ in range(200):
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            c.request("GET", "/health")
            if c.getresponse().status == 200:
                return p, "127.0.0.1", port
        except OSError:
            pass
        time.sleep(0.05)
    sys.exit("vkv did not start")


def post(c, path, body):
    c.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    r = c.getresponse()
    return r.status, r.read()


def writer(host, port, stop, lat):
    c = http.client.HTTPConnection(host, port, timeout=60)
    i = 0
    while not stop.is_set():
        t = time.time()
        status, _ = post(c, "/put/other", {"value": i})
        assert status == 200
        lat.append(time.time() - t)
        i += 1


def summary(name, lat, seconds):
    lat = sorted(lat)
    print(f"{name}: {len(lat) / seconds:.0f} puts/s, p50 {lat[len(lat) // 2] * 1e3:.1f} ms, "
          f"p99 {lat[int(len(lat) * 0.99)] * 1e3:.1f} ms")


def storm():
    p, host, port = start()
    c = http.client.HTTPConnection(host, port, timeout=60)
    batches = KEYS // PER_BATCH

    def load(lo, hi):
        lc = http.client.HTTPConnection(host, port, timeout=60)
        for b in range(lo, hi):
            puts = [{"key": f"storm/{b}/{i}", "value": i, "ttl": "5s"} for i in range(PER_BATCH)]
            status, body = post(lc, "/batch", {"puts": puts})
            assert status == 200, body

    t0 = time.time()
    step = batches // LOADERS
    loaders = [threading.Thread(target=load, args=(i * step, (i + 1) * step)) for i in range(LOADERS)]
    for t in loaders:
        t.start()
    for t in loaders:
        t.join()
    print(f"wrote {KEYS} keys with ttl=5s in {time.time() - t0:.2f} s")
    # The writer runs from the first deadline until every key expired.
    while time.time() < t0 + 5:
        time.sleep(0.01)
    stop, lat = threading.Event(), []
    w = threading.Thread(target=writer, args=(host, port, stop, lat))
    started = time.time()
    w.start()
    while True:
        c.request("GET", "/metrics")
        metrics = c.getresponse().read().decode()
        done = float(re.search(r"^vkv_expirations_total (\S+)", metrics, re.M).group(1))
        if done >= KEYS:
            break
        time.sleep(0.05)
    stop.set()
    w.join()
    seconds = time.time() - started
    print(f"every key expired {time.time() - t0 - 5:.2f} s after the first deadline")
    for line in metrics.splitlines():
        if line.startswith("vkv_expiry_lag_seconds_bucket"):
            print(line)
    summary("writer during the storm", lat, seconds)
    p.terminate()
    p.wait()
    return seconds


def alone(seconds):
    p, host, port = start()
    stop, lat = threading.Event(), []
    w = threading.Thread(target=writer, args=(host, port, stop, lat))
    w.start()
    time.sleep(seconds)
    stop.set()
    w.join()
    summary("writer alone", lat, seconds)
    p.terminate()
    p.wait()


alone(max(storm(), 1.0))
