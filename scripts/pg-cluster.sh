#!/usr/bin/env bash
# A throw-away PostgreSQL cluster for the PostgreSQL tests and benchmarks.
#
#   scripts/pg-cluster.sh start DIR   # initdb in DIR/data, start on a free port,
#                                     # print the admin URL on stdout
#   scripts/pg-cluster.sh standby DIR # a synchronous streaming standby of it in
#                                     # DIR/standby (for a failover), print its
#                                     # admin URL
#   scripts/pg-cluster.sh stop DIR    # stop both and remove DIR
#
# Runs the server as the `postgres` user (PostgreSQL refuses to run as root)
# when started as root. Password authentication (scram-sha-256) on TCP only,
# so a wrong password is really refused; the URL printed carries the
# superuser's password. Listens on 127.0.0.1 only; its Unix socket lives in
# DIR. PostgreSQL's durability settings stay at their defaults (fsync on).
# PG_SERVER_OPTS adds server options (e.g. `-c shared_preload_libraries=
# pg_stat_statements`, as scripts/pg-costs.py uses).
# Needs Debian's `postgresql` package (binaries in /usr/lib/postgresql/*/bin
# or on PATH).
set -euo pipefail

usage() {
  echo "usage: $0 start DIR | standby DIR | stop DIR" >&2
  exit 2
}

[ $# -eq 2 ] || usage
cmd=$1
dir=$2

bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
if [ -z "$bin" ]; then
  bin=$(dirname "$(command -v pg_ctl 2>/dev/null || echo /nonexistent/pg_ctl)")
fi
[ -x "$bin/pg_ctl" ] || {
  echo "error: PostgreSQL binaries not found: apt-get install postgresql" >&2
  exit 1
}

# as_pg CMD...: run CMD as the postgres user when we are root.
as_pg() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

case "$cmd" in
start)
  mkdir -p "$dir"
  [ "$(id -u)" != 0 ] || chown postgres: "$dir"
  password=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
  printf '%s\n' "$password" >"$dir/pwfile"
  [ "$(id -u)" != 0 ] || chown postgres: "$dir/pwfile"
  as_pg "$bin/initdb" -D "$dir/data" -U postgres --pwfile="$dir/pwfile" \
    --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 ||
    { cat "$dir/initdb.log" >&2; exit 1; }
  port=$(free_port)
  echo "$port" >"$dir/port"
  as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/data/server.log" -w -t 60 \
    -o "-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories=$dir -c max_connections=200 ${PG_SERVER_OPTS:-}" \
    start >/dev/null ||
    { cat "$dir/data/server.log" >&2; exit 1; }
  echo "postgres://postgres:$password@127.0.0.1:$port/postgres"
  ;;
standby)
  # A base backup of the primary over its Unix socket (initdb's pg_hba.conf
  # trusts local replication), -R writing primary_conninfo and
  # standby.signal; then the primary waits for it at every commit.
  [ -f "$dir/port" ] || { echo "error: no cluster started in $dir" >&2; exit 1; }
  [ ! -e "$dir/standby" ] || { echo "error: $dir/standby exists" >&2; exit 1; }
  port=$(cat "$dir/port")
  sport=$(free_port)
  echo "$sport" >"$dir/standby-port"
  as_pg "$bin/pg_basebackup" -D "$dir/standby" -h "$dir" -p "$port" -U postgres \
    -R -X stream -c fast >"$dir/basebackup.log" 2>&1 ||
    { cat "$dir/basebackup.log" >&2; exit 1; }
  as_pg "$bin/pg_ctl" -D "$dir/standby" -l "$dir/standby/server.log" -w -t 60 \
    -o "-p $sport -c listen_addresses=127.0.0.1 -c unix_socket_directories=$dir -c max_connections=200" \
    start >/dev/null ||
    { cat "$dir/standby/server.log" >&2; exit 1; }
  # Set on the primary only after the copy: the standby, once promoted, is
  # a primary without a standby of its own and must not wait for one.
  echo "synchronous_standby_names = '*'" >>"$dir/data/postgresql.conf"
  as_pg "$bin/pg_ctl" -D "$dir/data" reload >/dev/null
  for _ in $(seq 600); do
    sync=$(as_pg "$bin/psql" -h "$dir" -p "$port" -U postgres -d postgres -Atq \
      -c "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'" 2>/dev/null || true)
    [ "$sync" != 1 ] || break
    sleep 0.1
  done
  [ "$sync" = 1 ] || { echo "error: the standby did not become synchronous" >&2; exit 1; }
  echo "postgres://postgres:$(cat "$dir/pwfile")@127.0.0.1:$sport/postgres"
  ;;
stop)
  for data in "$dir/standby" "$dir/data"; do
    if [ -d "$data" ]; then
      as_pg "$bin/pg_ctl" -D "$data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
  done
  rm -rf "$dir"
  ;;
*)
  usage
  ;;
esac
