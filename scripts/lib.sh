# shellcheck shell=bash
# Shared helpers for scripts/*.sh. Source it: `. "$(dirname "$0")/lib.sh"`.
# Needs only bash, coreutils, findutils, sed and awk (all in base Debian).

# die MESSAGE...: print to stderr and exit 1.
die() {
  echo "error: $*" >&2
  exit 1
}

# need_cmd CMD HINT: fail with HINT (how to install CMD) when CMD is missing.
need_cmd() {
  command -v "$1" >/dev/null 2>&1 || die "'$1' not found: $2"
}

# listen_addr PID: the first IPv4 TCP address PID listens on, as host:port,
# read from /proc (so it works whatever the log level). Prints nothing if
# there is none (yet).
listen_addr() {
  local pid=$1 inodes
  inodes=$(find "/proc/$pid/fd" -maxdepth 1 -type l -printf '%l\n' 2>/dev/null |
    sed -n 's/^socket:\[\([0-9]*\)\]$/\1/p' | tr '\n' ' ')
  [ -n "$inodes" ] || return 0
  local hex
  hex=$(awk -v inodes="$inodes" '
    BEGIN { n = split(inodes, list, " "); for (i = 1; i <= n; i++) want[list[i]] = 1 }
    NR > 1 && $4 == "0A" && ($10 in want) { print $2; exit }' "/proc/$pid/net/tcp" 2>/dev/null || true)
  [ -n "$hex" ] || return 0
  # Like 0100007F:A0B3: the IPv4 address in little-endian hex, then the port.
  local h=${hex%%:*} p=${hex##*:}
  echo "$((16#${h:6:2})).$((16#${h:4:2})).$((16#${h:2:2})).$((16#${h:0:2})):$((16#$p))"
}

# wait_listening LOGFILE PID [TIMEOUT_SECS]: wait until the server PID
# (logging to LOGFILE) listens, then print its address (host:port): from a
# `listening on ADDR` log line, or else from /proc (vkv logs that line at
# info only, so not with --log-level warn). Fails, showing the log, if the
# process exits first or nothing shows within the timeout (default 30s).
wait_listening() {
  local log=$1 pid=$2 timeout=${3:-30} addr="" i
  for ((i = 0; i < timeout * 10; i++)); do
    addr=$(grep -o 'listening on [][0-9A-Fa-f.:]*' "$log" 2>/dev/null | head -n1 | awk '{print $3}' || true)
    [ -n "$addr" ] || addr=$(listen_addr "$pid")
    if [ -n "$addr" ]; then
      echo "$addr"
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "server (pid $pid) exited before listening; its log:" >&2
      cat "$log" >&2
      return 1
    fi
    sleep 0.1
  done
  echo "server (pid $pid) did not listen within ${timeout}s; its log:" >&2
  cat "$log" >&2
  return 1
}

# proc_field PID FIELD: a field of /proc/PID/status without its unit
# (VmRSS, VmHWM in kB; Threads as a count), or "?" if unreadable.
proc_field() {
  awk -v f="$2:" '$1 == f { print $2; found = 1 } END { if (!found) print "?" }' \
    "/proc/$1/status" 2>/dev/null || echo "?"
}

# stop_pid PID [GRACE_SECS]: SIGTERM, wait up to GRACE_SECS (default 10),
# then SIGKILL. Only for processes this script started.
stop_pid() {
  local pid=$1 grace=${2:-10} i
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < grace * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}
