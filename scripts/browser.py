"""What the headless-Chromium scripts share: a vkv server they start (and
restart on the same port and database), and the browser.

Used by scripts/ui-browser.py and scripts/eventsource-browser.py (run with
the Python of a venv holding Selenium; see .ci/run). Needs Debian's
chromium and chromium-driver.
"""
import json
import os
import re
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

from selenium import webdriver


class Server:
    """A vkv process with its own SQLite file, first on 127.0.0.1:0; a
    restart binds the same address again and opens the same file."""

    def __init__(self, binary, tmp, name, extra=()):
        self.binary = binary
        self.extra = list(extra)
        self.db = os.path.join(tmp, name + ".db")
        self.log_path = os.path.join(tmp, name + ".log")
        self.proc = None
        self.start("127.0.0.1:0")

    def start(self, bind):
        env = {k: v for k, v in os.environ.items() if not k.startswith("VKV_")}
        # The log is kept across restarts: read only what this start wrote.
        offset = os.path.getsize(self.log_path) if os.path.exists(self.log_path) else 0
        with open(self.log_path, "a") as log:
            self.proc = subprocess.Popen(
                [self.binary, "--bind", bind, "--db", self.db, *self.extra],
                stdout=subprocess.DEVNULL, stderr=log, env=env)
        deadline = time.monotonic() + 30
        while True:
            with open(self.log_path) as f:
                f.seek(offset)
                m = re.search(r"listening on (\S+)", f.read())
            if m:
                self.base = "http://" + m.group(1)
                return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                with open(self.log_path) as f:
                    f.seek(offset)
                    raise RuntimeError("vkv did not start:\n" + f.read())
            time.sleep(0.05)

    def restart(self):
        """Stops the server (SIGTERM, a graceful stop) and starts it again
        on the same address and database file."""
        addr = self.base[len("http://"):]
        self.stop()
        self.start(addr)
        assert self.base == "http://" + addr, (self.base, addr)

    def call(self, method, path, body=None, token=None, headers=None):
        """(status, parsed JSON or None)."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if token:
            req.add_header("Authorization", "Bearer " + token)
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def put(self, key, value, token=None):
        """Writes `value`; the answer (`version`, `revision`, ...)."""
        status, body = self.call("POST", "/put/" + urllib.parse.quote(key, safe=""),
                                 {"value": value}, token)
        assert status == 200, (key, status, body)
        return body

    def delete(self, key, token=None):
        status, body = self.call("DELETE", "/delete/" + urllib.parse.quote(key, safe=""),
                                 token=token)
        assert status == 200, (key, status, body)
        return body

    def get(self, key):
        return self.call("GET", "/get/" + urllib.parse.quote(key, safe=""))

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def chromium(profile, width=1280, height=800):
    """Headless Chromium through chromedriver, on a fresh profile."""
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--user-data-dir=" + profile,
                "--window-size=%d,%d" % (width, height)):
        options.add_argument(arg)
    service = webdriver.ChromeService(executable_path="/usr/bin/chromedriver")
    return webdriver.Chrome(options=options, service=service)
