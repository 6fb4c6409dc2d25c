#!/usr/bin/env bash
# Proves the container image works the way it will run, without a Docker
# engine: builds the static binary exactly as the Dockerfile does, puts it
# alone in an empty root directory with a data folder owned by the
# image's non-root user (65532), runs it there with chroot as that user
# with the image's environment, and runs scripts/smoke.sh against it. Also
# checks the HEALTHCHECK command (`vkv health`) from inside the root.
#
#   scripts/container-check.sh          # needs root (chroot), like CI here
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

[ "$(id -u)" = 0 ] || die "container-check needs root (for chroot)"
need_cmd readelf "apt-get install -y binutils"

target="$(uname -m)-unknown-linux-gnu"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/static}
echo "== static build (as in the Dockerfile)"
RUSTFLAGS="-C target-feature=+crt-static" \
  cargo build --release --locked --target "$target" --bin vkv
bin="$CARGO_TARGET_DIR/$target/release/vkv"
if readelf -l "$bin" | grep -q INTERP || readelf -d "$bin" | grep -q NEEDED; then
  readelf -d "$bin"
  die "vkv is not statically linked"
fi
ls -l "$bin"

root=$(mktemp -d)
pid=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  rm -rf "$root"
}
trap cleanup EXIT
# The image: /vkv and /data (owned by 65532), nothing else.
chmod 755 "$root"
cp "$bin" "$root/vkv"
mkdir "$root/data"
chown 65532:65532 "$root/data"
port=$((20000 + RANDOM % 20000))

echo "== run in an empty root as uid 65532"
chroot=$(command -v chroot) || die "chroot not found (coreutils)"
env -i VKV_BIND="0.0.0.0:$port" VKV_DB=/data/kv_store.db \
  "$chroot" --userspec=65532:65532 "$root" /vkv 2>"$root.log" &
pid=$!
addr=$(wait_listening "$root.log" "$pid" 30) || { cat "$root.log"; die "vkv did not start"; }
echo "listening on $addr (pid $pid, uid $(stat -c %u /proc/$pid))"
[ "$(stat -c %u /proc/$pid)" = 65532 ] || die "vkv does not run as uid 65532"

echo "== HEALTHCHECK: vkv health"
env -i VKV_BIND="0.0.0.0:$port" "$chroot" --userspec=65532:65532 "$root" /vkv health ||
  die "vkv health failed against a live server"

echo "== smoke test"
# Bound to 0.0.0.0 as in the image: no loopback Host check to expect.
LOOPBACK_BIND=0 scripts/smoke.sh "http://127.0.0.1:$port"
[ -f "$root/data/kv_store.db" ] || die "no database in /data"

echo "== graceful stop"
kill -TERM "$pid"
wait "$pid" || die "vkv did not exit 0 on SIGTERM"
pid=""
if env -i VKV_BIND="127.0.0.1:$port" "$chroot" --userspec=65532:65532 "$root" /vkv health 2>/dev/null; then
  die "vkv health succeeded with no server"
fi
rm -f "$root.log"
echo "container-check: ok"
