#!/usr/bin/env python3
"""The key browser (/ui) in headless Chromium against real vkv servers.

Starts BINARY twice on 127.0.0.1:0, each with a temporary SQLite file: one
open, one with --auth-tokens. Through the page, as a user would (clicks and
keys, no API call in place of one), it checks: browsing folders and deep
links, opening a key, a version, a diff of two versions, an edit that meets
a concurrent change (a visible conflict, nothing lost), following a key,
create, delete and purge behind a confirmation, a value and a key holding
markup shown as text (nothing runs; the CSP blocks inline script), the
keyboard path, 375 px and dark mode; a folder followed live (writes made
over HTTP show without a refresh, across a pause, a 410 and a restart of the
server on the same port and database; a page left closes its stream);
with tokens: the prompt, a rejected token, a read-only token seeing no
write action, a write token seeing them, live changes with the token.
Then it seeds 100,000 keys under one prefix (POST /batch) and times opening
that prefix, from the page's request to its first page on screen (a mark
the page sets at the next frame), against the 300 ms target.
Screenshots go to SHOTS_DIR (default docs/img/ of this repository).

Usage: scripts/ui-browser.py BINARY [SHOTS_DIR]
Needs: Debian's chromium and chromium-driver, Selenium (pip, in a venv);
shares scripts/browser.py with scripts/eventsource-browser.py.
Exit 0 when every check holds.
"""
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request

from selenium.common.exceptions import (NoAlertPresentException, StaleElementReferenceException,
                                        TimeoutException)
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from browser import Server, chromium

TARGET_MS = 300
BIG = 100_000
READER = "ui-browser-reader-7Hq2Lx"
WRITER = "ui-browser-writer-9Kp4Vz"
XSS = "<img src=x onerror=alert(1)>"

checks = []


def check(name):
    checks.append(name)
    print("ui-browser: ok: " + name, flush=True)


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
    assert rows(p) == 50, rows(p)
    p.click("#history-more")
    p.wait.until(lambda d: rows(p) == 60)
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
    theirs = s.put("config/app/settings", {"theme": "theirs"})["version"]
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

    # Live: a change made elsewhere shows without a refresh.
    p.text_in("#live", "Live")
    s.put("config/app/settings", {"theme": "followed"})
    p.text_in("#key-meta", "Version 5")
    p.text_in("#value", '"followed"')
    check("the open key follows a change made elsewhere (the change feed)")

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


def rows(p):
    return len(p.d.find_elements(By.CSS_SELECTOR, "#history tbody tr"))


def gone(p, name):
    """Waits until the listing has no entry named `name`."""
    try:
        p.wait.until(lambda d: name not in p.entries())
    except TimeoutException:
        raise AssertionError("%r is still listed: %r" % (name, p.entries()))


