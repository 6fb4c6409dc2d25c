#!/usr/bin/env bash
# Load test: vkv against two references measured in the same run, with
# wrk on the same machine:
# - the "ceiling": vkv's own HTTP layer and worker pool answering every
#   request with a fixed body (examples/http_ceiling.rs);
# - nginx answering `return 200` with one worker process (the reference of
#   issue 10: cached GET should reach 0.7x of it), for the get_cached
#   workload only, since nginx ignores the path;
# - etcd 3.4 (Debian's etcd-server) taking puts through its JSON gateway
#   (`POST /v3/kv/put`, base64 key and value, random keys as in vkv's put
#   workload), for the put workload only: the outside reference for
#   durable writes (issue 25: vkv's PUT at least 3x etcd's).
# Optionally also a second vkv binary (BASELINE_BIN, e.g. a build of an
# older commit), on its own fresh database, to compare two builds in one run.
# With BACKEND=postgres, also vkv on PostgreSQL (a throw-away local cluster,
# PostgreSQL's durability settings at their defaults): `pg1`, one replica,
# and `pg2`, two replicas on one database with wrk's connections split over
# both (req/s summed), each figure next to SQLite mode (`vkv`) in the same
# run; with BASELINE_BIN too, the baseline's `basepg1` and `basepg2` on
# databases of their own, compared replica count for replica count.
#
#   scripts/bench.sh                       # 10 s per run, best of 3 rounds
#   DURATION=3 ROUNDS=1 scripts/bench.sh   # quicker
#   BASELINE_BIN=/tmp/vkv-main scripts/bench.sh
#   BACKEND=postgres scripts/bench.sh      # SQLite, 1 and 2 PostgreSQL replicas
#
# It builds the release binaries, starts the servers on free ports (vkv on
# a fresh temporary database, --log-level warn), preloads KEYS keys with
# VERSIONS versions each, then runs every workload ROUNDS times against
# every server, alternating (ceiling, nginx, vkv, baseline, ceiling, ...),
# keeps each server's best round by requests/s, and prints one table, the
# ratios, memory and thread counts, and the results as JSON lines. Exits
# non-zero if any round saw an error (non-2xx answers or socket errors).
#
# Environment (defaults in brackets):
#   DURATION [10]      seconds per run
#   ROUNDS [3]         alternating rounds per workload; the best one counts
#   CONNECTIONS [32]   wrk connections (one wrk thread: -t1)
#   KEYS [10000]       keys preloaded; more than CACHE_SIZE, so random
#                      GETs over them mostly miss the cache
#   VERSIONS [3]       versions per preloaded key
#   CACHE_SIZE [100]   vkv --cache-size
#   CACHED_KEYS [10]   keys get_cached reads (must fit in the cache)
#   WORKERS [4]        worker threads, both servers
#   WORKLOADS          space-separated subset of: put get_cached
#                      get_uncached get_old_version mix_90_10 batch
#                      (batch: POST /batch of BATCH_SIZE puts of about 100
#                      bytes each on random keys; values/s = req/s x
#                      BATCH_SIZE)
#   BATCH_SIZE [1000]  puts per /batch request (at most vkv's --max-batch)
#   BATCH_TIMEOUT [10s] wrk --timeout of the batch workload
#   TIMEOUT [2s]       wrk --timeout (units s, m, h): slower answers count
#                      as errors
#   NGINX [nginx]      the nginx binary; `off` skips the nginx reference.
#                      If missing, the script installs Debian's nginx-light
#                      with apt-get when run as root, else says how.
#   ETCD [etcd]        the etcd binary (3.4: Debian's etcd-server); `off`
#                      skips the etcd reference. Started on a temporary
#                      data directory and free ports, one member.
#   BASELINE_BIN       a second vkv binary to measure alongside (optional;
#                      with BACKEND=postgres, built with --features postgres)
#   BACKEND [sqlite]   sqlite, or postgres: also measure vkv on PostgreSQL
#                      (builds with --features postgres; needs Debian's
#                      postgresql package, run as root or as a user that
#                      may run initdb)
#   PG_ADMIN_URL       with BACKEND=postgres: use this running server's
#                      admin URL instead of starting a throw-away cluster
#   VKV_BIN, CEILING_BIN  binaries to measure instead of this checkout's
#                      release builds (e.g. another branch's)
#   NICE [0]           nice value of the servers and wrk; on a machine shared
#                      with other work, NICE=-10 (root) keeps the others from
#                      distorting the figures (they slow down meanwhile)
#   FEED [0]           1: at the end, also scripts/bench-feed.py (the change
#                      feed: fan-out, idle streams, catch-up, against etcd)
#                      and scripts/bench-lease.py (leases against etcd), with
#                      this NICE; see docs/benchmarks.md
# Other vkv settings can be passed as VKV_* variables (e.g. VKV_SYNC=normal).
#
# Needs wrk (Debian/Ubuntu: apt-get install -y wrk), nginx, curl, cargo.
set -euo pipefail

cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-32}
KEYS=${KEYS:-10000}
VERSIONS=${VERSIONS:-3}
CACHE_SIZE=${CACHE_SIZE:-100}
CACHED_KEYS=${CACHED_KEYS:-10}
WORKERS=${WORKERS:-4}
TIMEOUT=${TIMEOUT:-2s}
ROUNDS=${ROUNDS:-3}
NGINX=${NGINX:-nginx}
BASELINE_BIN=${BASELINE_BIN:-}
NICE=${NICE:-0}
BACKEND=${BACKEND:-sqlite}
PG_ADMIN_URL=${PG_ADMIN_URL:-}
ETCD=${ETCD:-etcd}
BATCH_SIZE=${BATCH_SIZE:-1000}
BATCH_TIMEOUT=${BATCH_TIMEOUT:-10s}
ALL_WORKLOADS="put get_cached get_uncached get_old_version mix_90_10 batch"
# The default set leaves out batch, which grows the database fast.
WORKLOADS=${WORKLOADS:-put get_cached get_uncached get_old_version mix_90_10}

for v in DURATION ROUNDS CONNECTIONS KEYS VERSIONS CACHE_SIZE CACHED_KEYS WORKERS BATCH_SIZE; do
  if ! [[ ${!v} =~ ^[0-9]+$ ]] || [ "${!v}" -eq 0 ]; then
    die "$v must be a positive integer, got '${!v}'"
  fi
