#!/usr/bin/env python3
"""The key browser (/ui) in headless Chromium against real vkv servers.

Starts BINARY twice on 127.0.0.1:0, each with a temporary SQLite file: one
open, one with --auth-tokens. Through the page, as a user would (clicks and
keys, no API call in place of one), it checks: browsing folders and deep
links, opening a key, a version, a diff of two versions, an edit that meets
a concurrent change (a visible conflict, nothing lost), following a key,
create, delete and purge behind a confirmation, a value and a key holding
markup shown as text (nothing runs; the CSP blocks inline script), the
keyboard path, 375 px and dark mode; with tokens: the prompt, a rejected
token, a read-only token seeing no write action, a write token seeing them.
Then it seeds 100,000 keys under one prefix (POST /batch) and times opening
that prefix, from the page's request to its first page on screen (a mark
the page sets at the next frame), against the 300 ms target.
Screenshots go to SHOTS_DIR (default docs/img/ of this repository).

Usage: scripts/ui-browser.py BINARY [SHOTS_DIR]
Needs: Debian's chromium and chromium-driver, Selenium (pip, in a venv).
Exit 0 when every check holds.
"""
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import (NoAlertPresentException, StaleElementReferenceException,
                                        TimeoutException)
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

TARGET_MS = 300
BIG = 100_000
READER = "ui-browser-reader-7Hq2Lx"
WRITER = "ui-browser-writer-9Kp4Vz"
XSS = "<img src=x onerror=alert(1)>"

checks = []


def check(name):
    checks.append(name)
    print("ui-browser: ok: " + name, flush=True)


class Server:
    """A vkv process on 127.0.0.1:0 with its own SQLite file."""

    def __init__(self, binary, tmp, name, extra=()):
        self.log_path = os.path.join(tmp, name + ".log")
        env = {k: v for k, v in os.environ.items() if not k.startswith("VKV_")}
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(
                [binary, "--bind", "127.0.0.1:0", "--db", os.path.join(tmp, name + ".db"), *extra],
                stdout=subprocess.DEVNULL, stderr=log, env=env)
        deadline = time.monotonic() + 30
        while True:
            with open(self.log_path) as f:
                m = re.search(r"listening on (\S+)", f.read())
            if m:
                self.base = "http://" + m.group(1)
                return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                with open(self.log_path) as f:
                    sys.exit("ui-browser: vkv did not start:\n" + f.read())
            time.sleep(0.05)

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
        status, body = self.call("POST", "/put/" + urllib.parse.quote(key, safe=""), {"value": value}, token)
        assert status == 200, (key, status, body)
        return body["version"]

    def get(self, key):
        return self.call("GET", "/get/" + urllib.parse.quote(key, safe=""))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def browser(profile):
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--user-data-dir=" + profile, "--window-size=1280,800"):
        options.add_argument(arg)
    service = webdriver.ChromeService(executable_path="/usr/bin/chromedriver")
    return webdriver.Chrome(options=options, service=service)


