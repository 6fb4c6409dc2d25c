#!/usr/bin/env bash
# Soak test: a long mixed load against one vkv process, watching its memory.
#
#   scripts/soak.sh                  # 300 s
#   DURATION=30 scripts/soak.sh      # quick check
#
# It builds the release binary, starts vkv on a fresh temporary database
# (--log-level warn), preloads KEYS keys, then runs wrk for DURATION seconds
# with a 90/10 GET/PUT mix over those keys. It samples the server's RSS
# (VmRSS) after a warm-up (WARMUP, default 10% of DURATION) and then every
# few seconds until the end, and reports requests served, errors (non-2xx
# answers and socket errors) and RSS. Exits non-zero if there was any error,
# if RSS grew by more than MAX_RSS_GROWTH_PCT percent between the end of the
# warm-up and the end, or if the server died or stopped answering /health.
#
# Environment (defaults in brackets):
#   DURATION [300]            seconds of load
#   WARMUP [DURATION/10]      seconds before the first RSS sample
#   CONNECTIONS [16]          wrk connections (one wrk thread: -t1)
#   KEYS [3000]               keys preloaded and then read and written
#   MAX_RSS_GROWTH_PCT [10]   allowed RSS growth after the warm-up
#   TIMEOUT [2s]              wrk --timeout: slower answers count as errors
# Other vkv settings can be passed as VKV_* variables (e.g. VKV_SYNC=normal).
#
# Needs wrk (Debian/Ubuntu: apt-get install -y wrk), curl, cargo.
set -euo pipefail

cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

DURATION=${DURATION:-300}
WARMUP=${WARMUP:-$((DURATION / 10))}
CONNECTIONS=${CONNECTIONS:-16}
KEYS=${KEYS:-3000}
MAX_RSS_GROWTH_PCT=${MAX_RSS_GROWTH_PCT:-10}
TIMEOUT=${TIMEOUT:-2s}

for v in DURATION CONNECTIONS KEYS MAX_RSS_GROWTH_PCT; do
  [[ ${!v} =~ ^[0-9]+$ ]] && [ "${!v}" -gt 0 ] || die "$v must be a positive integer, got '${!v}'"
done
[[ $WARMUP =~ ^[0-9]+$ ]] || die "WARMUP must be a whole number of seconds, got '$WARMUP'"
[ "$WARMUP" -ge 1 ] || WARMUP=1
[ "$WARMUP" -lt "$DURATION" ] || die "WARMUP ($WARMUP s) must be shorter than DURATION ($DURATION s)"

need_cmd wrk "install it with 'apt-get install -y wrk' (Debian/Ubuntu) or build it from https://github.com/wg/wrk"
need_cmd curl "install it with 'apt-get install -y curl'"
need_cmd cargo "install Rust from https://rustup.rs"

echo "== building the release binary"
cargo build --release --bin vkv
VKV_BIN=target/release/vkv

work=$(mktemp -d -t vkv-soak.XXXXXX)
vkv_pid=""
wrk_pid=""
cleanup() {
  if [ -n "$wrk_pid" ]; then
    kill "$wrk_pid" 2>/dev/null || true
    wait "$wrk_pid" 2>/dev/null || true
  fi
  if [ -n "$vkv_pid" ]; then
    stop_pid "$vkv_pid"
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "== starting vkv"
"$VKV_BIN" --bind 127.0.0.1:0 --db "$work/soak.db" --log-level warn 2>"$work/vkv.log" &
vkv_pid=$!
addr=$(wait_listening "$work/vkv.log" "$vkv_pid")
URL="http://$addr"
for _ in $(seq 50); do
  curl -fsS -o /dev/null "$URL/health" 2>/dev/null && break
  sleep 0.1
done
curl -fsS -o /dev/null "$URL/health" || die "$URL/health does not answer 200"
echo "vkv: $URL (pid $vkv_pid, database $work/soak.db)"

# ---------------------------------------------------------------- preload ---
# Every key exists before the load starts, so every GET answers 200.
echo "== preloading $KEYS keys"
for ((first = 1; first <= KEYS; first += 1000)); do
  last=$((first + 999 < KEYS ? first + 999 : KEYS))
  awk -v a="$first" -v b="$last" 'BEGIN {
    printf "{\"puts\":["
    for (i = a; i <= b; i++) printf "%s{\"key\":\"k%d\",\"value\":{\"n\":%d,\"pad\":\"preload\"}}", (i > a ? "," : ""), i, i
    printf "]}"
  }' >"$work/batch.json"
  curl -fsS -o /dev/null -X POST -H 'Content-Type: application/json' \
    --data-binary "@$work/batch.json" "$URL/batch" || die "preload batch $first..$last failed"
done
stats=$(curl -fsS "$URL/db/stats")
db_keys=$(sed -n 's/.*"total_keys":\([0-9]*\).*/\1/p' <<<"$stats")
[ "$db_keys" = "$KEYS" ] || die "preload: database has $db_keys keys, want $KEYS"

# ------------------------------------------------------------------- load ---
cat >"$work/mix.lua" <<EOF
local pad = string.rep("x", 64)
local json_headers = { ["Content-Type"] = "application/json" }
init = function(args) math.randomseed(os.time() + os.clock() * 1000000) end
request = function()
  local key = "k" .. math.random(1, $KEYS)
  if math.random(1, 10) == 1 then
    local body = string.format("{\"value\":{\"n\":%d,\"pad\":\"%s\"}}", math.random(1, 1000000000), pad)
    return wrk.format("POST", "/put/" .. key, json_headers, body)
  end
  return wrk.format("GET", "/get/" .. key)
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %d %d %d %d %d %d\n",
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write,
    e.timeout, latency:percentile(50), latency:percentile(99)))
end
EOF

