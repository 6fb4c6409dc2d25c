#!/usr/bin/env bash
# Load test: vkv against the "ceiling" (the same accept loop and worker
# pool answering every request with a fixed body, examples/http_ceiling.rs),
# with wrk, on the same machine.
#
#   scripts/bench.sh                       # 10 s per run
#   DURATION=3 scripts/bench.sh            # quicker
#
# It builds the release binaries, starts both servers on free ports (vkv on
# a fresh temporary database, --log-level warn), preloads KEYS keys with
# VERSIONS versions each, then runs every workload against the ceiling and
# then vkv, and prints one table, memory and thread counts, and the results
# as JSON lines. Exits non-zero if any run saw an error (non-2xx answers or
# socket errors).
#
# Environment (defaults in brackets):
#   DURATION [10]      seconds per run
#   CONNECTIONS [32]   wrk connections (one wrk thread: -t1)
#   KEYS [10000]       keys preloaded; more than CACHE_SIZE, so random
#                      GETs over them mostly miss the cache
#   VERSIONS [3]       versions per preloaded key
#   CACHE_SIZE [100]   vkv --cache-size
#   CACHED_KEYS [10]   keys get_cached reads (must fit in the cache)
#   WORKERS [4]        worker threads, both servers
#   WORKLOADS          space-separated subset of: put get_cached
#                      get_uncached get_old_version mix_90_10
#   TIMEOUT [2s]       wrk --timeout (units s, m, h): slower answers count
#                      as errors
# Other vkv settings can be passed as VKV_* variables (e.g. VKV_SYNC=normal).
#
# Needs wrk (Debian/Ubuntu: apt-get install -y wrk), curl, cargo.
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
ALL_WORKLOADS="put get_cached get_uncached get_old_version mix_90_10"
WORKLOADS=${WORKLOADS:-$ALL_WORKLOADS}

for v in DURATION CONNECTIONS KEYS VERSIONS CACHE_SIZE CACHED_KEYS WORKERS; do
  if ! [[ ${!v} =~ ^[0-9]+$ ]] || [ "${!v}" -eq 0 ]; then
    die "$v must be a positive integer, got '${!v}'"
  fi
done
[ "$CACHED_KEYS" -le "$CACHE_SIZE" ] || die "CACHED_KEYS ($CACHED_KEYS) must fit in CACHE_SIZE ($CACHE_SIZE)"
[ "$CACHED_KEYS" -le "$KEYS" ] || die "CACHED_KEYS ($CACHED_KEYS) must be at most KEYS ($KEYS)"
[ "$KEYS" -gt "$CACHE_SIZE" ] || echo "warning: KEYS ($KEYS) <= CACHE_SIZE ($CACHE_SIZE): get_uncached will hit the cache" >&2
for w in $WORKLOADS; do
  [[ " $ALL_WORKLOADS " == *" $w "* ]] || die "unknown workload '$w' (known: $ALL_WORKLOADS)"
done

need_cmd wrk "install it with 'apt-get install -y wrk' (Debian/Ubuntu) or build it from https://github.com/wg/wrk"
need_cmd curl "install it with 'apt-get install -y curl'"
need_cmd cargo "install Rust from https://rustup.rs"

echo "== building release binaries"
cargo build --release --bin vkv --example http_ceiling --example fairness
VKV_BIN=target/release/vkv
CEILING_BIN=target/release/examples/http_ceiling