class Page:
    def __init__(self, driver, base):
        self.d = driver
        self.base = base
        # The page re-renders lists: an element found may be replaced
        # before it is read; a wait then looks again.
        self.wait = WebDriverWait(driver, 15, ignored_exceptions=(StaleElementReferenceException,))

    def open(self, path):
        self.d.get(self.base + path)
        self.wait.until(lambda d: d.execute_script("return document.readyState") == "complete")

    def el(self, css):
        return self.d.find_element(By.CSS_SELECTOR, css)

    def click(self, css):
        def click(_):
            self.wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, css))).click()
            return True
        self.wait.until(click)

    def text_in(self, css, text):
        """Waits until the element's visible text contains `text`."""
        try:
            self.wait.until(lambda d: text in d.find_element(By.CSS_SELECTOR, css).text)
        except TimeoutException:
            raise AssertionError("%r never showed %r; it shows %r" % (css, text, self.el(css).text))

    def visible(self, css):
        return self.wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, css)))

    def shown(self, css):
        found = self.d.find_elements(By.CSS_SELECTOR, css)
        return bool(found) and found[0].is_displayed()

    def link(self, text):
        """Waits for the listing's link named `text`."""
        return self.wait.until(ec.element_to_be_clickable(
            (By.XPATH, "//ul[@id='entries']//a[normalize-space()=%s]" % xpath_literal(text))))

    def follow(self, text):
        """Clicks the listing's link named `text` (found again if replaced)."""
        def click(_):
            self.link(text).click()
            return True
        self.wait.until(click)

    def entries(self):
        return self.d.execute_script(
            "return [...document.querySelectorAll('#entries a')].map((a) => a.textContent)")

    def dialog_open(self, css):
        return self.d.execute_script("return document.querySelector(arguments[0]).open", css)

    def confirm(self, accept):
        self.wait.until(lambda d: self.dialog_open("#confirm"))
        self.click("#confirm-ok" if accept else "#confirm-cancel")
        self.wait.until(lambda d: not self.dialog_open("#confirm"))

    def no_alert(self):
        try:
            self.d.switch_to.alert
        except NoAlertPresentException:
            return True
        return False

    def mark_ms(self):
        """The page's 'first page on screen' mark, in ms from navigation start."""
        return self.wait.until(lambda d: d.execute_script(
            "const m = performance.getEntriesByName('vkv-list-rendered');"
            "return m.length ? m[0].startTime : null;"))

    def breakdown(self):
        """When the page, its assets and its API calls finished, in ms."""
        parts = self.d.execute_script(
            "const n = performance.getEntriesByType('navigation')[0];"
            "const out = [['page', n.responseEnd]];"
            "for (const r of performance.getEntriesByType('resource'))"
            "  out.push([new URL(r.name).pathname, r.responseEnd]);"
            "out.push(['DOMContentLoaded', n.domContentLoadedEventEnd]);"
            "return out;")
        return ", ".join("%s %.0f" % (name, t) for name, t in parts)

    def shot(self, path, width, height):
        self.d.set_window_size(width, height)
        self.d.execute_script("window.scrollTo(0, 0); document.activeElement.blur()")
        time.sleep(0.3)  # the resize reaching layout; nothing is asserted on it
        self.d.save_screenshot(path)


def xpath_literal(s):
    if "'" not in s:
        return "'%s'" % s
    return "concat('%s')" % "', \"'\", '".join(s.split("'"))