echo "== running ${DURATION}s of 90/10 GET/PUT over $KEYS keys (wrk -t1 -c$CONNECTIONS), warm-up ${WARMUP}s"
rss_idle=$(proc_field "$vkv_pid" VmRSS)
wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --timeout "$TIMEOUT" --latency -s "$work/mix.lua" "$URL" >"$work/wrk.out" 2>&1 &
wrk_pid=$!
t0=$(date +%s)
sleep "$WARMUP"
rss_start=$(proc_field "$vkv_pid" VmRSS)
rss_end=$rss_start
rss_max=$rss_start
threads_max=$(proc_field "$vkv_pid" Threads)
# Sample about 20 times over the rest of the run, at least every 10 s.
every=$(((DURATION - WARMUP) / 20))
[ "$every" -ge 1 ] || every=1
[ "$every" -le 10 ] || every=10
while kill -0 "$wrk_pid" 2>/dev/null; do
  sleep "$every"
  kill -0 "$wrk_pid" 2>/dev/null || break
  kill -0 "$vkv_pid" 2>/dev/null || break
  rss=$(proc_field "$vkv_pid" VmRSS)
  threads=$(proc_field "$vkv_pid" Threads)
  [[ $rss =~ ^[0-9]+$ ]] || continue
  rss_end=$rss
  [ "$rss" -le "$rss_max" ] || rss_max=$rss
  [ "$threads" -le "$threads_max" ] || threads_max=$threads
  printf '  t=%4ds  VmRSS %6d kB  Threads %s\n' "$(($(date +%s) - t0))" "$rss" "$threads"
done
wrk_rc=0
wait "$wrk_pid" || wrk_rc=$?
wrk_pid=""

# ----------------------------------------------------------------- report ---
failed=()
line=$(grep '^RESULT ' "$work/wrk.out" || true)
if [ "$wrk_rc" -ne 0 ] || [ -z "$line" ]; then
  cat "$work/wrk.out" >&2
  failed+=("wrk failed (exit $wrk_rc)")
  line="RESULT 0 1 0 0 0 0 0 0 0"
fi
read -r _ requests dur_us non2xx e_connect e_read e_write e_timeout p50_us p99_us <<<"$line"
socket_errors=$((e_connect + e_read + e_write + e_timeout))
errors=$((non2xx + socket_errors))
alive=yes
if ! kill -0 "$vkv_pid" 2>/dev/null; then
  alive=no
  failed+=("vkv exited during the run")
elif ! curl -fsS -o /dev/null --max-time 5 "$URL/health"; then
  alive=no
  failed+=("vkv does not answer /health after the run")
fi
stats=$(curl -fsS --max-time 5 "$URL/db/stats" 2>/dev/null || echo '{}')
versions=$(sed -n 's/.*"total_versions":\([0-9]*\).*/\1/p' <<<"$stats")
growth=$(awk -v a="$rss_start" -v b="$rss_end" 'BEGIN { if (a > 0) printf "%.1f", (b - a) * 100 / a; else print "nan" }')
mib() { awk -v k="$1" 'BEGIN { if (k !~ /^[0-9]+$/) print "?"; else printf "%.1f", k / 1024 }'; }

echo
echo "== soak results (${DURATION}s, $CONNECTIONS connections, $KEYS keys, 90/10 GET/PUT)"
awk -v n="$requests" -v d="$dur_us" 'BEGIN { printf "requests served    %d (%.0f/s)\n", n, n / (d / 1e6) }'
printf 'errors             %d (non-2xx %d, socket %d: connect %d, read %d, write %d, timeout %d)\n' \
  "$errors" "$non2xx" "$socket_errors" "$e_connect" "$e_read" "$e_write" "$e_timeout"
awk -v a="$p50_us" -v b="$p99_us" 'BEGIN { printf "latency            p50 %.3f ms, p99 %.3f ms\n", a / 1000, b / 1000 }'
printf 'RSS                idle %s MiB; after warm-up (%ss) %s MiB; end %s MiB; max %s MiB; growth %s%% (limit %s%%)\n' \
  "$(mib "$rss_idle")" "$WARMUP" "$(mib "$rss_start")" "$(mib "$rss_end")" "$(mib "$rss_max")" "$growth" "$MAX_RSS_GROWTH_PCT"
printf 'threads (max)      %s\n' "$threads_max"
printf 'versions stored    %s\n' "${versions:-?}"
printf 'server alive       %s\n' "$alive"
printf '{"duration_s":%s,"connections":%s,"keys":%s,"requests":%s,"errors":%s,"non_2xx":%s,"socket_errors":%s,"rss_kb_warm":%s,"rss_kb_end":%s,"rss_kb_max":%s,"rss_growth_pct":%s}\n' \
  "$DURATION" "$CONNECTIONS" "$KEYS" "$requests" "$errors" "$non2xx" "$socket_errors" \
  "$rss_start" "$rss_end" "$rss_max" "$growth"

[ "$errors" -eq 0 ] || failed+=("$errors errors")
if ! awk -v a="$rss_start" -v b="$rss_end" -v pct="$MAX_RSS_GROWTH_PCT" 'BEGIN { exit !(a > 0 && (b - a) * 100 <= a * pct) }'; then
  failed+=("RSS grew ${growth}% after the warm-up (limit ${MAX_RSS_GROWTH_PCT}%)")
fi
if grep -q ' ERROR ' "$work/vkv.log"; then
  echo "vkv logged errors:" >&2
  grep ' ERROR ' "$work/vkv.log" | head -n 20 >&2
  failed+=("vkv logged errors")
fi
if [ "${#failed[@]}" -ne 0 ]; then
  printf 'soak: FAILED: %s\n' "$(IFS=';'; echo "${failed[*]}")" >&2
  exit 1
fi
echo "soak: ok"