done
[[ $NICE =~ ^-?[0-9]+$ ]] || die "NICE must be an integer, got '$NICE'"
[ "$CACHED_KEYS" -le "$CACHE_SIZE" ] || die "CACHED_KEYS ($CACHED_KEYS) must fit in CACHE_SIZE ($CACHE_SIZE)"
[ "$CACHED_KEYS" -le "$KEYS" ] || die "CACHED_KEYS ($CACHED_KEYS) must be at most KEYS ($KEYS)"
[ "$KEYS" -gt "$CACHE_SIZE" ] || echo "warning: KEYS ($KEYS) <= CACHE_SIZE ($CACHE_SIZE): get_uncached will hit the cache" >&2
for w in $WORKLOADS; do
  [[ " $ALL_WORKLOADS " == *" $w "* ]] || die "unknown workload '$w' (known: $ALL_WORKLOADS)"
done
case $BACKEND in
sqlite) features="" ;;
postgres) features="--features postgres" ;;
*) die "BACKEND must be sqlite or postgres, got '$BACKEND'" ;;
esac
[ "$BACKEND" = sqlite ] || [ $((CONNECTIONS % 2)) -eq 0 ] || die "CONNECTIONS must be even with BACKEND=postgres (split over two replicas)"

need_cmd wrk "install it with 'apt-get install -y wrk' (Debian/Ubuntu) or build it from https://github.com/wg/wrk"
need_cmd curl "install it with 'apt-get install -y curl'"
need_cmd cargo "install Rust from https://rustup.rs"
if [ -n "$BASELINE_BIN" ] && [ ! -x "$BASELINE_BIN" ]; then
  die "BASELINE_BIN=$BASELINE_BIN is not an executable"
fi
if [ "$NGINX" != off ] && ! command -v "$NGINX" >/dev/null 2>&1; then
  if [ "$NGINX" = nginx ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "== installing nginx (apt-get install -y nginx-light)"
    apt-get install -y nginx-light >/dev/null 2>&1 ||
      { apt-get update >/dev/null 2>&1 && apt-get install -y nginx-light >/dev/null 2>&1; } ||
      die "could not install nginx: run 'apt-get install -y nginx-light' (or NGINX=off)"
    # Debian's package may start its own service on port 80: not ours to run.
    if command -v service >/dev/null 2>&1; then service nginx stop >/dev/null 2>&1 || true; fi
  fi
  need_cmd "$NGINX" "install it with 'apt-get install -y nginx-light' (Debian/Ubuntu), or set NGINX=off to skip the reference"
fi

if [ "$ETCD" != off ] && [[ " $WORKLOADS " == *" put "* ]]; then
  need_cmd "$ETCD" "install it with 'apt-get install -y etcd-server' (Debian/Ubuntu), or set ETCD=off to skip the reference"
else
  ETCD=off
fi

echo "== building release binaries"
# shellcheck disable=SC2086 # $features is one optional flag and its value
cargo build --release $features --bin vkv --example http_ceiling --example fairness
VKV_BIN=${VKV_BIN:-target/release/vkv}
CEILING_BIN=${CEILING_BIN:-target/release/examples/http_ceiling}

work=$(mktemp -d -t vkv-bench.XXXXXX)
server_pids=()
wrk_pid=""
pg_dir=""
postmaster=""
cleanup() {
  local pid
  if [ -n "$wrk_pid" ]; then
    kill -TERM $wrk_pid 2>/dev/null || true
  fi
  for pid in "${server_pids[@]}"; do
    stop_pid "$pid"
  done
  if [ -n "$pg_dir" ]; then
    scripts/pg-cluster.sh stop "$pg_dir" || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- servers ---
# A free TCP port on 127.0.0.1 (nginx cannot listen on port 0 and say which).
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null ||
    echo $((20000 + RANDOM % 20000))
}

echo "== starting servers"
declare -A url pid
servers="ceiling vkv"
nice -n "$NICE" "$CEILING_BIN" --bind 127.0.0.1:0 --workers "$WORKERS" 2>"$work/ceiling.log" &
pid[ceiling]=$!
server_pids+=("${pid[ceiling]}")
nice -n "$NICE" "$VKV_BIN" --bind 127.0.0.1:0 --db "$work/vkv.db" --cache-size "$CACHE_SIZE" \
  --workers "$WORKERS" --log-level warn 2>"$work/vkv.log" &
pid[vkv]=$!
server_pids+=("${pid[vkv]}")
if [ -n "$BASELINE_BIN" ]; then
  nice -n "$NICE" "$BASELINE_BIN" --bind 127.0.0.1:0 --db "$work/base.db" --cache-size "$CACHE_SIZE" \
    --workers "$WORKERS" --log-level warn 2>"$work/base.log" &
  pid[base]=$!
  server_pids+=("${pid[base]}")
  servers="$servers base"
fi
# start_vkv NAME DB [BIN]: one more vkv server, on the database DB.
start_vkv() {
  nice -n "$NICE" "${3:-$VKV_BIN}" --bind 127.0.0.1:0 --db "$2" --cache-size "$CACHE_SIZE" \
    --workers "$WORKERS" --log-level warn 2>"$work/$1.log" &
  pid[$1]=$!
  server_pids+=("${pid[$1]}")
}
# urls[SERVER]: every address of a server; pg2 has two (its replicas).
declare -A urls
if [ "$BACKEND" = postgres ]; then
  if [ -z "$PG_ADMIN_URL" ]; then
    # Outside $work: the postgres user must be able to reach it.
    pg_dir=$(mktemp -d -t vkv-bench-pg.XXXXXX)
    PG_ADMIN_URL=$(scripts/pg-cluster.sh start "$pg_dir")
  fi
  need_cmd psql "install it with 'apt-get install -y postgresql-client'"
  suffix="$$_$RANDOM"
  pg_base=${PG_ADMIN_URL%%\?*}
  pg_base=${pg_base%/*}
  pg_dbs="bench1 bench2"
  [ -z "$BASELINE_BIN" ] || pg_dbs="$pg_dbs bench3 bench4"
  for db in $pg_dbs; do
    psql "$PG_ADMIN_URL" -XAtq -c "CREATE DATABASE ${db}_$suffix" >/dev/null
  done
  if [ -n "$pg_dir" ]; then
    postmaster=$(head -n1 "$pg_dir/data/postmaster.pid")
    # The same priority as the servers; backends forked later inherit it.
    if [ "$NICE" != 0 ]; then
      # A child may exit before it is reniced: not an error.
      renice -n "$NICE" -p "$postmaster" $(cat /proc/"$postmaster"/task/*/children) >/dev/null 2>&1 || true
    fi
  fi
  start_vkv pg1 "$pg_base/bench1_$suffix"
  start_vkv pg2 "$pg_base/bench2_$suffix"
  start_vkv pg2b "$pg_base/bench2_$suffix"
  servers="$servers pg1 pg2"
  if [ -n "$BASELINE_BIN" ]; then
    # The baseline on PostgreSQL too (it must be built with the feature).
    start_vkv basepg1 "$pg_base/bench3_$suffix" "$BASELINE_BIN"
    start_vkv basepg2 "$pg_base/bench4_$suffix" "$BASELINE_BIN"
    start_vkv basepg2b "$pg_base/bench4_$suffix" "$BASELINE_BIN"
    servers="$servers basepg1 basepg2"
  fi
fi
for s in $servers ${pid[pg2b]:+pg2b} ${pid[basepg2b]:+basepg2b}; do
  url[$s]="http://$(wait_listening "$work/$s.log" "${pid[$s]}")"
  urls[$s]=${url[$s]}
done
declare -A pids_of
if [ -n "${pid[pg2b]:-}" ]; then
  urls[pg2]="${url[pg2]} ${url[pg2b]}"
  pids_of[pg2]="${pid[pg2]} ${pid[pg2b]}"
fi
if [ -n "${pid[basepg2b]:-}" ]; then
  urls[basepg2]="${url[basepg2]} ${url[basepg2b]}"
  pids_of[basepg2]="${pid[basepg2]} ${pid[basepg2b]}"
fi
if [ "$NGINX" != off ]; then
  # One worker process, no access log, keep-alive connections never closed
  # by a request count (vkv does not close them either); `return 200`
  # answers every path with an empty body.
  nginx_port=$(free_port)
  mkdir -p "$work/nginx"
  cat >"$work/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 100000000;
  keepalive_timeout 75s;
  client_body_temp_path $work/nginx/body;
  server {
    listen 127.0.0.1:$nginx_port;
    location / { return 200; }
  }
}
EOF
  nice -n "$NICE" "$NGINX" -p "$work/nginx" -c "$work/nginx/nginx.conf" 2>"$work/nginx.log" &
  pid[nginx]=$!
  server_pids+=("${pid[nginx]}")
  url[nginx]="http://127.0.0.1:$nginx_port"
