#!/usr/bin/env python3
"""A real browser's EventSource follows the change feed across a restart.

Starts BINARY on 127.0.0.1:0 with a temporary SQLite file, opens a page of
that origin in headless Chromium and, in it,
`new EventSource('/changes?prefix=es/&after=R')` (R: the store's revision
then; the browser sends `Accept: text/event-stream` itself). It writes
changes under es/ (puts, an update, a batch sharing one revision, a
delete, a put after it) and one elsewhere, and waits (with a deadline) until the page has
every change of es/, in revision order, exactly once. Then it stops the
server (SIGTERM), starts it again on the same port and file, writes more,
and waits until the EventSource has reconnected by itself and received
those too. The whole list the page received must equal the feed read over
plain HTTP (`GET /changes?prefix=es/&after=R`) and the writes made, each
change once, in revision order. The reconnection resumes from the
`Last-Event-ID` the browser sends: its URL still says `after=R`, so
without that header the first changes would come twice.

Usage: scripts/eventsource-browser.py BINARY
Needs: Debian's chromium and chromium-driver, Selenium (pip, in a venv);
shares scripts/browser.py with scripts/ui-browser.py.
Exit 0 when every check holds.
"""
import os
import shutil
import sys
import tempfile
import time

from browser import Server, chromium

PREFIX = "es/"
DEADLINE_S = 30  # EventSource waits about 3 s before it reconnects

# Records what the EventSource delivers, in order.
LISTEN = """
window.got = []; window.opens = 0; window.errors = 0; window.ids = [];
const es = new EventSource(arguments[0]);
window.es = es;
es.onopen = () => { window.opens++; };
es.onerror = () => { window.errors++; };
es.onmessage = (e) => { window.got.push(JSON.parse(e.data)); if (e.lastEventId) window.ids.push(e.lastEventId); };
for (const name of ['gone', 'slow']) {
  es.addEventListener(name, (e) => { window.got.push({event: name, data: e.data}); });
}
"""


def log(msg):
    print("eventsource-browser: " + msg, flush=True)


def wait_until(what, cond, seconds=DEADLINE_S):
    deadline = time.monotonic() + seconds
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.05)


def writes(s, tag):
    """Changes under es/ and one outside it; (key, version, operation) of
    the es/ ones in commit order."""
    made = []

    def put(key, value):
        a = s.put(key, value)
        made.append((key, a["version"], a["operation"]))

    for i in range(4):
        put("%s%s-%d" % (PREFIX, tag, i), {"i": i, "tag": tag})
    put("%s%s-0" % (PREFIX, tag), {"i": 0, "tag": tag, "updated": True})
    s.put("other/%s" % tag, 1)  # not under the prefix: must not arrive
    status, body = s.call("POST", "/batch", {"puts": [
        {"key": "%s%s-batch-%d" % (PREFIX, tag, i), "value": i} for i in range(3)]})
    assert status == 200, (status, body)
    made += [(r["key"], r["version"], r["operation"]) for r in body["results"]]
    a = s.delete("%s%s-1" % (PREFIX, tag))
    made.append(("%s%s-1" % (PREFIX, tag), a["version"], "delete"))
    put("%s%s-1" % (PREFIX, tag), "again")
    return made


def received(driver):
    return driver.execute_script("return window.got")


def summary(changes):
    return [(c.get("key"), c.get("version"), c.get("operation")) for c in changes]


def feed_over_http(s, after):
    """Every change under the prefix after `after`, in pages."""
    out = []
    while True:
        status, page = s.call("GET", "/changes?prefix=%s&after=%d&limit=1000" % (PREFIX, after))
        assert status == 200, (status, page)
        out += page["changes"]
        if page["next_after"] == page["revision"] or not page["changes"]:
            return out
        after = page["next_after"]


def main(binary):
    tmp = tempfile.mkdtemp(prefix="vkv-eventsource-")
    server = None
    driver = None
    try:
        server = Server(binary, tmp, "es")
        driver = chromium(os.path.join(tmp, "profile"))
        driver.get(server.base + "/health")  # a page of the server's origin
        server.put(PREFIX + "older", "before the EventSource: must not arrive")
        status, stats = server.call("GET", "/db/stats")
        assert status == 200, (status, stats)
        start = stats["revision"]
        url = "/changes?prefix=%s&after=%d" % (PREFIX, start)
        driver.execute_script(LISTEN, url)
        wait_until("the EventSource to open", lambda: driver.execute_script("return window.opens") == 1)

        before = writes(server, "before")
        wait_until("%d changes before the restart" % len(before),
                   lambda: len(received(driver)) >= len(before))
        got = received(driver)
        assert summary(got) == before, "before the restart:\n%s\n!=\n%s" % (summary(got), before)
        revisions = [c["revision"] for c in got]
        assert revisions == sorted(revisions), revisions
        assert revisions[5] == revisions[6] == revisions[7] < revisions[8], revisions
        log("ok: %d changes arrived in revision order, each once (the batch's 3 share revision %d)"
            % (len(got), got[5]["revision"]))

        last_id = driver.execute_script("return window.ids[window.ids.length - 1]")
        assert last_id == str(got[-1]["revision"]), (last_id, got[-1])
        server.restart()
        log("server restarted on %s (SIGTERM, same port and database file)" % server.base)
        after = writes(server, "after")
        wait_until("%d changes after the restart" % len(after),
                   lambda: len(received(driver)) >= len(before) + len(after))
        time.sleep(0.5)  # a duplicate would come in this time: asserted below
        got = received(driver)
        opens, errors, es_url = driver.execute_script(
            "return [window.opens, window.errors, window.es.url]")
        assert summary(got) == before + after, \
            "after the restart:\n%s\n!=\n%s" % (summary(got), before + after)
        assert opens == 2 and errors >= 1, (opens, errors)
        assert es_url.endswith(url), es_url
        http = feed_over_http(server, start)
        assert got == http, "the browser's list differs from GET /changes:\n%s\n%s" % (got, http)
        revisions = [c["revision"] for c in got]
        assert revisions == sorted(revisions) and len(got) == len(before) + len(after)
        log("ok: the EventSource reconnected by itself (%d opens, %d errors) and resumed after "
            "Last-Event-ID %s (its URL still says after=%d): %d changes, each once, in revision "
            "order, equal to GET /changes" % (opens, errors, last_id, start, len(got)))
    except Exception:
        log("FAILED")
        if server is not None:
            with open(server.log_path) as f:
                sys.stderr.write(f.read()[-4000:])
        raise
    finally:
        if driver is not None:
            driver.quit()
        if server is not None:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    log("passed")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(os.path.abspath(sys.argv[1]))
