#!/usr/bin/env bash
# Where the CPU of a durable put goes in SQLite mode: a `perf record -g`
# profile of vkv under wrk's put load (or /batch load), the CPU per answer
# over the same window, and the top symbols by self time, by thread and by
# object (vkv, kernel, libc, libsqlite).
#
#   scripts/put-profile.sh [VKV_BIN]     # as root; default target/prof/release/vkv
#
# Build the binary with symbols first (release settings otherwise), e.g.:
#   CARGO_TARGET_DIR=target/prof CARGO_PROFILE_RELEASE_DEBUG=1 \
#     CARGO_PROFILE_RELEASE_STRIP=false cargo build --release --bin vkv
#
# Starts vkv on a fresh database (--cache-size 100 --workers 4, --log-level
# warn, as bench.sh does), puts KEYS keys once, then runs wrk -t1 -c
# CONNECTIONS for DURATION seconds of random puts over those keys (each
# value about 100 bytes, as bench.sh's put workload) or, with
# WORKLOAD=batch, of /batch requests of BATCH_SIZE such puts; meanwhile
# `perf record -g` on vkv for PERF_SECS seconds.
# Environment: DURATION [12], PERF_SECS [8], CONNECTIONS [32], KEYS
# [10000], WORKLOAD [put], BATCH_SIZE [1000], TOP [40] symbols shown, OUT:
# a directory to keep perf.data in. Needs perf, wrk, curl.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

VKV_BIN=${1:-target/prof/release/vkv}
DURATION=${DURATION:-12}
PERF_SECS=${PERF_SECS:-8}
CONNECTIONS=${CONNECTIONS:-32}
KEYS=${KEYS:-10000}
WORKLOAD=${WORKLOAD:-put}
BATCH_SIZE=${BATCH_SIZE:-1000}
TOP=${TOP:-40}
for c in perf wrk curl; do need_cmd "$c" "apt-get install it"; done
[ -x "$VKV_BIN" ] || die "$VKV_BIN is not an executable (build it: see the header)"
case $WORKLOAD in put | batch) ;; *) die "WORKLOAD must be put or batch, got '$WORKLOAD'" ;; esac

work=$(mktemp -d -t vkv-putprof.XXXXXX)
vkv_pid=""
cleanup() {
  [ -z "$vkv_pid" ] || stop_pid "$vkv_pid"
  rm -rf "$work"
}
trap cleanup EXIT

"$VKV_BIN" --bind 127.0.0.1:0 --db "$work/vkv.db" --cache-size 100 --workers 4 \
  --log-level warn 2>"$work/vkv.log" &
vkv_pid=$!
url="http://$(wait_listening "$work/vkv.log" "$vkv_pid")"

cat >"$work/put.lua" <<EOF
local pad = string.rep("x", 64)
local headers = { ["Content-Type"] = "application/json" }
local n = 0
local function entry(key)
  return string.format("{\"key\":\"%s\",\"value\":{\"n\":%d,\"pad\":\"%s\"}}", key, math.random(1, 1000000000), pad)
end
init = function(args) math.randomseed(os.time() + os.clock() * 1000000) end
request = function()
  if "$WORKLOAD" == "batch" then
    local entries = {}
    for i = 1, $BATCH_SIZE do entries[i] = entry("b" .. math.random(1, $((KEYS * 10)))) end
    return wrk.format("POST", "/batch", headers, "{\"puts\":[" .. table.concat(entries, ",") .. "]}")
  end
  -- The first $KEYS requests write every key once, in order.
  n = n + 1
  local key = n <= $KEYS and ("k" .. n) or ("k" .. math.random(1, $KEYS))
  local body = string.format("{\"value\":{\"n\":%d,\"pad\":\"%s\"}}", math.random(1, 1000000000), pad)
  return wrk.format("POST", "/put/" .. key, headers, body)
end
EOF

cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
metric() { curl -fsS "$url/metrics" | awk -v n="$1" '$1 == n { print $2 }'; }

echo "== $WORKLOAD load: wrk -t1 -c$CONNECTIONS -d${DURATION}s on $url (vkv pid $vkv_pid)"
wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$work/put.lua" "$url" >"$work/wrk.out" 2>&1 &
wrk_pid=$!
sleep 2
t0=$(cpu_ticks "$vkv_pid")
ops0=$(metric vkv_writer_ops_total)
groups0=$(metric vkv_writer_batches_total)
perf record -g -o "$work/perf.data" -p "$vkv_pid" -- sleep "$PERF_SECS" 2>"$work/perf.log" >/dev/null
t1=$(cpu_ticks "$vkv_pid")
ops1=$(metric vkv_writer_ops_total)
groups1=$(metric vkv_writer_batches_total)
wait "$wrk_pid" || true
grep -E 'Requests/sec|Latency|99%|Non-2xx|Socket errors' "$work/wrk.out" || true
per=$([ "$WORKLOAD" = batch ] && echo "$BATCH_SIZE" || echo 1)
awk -v t=$((t1 - t0)) -v hz="$(getconf CLK_TCK)" -v o=$((ops1 - ops0)) -v g=$((groups1 - groups0)) -v per="$per" \
  'BEGIN { if (o > 0) printf "during perf: %d writes committed in %d groups (%.1f per group); vkv CPU %.1f us per write, %.2f us per value\n", o, g, o / (g > 0 ? g : 1), t * 1e6 / hz / o, t * 1e6 / hz / o / per }'
if [ -n "${OUT:-}" ]; then
  mkdir -p "$OUT"
  cp "$work/perf.data" "$OUT/perf.data"
  echo "perf.data kept in $OUT"
fi
# (head ends the pipes early: not a failure)
set +o pipefail

echo
echo "== by thread (share of samples)"
perf report -i "$work/perf.data" --no-children --sort comm --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -12
echo
echo "== the writer thread: where its time goes (with callees)"
perf report -i "$work/perf.data" --comm vkv-writer --children --sort sym --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -"$TOP"
echo
echo "== by object"
perf report -i "$work/perf.data" --no-children --sort dso --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -10
echo
echo "== top $TOP symbols by self time"
perf report -i "$work/perf.data" --no-children --sort comm,sym --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -"$TOP"