fi
if [ "$ETCD" != off ]; then
  # One member on a temporary data directory: its WAL is fsynced before
  # a put is answered, as vkv's commit is (etcd's defaults). A backend
  # quota of 8 GiB, so that long runs never meet the 2 GiB default's alarm.
  etcd_port=$(free_port)
  etcd_peer=$(free_port)
  nice -n "$NICE" "$ETCD" --name bench --data-dir "$work/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$etcd_peer" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer" \
    --initial-cluster "bench=http://127.0.0.1:$etcd_peer" --quota-backend-bytes $((8 * 1024 * 1024 * 1024)) \
    --logger zap --log-outputs stderr --log-level error 2>"$work/etcd.log" &
  pid[etcd]=$!
  server_pids+=("${pid[etcd]}")
  url[etcd]="http://127.0.0.1:$etcd_port"
fi
for s in $servers ${pid[nginx]:+nginx} ${pid[etcd]:+etcd}; do
  path=/health
  [ "$s" = nginx ] && path=/
  for _ in $(seq 50); do
    curl -fsS -o /dev/null "${url[$s]}$path" 2>/dev/null && break
    sleep 0.1
  done
  curl -fsS -o /dev/null "${url[$s]}$path" || { cat "$work/$s.log" >&2; die "${url[$s]}$path does not answer 200"; }
done
for s in $servers ${pid[nginx]:+nginx} ${pid[etcd]:+etcd}; do
  echo "$s: ${url[$s]} (pid ${pid[$s]})"
done
echo "vkv database: $work/vkv.db"
VKV_URL=${url[vkv]}

declare -A mem
snapshot_mem() { # WHEN
  local s
  for s in $servers; do
    mem[$s,$1,rss]=$(proc_field "${pid[$s]}" VmRSS)
    mem[$s,$1,hwm]=$(proc_field "${pid[$s]}" VmHWM)
    mem[$s,$1,threads]=$(proc_field "${pid[$s]}" Threads)
  done
}
sleep 0.5
snapshot_mem idle

# ------------------------------------------------------------ lua scripts ---
# Every workload script ends with the same done(): one machine-readable line.
DONE_LUA='
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %d %d %d %d %d %d %d\n",
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write,
    e.timeout, latency:percentile(50), latency:percentile(99), latency.max))
end
'
# A JSON body of about 100 bytes.
BODY_LUA='
local pad = string.rep("x", 64)
local json_headers = { ["Content-Type"] = "application/json" }
local function put(key)
  local body = string.format("{\"value\":{\"n\":%d,\"pad\":\"%s\"}}", math.random(1, 1000000000), pad)
  return wrk.format("POST", "/put/" .. key, json_headers, body)
end
init = function(args) math.randomseed(os.time() + os.clock() * 1000000) end
'

cat >"$work/put.lua" <<EOF
$BODY_LUA
request = function() return put("k" .. math.random(1, $KEYS)) end
$DONE_LUA
EOF
cat >"$work/get_cached.lua" <<EOF
$BODY_LUA
request = function() return wrk.format("GET", "/get/k" .. math.random(1, $CACHED_KEYS)) end
$DONE_LUA
EOF
cat >"$work/get_uncached.lua" <<EOF
$BODY_LUA
request = function() return wrk.format("GET", "/get/k" .. math.random(1, $KEYS)) end
$DONE_LUA
EOF
cat >"$work/get_old_version.lua" <<EOF
$BODY_LUA
request = function() return wrk.format("GET", "/get/k" .. math.random(1, $KEYS) .. "?version=1") end
$DONE_LUA
EOF
cat >"$work/mix_90_10.lua" <<EOF
$BODY_LUA
request = function()
  local key = "k" .. math.random(1, $KEYS)
  if math.random(1, 10) == 1 then return put(key) end
  return wrk.format("GET", "/get/" .. key)
