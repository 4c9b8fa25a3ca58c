#!/usr/bin/env bash
# Benchmarks aloft-server on loopback (release build):
#   1. registers N devices with Ed25519 keys through the API (preauthorize + signed auth request);
#   2. authenticated `next` polls/s and latency with wrk, and in the same run wrk against
#      /healthz (the ceiling of this machine and stack);
#   3. upload and download of a 256 MiB artifact (curl);
#   4. server RSS with N devices stored, then with 1,000,000 (the rest inserted straight into
#      SQLite, since registering a million through the API takes too long here).
#   bench/server.sh [N=100000] [SECONDS=20]
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-100000}"; secs="${2:-20}"
command -v wrk >/dev/null || apt-get install -y -qq wrk >/dev/null
cargo build --release --quiet --locked -p aloft-server -p aloftctl --bin aloft-server --bin aloftctl --example register-devices
bin=target/release/aloft-server
work=$(mktemp -d)
trap 'kill $server 2>/dev/null || true; rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base="https://localhost:$port"
start_server() {
  ALOFT_LOG=warn "$bin" serve --data-dir "$work/data" --listen "127.0.0.1:$port" --log-json true 2>>"$work/server.log" &
  server=$!
  for _ in $(seq 100); do curl -sfk "$base/healthz" >/dev/null && return; sleep 0.1; done
  echo "server did not start" >&2; exit 1
}
rss() { awk '/VmRSS/ {printf "%.1f MiB", $2/1024}' "/proc/$server/status"; }
"$bin" user create --data-dir "$work/data" --email bench@example.com --password bench-password 2>/dev/null
start_server
ca="$work/data/tls/server.crt"
token=$(curl -sf --cacert "$ca" -u bench@example.com:bench-password -X POST "$base/api/management/v1/useradm/auth/login")

echo "== machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "== registering $n devices (Ed25519) through the API"
target/release/examples/register-devices "$base" "$ca" "$token" "$n" 4 "$work/tokens" 1000
echo "   server RSS with $n devices: $(rss)"

echo "== wrk, $secs s each, 2 threads, 32 connections"
echo "-- trivial endpoint GET /healthz"
wrk -t2 -c32 -d"${secs}s" --latency "$base/healthz" | grep -E "Requests/sec|  50%|  99%"
echo "-- authenticated POST v2 next (204), rotating over 1000 device tokens"
TOKENS="$work/tokens" wrk -t2 -c32 -d"${secs}s" --latency -s bench/next.lua "$base" | grep -E "Requests/sec|  50%|  99%|Non-2xx"
echo "   server RSS after polling: $(rss)"

echo "== 256 MiB artifact"
head -c $((256 << 20)) /dev/urandom > "$work/image.bin"
target/release/aloftctl artifact write module-image -T single-file -f "$work/image.bin" -n big-1 -t bench-device \
  --compression none -o "$work/big.mender" >/dev/null
size=$(stat -c %s "$work/big.mender")
up=$(curl -sf --cacert "$ca" -H "Authorization: Bearer $token" -F "artifact=@$work/big.mender" \
  -o /dev/null -w '%{time_total}' "$base/api/management/v1/deployments/artifacts")
echo "   upload (streamed, validated, stored): $(python3 -c "print(f'{$size/$up/1e6:.0f} MB/s ({$up:.2f} s)')")"
id=$(curl -sf --cacert "$ca" -H "Authorization: Bearer $token" "$base/api/management/v1/deployments/artifacts/list" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
uri=$(curl -sf --cacert "$ca" -H "Authorization: Bearer $token" "$base/api/management/v1/deployments/artifacts/$id/download" | python3 -c 'import json,sys; print(json.load(sys.stdin)["uri"])')
for i in 1 2 3; do
  down=$(curl -sf --cacert "$ca" -o /dev/null -w '%{time_total}' "$uri")
  echo "   download $i (pre-signed link, TLS): $(python3 -c "print(f'{$size/$down/1e9:.2f} GB/s ({$down:.2f} s)')")"
done
echo "   server RSS after transfers: $(rss)"

echo "== 1,000,000 devices stored"
kill "$server"; wait "$server" 2>/dev/null || true
python3 - "$work/data/aloft.db" "$n" <<'PY'
import sqlite3, sys, uuid, time
db = sqlite3.connect(sys.argv[1]); have = int(sys.argv[2]); now = int(time.time() * 1e6)
rows = ((str(uuid.uuid4()), f"bulk-{i:064x}", '{"mac":"bulk-%d"}' % i, now, now) for i in range(1_000_000 - have))
db.executemany("INSERT INTO devices (id, identity_hash, identity_json, status, created_ts, updated_ts) VALUES (?, ?, ?, 'pending', ?, ?)", rows)
db.commit()
PY
start_server
TOKENS="$work/tokens" wrk -t2 -c32 -d"${secs}s" --latency -s bench/next.lua "$base" | grep -E "Requests/sec|  50%|  99%"
curl -sf --cacert "$ca" -H "Authorization: Bearer $token" "$base/api/management/v2/devauth/devices/count" >/dev/null
echo "   server RSS with 1,000,000 devices after polling: $(rss)"
