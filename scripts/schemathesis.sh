#!/usr/bin/env bash
# Fuzzes every route of aloft-server's OpenAPI document with schemathesis (PyPI) and fails on any
# 5xx answer. The server runs from a fresh data folder with one admin user.
#   SCHEMATHESIS_SECONDS=N   time budget (default 60)
#   ALOFT_SERVER=path        the binary (default: target/debug/aloft-server, built here)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${SCHEMATHESIS_SECONDS:-60}"
command -v schemathesis >/dev/null || pip install --quiet --disable-pip-version-check schemathesis
bin="${ALOFT_SERVER:-target/debug/aloft-server}"
[ -n "${ALOFT_SERVER:-}" ] || cargo build --quiet --locked -p aloft-server
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$bin" user create --data-dir "$work/data" --email fuzz@example.com --password fuzz-password-1 2>/dev/null
ALOFT_LOG=info "$bin" serve --data-dir "$work/data" --listen "127.0.0.1:$port" --log-json true 2>"$work/server.log" &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$work"' EXIT
base="https://localhost:$port"
for _ in $(seq 50); do curl -sfk "$base/healthz" >/dev/null && break; sleep 0.2; done
token=$(curl -sfk -u fuzz@example.com:fuzz-password-1 -X POST "$base/api/management/v1/useradm/auth/login")
# Logout would end the session the fuzzer runs with; everything else is fair game.
status=0
schemathesis run "$base/api/openapi.json" --tls-verify false -H "Authorization: Bearer $token" \
  -c not_a_server_error --exclude-path /api/management/v1/useradm/auth/logout \
  --exclude-path /api/management/v1/events \
  --max-time "$seconds" --request-timeout 20 >"$work/schemathesis.txt" 2>&1 || status=$?
tail -n 12 "$work/schemathesis.txt"
if grep -q '"http.status":5' "$work/server.log"; then
  echo "the server answered 5xx:" >&2
  grep '"level":"ERROR"' "$work/server.log" | head -n 20 >&2
  status=1
fi
if [ "$status" != 0 ]; then
  cat "$work/schemathesis.txt" | head -n 200 >&2
fi
exit "$status"
