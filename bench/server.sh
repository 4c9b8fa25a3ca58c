#!/usr/bin/env bash
# Benchmarks aloft-server on loopback (release build):
#   1. registers N devices with Ed25519 keys through the API (preauthorize + signed auth request);
#   2. authenticated `next` polls/s and latency with wrk, and in the same run wrk against
#      /healthz (the ceiling of this machine and stack);
#   3. upload and download of a 256 MiB artifact (curl);
#   4. server RSS with N devices stored, then with 1,000,000 (the rest inserted straight into
#      the database, since registering a million through the API takes too long here);
#   5. with ALOFT_BENCH_DB=postgres and ALOFT_BENCH_REPLICAS=R > 1: the same polls through R
#      replicas on that database behind HAProxy (TCP, round robin).
#   bench/server.sh [N=100000] [SECONDS=20]
#   ALOFT_BENCH_THREADS=N (registering clients, default 4)
#   ALOFT_BENCH_DB=sqlite|postgres (default sqlite; postgres: scripts/postgres.sh provides one)
#   ALOFT_BENCH_BLOBS=local|s3 (default local; s3: SeaweedFS as in the tests, and the same file
#     also PUT straight to it with curl --aws-sigv4 for comparison)
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-100000}"; secs="${2:-20}"
db="${ALOFT_BENCH_DB:-sqlite}"; replicas="${ALOFT_BENCH_REPLICAS:-1}"; blobs="${ALOFT_BENCH_BLOBS:-local}"
command -v wrk >/dev/null || apt-get install -y -qq wrk >/dev/null
if [ "$replicas" -gt 1 ]; then command -v haproxy >/dev/null || apt-get install -y -qq haproxy >/dev/null; fi
cargo build --release --quiet --locked -p aloft-server -p aloftctl --bin aloft-server --bin aloftctl --example register-devices
[ "$blobs" = s3 ] && cargo build --release --quiet --locked -p aloft-testkit --example s3-server
bin=target/release/aloft-server
work=$(mktemp -d)
pids=()
cleanup() {
  [ -n "${s3_in:-}" ] && exec {s3_in}>&-
  kill "$server" "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  if [ "$db" = postgres ]; then psql "$pg" -qc "DROP DATABASE IF EXISTS $dbname WITH (FORCE)" || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
if [ "$db" = postgres ]; then
  pg=$(scripts/postgres.sh); dbname="aloft_bench_$$"
  psql "$pg" -qc "CREATE DATABASE $dbname"
  export ALOFT_DATABASE_URL="${pg%/*}/$dbname"
fi
if [ "$blobs" = s3 ]; then
  # The S3 server lives until its standard input (this shell's pipe) closes.
  mkfifo "$work/s3.in"
  target/release/examples/s3-server "$work" <"$work/s3.in" >"$work/s3.out" &
  pids+=($!)
  exec {s3_in}>"$work/s3.in"
  for _ in $(seq 300); do [ -s "$work/s3.out" ] && break; sleep 0.1; done
  read -r s3_endpoint s3_bucket s3_key s3_secret <"$work/s3.out"
  export ALOFT_BLOB_URL="s3://$s3_bucket/bench" ALOFT_S3_ENDPOINT="$s3_endpoint" ALOFT_S3_ALLOW_HTTP=true \
    ALOFT_S3_ACCESS_KEY_ID="$s3_key" ALOFT_S3_SECRET_ACCESS_KEY="$s3_secret"
fi
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

echo "== database: $db"
echo "== machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "== registering $n devices (Ed25519) through the API"
target/release/examples/register-devices "$base" "$ca" "$token" "$n" "${ALOFT_BENCH_THREADS:-4}" "$work/tokens" 1000
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
echo "   upload through the server (streamed, validated, stored in $blobs): $(python3 -c "print(f'{$size/$up/1e6:.0f} MB/s ({$up:.2f} s)')")"
if [ "$blobs" = s3 ]; then
  direct=$(curl -sf --aws-sigv4 "aws:amz:us-east-1:s3" --user "$s3_key:$s3_secret" -T "$work/big.mender" \
    -o /dev/null -w '%{time_total}' "$s3_endpoint/$s3_bucket/direct/big.mender")
  echo "   the same file PUT straight to S3 (curl --aws-sigv4): $(python3 -c "print(f'{$size/$direct/1e6:.0f} MB/s ({$direct:.2f} s); through the server {$direct/$up:.2f}x')")"
fi
id=$(curl -sf --cacert "$ca" -H "Authorization: Bearer $token" "$base/api/management/v1/deployments/artifacts/list" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
uri=$(curl -sf --cacert "$ca" -H "Authorization: Bearer $token" "$base/api/management/v1/deployments/artifacts/$id/download" | python3 -c 'import json,sys; print(json.load(sys.stdin)["uri"])')
for i in 1 2 3; do
  down=$(curl -sf --cacert "$ca" -o /dev/null -w '%{time_total}' "$uri")
  echo "   download $i (pre-signed link, from $blobs): $(python3 -c "print(f'{$size/$down/1e9:.2f} GB/s ({$down:.2f} s)')")"
done
echo "   server RSS after transfers: $(rss)"

echo "== 1,000,000 devices stored"
kill "$server"; wait "$server" 2>/dev/null || true
if [ "$db" = postgres ]; then
  psql "$ALOFT_DATABASE_URL" -qc "INSERT INTO devices (id, identity_hash, identity_json, status, created_ts, updated_ts)
    SELECT md5('bulk' || g)::uuid::text, 'bulk-' || g, '{\"mac\":\"bulk-' || g || '\"}', 'pending', 1, 1
    FROM generate_series(1, 1000000 - $n) g"
else
python3 - "$work/data/aloft.db" "$n" <<'PY'
import sqlite3, sys, uuid, time
db = sqlite3.connect(sys.argv[1]); have = int(sys.argv[2]); now = int(time.time() * 1e6)
rows = ((str(uuid.uuid4()), f"bulk-{i:064x}", '{"mac":"bulk-%d"}' % i, now, now) for i in range(1_000_000 - have))
db.executemany("INSERT INTO devices (id, identity_hash, identity_json, status, created_ts, updated_ts) VALUES (?, ?, ?, 'pending', ?, ?)", rows)
db.commit()
PY
fi
start_server
TOKENS="$work/tokens" wrk -t2 -c32 -d"${secs}s" --latency -s bench/next.lua "$base" | grep -E "Requests/sec|  50%|  99%"
curl -sf --cacert "$ca" -H "Authorization: Bearer $token" "$base/api/management/v2/devauth/devices/count" >/dev/null
echo "   server RSS with 1,000,000 devices after polling: $(rss)"

if [ "$replicas" -gt 1 ]; then
  echo "== $replicas replicas on $db behind HAProxy (TCP, round robin), 1,000,000 devices stored"
  backends="    server r1 127.0.0.1:$port"; rpids=("$server")
  for r in $(seq 2 "$replicas"); do
    mkdir -p "$work/r$r"
    cp "$work/data/jwt-ed25519.pem" "$work/data/url-secret" "$work/r$r/"
    p=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    ALOFT_LOG=warn "$bin" serve --data-dir "$work/r$r" --listen "127.0.0.1:$p" --log-json true \
      --tls-cert "$ca" --tls-key "$work/data/tls/server.key" 2>>"$work/server.log" &
    pids+=($!); rpids+=($!)
    for _ in $(seq 100); do curl -sfk "https://localhost:$p/healthz" >/dev/null && break; sleep 0.1; done
    backends+=$'\n'"    server r$r 127.0.0.1:$p"
  done
  lb=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  cat > "$work/haproxy.cfg" <<CFG
global
    maxconn 4096
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend devices
    bind 127.0.0.1:$lb
    default_backend replicas
backend replicas
    balance roundrobin
$backends
CFG
  haproxy -f "$work/haproxy.cfg" -db &
  pids+=($!)
  for _ in $(seq 100); do curl -sfk "https://localhost:$lb/healthz" >/dev/null && break; sleep 0.1; done
  echo "-- trivial endpoint GET /healthz through HAProxy"
  wrk -t2 -c32 -d"${secs}s" --latency "https://localhost:$lb/healthz" | grep -E "Requests/sec|  50%|  99%"
  echo "-- authenticated POST v2 next (204) through HAProxy"
  TOKENS="$work/tokens" wrk -t2 -c32 -d"${secs}s" --latency -s bench/next.lua "https://localhost:$lb" | grep -E "Requests/sec|  50%|  99%|Non-2xx"
  for pid in "${rpids[@]}"; do
    echo "   replica RSS: $(awk '/VmRSS/ {printf "%.1f MiB", $2/1024}' "/proc/$pid/status")"
  done
fi
