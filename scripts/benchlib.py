"""What the Python benchmarks share: starting vkv and etcd on free ports,
and a throw-away PostgreSQL cluster with one database (scripts/pg-cluster.sh);
driving wrk, reading a process's CPU, memory and threads from /proc, and
printing figures as a table and JSON lines. Standard library only.

Used by scripts/bench-feed.py and scripts/bench-lease.py; not a program.
"""

import base64
import contextlib
import http.client
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")


def die(msg):
    sys.exit(f"error: {msg}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raise_nofile(want):
    """Raises this process's open-files limit to `want` (root may raise the
    hard limit too); what it is afterwards. Children inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= want:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(want, hard)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def b64(s):
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def prefix_end(prefix):
    """etcd's range_end for every key starting with `prefix`."""
    p = bytearray(prefix.encode())
    p[-1] += 1
    return bytes(p)


class Server:
    """A server process on 127.0.0.1:port with a temporary data directory,
    removed at stop."""

    def __init__(self, name, proc, port, datadir):
        self.name, self.proc, self.port, self.datadir = name, proc, port, datadir
        self.host = "127.0.0.1"
        self.url = f"http://127.0.0.1:{port}"

    @property
    def pid(self):
        return self.proc.pid

    def conn(self, timeout=60):
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.datadir, ignore_errors=True)


def wait_health(server, path="/health", seconds=30):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if server.proc.poll() is not None:
            die(f"{server.name} exited with {server.proc.returncode} at start")
        try:
            c = server.conn(timeout=1)
            c.request("GET", path)
            r = c.getresponse()
            r.read()
            c.close()
            if r.status == 200:
                return server
        except OSError:
            pass
        time.sleep(0.05)
    server.stop()
    die(f"{server.name} did not answer {path} within {seconds} s")


def start_vkv(binary, *flags, nice=0, db=None):
    """A release vkv on a fresh SQLite file (or the database `db`, a
    PostgreSQL URL), --log-level warn, a free port, and extra `flags`."""
    d = tempfile.mkdtemp(prefix="bench-vkv-")
    port = free_port()
    cmd = [binary, "--bind", f"127.0.0.1:{port}", "--db", db or os.path.join(d, "kv.db"),
           "--log-level", "warn", *flags]
    proc = subprocess.Popen(["nice", "-n", str(nice), *cmd] if nice else cmd)
    return wait_health(Server("vkv", proc, port, d))


def start_etcd(binary="/usr/bin/etcd", nice=0):
    """A one-member etcd (Debian's etcd-server) on a temporary data directory
    and free ports; its JSON gateway answers on the client URL."""
    if not shutil.which(binary):
        die(f"{binary} not found: apt-get install -y etcd-server")
    d = tempfile.mkdtemp(prefix="bench-etcd-")
    port, peer = free_port(), free_port()
    cmd = [binary, "--name", "bench", "--data-dir", os.path.join(d, "data"),
           "--listen-client-urls", f"http://127.0.0.1:{port}",
           "--advertise-client-urls", f"http://127.0.0.1:{port}",
           "--listen-peer-urls", f"http://127.0.0.1:{peer}",
           "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
           "--initial-cluster", f"bench=http://127.0.0.1:{peer}",
           "--log-level", "error", "--logger", "zap"]
    proc = subprocess.Popen(["nice", "-n", str(nice), *cmd] if nice else cmd,
                            stdout=subprocess.DEVNULL, stderr=open(os.path.join(d, "log"), "w"))
    return wait_health(Server("etcd", proc, port, d))


