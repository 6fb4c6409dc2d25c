#!/usr/bin/env bash
# The OpenAPI document against real client tools: validates /openapi.json
# with openapi-spec-validator, generates a Python client from it with
# openapi-python-client, and has that client put and get a string, numbers,
# an array, an object, a boolean and null, then delete and purge and download
# a backup, against a running vkv (without --auth-tokens).
#
# Usage: scripts/openapi-client.sh [BASE_URL]   (default http://127.0.0.1:8080)
# Needs curl, python3 with venv, and PyPI the first time: the tools go into
# a venv under the temp dir (VKV_OPENAPI_VENV to choose), reused by later
# runs. Exit 0 when all is well.
set -euo pipefail
BASE=${1:-http://127.0.0.1:8080}
BASE=${BASE%/}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
venv=${VKV_OPENAPI_VENV:-${TMPDIR:-/tmp}/vkv-openapi-venv}
tools=(openapi-spec-validator==0.9.0 openapi-python-client==0.29.1)
if ! "$venv/bin/python" -m pip show -q "${tools[@]%%==*}" >/dev/null 2>&1; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "${tools[@]}"
fi

curl -fsS --max-time 10 "$BASE/openapi.json" -o "$tmp/openapi.json"
"$venv/bin/openapi-spec-validator" "$tmp/openapi.json"

if ! (cd "$tmp" && "$venv/bin/openapi-python-client" generate --path openapi.json \
  --meta none --output-path vkv_client) >"$tmp/generate.log" 2>&1; then
  cat "$tmp/generate.log" >&2
  echo "openapi-client: openapi-python-client could not generate a client" >&2
  exit 1
fi

"$venv/bin/python" - "$BASE" "$tmp" <<'PY'
import os, sys, time
base, tmp = sys.argv[1], sys.argv[2]
sys.path.insert(0, tmp)
from vkv_client import Client
from vkv_client.api.backup import backup
from vkv_client.api.kv import delete, get, put
from vkv_client.types import File
from vkv_client.models import DeleteResponse, GetResponse, PurgeResponse, PutRequest, PutResponse

client = Client(base_url=base, raise_on_unexpected_status=True)
key = "openapi-client-%d-%d" % (os.getpid(), time.time_ns())
values = ["a string", 42, -1.5, 12345678901234567890, [1, "two", None, {"x": []}],
          {"nested": {"list": [1, 2]}, "empty": {}}, True, None]
for version, value in enumerate(values, 1):
    put_answer = put.sync(key, client=client, body=PutRequest(value=value))
    assert isinstance(put_answer, PutResponse), put_answer
    assert put_answer.version == version, (put_answer.version, version)
    got = get.sync(key, client=client)
    assert isinstance(got, GetResponse), got
    assert (got.value, got.version) == (value, version), (got.value, value)
    assert type(got.value) is type(value), (type(got.value), value)
first = get.sync(key, client=client, version=1)
assert isinstance(first, GetResponse) and first.value == values[0], first
deleted = delete.sync(key, client=client)
assert isinstance(deleted, DeleteResponse), deleted
assert deleted.version == len(values) + 1, deleted.version
purged = delete.sync(key, client=client, purge=True)
assert isinstance(purged, PurgeResponse), purged
assert purged.purged_versions == len(values) + 1, purged.purged_versions
# The backup's 200 is a binary schema: the client hands over the file.
snapshot = backup.sync(client=client)
assert isinstance(snapshot, File), snapshot
assert snapshot.payload.read(16) == b"SQLite format 3\x00", "not a SQLite file"
print("openapi-client: document valid; generated client put and got %d values "
      "(string, numbers, array, object, boolean, null), deleted and purged, "
      "downloaded a backup" % len(values))
PY
