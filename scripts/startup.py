#!/usr/bin/env python3
"""Start-up time: process start to the first 200 on /health, median of 10.

    scripts/startup.py [BINARY]        # default target/release/vkv

Each run starts vkv on a fresh database and a free port, then polls
GET /health over a raw socket (no client process to spawn) until it
answers 200.
"""
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

binary = sys.argv[1] if len(sys.argv) > 1 else "target/release/vkv"
times = []
for _ in range(10):
    with socket.socket() as s:  # a free port
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        p = subprocess.Popen([binary, "--bind", f"127.0.0.1:{port}",
                              "--db", os.path.join(d, "kv.db"), "--log-level", "warn"])
        try:
            while True:
                if p.poll() is not None:
                    sys.exit(f"vkv exited with {p.returncode}")
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=1) as c:
                        c.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                        if c.recv(64).startswith(b"HTTP/1.1 200"):
                            break
                except OSError:
                    time.sleep(0.0005)
            times.append((time.perf_counter() - t0) * 1000)
        finally:
            p.terminate()
            p.wait()
print("start-up to first 200 on /health: median %.1f ms (min %.1f, max %.1f, 10 runs)"
      % (statistics.median(times), min(times), max(times)))