class PgDatabase:
    """One database `url` on a throw-away cluster in `dir`."""

    def __init__(self, url, cluster_dir):
        self.url, self.dir = url, cluster_dir

    def cpu_seconds(self):
        """CPU seconds of the whole cluster: the postmaster, every live
        process it started (backends, checkpointer, WAL writer, autovacuum),
        and those it has reaped."""
        with open(os.path.join(self.dir, "data", "postmaster.pid")) as f:
            postmaster = int(f.readline())
        total = cpu_seconds(postmaster, reaped=True)
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rpartition(")")[2].split()
            except OSError:  # ended meanwhile: counted among the reaped
                continue
            if int(fields[1]) == postmaster:
                total += (int(fields[11]) + int(fields[12])) / CLK_TCK
        return total


@contextlib.contextmanager
def pg_database(name):
    """A throw-away PostgreSQL cluster (scripts/pg-cluster.sh, in a temporary
    directory) with a fresh database `name`_PID: yields its PgDatabase, and
    stops and removes the cluster at the end. Needs Debian's postgresql."""
    cluster_dir = tempfile.mkdtemp(prefix="bench-pg-")
    os.chmod(cluster_dir, 0o755)
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pg-cluster.sh")
    try:
        started = subprocess.run([script, "start", cluster_dir], capture_output=True, text=True, check=False)
        if started.returncode != 0:
            die(f"scripts/pg-cluster.sh start failed: {started.stderr.strip()}")
        admin = started.stdout.strip()
        db = f"{name}_{os.getpid()}"
        subprocess.run(["psql", admin, "-XAtq", "-c", f"CREATE DATABASE {db}"], check=True)
        yield PgDatabase(f"{admin.split('?')[0].rsplit('/', 1)[0]}/{db}", cluster_dir)
    finally:
        subprocess.run([script, "stop", cluster_dir], check=False, capture_output=True)
        shutil.rmtree(cluster_dir, ignore_errors=True)


def request(server, method, path, body=None, headers=None, conn=None):
    """(status, parsed JSON body or None) of one request; `body` a dict is
    sent as JSON."""
    c = conn or server.conn()
    data = json.dumps(body) if isinstance(body, (dict, list)) else body
    h = {"Content-Type": "application/json"} if data is not None else {}
    h.update(headers or {})
    c.request(method, path, data, h)
    r = c.getresponse()
    raw = r.read()
    if conn is None:
        c.close()
    try:
        return r.status, json.loads(raw) if raw else None
    except ValueError:
        return r.status, raw


def etcd_revision(server):
    status, body = request(server, "POST", "/v3/kv/range", {"key": b64("\0")})
    if status != 200:
        die(f"etcd /v3/kv/range answered {status}: {body}")
    return int(body["header"]["revision"])


def vkv_revision(server):
    status, body = request(server, "GET", "/db/stats")
    if status != 200:
        die(f"vkv /db/stats answered {status}: {body}")
    return int(body["revision"])


def metric(server, name):
    """The value of a series of vkv's /metrics (by its full name, labels
    included), or None."""
    c = server.conn()
    c.request("GET", "/metrics")
    text = c.getresponse().read().decode()
    c.close()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


# ----------------------------------------------------------- /proc figures ---

def proc_status(pid):
    """VmRSS and VmHWM in KiB and the thread count of `pid`."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0])
            elif k == "Threads":
                out[k] = int(v)
    return out


def cpu_seconds(pid, reaped=False):
    """User + system CPU time of `pid` (all its threads), in seconds; with
    `reaped`, also that of the children it has waited for."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    ticks = int(fields[11]) + int(fields[12])
    if reaped:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / CLK_TCK


def tree_cpu_seconds(pid):
    """CPU seconds of `pid` and its direct children (etcd is one process;
    `nice` execs into the server, so this is the server itself)."""
    total = cpu_seconds(pid)
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                for child in f.read().split():
                    total += cpu_seconds(int(child))
    except OSError:
        pass
    return total


def machine_busy(seconds=0.5):
    """How busy the CPUs were (percent, all processes) over `seconds`."""
    def sample():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:9]]
        return sum(v), v[3] + v[4]
    t0, i0 = sample()
    time.sleep(seconds)
    t1, i1 = sample()
    return round(100 * ((t1 - t0) - (i1 - i0)) / max(1, t1 - t0))


