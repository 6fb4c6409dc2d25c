#!/usr/bin/env python3
"""RSS of a vkv process around large values (issue 9 item 8).

Starts VKV (default target/release/vkv) on a fresh database, puts N values
of about SIZE bytes (default 300 x 1,000,000) over CLIENTS keep-alive
connections, reads every key back over the same connections, then idles.
Prints RSS (VmRSS, MiB) at start, after the puts, after the reads, the peak
(VmHWM), and after IDLE seconds, as one JSON line.

  scripts/rss_large_values.py [--vkv PATH] [--n 300] [--size 1000000]
      [--clients 8] [--idle 10] [-- extra vkv flags]
"""
import argparse, http.client, json, os, re, subprocess, sys, tempfile, threading, time

def status_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0

def mib(pid, field="VmRSS"):
    return round(status_kib(pid, field) / 1024, 1)

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vkv", default="target/release/vkv")
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--size", type=int, default=1_000_000)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--idle", type=float, default=10)
    ap.add_argument("extra", nargs="*")
    a = ap.parse_args()
    d = tempfile.mkdtemp()
    log = open(os.path.join(d, "log"), "w+")
    p = subprocess.Popen([a.vkv, "--bind", "127.0.0.1:0", "--db", os.path.join(d, "kv.db"),
                          *a.extra],
                         stderr=log, env={k: v for k, v in os.environ.items()})
    addr = None
    for _ in range(500):
        log.seek(0)
        m = re.search(r"listening on (\S+)", log.read())
        if m:
            addr = m.group(1); break
        time.sleep(0.02)
    if not addr:
        sys.exit("vkv did not start")
    host, port = addr.rsplit(":", 1)
    out = {"start": mib(p.pid)}
    body = json.dumps({"value": "x" * (a.size - 2)}).encode()
    def work(t, what):
        c = http.client.HTTPConnection(host, int(port), timeout=60)
        for i in range(t, a.n, a.clients):
            if what == "put":
                c.request("POST", f"/put/k{i}", body, {"Content-Type": "application/json"})
            else:
                c.request("GET", f"/get/k{i}")
            r = c.getresponse(); r.read()
            if r.status != 200:
                sys.exit(f"{what} k{i}: {r.status}")
    for what in ["put", "get"]:
        th = [threading.Thread(target=work, args=(t, what)) for t in range(a.clients)]
        [x.start() for x in th]; [x.join() for x in th]
        out["after_" + what + "s"] = mib(p.pid)
    c = http.client.HTTPConnection(host, int(port)); c.request("GET", "/cache/stats")
    out["cache"] = json.loads(c.getresponse().read())
    out["peak"] = mib(p.pid, "VmHWM")
    time.sleep(a.idle)
    out[f"idle_{a.idle:g}s"] = mib(p.pid)
    p.terminate(); p.wait()
    print(json.dumps(out))

main()