end
$DONE_LUA
EOF
# BATCH_SIZE puts on random keys (ten times KEYS of them: mostly new keys
# at first, then new versions), each value as put's.
cat >"$work/batch.lua" <<EOF
$BODY_LUA
local entries = {}
request = function()
  for i = 1, $BATCH_SIZE do
    entries[i] = string.format("{\"key\":\"b%d\",\"value\":{\"n\":%d,\"pad\":\"%s\"}}",
      math.random(1, $((KEYS * 10))), math.random(1, 1000000000), pad)
  end
  return wrk.format("POST", "/batch", json_headers, "{\"puts\":[" .. table.concat(entries, ",") .. "]}")
end
$DONE_LUA
EOF
# etcd's JSON gateway: key and value in base64; the same keys and values
# as put.lua.
cat >"$work/put.etcd.lua" <<EOF
local pad = string.rep("x", 64)
local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function b64(s)
  local out, n = {}, #s
  for i = 1, n, 3 do
    local a, b, c = s:byte(i, i + 2)
    local v = a * 65536 + (b or 0) * 256 + (c or 0)
    local q = { math.floor(v / 262144) % 64, math.floor(v / 4096) % 64, math.floor(v / 64) % 64, v % 64 }
    out[#out + 1] = alphabet:sub(q[1] + 1, q[1] + 1) .. alphabet:sub(q[2] + 1, q[2] + 1)
      .. (b and alphabet:sub(q[3] + 1, q[3] + 1) or "=") .. (c and alphabet:sub(q[4] + 1, q[4] + 1) or "=")
  end
  return table.concat(out)
end
local headers = { ["Content-Type"] = "application/json" }
init = function(args) math.randomseed(os.time() + os.clock() * 1000000) end
request = function()
  local value = string.format("{\"n\":%d,\"pad\":\"%s\"}", math.random(1, 1000000000), pad)
  local body = string.format("{\"key\":\"%s\",\"value\":\"%s\"}", b64("k" .. math.random(1, $KEYS)), b64(value))
  return wrk.format("POST", "/v3/kv/put", headers, body)
end
$DONE_LUA
EOF

# Preload: request i puts version (i div KEYS)+1 of key (i mod KEYS)+1; once
# all are sent it asks /health until every put has answered, then writes a
# marker file (wrk's main thread sleeps out -d, so the script interrupts it).
# The first request() call is a /health: wrk 4.1 calls request() once before
# the run to check the script and throws that request away.
# preload SERVER: preloads one vkv server (vkv or base).
preload() {
  local s=$1 done_file="$work/preload.$1.done"
  cat >"$work/preload.$s.lua" <<EOF
$BODY_LUA
local total = $KEYS * $VERSIONS
local primed, sent, ok, failed, finished = false, 0, 0, 0, false
request = function()
  if not primed then
    primed = true
    return wrk.format("GET", "/health")
  end
  if sent < total then
    local key = "k" .. (sent % $KEYS + 1)
    sent = sent + 1
    return put(key)
  end
  return wrk.format("GET", "/health")
end
response = function(status, headers, body)
  if status ~= 200 then
    failed = failed + 1
  elseif string.find(body, "\"operation\"", 1, true) then
    ok = ok + 1
  end
  if not finished and ok + failed >= total then
    finished = true
    local f = io.open("$done_file", "w")
    f:write(ok, " ", failed, "\n")
    f:close()
    wrk.thread:stop()
  end
end
EOF
  local total=$((KEYS * VERSIONS)) t0 t1
  echo "== preloading $s: $KEYS keys x $VERSIONS versions ($total puts)"
  t0=$(date +%s.%N)
  wrk -t1 -c"$CONNECTIONS" -d600s --timeout 10s -s "$work/preload.$s.lua" "${url[$s]}" >"$work/preload.$s.out" 2>&1 &
  wrk_pid=$!
  # Safety net: give up if the database stops growing for 30 s before the
  # script reports completion (a put lost to a socket error, say).
  local last_versions=-1 stalled=0 now_versions
  while kill -0 "$wrk_pid" 2>/dev/null && [ ! -s "$done_file" ]; do
    sleep 0.2
    stalled=$((stalled + 1))
    if [ $((stalled % 5)) -eq 0 ]; then
      now_versions=$(curl -fsS "${url[$s]}/db/stats" | sed -n 's/.*"total_versions":\([0-9]*\).*/\1/p' || echo -2)
      if [ "$now_versions" != "$last_versions" ]; then
        last_versions=$now_versions stalled=0
      elif [ "$stalled" -ge 150 ]; then
        echo "preload: no progress for 30 s at $now_versions versions" >&2
        break
      fi
    fi
  done
  kill -INT "$wrk_pid" 2>/dev/null || true
  wait "$wrk_pid" || true
  wrk_pid=""
  t1=$(date +%s.%N)
  [ -s "$done_file" ] || { cat "$work/preload.$s.out" >&2; die "preload of $s did not finish"; }
  local pre_ok pre_failed stats db_keys db_versions
  read -r pre_ok pre_failed <"$done_file"
  stats=$(curl -fsS "${url[$s]}/db/stats")
  db_keys=$(sed -n 's/.*"total_keys":\([0-9]*\).*/\1/p' <<<"$stats")
  db_versions=$(sed -n 's/.*"total_versions":\([0-9]*\).*/\1/p' <<<"$stats")
  awk -v n="$total" -v a="$t0" -v b="$t1" 'BEGIN { printf "preloaded %d puts in %.1f s (%.0f puts/s)\n", n, b - a, n / (b - a) }'
  if [ "$pre_failed" -ne 0 ] || [ "$db_keys" != "$KEYS" ] || [ "$db_versions" != "$total" ]; then
    die "preload of $s: $pre_ok puts answered 200, $pre_failed non-200 answers; database has $db_keys keys, $db_versions versions (want $KEYS, $total)"
  fi
}

# ---------------------------------------------------------------- preload ---
for s in $servers; do
  [ "$s" = ceiling ] || preload "$s"
done
snapshot_mem preloaded

# ------------------------------------------------------------------- runs ---
# Prometheus counter from vkv's /metrics, or "" if it has none.
# (Summed when TEXT holds several servers' /metrics.)
metric() { # TEXT NAME
  awk -v n="$2" '$1 == n { s += $2; found = 1 } END { if (found) printf "%d\n", s }' <<<"$1"
}
# A number from vkv's /cache/stats JSON.
# (Summed when JSON is several servers' answers, one per line.)
json_num() { # JSON FIELD
  sed -n "s/.*\"$2\":\\([0-9]*\\).*/\\1/p" <<<"$1" | awk '{ s += $1; found = 1 } END { if (found) print s }'
}
# Is SERVER a vkv (with /metrics and /cache/stats)?
is_vkv() { [ "$1" != ceiling ] && [ "$1" != nginx ] && [ "$1" != etcd ]; }
# Is SERVER vkv on PostgreSQL?
is_pg() { case $1 in pg1 | pg2 | basepg1 | basepg2) true ;; *) false ;; esac; }
# The servers a workload runs against: nginx only answers get_cached's
# reference (it ignores the path).
servers_for() { # WORKLOAD
  local list="ceiling"
  if [ "$1" = get_cached ] && [ -n "${pid[nginx]:-}" ]; then list="$list nginx"; fi
  if [ "$1" = put ] && [ -n "${pid[etcd]:-}" ]; then list="$list etcd"; fi
  list="$list vkv"
  if [ -n "$BASELINE_BIN" ]; then list="$list base"; fi
  if [ "$BACKEND" = postgres ]; then list="$list pg1 pg2"; fi
  if [ "$BACKEND" = postgres ] && [ -n "$BASELINE_BIN" ]; then list="$list basepg1 basepg2"; fi
  echo "$list"
}