def live_checks(p, s):
    """A folder open: writes made elsewhere show without a refresh, across
    a pause and across a restart of the server."""
    s.put("live/a", {"n": 1})
    s.put("live/b", {"n": 1})
    s.put("live/sub/x", {"n": 1})
    p.open("/ui?key=live/a")
    p.text_in("#key-meta", "Version 1")
    p.link("b")
    p.text_in("#live", "Live")
    # The page is never reloaded below: this mark would go with it.
    p.d.execute_script("window.__same_page = 1")
    same_page = lambda: p.d.execute_script("return window.__same_page === 1")

    s.put("live/new", {"n": 1})
    p.link("new")
    s.put("live/" + XSS, XSS)
    p.link(XSS)
    assert p.no_alert() and p.d.find_elements(By.TAG_NAME, "img") == []
    s.put("live/a", {"n": 2})
    p.text_in("#key-meta", "Version 2")
    p.text_in("#value", '"n": 2')
    p.wait.until(lambda d: rows(p) == 2)
    s.delete("live/b")
    gone(p, "b")
    s.put("live/sub2/y", {"n": 1})
    p.link("sub2/")
    s.delete("live/sub/x")
    gone(p, "sub/")
    s.put("live/new", {"n": 2})
    p.wait.until(lambda d: d.execute_script(
        "const li = document.querySelector('#entries li[data-key=\"live/new\"]');"
        "return li !== null && li.querySelector('.meta').textContent.startsWith('v2 ');"))
    assert same_page()
    check("live: a new key (one named with markup: text), a new folder, the open key's update, "
          "a deleted key and an emptied folder show without a refresh")

    # Paused, nothing moves; resumed, what was written meanwhile shows.
    p.click("#live-toggle")
    p.text_in("#live", "Paused")
    s.put("live/while-paused", {"n": 1})
    s.put("live/a", {"n": 3})
    time.sleep(1)  # what is asserted is that nothing came in this second
    assert "while-paused" not in p.entries(), p.entries()
    assert "Version 2" in p.el("#key-meta").text
    p.click("#live-toggle")
    p.text_in("#live", "Live")
    p.link("while-paused")
    p.text_in("#key-meta", "Version 3")
    check("live: pause stops following; resume shows what was written meanwhile")

    # History the page has not seen is purged while it is paused: resuming
    # meets 410 Gone, and the page lists the folder again and follows on.
    p.click("#live-toggle")
    p.text_in("#live", "Paused")
    s.put("live/short-lived", {"n": 1})
    status, body = s.call("DELETE", "/delete/live%2Fshort-lived?purge=true")
    assert status == 200, (status, body)
    p.click("#live-toggle")
    p.wait.until(lambda d: gone_answers(s) == 1)
    p.text_in("#live", "Live")
    s.put("live/after-410", {"n": 1})
    p.link("after-410")
    assert "short-lived" not in p.entries() and same_page()
    check("live: a 410 (history purged) lists the folder again and follows on")

    # A restart of the server (same port, same database): the page
    # reconnects by itself, from the last revision it saw.
    s.restart()
    s.put("live/after-restart", {"n": 1})
    s.put("live/a", {"n": 4})
    s.delete("live/new")
    slow = WebDriverWait(p.d, 40, ignored_exceptions=(StaleElementReferenceException,))
    slow.until(lambda d: "after-restart" in p.entries())
    p.text_in("#key-meta", "Version 4")
    gone(p, "new")
    p.text_in("#live", "Live")
    assert same_page()
    assert p.entries() == ["sub2/", XSS, "a", "after-410", "after-restart", "while-paused"], \
        p.entries()
    check("live: after a server restart the page resumes and shows the writes made since")

    # A page left holds no stream (a browser allows only six connections
    # to a server; pages kept for the back button would take them all).
    for path in ("/ui?prefix=live/", "/ui?key=live/a", "/ui?prefix=live/sub2/", "/ui") * 2:
        p.open(path)
        p.text_in("#live", "Live")
    p.wait.until(lambda d: open_streams(s) == 1)
    p.d.back()
    p.text_in("#live", "Live")
    p.link("y")
    s.put("live/sub2/z", {"n": 1})
    p.link("z")
    check("live: a page left closes its stream; back to it, it follows again")


def gone_answers(s):
    """How many `GET /changes` the server answered 410."""
    with open(s.log_path) as f:
        return len(re.findall(r"GET /changes 410", f.read()))


def open_streams(s):
    with urllib.request.urlopen(s.base + "/metrics", timeout=30) as r:
        m = re.search(rb"^vkv_feed_streams (\d+)$", r.read(), re.M)
    return int(m.group(1))


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
    # Live with a token: the stream sends it (an EventSource could not).
    p.text_in("#live", "Live")
    s.put("team/plan", {"q": 3}, token=WRITER)
    s.put("team/new", {"q": 1}, token=WRITER)
    p.text_in("#key-meta", "Version 3")
    p.link("new")
    s.restart()
    s.put("team/after-restart", {"q": 1}, token=WRITER)
    WebDriverWait(p.d, 40, ignored_exceptions=(StaleElementReferenceException,)).until(
        lambda d: "after-restart" in p.entries())
    check("auth: live changes with a token, across a server restart")


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
        driver = chromium(os.path.join(tmp, "profile"))
        # Timed first, on a fresh profile: the page's assets not yet cached.
        scale_checks(Page(driver, plain.base), plain)
        open_server_checks(Page(driver, plain.base), plain, shots)
        live_checks(Page(driver, plain.base), plain)
        auth_checks(Page(driver, authed.base), authed)
    except Exception:
        print("ui-browser: FAILED after %d checks (the last passed: %s); at %s"
              % (len(checks), checks[-1] if checks else "none",
                 driver.current_url if driver else "no browser"), flush=True)
        if driver is not None:
            print("ui-browser: the page showed: %r" % driver.execute_script(
                "return ['banner', 'list-status', 'live', 'key-meta'].map("
                "(id) => id + ': ' + document.getElementById(id).textContent)"
                ".concat([...document.querySelectorAll('#entries a')].slice(0, 20)"
                ".map((a) => a.textContent))"), flush=True)
            for entry in driver.get_log("browser"):
                print("ui-browser: console: %s" % entry["message"], flush=True)
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
