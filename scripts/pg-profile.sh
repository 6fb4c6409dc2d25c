#!/usr/bin/env bash
# Where the CPU of a hot GET goes in PostgreSQL mode: a `perf` profile of
# vkv and of the PostgreSQL backends serving it during a wrk load of cached
# latest GETs, and how many read rounds (statements) served how many GETs.
#
#   scripts/pg-profile.sh [VKV_BIN]     # as root; default target/prof/release/vkv
#
# Build the binary with symbols first (release settings otherwise), e.g.:
#   CARGO_TARGET_DIR=target/prof CARGO_PROFILE_RELEASE_DEBUG=1 \
#     CARGO_PROFILE_RELEASE_STRIP=false cargo build --release --features postgres --bin vkv
#
# Starts a throw-away cluster (scripts/pg-cluster.sh, pg_stat_statements
# loaded) and vkv on it (--cache-size 100 --workers 4), puts KEYS keys, runs
# wrk (-t1 -c CONNECTIONS) on /get/k1..kKEYS for DURATION seconds; meanwhile
# `perf record -g` for PERF_SECS seconds on vkv, then on the backends
# (application_name vkv). Prints wrk's figure, the statements PostgreSQL
# ran per GET, and each profile's top symbols by self time (share of
# samples), and by object (vkv, kernel, libc, postgres).
# Environment: DURATION [30], PERF_SECS [8], CONNECTIONS [32], KEYS [10],
# WORKLOAD [cached]: cached (/get/kN) or old (/get/kN?version=1), TOP [30]
# symbols shown, OUT: a directory to keep the two perf.data files in.
# Needs perf, wrk, psql, curl.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

VKV_BIN=${1:-target/prof/release/vkv}
DURATION=${DURATION:-30}
PERF_SECS=${PERF_SECS:-8}
CONNECTIONS=${CONNECTIONS:-32}
KEYS=${KEYS:-10}
WORKLOAD=${WORKLOAD:-cached}
for c in perf wrk psql curl; do need_cmd "$c" "apt-get install it"; done
[ -x "$VKV_BIN" ] || die "$VKV_BIN is not an executable (build it: see the header)"

work=$(mktemp -d -t vkv-prof.XXXXXX)
pg_dir=$(mktemp -d -t vkv-prof-pg.XXXXXX)
vkv_pid=""
cleanup() {
  [ -z "$vkv_pid" ] || stop_pid "$vkv_pid"
  scripts/pg-cluster.sh stop "$pg_dir" || true
  rm -rf "$work"
}
trap cleanup EXIT

admin=$(PG_SERVER_OPTS="-c shared_preload_libraries=pg_stat_statements" scripts/pg-cluster.sh start "$pg_dir")
base=${admin%%\?*}
base=${base%/*}
psql "$admin" -XAtq -c "CREATE DATABASE prof" >/dev/null
psql "$base/prof" -XAtq -c "CREATE EXTENSION pg_stat_statements" >/dev/null
"$VKV_BIN" --bind 127.0.0.1:0 --db "$base/prof" --cache-size 100 --workers 4 \
  --log-level warn 2>"$work/vkv.log" &
vkv_pid=$!
url="http://$(wait_listening "$work/vkv.log" "$vkv_pid")"
for i in $(seq "$KEYS"); do
  curl -fsS -o /dev/null -X POST -H 'Content-Type: application/json' \
    -d '{"value":{"n":'"$i"',"pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}}' "$url/put/k$i"
  curl -fsS -o /dev/null -X POST -H 'Content-Type: application/json' \
    -d '{"value":{"n":'"$i"'}}' "$url/put/k$i"
done
suffix=""
[ "$WORKLOAD" = old ] && suffix="?version=1"
cat >"$work/get.lua" <<EOF
request = function() return wrk.format("GET", "/get/k" .. math.random(1, $KEYS) .. "$suffix") end
EOF
# Warm the cache and the connections, then count from zero.
wrk -t1 -c"$CONNECTIONS" -d2s -s "$work/get.lua" "$url" >/dev/null
psql "$base/prof" -XAtq -c "SELECT pg_stat_statements_reset()" >/dev/null
wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" -s "$work/get.lua" "$url" >"$work/wrk.out" &
wrk_pid=$!
sleep 3
backends=$(psql "$base/prof" -XAtq -c \
  "SELECT string_agg(pid::text, ',') FROM pg_stat_activity WHERE application_name = 'vkv'")
perf record -q -g -o "$work/vkv.perf" -p "$vkv_pid" -- sleep "$PERF_SECS" 2>/dev/null
perf record -q -g -o "$work/pg.perf" -p "$backends" -- sleep "$PERF_SECS" 2>/dev/null
wait "$wrk_pid"
echo "== wrk -c$CONNECTIONS ${DURATION}s, GET /get/k1..k$KEYS$suffix (profiled part of the time)"
grep -E "Requests/sec|Latency|requests in" "$work/wrk.out"
gets=$(awk '/requests in/ {print $1}' "$work/wrk.out")
echo "== statements PostgreSQL ran during it (pg_stat_statements), per GET"
psql "$base/prof" -XAtq -F ' | ' -c "SELECT calls, round(calls::numeric / $gets, 3) AS per_get,
  round((total_exec_time / calls)::numeric * 1000, 1) AS exec_us, left(regexp_replace(query, '\s+', ' ', 'g'), 90)
  FROM pg_stat_statements WHERE calls > 10 ORDER BY calls DESC LIMIT 6"
for side in vkv pg; do
  echo "== $side: share of samples by object"
  perf report -q -i "$work/$side.perf" --no-children --sort dso --stdio -g none 2>/dev/null |
    sed '/^$/d' | head -8  || true
  echo "== $side: top symbols by self time"
  perf report -q -i "$work/$side.perf" --no-children --sort dso,symbol --stdio -g none 2>/dev/null |
    sed '/^$/d' | head -"${TOP:-30}" || true
done
if [ -n "${OUT:-}" ]; then
  mkdir -p "$OUT" && cp "$work/vkv.perf" "$work/pg.perf" "$OUT/" && echo "== profiles kept in $OUT"
fi