# CPU time of PID and of its child processes (nginx's worker), in clock
# ticks (utime + stime, fields 14 and 15 of /proc/PID/stat).
cpu_ticks() { # PID
  local p t=0 v
  for p in "$1" $(cat /proc/"$1"/task/*/children 2>/dev/null); do
    v=$(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$p/stat" 2>/dev/null || echo 0)
    t=$((t + ${v:-0}))
  done
  echo "$t"
}
CLK_TCK=$(getconf CLK_TCK 2>/dev/null || echo 100)

declare -A res
FIELDS="requests rps p50_ms p99_ms max_ms non2xx socket_errors errors batch hit load_threads load_rss wrk_failed cpu_us pg_cpu_us"
failed_any=0
# run_wrk SERVER WORKLOAD ROUND: fills res[SERVER,WORKLOAD,ROUND,*].
run_wrk() {
  local server=$1 w=$2 k="$1,$2,$3" p=${pid[$1]} out rc=0 u q
  local -a addrs procs
  read -r -a addrs <<<"${urls[$1]:-${url[$1]}}"
  read -r -a procs <<<"${pids_of[$1]:-${pid[$1]}}"
  local metrics_before="" metrics_after="" cache_before="" cache_after=""
  out="$work/$w.$server.$3.out"
  if is_vkv "$server"; then
    for u in "${addrs[@]}"; do
      metrics_before+=$(curl -fsS "$u/metrics" 2>/dev/null || true)$'\n'
      cache_before+=$(curl -fsS "$u/cache/stats")$'\n'
    done
  fi
  res[$k,wrk_failed]=0
  local cpu0=0 cpu1=0 pg0=0 pg1=0
  for q in "${procs[@]}"; do cpu0=$((cpu0 + $(cpu_ticks "$q"))); done
  if is_pg "$server" && [ -n "$postmaster" ]; then pg0=$(cpu_ticks "$postmaster"); fi
  # One wrk per address, the connections split evenly (two replicas: two
  # clients, as behind a load balancer, without its cost).
  local i wrks=() conns=$((CONNECTIONS / ${#addrs[@]})) script="$work/$w.lua" timeout=$TIMEOUT
  # A batch of a thousand puts takes milliseconds, and 32 of them queue.
  [ "$w" != batch ] || timeout=$BATCH_TIMEOUT
  [ "$server" != etcd ] || script="$work/$w.etcd.lua"
  for i in "${!addrs[@]}"; do
    nice -n "$NICE" wrk -t1 -c"$conns" -d"${DURATION}s" --timeout "$timeout" --latency -s "$script" "${addrs[$i]}" >"$out.$i" 2>&1 &
    wrks+=($!)
  done
  wrk_pid="${wrks[*]}"
  # Threads and RSS under load, halfway through.
  sleep "$(awk -v d="$DURATION" 'BEGIN { print d / 2 }')"
  res[$k,load_threads]=$(proc_field "$p" Threads)
  res[$k,load_rss]=$(proc_field "$p" VmRSS)
  for i in "${!wrks[@]}"; do
    wait "${wrks[$i]}" || rc=$?
  done
  wrk_pid=""
  for q in "${procs[@]}"; do cpu1=$((cpu1 + $(cpu_ticks "$q"))); done
  if is_pg "$server" && [ -n "$postmaster" ]; then pg1=$(cpu_ticks "$postmaster"); fi
  cat "$out".* >"$out"
  local line
  # Several wrk runs add up: requests and errors summed, the longest
  # duration, the slower run's latency percentiles.
  line=$(awk -v want="${#addrs[@]}" '$1 == "RESULT" {
      found++; n += $2; if ($3 > dur) dur = $3; for (i = 4; i <= 8; i++) e[i] += $i
      for (i = 9; i <= 11; i++) if ($i > l[i]) l[i] = $i }
    END { if (found == want) printf "RESULT %d %d %d %d %d %d %d %d %d %d\n", n, dur, e[4], e[5], e[6], e[7], e[8], l[9], l[10], l[11] }' "$out")
  if [ "$rc" -ne 0 ] || [ -z "$line" ]; then
    echo "wrk failed (exit $rc) for $w on $server:" >&2
    cat "$out" >&2
    line="RESULT 0 1 0 0 0 0 0 0 0 0"
    res[$k,wrk_failed]=1
  fi
  local _ n dur st co rd wr to p50 p99 max
  read -r _ n dur st co rd wr to p50 p99 max <<<"$line"
  res[$k,requests]=$n
  res[$k,rps]=$(awk -v n="$n" -v d="$dur" 'BEGIN { printf "%.1f", n / (d / 1e6) }')
  res[$k,p50_ms]=$(awk -v v="$p50" 'BEGIN { printf "%.3f", v / 1000 }')
  res[$k,p99_ms]=$(awk -v v="$p99" 'BEGIN { printf "%.3f", v / 1000 }')
  res[$k,max_ms]=$(awk -v v="$max" 'BEGIN { printf "%.3f", v / 1000 }')
  res[$k,non2xx]=$st
  # Server CPU time per answer: less sensitive than req/s to other
  # processes on the machine.
  res[$k,cpu_us]=$(awk -v t=$((cpu1 - cpu0)) -v hz="$CLK_TCK" -v n="$n" 'BEGIN { if (n > 0) printf "%.1f", t * 1e6 / hz / n; else print "null" }')
  # PostgreSQL's CPU per answer (every process of the cluster), when we
  # started the cluster.
  res[$k,pg_cpu_us]=null
  if is_pg "$server" && [ -n "$postmaster" ]; then
    res[$k,pg_cpu_us]=$(awk -v t=$((pg1 - pg0)) -v hz="$CLK_TCK" -v n="$n" 'BEGIN { if (n > 0) printf "%.1f", t * 1e6 / hz / n; else print "null" }')
  fi
  res[$k,socket_errors]=$((co + rd + wr + to))
  res[$k,errors]=$((st + co + rd + wr + to + ${res[$k,wrk_failed]}))
  res[$k,batch]=null
  res[$k,hit]=null
  if is_vkv "$server"; then
    for u in "${addrs[@]}"; do
      metrics_after+=$(curl -fsS "$u/metrics" 2>/dev/null || true)$'\n'
      cache_after+=$(curl -fsS "$u/cache/stats")$'\n'
    done
    local b0 b1 o0 o1
    b0=$(metric "$metrics_before" vkv_writer_batches_total)
    b1=$(metric "$metrics_after" vkv_writer_batches_total)
    o0=$(metric "$metrics_before" vkv_writer_ops_total)
    o1=$(metric "$metrics_after" vkv_writer_ops_total)
    if [ -n "$b0" ] && [ -n "$b1" ] && [ -n "$o0" ] && [ -n "$o1" ] && [ "$b1" -gt "$b0" ]; then
      res[$k,batch]=$(awk -v o=$((o1 - o0)) -v b=$((b1 - b0)) 'BEGIN { printf "%.2f", o / b }')
    fi
    local h0 h1 m0 m1
    h0=$(json_num "$cache_before" hits)
    h1=$(json_num "$cache_after" hits)
    m0=$(json_num "$cache_before" misses)
    m1=$(json_num "$cache_after" misses)
    if [ -n "$h0" ] && [ -n "$m1" ] && [ $((h1 - h0 + m1 - m0)) -gt 0 ]; then
      res[$k,hit]=$(awk -v h=$((h1 - h0)) -v m=$((m1 - m0)) 'BEGIN { printf "%.3f", h / (h + m) }')
    fi
  fi
}
# keep_best SERVER WORKLOAD ROUND: makes that round res[SERVER,WORKLOAD,*]
# if it served more requests/s than the best so far; errors add up over
# rounds (one failed round fails the workload).
keep_best() {
  local s=$1 w=$2 k="$1,$2,$3" f
  local errors_so_far=${res[$s,$w,errors_all]:-0}
  res[$s,$w,errors_all]=$((errors_so_far + ${res[$k,errors]}))
  res[$s,$w,rps_all]="${res[$s,$w,rps_all]:-}${res[$s,$w,rps_all]:+ }${res[$k,rps]}"
  if [ -z "${res[$s,$w,rps]:-}" ] || awk -v a="${res[$k,rps]}" -v b="${res[$s,$w,rps]}" 'BEGIN { exit !(a > b) }'; then
    for f in $FIELDS; do res[$s,$w,$f]=${res[$k,$f]}; done
  fi
}
# ratio A B: A / B with three decimals, or null.
ratio() {
  awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0 && a != "") printf "%.3f", a / b; else print "null" }'
}

# How busy the CPUs are while none of ours works (0.5 s just before each
# round, the servers idle): other processes competing for the CPUs distort
# every figure, the one-process nginx's most of all.
cpu_jiffies() { awk '$1 == "cpu" { print $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9, $5 + $6; exit }' /proc/stat; }
others_busy() {
  local t0 i0 t1 i1
  read -r t0 i0 <<<"$(cpu_jiffies)"
  sleep 0.5
  read -r t1 i1 <<<"$(cpu_jiffies)"
  awk -v t=$((t1 - t0)) -v i=$((i1 - i0)) 'BEGIN { if (t > 0) printf "%.0f", 100 * (t - i) / t; else print 0 }'
}
max_busy=0

echo "== running: ${DURATION}s per run, wrk -t1 -c$CONNECTIONS, $ROUNDS alternating round(s) per workload"
for w in $WORKLOADS; do
  for ((round = 1; round <= ROUNDS; round++)); do
    for server in $(servers_for "$w"); do
      busy=$(others_busy)
      [ "$busy" -le "$max_busy" ] || max_busy=$busy
      printf '%-16s %-8s round %d (CPUs %2s%% busy before) ... ' "$w" "$server" "$round" "$busy"
      run_wrk "$server" "$w" "$round"
      keep_best "$server" "$w" "$round"
      printf '%s req/s, p99 %s ms, %s errors\n' "${res[$server,$w,$round,rps]}" \
        "${res[$server,$w,$round,p99_ms]}" "${res[$server,$w,$round,errors]}"
    done
  done
  res[$w,ratio]=$(ratio "${res[vkv,$w,rps]}" "${res[ceiling,$w,rps]}")
  res[$w,status]=ok
  for server in $(servers_for "$w"); do
    res[$server,$w,errors]=${res[$server,$w,errors_all]}
    [ "${res[$server,$w,errors]}" -eq 0 ] || res[$w,status]=FAILED
  done
  [ "${res[$w,status]}" = ok ] || failed_any=1
done
snapshot_mem end

# ----------------------------------------------------------------- report ---
dash() { if [ "$1" = null ]; then echo -; else echo "$1"; fi; }
echo
echo "== results (best of $ROUNDS round(s) of ${DURATION}s by req/s, $CONNECTIONS connections, $KEYS keys x $VERSIONS versions, cache $CACHE_SIZE, $WORKERS workers)"
printf '%-16s %-8s %10s %9s %9s %8s %7s %8s %6s %5s %-6s  %s\n' \
  workload server "req/s" "p50 ms" "p99 ms" "cpu us" errors "vkv/ceil" batch "hit%" status "req/s per round"
for w in $WORKLOADS; do
  for server in $(servers_for "$w"); do
    r="" batch="" hit="" status=""
    if is_vkv "$server"; then
      r=$(dash "$(ratio "${res[$server,$w,rps]}" "${res[ceiling,$w,rps]}")")
      batch=$(dash "${res[$server,$w,batch]}")
      hit=$(awk -v h="${res[$server,$w,hit]}" 'BEGIN { if (h == "null") print "-"; else printf "%.1f", h * 100 }')
    fi
    [ "$server" = vkv ] && status=${res[$w,status]}
    printf '%-16s %-8s %10s %9s %9s %8s %7s %8s %6s %5s %-6s  %s\n' "$w" "$server" \
      "${res[$server,$w,rps]}" "${res[$server,$w,p50_ms]}" "${res[$server,$w,p99_ms]}" \
      "${res[$server,$w,cpu_us]}" "${res[$server,$w,errors]}" "$r" "$batch" "$hit" "$status" "${res[$server,$w,rps_all]}"
  done
done
echo "(cpu us = the server process's CPU time (user + system, every thread and child) per answer in the best round;"
echo " errors = non-2xx answers + socket errors over all rounds; batch = mean group-commit size"
echo " from /metrics; hit% = cache hits / lookups from /cache/stats; per-connection fairness:"
echo " see below, measured by examples/fairness.rs since wrk cannot tell connections apart)"

nginx_ratio=null
if [[ " $WORKLOADS " == *" get_cached "* ]] && [ -n "${pid[nginx]:-}" ]; then
  nginx_ratio=$(ratio "${res[vkv,get_cached,rps]}" "${res[nginx,get_cached,rps]}")
  echo
  printf '== vkv cached GET / nginx return 200 (1 worker): %s (%s / %s req/s; target >= 0.7)\n' \
    "$nginx_ratio" "${res[vkv,get_cached,rps]}" "${res[nginx,get_cached,rps]}"
  printf '   server CPU per answer: vkv %s us, nginx %s us (nginx/vkv %s)\n' \
    "${res[vkv,get_cached,cpu_us]}" "${res[nginx,get_cached,cpu_us]}" \
    "$(ratio "${res[nginx,get_cached,cpu_us]}" "${res[vkv,get_cached,cpu_us]}")"
fi
etcd_ratio=null
if [[ " $WORKLOADS " == *" put "* ]]; then
  echo
  printf '== durable PUT: vkv %s req/s, %s us of CPU per answer (the whole vkv process: user +\n' \
    "${res[vkv,put,rps]}" "${res[vkv,put,cpu_us]}"
  printf '   system time of every thread, /proc/PID/stat before and after the round, over its answers; target <= 15)\n'
  if [ -n "${pid[etcd]:-}" ]; then
    etcd_ratio=$(ratio "${res[vkv,put,rps]}" "${res[etcd,put,rps]}")
    printf '   vkv / etcd 3.4 (JSON gateway): %s (%s / %s req/s; target >= 3); etcd CPU per answer %s us, p99 %s ms (vkv %s ms)\n' \
      "$etcd_ratio" "${res[vkv,put,rps]}" "${res[etcd,put,rps]}" "${res[etcd,put,cpu_us]}" \
      "${res[etcd,put,p99_ms]}" "${res[vkv,put,p99_ms]}"
  fi
fi
if [[ " $WORKLOADS " == *" mix_90_10 "* ]] && [[ " $WORKLOADS " == *" get_cached "* ]]; then
  printf '== 90/10 mix / cached GET: %s (target >= 0.8)\n' "$(ratio "${res[vkv,mix_90_10,rps]}" "${res[vkv,get_cached,rps]}")"
fi
batch_values=null
if [[ " $WORKLOADS " == *" batch "* ]]; then
  batch_values=$(awk -v r="${res[vkv,batch,rps]}" -v n="$BATCH_SIZE" 'BEGIN { printf "%.0f", r * n }')
  printf '== /batch of %s puts: %s values/s durable (target >= 300000 with 1000), %s us of CPU per value\n' \
    "$BATCH_SIZE" "$batch_values" "$(awk -v c="${res[vkv,batch,cpu_us]}" -v n="$BATCH_SIZE" 'BEGIN { printf "%.2f", c / n }')"
  if [ -n "$BASELINE_BIN" ]; then
    printf '   baseline: %s values/s\n' "$(awk -v r="${res[base,batch,rps]}" -v n="$BATCH_SIZE" 'BEGIN { printf "%.0f", r * n }')"
  fi
fi
if [ "$max_busy" -gt 20 ]; then
  echo
  echo "warning: before some rounds the CPUs were already up to $max_busy% busy with other (NICE=$NICE)"
  echo "  processes: every figure is low and noisy, and the one-process nginx loses most"
  echo "  (the scheduler shares CPU per thread), so the vkv/nginx ratio reads too high."
  echo "  Measure on a quiet machine."
fi
if [ "$BACKEND" = postgres ]; then
  echo
  echo "== PostgreSQL / SQLite mode (vkv), best rounds: req/s ratio (target); p99 ms; CPU us per answer"
  echo "   pg1: one replica; pg2: two replicas on one database, wrk split over both;"
  echo "   CPU: vkv process(es) + PostgreSQL (all its processes) for pg1/pg2, vkv for SQLite mode"
  for w in $WORKLOADS; do
    case $w in
    get_cached) target=0.5 ;;
    get_uncached | get_old_version | put) target=0.4 ;;
    *) target=- ;;
    esac
    printf '%-16s pg1 %6s  pg2 %6s  (>= %s)  p99 %s / %s / %s  CPU %s / %s+%s / %s+%s\n' "$w" \
      "$(ratio "${res[pg1,$w,rps]}" "${res[vkv,$w,rps]}")" "$(ratio "${res[pg2,$w,rps]}" "${res[vkv,$w,rps]}")" \
      "$target" "${res[vkv,$w,p99_ms]}" "${res[pg1,$w,p99_ms]}" "${res[pg2,$w,p99_ms]}" \
      "${res[vkv,$w,cpu_us]}" "${res[pg1,$w,cpu_us]}" "${res[pg1,$w,pg_cpu_us]}" \
      "${res[pg2,$w,cpu_us]}" "${res[pg2,$w,pg_cpu_us]}"
  done
fi
if [ -n "$BASELINE_BIN" ]; then
  echo
  echo "== vkv / baseline ($BASELINE_BIN), best rounds: req/s ratio, p99 ms"
  for w in $WORKLOADS; do
    printf '%-16s %6s  p99 %s vs %s ms, CPU per answer %s vs %s us\n' "$w" \
      "$(ratio "${res[vkv,$w,rps]}" "${res[base,$w,rps]}")" \
      "${res[vkv,$w,p99_ms]}" "${res[base,$w,p99_ms]}" "${res[vkv,$w,cpu_us]}" "${res[base,$w,cpu_us]}"
    if [ "$BACKEND" = postgres ]; then
      for r in pg1 pg2; do
        printf '  %-14s %6s  p99 %s vs %s ms, CPU per answer %s+%s vs %s+%s us (vkv+PostgreSQL)\n' "$r" \
          "$(ratio "${res[$r,$w,rps]}" "${res[base$r,$w,rps]}")" \
          "${res[$r,$w,p99_ms]}" "${res[base$r,$w,p99_ms]}" "${res[$r,$w,cpu_us]}" "${res[$r,$w,pg_cpu_us]}" \
          "${res[base$r,$w,cpu_us]}" "${res[base$r,$w,pg_cpu_us]}"
      done
    fi
  done
fi

echo
echo "== per-connection fairness: $CONNECTIONS keep-alive connections opened at once, 5 s of GET /health each"
echo "   (starved = first answer later than 1 s; tiny_http 0.12 starved 8-11 of 32 in 4 of 5 runs here)"
fair_failed=0
for server in $servers; do
  line=$(target/release/examples/fairness --addr "${url[$server]#http://}" --connections "$CONNECTIONS" --seconds 5) || fair_failed=1
  printf '%-8s %s\n' "$server" "$line"
done
[ "$fair_failed" = 0 ] || { echo "bench: a connection starved" >&2; failed_any=1; }

echo
echo "== memory and threads (VmRSS / VmHWM in MiB from /proc/PID/status)"
mib() { awk -v k="$1" 'BEGIN { if (k == "?") print "?"; else printf "%.1f", k / 1024 }'; }
printf '%-8s %-10s %8s %8s %8s\n' server when VmRSS VmHWM Threads
for s in $servers; do
  for when in idle preloaded end; do
    [ "$s" = ceiling ] && [ "$when" = preloaded ] && continue
    printf '%-8s %-10s %8s %8s %8s\n' "$s" "$when" "$(mib "${mem[$s,$when,rss]}")" \
      "$(mib "${mem[$s,$when,hwm]}")" "${mem[$s,$when,threads]}"
  done
  max_threads=0
  for w in $WORKLOADS; do
    t=${res[$s,$w,load_threads]}
    if [[ $t =~ ^[0-9]+$ ]] && [ "$t" -gt "$max_threads" ]; then
      max_threads=$t
    fi
  done
  printf '%-8s %-10s %8s %8s %8s\n' "$s" "under load" - - "$max_threads"
done

echo
echo "== JSON lines"
num() { if [[ $1 =~ ^[0-9]+$ ]]; then echo "$1"; else echo null; fi; }
side() { # SERVER WORKLOAD: one server's best round as a JSON object
  local s=$1 w=$2
  printf '{"rps":%s,"cpu_us_per_answer":%s,"p50_ms":%s,"p99_ms":%s,"max_ms":%s,"requests":%s,"non_2xx":%s,"socket_errors":%s,"errors":%s,"threads_under_load":%s,"rss_kb_under_load":%s,"rps_per_round":[%s]' \
    "${res[$s,$w,rps]}" "${res[$s,$w,cpu_us]}" "${res[$s,$w,p50_ms]}" "${res[$s,$w,p99_ms]}" "${res[$s,$w,max_ms]}" \
    "${res[$s,$w,requests]}" "${res[$s,$w,non2xx]}" "${res[$s,$w,socket_errors]}" \
    "${res[$s,$w,errors]}" "$(num "${res[$s,$w,load_threads]}")" "$(num "${res[$s,$w,load_rss]}")" \
    "$(tr ' ' ',' <<<"${res[$s,$w,rps_all]}")"
  if is_vkv "$s"; then
    printf ',"mean_batch":%s,"cache_hit_ratio":%s' "${res[$s,$w,batch]}" "${res[$s,$w,hit]}"
  fi
  if is_pg "$s"; then
    printf ',"replicas":%s,"postgres_cpu_us_per_answer":%s' "$(wc -w <<<"${urls[$s]}")" "${res[$s,$w,pg_cpu_us]}"
  fi
  printf '}'
}
for w in $WORKLOADS; do
  extra=""
  for s in $(servers_for "$w"); do
    case $s in ceiling | vkv) ;; *) extra="$extra,\"$s\":$(side "$s" "$w")" ;; esac
  done
  if [ "$w" = get_cached ]; then extra="$extra,\"ratio_nginx\":$nginx_ratio"; fi
  if [ "$w" = put ]; then extra="$extra,\"ratio_etcd\":$etcd_ratio"; fi
  if [ "$w" = batch ]; then extra="$extra,\"batch_size\":$BATCH_SIZE,\"values_per_s\":$batch_values"; fi
  printf '{"workload":"%s","status":"%s","max_others_busy_pct":%s,"duration_s":%s,"rounds":%s,"connections":%s,"keys":%s,"cache_size":%s,"ratio":%s,"ceiling":%s,"vkv":%s%s,"vkv_rss_kb_end":%s,"vkv_hwm_kb_end":%s}\n' \
    "$w" "${res[$w,status]}" "$max_busy" "$DURATION" "$ROUNDS" "$CONNECTIONS" "$KEYS" "$CACHE_SIZE" "${res[$w,ratio]}" \
    "$(side ceiling "$w")" "$(side vkv "$w")" "$extra" "$(num "${mem[vkv,end,rss]}")" "$(num "${mem[vkv,end,hwm]}")"
done

if [ "${FEED:-0}" = 1 ]; then
  echo
  NICE=$NICE python3 scripts/bench-feed.py --vkv "$VKV_BIN" || failed_any=1
  echo
  NICE=$NICE python3 scripts/bench-lease.py --vkv "$VKV_BIN" || failed_any=1
fi

if [ "$failed_any" -ne 0 ]; then
  echo "bench: FAILED (a workload had errors or a feed or lease target was missed; see above)" >&2
  exit 1
fi
echo "bench: all workloads ok"
