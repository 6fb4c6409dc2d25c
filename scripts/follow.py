#!/usr/bin/env python3
"""Follow a key prefix of a vkv server, the way a configuration loader does,
and survive the server's restarts without missing or repeating a change.

    scripts/follow.py [--url http://127.0.0.1:8080] [--state FILE] PREFIX

The first run lists the prefix with its values (`/keys?values=true`), prints
each key, and keeps the listing's revision; then it follows
`/changes?after=REVISION&wait=30` (long polls), printing each change as one
line of JSON and saving the revision to resume from in FILE (default
`.follow-<prefix>.state`) after each answer. Stopped and started again (or
with the server restarted under it), it resumes after the saved revision:
nothing missed, nothing repeated. On `410` (history removed by retention or
a purge) it lists again. Connection errors are retried with a back-off.
Standard library only.
"""

import argparse
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request


def get(url, timeout):
    """The status and JSON body of a GET (any status)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def list_prefix(base, prefix):
    """Every live key under prefix with its value, and the revision they
    show (pages are read at their own revisions: the oldest is kept, so the
    feed after it replays what changed during the listing)."""
    keys, after, revision = {}, None, None
    while True:
        q = {"prefix": prefix, "values": "true", "limit": "1000"}
        if after is not None:
            q["after"] = after
        status, page = get(f"{base}/keys?{urllib.parse.urlencode(q)}", 30)
        if status != 200:
            raise RuntimeError(f"/keys answered {status}: {page}")
        revision = page["revision"] if revision is None else min(revision, page["revision"])
        for k in page["keys"]:
            keys[k["key"]] = k.get("value")
        after = page["next_after"]
        if after is None:
            return keys, revision


def save(state, revision):
    with open(state, "w") as f:
        f.write(str(revision))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("prefix")
    ap.add_argument("--url", default="http://127.0.0.1:8080")
    ap.add_argument("--state", default=None)
    args = ap.parse_args()
    base = args.url.rstrip("/")
    state = args.state or f".follow-{args.prefix.replace('/', '_')}.state"
    try:
        with open(state) as f:
            after = int(f.read().strip())
    except (OSError, ValueError):
        after = None
    backoff = 0.1
    while True:
        try:
            if after is None:
                keys, after = list_prefix(base, args.prefix)
                for key, value in sorted(keys.items()):
                    print(json.dumps({"key": key, "value": value, "listed_at": after}), flush=True)
                save(state, after)
            q = urllib.parse.urlencode({"prefix": args.prefix, "after": after, "wait": 30})
            status, body = get(f"{base}/changes?{q}", 40)
            if status == 410:
                print(json.dumps({"gone": body}), file=sys.stderr, flush=True)
                after = None
                continue
            if status != 200:
                raise RuntimeError(f"/changes answered {status}: {body}")
            for change in body["changes"]:
                print(json.dumps(change), flush=True)
            after = body["next_after"]
            save(state, after)
            backoff = 0.1
        except (OSError, RuntimeError, ValueError) as e:
            print(f"retrying in {backoff:.1f}s: {e}", file=sys.stderr, flush=True)
            time.sleep(backoff)
            backoff = min(backoff * 2, 5.0)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