def open_server_checks(p, s, shots):
    s.put("config/app/settings", {"theme": "dark", "retries": 3, "servers": ["a", "b"]})
    s.put("config/app/settings", {"theme": "light", "retries": 5, "servers": ["a", "b", "c"],
                                   "big": 12345678901234567890})
    s.put("config/app/flags", {"beta": True})
    s.put("config/app/limits", {"requests_per_second": 200, "burst": 50})
    s.put("config/app/mail/smtp", {"host": "mail.internal", "port": 587})
    s.put("config/db", "postgres://db.internal/app")
    s.put("users/alice", {"name": "Alice"})
    s.put("readme", "top level")
    s.put("xss/value", XSS)
    s.put("xss/" + XSS, "a key holding markup")

    # Browse: the root lists folders and keys; folders open by click.
    p.open("/ui")
    p.link("config/")
    p.link("users/")
    p.link("readme")
    p.follow("config/")
    p.follow("app/")
    p.link("settings")
    assert "prefix=config/app/" in p.d.current_url, p.d.current_url
    check("browse folders by clicking (root, config/, config/app/)")

    # Open a key: the latest value as pretty JSON, a big number as stored.
    p.follow("settings")
    p.text_in("#value-title", "version 2, the latest")
    value = p.el("#value").text
    assert '"theme": "light"' in value and "12345678901234567890" in value, value
    assert "\n  \"servers\": [\n    \"a\"," in value, value
    check("open a key: pretty JSON, numbers kept as stored")

    # A version, from the history.
    p.click("#history tr[data-version='1'] a")
    p.text_in("#value-title", "Value of version 1 (the latest is 2)")
    assert '"theme": "dark"' in p.el("#value").text
    assert "version=1" in p.d.current_url
    check("view an older version")

    # Diff of the two versions.
    p.click("#history input[name='diff-a'][value='1']")
    p.click("#history input[name='diff-b'][value='2']")
    p.click("#diff-button")
    p.visible("#diff")
    removed = [e.text for e in p.d.find_elements(By.CSS_SELECTOR, "#diff .del")]
    added = [e.text for e in p.d.find_elements(By.CSS_SELECTOR, "#diff .add")]
    assert any('"theme": "dark"' in t for t in removed), removed
    assert any('"theme": "light"' in t for t in added), added
    assert any('"big": 12345678901234567890' in t for t in added), added
    check("diff of two versions")
    p.shot(os.path.join(shots, "ui.png"), 1280, 1000)
    p.d.set_window_size(1280, 800)

    # A long history comes in pages of 50.
    for i in range(60):
        s.put("long/history", {"i": i})
    p.open("/ui?key=long/history")
    p.text_in("#key-meta", "Version 60")
    rows = lambda: len(p.d.find_elements(By.CSS_SELECTOR, "#history tbody tr"))
    assert rows() == 50, rows()
    p.click("#history-more")
    p.wait.until(lambda d: rows() == 60)
    p.wait.until(lambda d: not p.shown("#history-more"))
    check("history in pages: 'Older versions' adds the rest")

    # Deep links.
    p.open("/ui?prefix=config/app/")
    p.link("flags")
    p.link("settings")
    p.open("/ui?key=config/db")
    p.text_in("#value", '"postgres://db.internal/app"')
    p.text_in("#crumbs", "config")
    check("deep links ?prefix= and ?key=")

    # An edit that meets a concurrent change: a visible conflict, no lost update.
    p.open("/ui?key=config/app/settings")
    p.text_in("#key-meta", "Version 2")
    p.click("#edit")
    area = p.visible("#edit-value")
    area.clear()
    area.send_keys('{"theme": "mine"}')
    theirs = s.put("config/app/settings", {"theme": "theirs"})
    assert theirs == 3
    p.click("#save")
    p.visible("#conflict")
    p.text_in("#conflict-text", "the server now has version 3")
    status, body = s.get("config/app/settings")
    assert (status, body["value"], body["version"]) == (200, {"theme": "theirs"}, 3), body
    p.click("#conflict-diff")
    p.visible("#conflict-diff-view")
    assert any('"theme": "theirs"' in e.text for e in p.d.find_elements(By.CSS_SELECTOR, "#conflict-diff-view .del"))
    check("edit with a concurrent change: 409 shown as a conflict, the other write kept")
    p.click("#conflict-overwrite")
    p.confirm(True)
    p.text_in("#key-meta", "Version 4")
    status, body = s.get("config/app/settings")
    assert (body["value"], body["version"]) == ({"theme": "mine"}, 4), body
    check("save over the newer version after confirming (If-Match of the version seen)")

    # Follow: a change made elsewhere shows without a refresh.
    p.click("#follow")
    s.put("config/app/settings", {"theme": "followed"})
    p.text_in("#key-meta", "Version 5")
    p.text_in("#value", '"followed"')
    p.click("#follow")
    check("follow changes (long poll) shows a new version")

    # Refresh picks up a key written elsewhere.
    p.open("/ui?prefix=users/")
    p.link("alice")
    s.put("users/bob", {"name": "Bob"})
    p.click("#refresh")
    p.link("bob")
    check("refresh lists a key written elsewhere")

    # Create, behind a confirmation.
    p.open("/ui?prefix=users/")
    p.click("#new-key")
    assert p.el("#create-key").get_attribute("value") == "users/"
    p.el("#create-key").send_keys("carol")
    p.el("#create-value").send_keys('{"name": "Carol"}')
    p.click("#create-form button[type='submit']")
    p.confirm(False)
    assert s.get("users/carol")[0] == 404
    p.wait.until(lambda d: p.dialog_open("#create-dialog"))
    p.click("#create-form button[type='submit']")
    p.confirm(True)
    p.text_in("#key-name", "users/carol")
    p.text_in("#key-meta", "Version 1")
    assert s.get("users/carol")[1]["value"] == {"name": "Carol"}
    p.link("carol")
    check("create asks for confirmation (cancel writes nothing)")

    # Delete, behind a confirmation.
    p.click("#delete")
    p.confirm(False)
    assert s.get("users/carol")[0] == 200
    p.click("#delete")
    p.confirm(True)
    p.text_in("#key-meta", "Deleted: version 2")
    assert s.get("users/carol")[0] == 404
    check("delete asks for confirmation (cancel keeps the key)")

    # Purge, behind a confirmation.
    p.click("#purge")
    p.confirm(True)
    p.wait.until(lambda d: "prefix=users/" in d.current_url)
    assert s.call("GET", "/history/users%2Fcarol")[0] == 404
    p.link("alice")
    check("purge asks for confirmation, then lists the folder")

    # Markup in a value and in a key name is text, never HTML.
    p.open("/ui?prefix=xss/")
    p.link(XSS)
    p.follow("value")
    p.text_in("#value", json.dumps(XSS))
    try:
        WebDriverWait(p.d, 1).until(ec.alert_is_present())
        raise AssertionError("an alert opened: the value ran as HTML")
    except TimeoutException:
        pass
    assert p.d.find_elements(By.TAG_NAME, "img") == [], "an <img> was made from data"
    p.follow(XSS)
    p.text_in("#key-name", XSS)
    assert p.no_alert() and p.d.find_elements(By.TAG_NAME, "img") == []
    # And the CSP is in force: an inline script added to the page does not run.
    ran = p.d.execute_script(
        "const s = document.createElement('script'); s.textContent = 'window.__inline = 1';"
        "document.body.append(s); return window.__inline === 1;")
    assert ran is False, "inline script ran: no CSP"
    check("markup in a value or a key is shown as text; inline script is blocked by the CSP")

    # The keyboard: '/' to the filter, type, Tab to the first entry, Enter.
    p.open("/ui?prefix=config/")
    p.link("app/")
    p.el("body").send_keys("/")
    p.wait.until(lambda d: d.switch_to.active_element.get_attribute("id") == "filter")
    p.d.switch_to.active_element.send_keys("d")
    p.wait.until(lambda d: p.entries() == ["db"])
    p.d.switch_to.active_element.send_keys(Keys.TAB)
    p.wait.until(lambda d: d.switch_to.active_element.text == "db")
    p.d.switch_to.active_element.send_keys(Keys.ENTER)
    p.text_in("#key-name", "config/db")
    check("keyboard: / filters, Tab and Enter open a key")

    # 375 px: nothing wider than the screen; dark mode from the system.
    p.open("/ui?key=config/app/settings")
    p.text_in("#key-meta", "Version 5")
    p.d.set_window_size(375, 740)
    p.wait.until(lambda d: d.execute_script("return window.innerWidth") <= 375)
    width = p.d.execute_script("return document.documentElement.scrollWidth")
    inner = p.d.execute_script("return window.innerWidth")
    assert width <= inner, "the page is %d px wide in a %d px window" % (width, inner)
    p.shot(os.path.join(shots, "ui-375.png"), 375, 740)
    p.d.execute_cdp_cmd("Emulation.setEmulatedMedia",
                        {"features": [{"name": "prefers-color-scheme", "value": "dark"}]})
    bg = p.d.execute_script("return getComputedStyle(document.body).backgroundColor")
    assert bg == "rgb(13, 17, 23)", bg
    p.shot(os.path.join(shots, "ui-dark.png"), 1280, 800)
    p.d.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})
    p.d.set_window_size(1280, 800)
    check("375 px wide without horizontal scrolling; dark mode from prefers-color-scheme")


