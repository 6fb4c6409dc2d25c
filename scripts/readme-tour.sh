#!/usr/bin/env bash
# Runs the README's five-minute tour against a real server, so that it
# cannot rot. Exits 0 when every command succeeded and printed what the
# README says it prints, 1 otherwise (naming the command, what was expected
# and what came), 2 on bad usage.
#
#   scripts/readme-tour.sh [VKV_BINARY] [README]
#       VKV_BINARY: default target/release/vkv; README: default README.md
#
# The tour is every fenced block opened with ```sh tour, in order, run in one
# shell (a variable set in one block is seen in the next). A command may span
# lines ending in `\`. The lines `# => TEXT` after a command are what it must
# print on stdout, line by line, all of it; in TEXT, `...` matches any text,
# a line `# => ...` alone matches any number of lines, and RFC 3339
# timestamps match any timestamp. A command with no `# =>` line must only
# succeed. Commands name http://127.0.0.1:8080; the script starts the server
# on a free port of 127.0.0.1 with a fresh SQLite file in a temporary
# directory and sends them there instead.
#
# Needs bash, curl and the tools lib.sh names (coreutils, sed, awk).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

bin=${1:-target/release/vkv}
readme=${2:-README.md}
[ -x "$bin" ] || { echo "usage: $0 [VKV_BINARY] [README]: no executable '$bin'" >&2; exit 2; }
[ -f "$readme" ] || { echo "usage: $0 [VKV_BINARY] [README]: no file '$readme'" >&2; exit 2; }
need_cmd curl "apt-get install -y curl"

# --- the tour, from the README ---------------------------------------------
cmds=()    # each command, as written (continuation lines kept)
expects=() # for each command: its expected lines, each ending in a newline
open_re='^```sh[[:space:]]+tour[[:space:]]*$'
close_re='^```[[:space:]]*$'
expect_re='^[[:space:]]*#[[:space:]]=>[[:space:]]?(.*)$'
blank_or_comment_re='^[[:space:]]*(#.*)?$'
in_tour=0
cur=""
while IFS= read -r line || [ -n "$line" ]; do
  if [ "$in_tour" = 0 ]; then
    [[ $line =~ $open_re ]] && in_tour=1
    continue
  fi
  if [[ $line =~ $close_re ]]; then
    [ -z "$cur" ] || die "$readme: a tour block ends inside a command: $cur"
    in_tour=0
    continue
  fi
  if [ -z "$cur" ] && [[ $line =~ $expect_re ]]; then
    [ ${#cmds[@]} -gt 0 ] || die "$readme: '# =>' before any tour command"
    expects[${#cmds[@]} - 1]+="${BASH_REMATCH[1]}"$'\n'
    continue
  fi
  if [ -z "$cur" ] && [[ $line =~ $blank_or_comment_re ]]; then
    continue
  fi
  cur+="$line"$'\n'
  [[ $line == *\\ ]] && continue
  cmds+=("$cur")
  expects+=("")
  cur=""
done <"$readme"
[ "$in_tour" = 0 ] || die "$readme: a \`\`\`sh tour block is not closed"
[ ${#cmds[@]} -gt 0 ] || die "$readme: no \`\`\`sh tour block found"

# --- matching ----------------------------------------------------------------
ts_re='[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?Z'

# line_matches EXPECTED ACTUAL: EXPECTED as a pattern (`...` any text,
# timestamps any timestamp), everything else literal.
line_matches() {
  local want got
  want=$(sed -E "s/$ts_re/.../g" <<<"$1")
  got=$(sed -E "s/$ts_re/TIMESTAMP/g" <<<"$2")
  # Escape every character a bash pattern (extglob included) gives a meaning.
  want=${want//\\/\\\\}
  local c
  for c in '*' '?' '[' ']' '(' ')' '|' '+' '@' '!'; do
    want=${want//"$c"/\\$c}
  done
  want=${want//.../*}
  # shellcheck disable=SC2053 # the right side is a pattern on purpose
  [[ $got == $want ]]
}

# lines_match: the arrays want and got, with `...` alone as any lines.
lines_match() {
  local i=0 j=0 nw=${#want[@]} ng=${#got[@]}
  while [ "$i" -lt "$nw" ]; do
    if [ "${want[$i]}" = "..." ]; then
      i=$((i + 1))
      if [ "$i" -eq "$nw" ]; then
        j=$ng
        break
      fi
      while [ "$j" -lt "$ng" ] && ! line_matches "${want[$i]}" "${got[$j]}"; do
        j=$((j + 1))
      done
      [ "$j" -lt "$ng" ] || return 1
    else
      [ "$j" -lt "$ng" ] && line_matches "${want[$i]}" "${got[$j]}" || return 1
    fi
    i=$((i + 1))
    j=$((j + 1))
  done
  [ "$j" -eq "$ng" ]
}

# --- the server --------------------------------------------------------------
tmp=$(mktemp -d)
"$bin" --bind 127.0.0.1:0 --db "$tmp/kv.db" 2>"$tmp/server.log" &
pid=$!
trap 'stop_pid "$pid"; rm -rf "$tmp"' EXIT
addr=$(wait_listening "$tmp/server.log" "$pid" 30)
echo "README tour: ${#cmds[@]} commands from $readme against $bin on $addr"
# The client commands of the tour (`vkv get ...`) are this binary, talking
# to this server.
PATH="$(cd "$(dirname "$bin")" && pwd):$PATH"
export VKV_ENDPOINTS="http://$addr"

fail() {
  echo "FAILED: $1" >&2
  echo "--- command:" >&2
  printf '%s' "$cmd" >&2
  if [ -n "${expects[$n]}" ]; then
    echo "--- expected (README):" >&2
    printf '%s' "${expects[$n]}" >&2
  fi
  echo "--- stdout:" >&2
  cat "$tmp/out" >&2
  echo >&2
  echo "--- stderr:" >&2
  cat "$tmp/err" >&2
  echo "--- server log (last 20 lines):" >&2
  tail -n 20 "$tmp/server.log" >&2
  exit 1
}

checked=0
for n in "${!cmds[@]}"; do
  cmd=${cmds[$n]//127.0.0.1:8080/$addr}
  printf '$ %s' "${cmds[$n]}"
  # The tour's commands run in this shell, one after another, as a reader's
  # would (pipefail is on: a pipeline fails when any part of it does).
  if ! eval "$cmd" >"$tmp/out" 2>"$tmp/err"; then
    fail "the command exited with an error"
  fi
  [ -n "${expects[$n]}" ] || continue
  mapfile -t want <<<"${expects[$n]%$'\n'}"
  mapfile -t got <"$tmp/out"
  got=("${got[@]%$'\r'}")
  lines_match || fail "its output is not what the README shows"
  checked=$((checked + 1))
done
wait_jobs=$(jobs -p | grep -vx "$pid" || true)
[ -z "$wait_jobs" ] || wait $wait_jobs
echo "README tour passed: ${#cmds[@]} commands, $checked outputs checked"