work=$(mktemp -d -t vkv-bench.XXXXXX)
server_pids=()
wrk_pid=""
cleanup() {
  local pid
  if [ -n "$wrk_pid" ]; then
    kill -TERM "$wrk_pid" 2>/dev/null || true
  fi
  for pid in "${server_pids[@]}"; do
    stop_pid "$pid"
  done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- servers ---
echo "== starting servers"
"$CEILING_BIN" --bind 127.0.0.1:0 --workers "$WORKERS" 2>"$work/ceiling.log" &
ceiling_pid=$!
server_pids+=("$ceiling_pid")
"$VKV_BIN" --bind 127.0.0.1:0 --db "$work/vkv.db" --cache-size "$CACHE_SIZE" \
  --workers "$WORKERS" --log-level warn 2>"$work/vkv.log" &
vkv_pid=$!
server_pids+=("$vkv_pid")
ceiling_addr=$(wait_listening "$work/ceiling.log" "$ceiling_pid")
vkv_addr=$(wait_listening "$work/vkv.log" "$vkv_pid")
CEILING_URL="http://$ceiling_addr"
VKV_URL="http://$vkv_addr"
for url in "$CEILING_URL" "$VKV_URL"; do
  for _ in $(seq 50); do
    curl -fsS -o /dev/null "$url/health" 2>/dev/null && break
    sleep 0.1
  done
  curl -fsS -o /dev/null "$url/health" || die "$url/health does not answer 200"
done
echo "ceiling: $CEILING_URL (pid $ceiling_pid); vkv: $VKV_URL (pid $vkv_pid, database $work/vkv.db)"

declare -A mem
snapshot_mem() { # WHEN
  local s pid
  for s in ceiling vkv; do
    pid=${s}_pid
    mem[$s,$1,rss]=$(proc_field "${!pid}" VmRSS)
    mem[$s,$1,hwm]=$(proc_field "${!pid}" VmHWM)
    mem[$s,$1,threads]=$(proc_field "${!pid}" Threads)
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

# Preload: request i puts version (i div KEYS)+1 of key (i mod KEYS)+1; once
# all are sent it asks /health until every put has answered, then writes a
# marker file (wrk's main thread sleeps out -d, so the script interrupts it).
# The first request() call is a /health: wrk 4.1 calls request() once before
# the run to check the script and throws that request away.
cat >"$work/preload.lua" <<EOF
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
    local f = io.open("$work/preload.done", "w")
    f:write(ok, " ", failed, "\n")
    f:close()
    wrk.thread:stop()
  end
end
EOF

# ---------------------------------------------------------------- preload ---
total=$((KEYS * VERSIONS))
echo "== preloading vkv: $KEYS keys x $VERSIONS versions ($total puts)"
t0=$(date +%s.%N)
wrk -t1 -c"$CONNECTIONS" -d600s --timeout 10s -s "$work/preload.lua" "$VKV_URL" >"$work/preload.out" 2>&1 &
wrk_pid=$!
# Safety net: give up if the database stops growing for 30 s before the
# script reports completion (a put lost to a socket error, say).
db_versions() {
  curl -fsS "$VKV_URL/db/stats" | sed -n 's/.*"total_versions":\([0-9]*\).*/\1/p'
}
last_versions=-1 stalled=0
while kill -0 "$wrk_pid" 2>/dev/null && [ ! -s "$work/preload.done" ]; do
  sleep 0.2
  stalled=$((stalled + 1))
  if [ $((stalled % 5)) -eq 0 ]; then
    now_versions=$(db_versions || echo -2)
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
[ -s "$work/preload.done" ] || { cat "$work/preload.out" >&2; die "preload did not finish"; }
read -r pre_ok pre_failed <"$work/preload.done"
stats=$(curl -fsS "$VKV_URL/db/stats")
db_keys=$(sed -n 's/.*"total_keys":\([0-9]*\).*/\1/p' <<<"$stats")
db_versions=$(sed -n 's/.*"total_versions":\([0-9]*\).*/\1/p' <<<"$stats")
awk -v n="$total" -v a="$t0" -v b="$t1" 'BEGIN { printf "preloaded %d puts in %.1f s (%.0f puts/s)\n", n, b - a, n / (b - a) }'
if [ "$pre_failed" -ne 0 ] || [ "$db_keys" != "$KEYS" ] || [ "$db_versions" != "$total" ]; then
  die "preload: $pre_ok puts answered 200, $pre_failed non-200 answers; database has $db_keys keys, $db_versions versions (want $KEYS, $total)"
fi
snapshot_mem preloaded

# ------------------------------------------------------------------- runs ---
# Prometheus counter from vkv's /metrics, or "" if it has none.
metric() { # TEXT NAME
  awk -v n="$2" '$1 == n { print $2; exit }' <<<"$1"
}
# A number from vkv's /cache/stats JSON.
json_num() { # JSON FIELD
  sed -n "s/.*\"$2\":\\([0-9]*\\).*/\\1/p" <<<"$1"
}

declare -A res
failed_any=0
# run_wrk SERVER WORKLOAD: fills res[SERVER,WORKLOAD,*].
run_wrk() {
  local server=$1 w=$2 url pid out rc=0 metrics_before="" metrics_after="" cache_before="" cache_after=""
  if [ "$server" = vkv ]; then url=$VKV_URL pid=$vkv_pid; else url=$CEILING_URL pid=$ceiling_pid; fi
  out="$work/$w.$server.out"
  if [ "$server" = vkv ]; then
    metrics_before=$(curl -fsS "$url/metrics" 2>/dev/null || true)
    cache_before=$(curl -fsS "$url/cache/stats")
  fi
  wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --timeout "$TIMEOUT" --latency -s "$work/$w.lua" "$url" >"$out" 2>&1 &
  wrk_pid=$!
  # Threads and RSS under load, halfway through.
  sleep "$(awk -v d="$DURATION" 'BEGIN { print d / 2 }')"
  res[$server,$w,load_threads]=$(proc_field "$pid" Threads)
  res[$server,$w,load_rss]=$(proc_field "$pid" VmRSS)
  wait "$wrk_pid" || rc=$?
  wrk_pid=""
  local line
  line=$(grep '^RESULT ' "$out" || true)
  if [ "$rc" -ne 0 ] || [ -z "$line" ]; then
    echo "wrk failed (exit $rc) for $w on $server:" >&2
    cat "$out" >&2
    line="RESULT 0 1 0 0 0 0 0 0 0 0"
    res[$server,$w,wrk_failed]=1
  fi
  local _ n dur st co rd wr to p50 p99 max
  read -r _ n dur st co rd wr to p50 p99 max <<<"$line"
  res[$server,$w,requests]=$n
  res[$server,$w,rps]=$(awk -v n="$n" -v d="$dur" 'BEGIN { printf "%.1f", n / (d / 1e6) }')
  res[$server,$w,p50_ms]=$(awk -v v="$p50" 'BEGIN { printf "%.3f", v / 1000 }')
  res[$server,$w,p99_ms]=$(awk -v v="$p99" 'BEGIN { printf "%.3f", v / 1000 }')
  res[$server,$w,max_ms]=$(awk -v v="$max" 'BEGIN { printf "%.3f", v / 1000 }')
  res[$server,$w,non2xx]=$st
  res[$server,$w,socket_errors]=$((co + rd + wr + to))
  res[$server,$w,errors]=$((st + co + rd + wr + to + ${res[$server,$w,wrk_failed]:-0}))
  res[$server,$w,batch]=null
  res[$server,$w,hit]=null
  if [ "$server" = vkv ]; then
    metrics_after=$(curl -fsS "$url/metrics" 2>/dev/null || true)
    cache_after=$(curl -fsS "$url/cache/stats")
    local b0 b1 o0 o1
    b0=$(metric "$metrics_before" vkv_writer_batches_total)
    b1=$(metric "$metrics_after" vkv_writer_batches_total)
    o0=$(metric "$metrics_before" vkv_writer_ops_total)
    o1=$(metric "$metrics_after" vkv_writer_ops_total)
    if [ -n "$b0" ] && [ -n "$b1" ] && [ -n "$o0" ] && [ -n "$o1" ] && [ "$b1" -gt "$b0" ]; then
      res[$server,$w,batch]=$(awk -v o=$((o1 - o0)) -v b=$((b1 - b0)) 'BEGIN { printf "%.2f", o / b }')
    fi
    local h0 h1 m0 m1
    h0=$(json_num "$cache_before" hits)
    h1=$(json_num "$cache_after" hits)
    m0=$(json_num "$cache_before" misses)
    m1=$(json_num "$cache_after" misses)
    if [ -n "$h0" ] && [ -n "$m1" ] && [ $((h1 - h0 + m1 - m0)) -gt 0 ]; then
      res[$server,$w,hit]=$(awk -v h=$((h1 - h0)) -v m=$((m1 - m0)) 'BEGIN { printf "%.3f", h / (h + m) }')
    fi
  fi
}

echo "== running: ${DURATION}s per run, wrk -t1 -c$CONNECTIONS, ceiling then vkv per workload"
for w in $WORKLOADS; do
  for server in ceiling vkv; do
    printf '%-16s %-8s ... ' "$w" "$server"
    run_wrk "$server" "$w"
    printf '%s req/s, %s errors\n' "${res[$server,$w,rps]}" "${res[$server,$w,errors]}"
  done
  res[$w,ratio]=$(awk -v a="${res[vkv,$w,rps]}" -v b="${res[ceiling,$w,rps]}" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "null" }')
  if [ "${res[ceiling,$w,errors]}" -eq 0 ] && [ "${res[vkv,$w,errors]}" -eq 0 ]; then
    res[$w,status]=ok
  else
    res[$w,status]=FAILED
    failed_any=1
  fi
done
snapshot_mem end

# ----------------------------------------------------------------- report ---
dash() { if [ "$1" = null ]; then echo -; else echo "$1"; fi; }
echo
echo "== results (${DURATION}s per run, $CONNECTIONS connections, $KEYS keys x $VERSIONS versions, cache $CACHE_SIZE, $WORKERS workers)"
printf '%-16s %-8s %10s %9s %9s %7s %8s %6s %5s %-6s\n' \
  workload server "req/s" "p50 ms" "p99 ms" errors "vkv/ceil" batch "hit%" status
for w in $WORKLOADS; do
  for server in ceiling vkv; do
    ratio="" batch="" hit="" status=""
    if [ "$server" = vkv ]; then
      ratio=$(dash "${res[$w,ratio]}")
      batch=$(dash "${res[vkv,$w,batch]}")
      hit=$(awk -v h="${res[vkv,$w,hit]}" 'BEGIN { if (h == "null") print "-"; else printf "%.1f", h * 100 }')
      status=${res[$w,status]}
    fi
    printf '%-16s %-8s %10s %9s %9s %7s %8s %6s %5s %-6s\n' "$w" "$server" \
      "${res[$server,$w,rps]}" "${res[$server,$w,p50_ms]}" "${res[$server,$w,p99_ms]}" \
      "${res[$server,$w,errors]}" "$ratio" "$batch" "$hit" "$status"
  done
done
echo "(errors = non-2xx answers + socket errors; batch = mean group-commit size from /metrics;"
echo " hit% = cache hits / lookups from /cache/stats; per-connection fairness: see below,"
echo " measured by examples/fairness.rs since wrk cannot tell connections apart)"

echo
echo "== per-connection fairness: $CONNECTIONS keep-alive connections opened at once, 5 s of GET /health each"
echo "   (starved = first answer later than 1 s; tiny_http 0.12 starved 8-11 of 32 in 4 of 5 runs here)"
fair_failed=0
for server in ceiling vkv; do
  if [ "$server" = vkv ]; then url=$VKV_URL; else url=$CEILING_URL; fi
  line=$(target/release/examples/fairness --addr "${url#http://}" --connections "$CONNECTIONS" --seconds 5) || fair_failed=1
  printf '%-8s %s\n' "$server" "$line"
done
[ "$fair_failed" = 0 ] || { echo "bench: a connection starved" >&2; failed_any=1; }

echo
echo "== memory and threads (VmRSS / VmHWM in MiB from /proc/PID/status)"
mib() { awk -v k="$1" 'BEGIN { if (k == "?") print "?"; else printf "%.1f", k / 1024 }'; }
printf '%-8s %-10s %8s %8s %8s\n' server when VmRSS VmHWM Threads
for s in ceiling vkv; do
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
side() { # SERVER WORKLOAD: one server's results as a JSON object
  local s=$1 w=$2
  printf '{"rps":%s,"p50_ms":%s,"p99_ms":%s,"max_ms":%s,"requests":%s,"non_2xx":%s,"socket_errors":%s,"errors":%s,"threads_under_load":%s,"rss_kb_under_load":%s' \
    "${res[$s,$w,rps]}" "${res[$s,$w,p50_ms]}" "${res[$s,$w,p99_ms]}" "${res[$s,$w,max_ms]}" \
    "${res[$s,$w,requests]}" "${res[$s,$w,non2xx]}" "${res[$s,$w,socket_errors]}" \
    "${res[$s,$w,errors]}" "$(num "${res[$s,$w,load_threads]}")" "$(num "${res[$s,$w,load_rss]}")"
  if [ "$s" = vkv ]; then
    printf ',"mean_batch":%s,"cache_hit_ratio":%s' "${res[vkv,$w,batch]}" "${res[vkv,$w,hit]}"
  fi
  printf '}'
}
for w in $WORKLOADS; do
  printf '{"workload":"%s","status":"%s","duration_s":%s,"connections":%s,"keys":%s,"cache_size":%s,"ratio":%s,"ceiling":%s,"vkv":%s,"vkv_rss_kb_end":%s,"vkv_hwm_kb_end":%s}\n' \
    "$w" "${res[$w,status]}" "$DURATION" "$CONNECTIONS" "$KEYS" "$CACHE_SIZE" "${res[$w,ratio]}" \
    "$(side ceiling "$w")" "$(side vkv "$w")" "$(num "${mem[vkv,end,rss]}")" "$(num "${mem[vkv,end,hwm]}")"
done

if [ "$failed_any" -ne 0 ]; then
  echo "bench: FAILED (a workload had errors; see above)" >&2
  exit 1
fi
echo "bench: all workloads ok"