def auth_checks(p, s):
    s.put("team/plan", {"q": 1}, token=WRITER)
    p.open("/ui?prefix=team/")
    p.wait.until(lambda d: p.dialog_open("#token-dialog"))
    p.el("#token-input").send_keys("not-a-valid-token-at-all" + Keys.ENTER)
    p.text_in("#token-error", "not accepted")
    p.el("#token-input").clear()
    p.el("#token-input").send_keys(READER + Keys.ENTER)
    p.wait.until(lambda d: not p.dialog_open("#token-dialog"))
    p.follow("plan")
    p.text_in("#value", '"q": 1')
    p.text_in("#who", "read")
    for css in ("#edit", "#delete", "#purge", "#new-key", "#restore"):
        assert not p.shown(css), css + " is shown to a read-only token"
    check("auth: token prompt, a bad token refused, a read-only token sees no write button")
    # Kept for the tab (sessionStorage): a reload asks nothing.
    p.open("/ui?key=team/plan")
    p.text_in("#value", '"q": 1')
    assert not p.dialog_open("#token-dialog")
    p.click("#sign-out")
    p.wait.until(lambda d: p.dialog_open("#token-dialog"))
    p.el("#token-input").send_keys(WRITER + Keys.ENTER)
    p.wait.until(lambda d: not p.dialog_open("#token-dialog"))
    p.text_in("#who", "write")
    p.text_in("#value", '"q": 1')
    for css in ("#edit", "#delete", "#purge", "#new-key"):
        assert p.shown(css), css + " is hidden from a write token"
    p.click("#edit")
    area = p.visible("#edit-value")
    area.clear()
    area.send_keys('{"q": 2}')
    p.click("#save")
    p.text_in("#key-meta", "Version 2")
    assert s.call("GET", "/get/team%2Fplan", token=READER)[1]["value"] == {"q": 2}
    check("auth: the token kept for the tab; a write token edits")


