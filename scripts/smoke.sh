#!/usr/bin/env bash
# Smoke test: the README's curl examples against a live vkv server, checking
# every status and body. Prints one line per check and a summary; exits 1
# if any check failed (saying what differed) or the server is unreachable,
# 2 if curl or python3 is missing.
#
#   scripts/smoke.sh [BASE_URL]      # default $VKV_URL or http://127.0.0.1:8080
#
# Needs bash, curl and python3 (for the JSON checks). Re-runnable against the
# same server and database: every key carries a unique suffix.
set -uo pipefail

BASE=${1:-${VKV_URL:-http://127.0.0.1:8080}}
BASE=${BASE%/}

command -v curl >/dev/null 2>&1 || { echo "smoke: curl not found (apt-get install -y curl)" >&2; exit 2; }
command -v python3 >/dev/null 2>&1 || { echo "smoke: python3 not found (apt-get install -y python3)" >&2; exit 2; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Unique per run, so versions start at 1 on every run.
ID="smoke-$(date +%s)-$$-$RANDOM"
export SMOKE_KEY="$ID"
export SMOKE_SLASH_KEY="$ID/a b" # sent as $ID/a%20b

passed=0
failed=0
status=""

# req METHOD PATH [JSON_BODY]: sets $status; body and headers land in $tmp.
# Extra request headers: set the array HDR=(-H 'Name: value') before, reset
# after.
HDR=()
req() {
  local method=$1 path=$2
  local args=(-sS -X "$method" -o "$tmp/body" -D "$tmp/headers" -w '%{http_code}' --max-time 10 "${HDR[@]}")
  if [ $# -ge 3 ]; then
    args+=(-H 'Content-Type: application/json' --data-binary "$3")
  fi
  : >"$tmp/body"
  : >"$tmp/headers"
  if ! status=$(curl "${args[@]}" "$BASE$path" 2>"$tmp/curl_err"); then
    status="curl error: $(tr '\n' ' ' <"$tmp/curl_err")"
  fi
}

# check NAME EXPECTED_STATUS [PY_EXPR...]: one line per check. Each PY_EXPR
# is a Python expression over j (the parsed JSON body, None if not JSON),
# text (the body), h (headers, lower-case names) and env; it passes when it
# is True and fails with its value as the message when it is a string
# (write `cond or 'message'`, or use eq(actual, want, 'what')). The first
# failing one is reported.
check() {
  local name=$1 want=$2 why
  shift 2
  if [ "$status" != "$want" ]; then
    why="expected HTTP $want, got $status; body: $(head -c 300 "$tmp/body")"
  else
    why=$(python3 - "$tmp/body" "$tmp/headers" "$@" <<'PY' 2>&1
import json, os, sys
body_path, headers_path = sys.argv[1:3]
text = open(body_path, encoding="utf-8", errors="replace").read()
try:
    j = json.loads(text)
except ValueError:
    j = None
h = {}
for line in open(headers_path, encoding="latin-1").read().splitlines()[1:]:
    if ":" in line:
        name, value = line.split(":", 1)
        h[name.strip().lower()] = value.strip()
env = os.environ
def eq(actual, want, what):
    return True if actual == want else "%s is %r, want %r" % (what, actual, want)
for expr in sys.argv[3:]:
    try:
        ok = eval(expr)
    except KeyError as e:
        ok = "no field %s" % e
    except Exception as e:  # not JSON, a wrong type...
        ok = "%s: %s in %s" % (type(e).__name__, e, expr)
    if ok is not True:
        msg = ok if isinstance(ok, str) else "false: " + expr
        print("%s; body: %s" % (msg, text[:300]))
        break
PY
)
  fi
  if [ -z "$why" ]; then
    passed=$((passed + 1))
    printf 'PASS  %s\n' "$name"
  else
    failed=$((failed + 1))
    printf 'FAIL  %s: %s\n' "$name" "$why"
  fi
}

# Python snippets shared by the checks.
IS_JSON='h.get("content-type", "").startswith("application/json") or "content-type is " + repr(h.get("content-type"))'
DETAIL='isinstance(j, dict) and isinstance(j.get("detail"), str) and j["detail"] != "" or "no {\"detail\": string} in the error body"'

echo "smoke: $BASE (keys $ID...)"

# Reachability first: one clear message instead of a page of failures.
req GET /health
case $status in
  [0-9][0-9][0-9]) ;;
  *) echo "smoke: cannot reach $BASE ($status); is the server running?" >&2; exit 1 ;;
esac
check "GET /health" 200 "$IS_JSON" "j == {'status': 'ok'} or 'body is not {\"status\":\"ok\"}'"

# --- put create, then update ------------------------------------------------
req POST "/put/$ID" '{"value": {"name": "first", "n": 1}}'
check "POST /put/{key} creates (version 1)" 200 "$IS_JSON" \
  "eq(j['key'], env['SMOKE_KEY'], 'key')" "eq(j['operation'], 'create', 'operation')" \
  "eq(j['version'], 1, 'version')" "isinstance(j['timestamp'], str) or 'no timestamp'"

req POST "/put/$ID" '{"value": [1, "two", null, true]}'
check "POST /put/{key} again updates (version 2)" 200 \
  "eq(j['key'], env['SMOKE_KEY'], 'key')" "eq(j['operation'], 'update', 'operation')" \
  "eq(j['version'], 2, 'version')"

# --- get latest and an old version ----------------------------------------
req GET "/get/$ID"
check "GET /get/{key} returns the latest value with ETag \"2\"" 200 "$IS_JSON" \
  "eq(j['key'], env['SMOKE_KEY'], 'key')" "eq(j['value'], [1, 'two', None, True], 'value')" \
  "eq(j['version'], 2, 'version')" "isinstance(j['timestamp'], str) or 'no timestamp'" \
  "eq(h.get('etag'), '\"2\"', 'ETag header')"

req GET "/get/$ID?version=1"
check "GET /get/{key}?version=1 returns the first value" 200 \
  "eq(j['value'], {'name': 'first', 'n': 1}, 'value')" "eq(j['version'], 1, 'version')"

# --- a key with a slash and a percent-encoded space -----------------------
req POST "/put/$ID/a%20b" '{"value": "spaced"}'
check "POST /put/{key} with '/' and %20 in the key" 200 \
  "eq(j['key'], env['SMOKE_SLASH_KEY'], 'decoded key')" "eq(j['version'], 1, 'version')"

req GET "/get/$ID/a%20b"
check "GET /get/{key} with '/' and %20 in the key" 200 \
  "eq(j['key'], env['SMOKE_SLASH_KEY'], 'decoded key')" "eq(j['value'], 'spaced', 'value')"

# --- stats, health, docs ---------------------------------------------------
req GET /cache/stats
check "GET /cache/stats" 200 \
  "all(isinstance(j[f], int) and not isinstance(j[f], bool) and j[f] >= 0 for f in ('size', 'max_size', 'hits', 'misses', 'evictions')) and isinstance(j['is_full'], bool) and (j['size'] <= j['max_size'] or j['max_size'] == 0) or 'want size/max_size/is_full/hits/misses/evictions'"

req GET /db/stats
check "GET /db/stats" 200 \
  "j['total_keys'] >= 2 and j['total_versions'] >= 3 and j['total_versions'] >= j['total_keys'] and j['file_size_bytes'] > 0 and isinstance(j['path'], str) and isinstance(j['journal_mode'], str) or 'want total_keys >= 2, total_versions >= 3, file_size_bytes > 0, path, journal_mode'"

req GET /openapi.json
check "GET /openapi.json" 200 \
  "str(j['openapi']).startswith('3.') and '/put/{key}' in j['paths'] and '/get/{key}' in j['paths'] or 'want an OpenAPI 3 document with /put/{key} and /get/{key}'"

req GET /docs
check "GET /docs (Swagger UI HTML)" 200 \
  "h.get('content-type', '').startswith('text/html') and 'swagger' in text.lower() or 'want text/html mentioning Swagger UI, content-type ' + repr(h.get('content-type'))"

# --- errors ------------------------------------------------------------------
req GET "/get/$ID-missing"
check "GET unknown key -> 404" 404 "$IS_JSON" "$DETAIL"

req GET "/no-such-endpoint-$ID"
check "GET unknown path -> 404" 404 "$IS_JSON" "$DETAIL"

req GET "/get/$ID?version=999999"
check "GET unknown version -> 404" 404 "$IS_JSON" "$DETAIL"

req POST "/put/$ID" '{"value": '
check "POST bad JSON -> 422" 422 "$IS_JSON" "$DETAIL"

req POST "/put/$ID" '{"not_value": 1}'
check "POST without \"value\" -> 422" 422 "$IS_JSON" "$DETAIL"

req GET "/get/$ID?version=0"
check "GET ?version=0 -> 422" 422 "$IS_JSON" "$DETAIL"

req GET /put/x
check "GET /put/x -> 405 with Allow: POST" 405 \
  "$DETAIL" "('POST' in [m.strip() for m in h.get('allow', '').split(',')] or 'Allow is ' + repr(h.get('allow')))"

# A web page's form or no-cors fetch: refused, nothing written (checked below).
status=$(curl -sS -o "$tmp/body" -D "$tmp/headers" -w '%{http_code}' --max-time 10 -X POST \
  -H 'Content-Type: text/plain' --data-binary '{"value": "csrf"}' "$BASE/put/$ID" 2>&1) || true
check "POST with Content-Type: text/plain -> 415" 415 "$IS_JSON" "$DETAIL"

# DNS rebinding: a server bound to loopback answers only loopback host
# names. The URL alone cannot tell how the server is bound (one on 0.0.0.0
# is reached at 127.0.0.1 too): LOOPBACK_BIND=0 or 1 says it; by default a
# loopback URL is taken for a loopback bind.
loopback=${LOOPBACK_BIND:-}
if [ -z "$loopback" ]; then
  case $BASE in
    http://127.*|http://localhost[:/]*|http://\[::1\]*|https://127.*|https://localhost[:/]*) loopback=1 ;;
    *) loopback=0 ;;
  esac
fi
if [ "$loopback" = 1 ]; then
  HDR=(-H 'Host: rebinding.invalid')
  req GET /keys
  HDR=()
  check "GET with Host: rebinding.invalid on loopback -> 403" 403 "$IS_JSON" "$DETAIL"
fi

# --- the versioned-KV API: conditions, ETags, watch, history, keys, batch,
# delete, purge, metrics (on a second key, so the check below still holds)
K2="$ID-v2"
export SMOKE_K2="$K2"
req POST "/put/$K2?if_version=0" '{"value": "a"}'
check "POST /put/{key}?if_version=0 creates" 200 "eq(j['version'], 1, 'version')"
req POST "/put/$K2?if_version=0" '{"value": "b"}'
check "POST /put/{key}?if_version=0 on an existing key -> 409" 409 "$DETAIL" \
  "eq(j['current_version'], 1, 'current_version')"
HDR=(-H 'If-Match: "1"')
req POST "/put/$K2" '{"value": "b"}'
HDR=()
check "POST /put/{key} with If-Match: \"1\" updates" 200 "eq(j['version'], 2, 'version')"
HDR=(-H 'If-None-Match: "2"')
req GET "/get/$K2"
HDR=()
check "GET /get/{key} with If-None-Match: \"2\" -> 304" 304 "eq(h.get('etag'), '\"2\"', 'ETag header')"
req GET "/get/$K2?wait_after=1&timeout=5"
check "GET /get/{key}?wait_after=1 answers at once with version 2" 200 "eq(j['version'], 2, 'version')"
req GET "/get/$K2?wait_after=2&timeout=1"
check "GET /get/{key}?wait_after=2&timeout=1 times out with the current latest" 200 "eq(j['version'], 2, 'version')"
req GET "/history/$K2?limit=1"
check "GET /history/{key}?limit=1" 200 \
  "eq([v['version'] for v in j['versions']], [2], 'versions')" "eq(j['next_before'], 2, 'next_before')"
req GET "/keys?prefix=$K2&limit=10"
check "GET /keys?prefix=..." 200 "eq([k['key'] for k in j['keys']], [env['SMOKE_K2']], 'keys')"
req POST /batch "{\"puts\": [{\"key\": \"$K2\", \"value\": 3}, {\"key\": \"$K2-b\", \"value\": 1}]}"
check "POST /batch" 200 "eq([r['version'] for r in j['results']], [3, 1], 'versions')"
req DELETE "/delete/$K2"
check "DELETE /delete/{key} writes a tombstone" 200 "eq(j['version'], 4, 'version')"
req GET "/get/$K2"
check "GET of a deleted key -> 404 naming the version" 404 "$DETAIL" "'deleted at version 4' in j['detail'] or 'detail does not say deleted at version 4'"
req GET "/get/$K2?version=1"
check "old versions of a deleted key stay readable" 200 "eq(j['value'], 'a', 'value')"
req DELETE "/delete/$K2?purge=true"
check "DELETE /delete/{key}?purge=true" 200 "eq(j['purged_versions'], 4, 'purged_versions')"
req POST "/put/$K2-t?ttl=30s" '{"value": "short-lived"}'
check "POST /put/{key}?ttl=30s" 200 "eq(j['version'], 1, 'version')"
req GET "/get/$K2-t"
check "GET of a key with a TTL shows expires_at" 200 "'expires_at' in j or 'no expires_at'"
req POST "/put/$K2-t?ttl=0" '{"value": 1}'
check "POST /put/{key}?ttl=0 -> 422 naming the bounds" 422 "$DETAIL" "'30days' in j['detail'] or 'detail does not name the bounds'"
req POST /leases '{"ttl": "10s"}'
check "POST /leases" 201 "eq(j['ttl'], '10s', 'ttl')"
LEASE=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$tmp/body")
req POST "/put/$K2-l?lease=$LEASE" '{"value": "held"}'
check "POST /put/{key}?lease=ID" 200 "eq(j['version'], 1, 'version')"
req POST "/leases/$LEASE/keepalive"
check "POST /leases/{id}/keepalive" 200 "eq(j['id'], $LEASE, 'id')"
req GET "/leases/$LEASE"
check "GET /leases/{id} lists its key" 200 "eq(j['keys'], [env['SMOKE_K2'] + '-l'], 'keys')"
req GET /leases
check "GET /leases" 200 "eq(len(j['leases']), 1, 'leases')"
req DELETE "/leases/$LEASE"
check "DELETE /leases/{id} expires its keys" 200 "eq(j['expired_keys'], 1, 'expired_keys')"
req GET "/get/$K2-l"
check "a revoked lease's key -> 404 expired" 404 "$DETAIL" "'expired at version 2' in j['detail'] or 'detail does not say expired'"
req GET /metrics
check "GET /metrics (Prometheus text)" 200 \
  "'vkv_http_requests_total{' in text and h.get('content-type', '').startswith('text/plain') or 'not Prometheus text'"

# The failed writes above must not have added versions.
req GET "/get/$ID"
check "rejected writes left the key at version 2" 200 "eq(j['version'], 2, 'version')"

echo "smoke: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