class Sampler:
    """Peak RSS and threads of a process, sampled by `poll()` calls."""

    def __init__(self, pid):
        self.pid, self.rss_kb, self.threads = pid, 0, 0

    def poll(self):
        s = proc_status(self.pid)
        self.rss_kb = max(self.rss_kb, s.get("VmRSS", 0))
        self.threads = max(self.threads, s.get("Threads", 0))


def percentile(values, p):
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, int(len(v) * p / 100))]


# -------------------------------------------------------------------- wrk ---

# wrk's Lua is LuaJIT: `now_us()` reads the wall clock through its FFI, so a
# request can carry the time it was sent.
LUA_CLOCK = """
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_usec; } bench_timeval;
int gettimeofday(bench_timeval *tv, void *tz);
]]
local bench_tv = ffi.new("bench_timeval")
function now_us()
  ffi.C.gettimeofday(bench_tv, nil)
  return tonumber(bench_tv.tv_sec) * 1000000 + tonumber(bench_tv.tv_usec)
end
"""

LUA_BASE64 = """
local b64chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
function base64(data)
  return ((data:gsub(".", function(x)
    local r, b = "", x:byte()
    for i = 8, 1, -1 do r = r .. (b % 2 ^ i - b % 2 ^ (i - 1) > 0 and "1" or "0") end
    return r
  end) .. "0000"):gsub("%d%d%d?%d?%d?%d?", function(x)
    if #x < 6 then return "" end
    local c = 0
    for i = 1, 6 do c = c + (x:sub(i, i) == "1" and 2 ^ (6 - i) or 0) end
    return b64chars:sub(c + 1, c + 1)
  end) .. ({ "", "==", "=" })[#data % 3 + 1])
end
"""

LUA_DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %d %d %d %d %d %d %d\\n",
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write,
    e.timeout, latency:percentile(50), latency:percentile(99), latency.max))
end
"""


def wrk(url, lua, duration, connections=32, nice=0, timeout="5s"):
    """Runs `wrk -t1 -cN` with the Lua script `lua` (LUA_DONE appended)
    against `url`; its figures as a dict. Fails on a missing RESULT."""
    fd, path = tempfile.mkstemp(suffix=".lua", prefix="bench-")
    with os.fdopen(fd, "w") as f:
        f.write(lua + LUA_DONE)
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--timeout", timeout,
           "--latency", "-s", path, url]
    if nice:
        cmd = ["nice", "-n", str(nice), *cmd]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    finally:
        os.unlink(path)
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            n, dur, st, co, rd, wr, to, p50, p99, mx = (int(x) for x in line.split()[1:])
            return {"requests": n, "rps": round(n / (dur / 1e6), 1), "p50_ms": p50 / 1e3,
                    "p99_ms": p99 / 1e3, "max_ms": mx / 1e3, "non_2xx": st,
                    "socket_errors": co + rd + wr + to}
    die(f"wrk failed (exit {out.returncode}): {out.stdout}{out.stderr}")


def need_wrk():
    if not shutil.which("wrk"):
        die("wrk not found: apt-get install -y wrk")


# ----------------------------------------------------------------- output ---

def table(title, rows, columns):
    """Prints `rows` (dicts) under `title` with `columns` [(key, header)]."""
    print(f"\n== {title}")
    cells = [[h for _, h in columns]]
    for r in rows:
        cells.append(["-" if r.get(k) is None else
                      (f"{r[k]:,.1f}" if isinstance(r[k], float) else str(r[k]))
                      for k, _ in columns])
    widths = [max(len(c[i]) for c in cells) for i in range(len(columns))]
    for c in cells:
        print("  ".join(x.rjust(w) if i else x.ljust(w) for i, (x, w) in enumerate(zip(c, widths))))


def json_line(record):
    print(json.dumps(record, sort_keys=False), flush=True)