def seed_big(s):
    t = time.monotonic()
    for start in range(0, BIG, 1000):
        puts = [{"key": "big/%06d" % i, "value": {"n": i}} for i in range(start, start + 1000)]
        status, body = s.call("POST", "/batch", {"puts": puts})
        assert status == 200, (status, body)
    return time.monotonic() - t


def scale_checks(p, s):
    took = seed_big(s)
    print("ui-browser: seeded %d keys under big/ in %.1f s" % (BIG, took), flush=True)
    # The browser's first navigation also starts its renderer: done on a
    # page without assets, so the first timed open still fetches the
    # page's script and style sheet (not yet cached) but not that.
    p.open("/health")
    times = {}
    for what, path, first in (("prefix big/ (100,000 keys)", "/ui?prefix=big/", "000000"),
                              ("root (a folder of 100,000 keys)", "/ui", "big/")):
        runs = []
        for i in range(5):
            p.open(path)
            runs.append(p.mark_ms())
            p.link(first)
            if i == 0:
                print("ui-browser:   where the first one went: " + p.breakdown(), flush=True)
        assert len(p.d.find_elements(By.CSS_SELECTOR, "#entries li")) <= 100
        times[what] = runs
        print("ui-browser: open %s: first page on screen after %s ms (median %.0f)"
              % (what, ", ".join("%.0f" % t for t in runs), statistics.median(runs)), flush=True)
    # The page of 100: "Load more" appends the next one.
    p.open("/ui?prefix=big/")
    p.link("000099")
    p.click("#more")
    p.link("000199")
    p.text_in("#list-status", "200 entries")
    worst = max(max(r) for r in times.values())
    assert worst < TARGET_MS, "opening a prefix took %.0f ms (target %d)" % (worst, TARGET_MS)
    check("100,000 keys: a prefix opens in %.0f ms at worst (target %d ms), paged by 100"
          % (worst, TARGET_MS))


def main(binary, shots):
    os.makedirs(shots, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="vkv-ui-browser-")
    servers = []
    driver = None
    try:
        tokens = os.path.join(tmp, "tokens")
        with open(tokens, "w") as f:
            f.write("%s read\n%s write\n" % (READER, WRITER))
        os.chmod(tokens, 0o600)
        plain = Server(binary, tmp, "open")
        servers.append(plain)
        authed = Server(binary, tmp, "auth", ["--auth-tokens", tokens])
        servers.append(authed)
        driver = browser(os.path.join(tmp, "profile"))
        # Timed first, on a fresh profile: the page's assets not yet cached.
        scale_checks(Page(driver, plain.base), plain)
        open_server_checks(Page(driver, plain.base), plain, shots)
        auth_checks(Page(driver, authed.base), authed)
    except Exception:
        print("ui-browser: FAILED after %d checks (the last passed: %s); at %s"
              % (len(checks), checks[-1] if checks else "none",
                 driver.current_url if driver else "no browser"), flush=True)
        raise
    finally:
        if driver is not None:
            driver.quit()
        for s in servers:
            s.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print("ui-browser: %d passed, 0 failed" % len(checks))


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    here = os.path.dirname(os.path.abspath(__file__))
    main(os.path.abspath(sys.argv[1]),
         sys.argv[2] if len(sys.argv) == 3 else os.path.join(here, "..", "docs", "img"))
