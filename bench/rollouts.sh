#!/usr/bin/env bash
# Benchmarks rollouts at fleet scale (issue 13), release build, SQLite (ALOFT_BENCH_DB=postgres
# for PostgreSQL):
#   1. registers 1,000 devices with Ed25519 keys through the API (the ones that poll), then
#      stores the rest of DEVICES accepted devices straight in the database, every device with
#      an inventory (device type, running release, one of ROLLOUTS sites);
#   2. authenticated `next` polls/s and latency with wrk while no deployment is active;
#   3. the dry-run plan of one deployment over every device (POST .../deployments/plan);
#   4. ROLLOUTS active rollouts, one per site (a dynamic group), three phases (1 %, 9 %, the
#      rest; seeded random order), created through the API;
#   5. the same polls with those rollouts active, and the ratio to step 2;
#   6. a phase advance: how long the command takes, and whether every polling device of the
#      newly opened phase is handed the update on its first poll after it.
#   bench/rollouts.sh [DEVICES=1000000] [ROLLOUTS=20] [SECONDS=20]
set -euo pipefail
cd "$(dirname "$0")/.."
total="${1:-1000000}"; rollouts="${2:-20}"; secs="${3:-20}"; polled=1000
db="${ALOFT_BENCH_DB:-sqlite}"
command -v wrk >/dev/null || apt-get install -y -qq wrk >/dev/null
cargo build --release --quiet --locked -p aloft-server -p aloftctl --bin aloft-server --bin aloftctl --example register-devices
bin=target/release/aloft-server
work=$(mktemp -d)
cleanup() {
  kill "${server:-}" 2>/dev/null || true
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
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base="https://localhost:$port"
start_server() {
  ALOFT_LOG=warn "$bin" serve --data-dir "$work/data" --listen "127.0.0.1:$port" --log-json true 2>>"$work/server.log" &
  server=$!
  for _ in $(seq 300); do curl -sfk "$base/healthz" >/dev/null && return; sleep 0.1; done
  echo "server did not start" >&2; exit 1
}
rss() { awk '/VmRSS/ {printf "%.1f MiB", $2/1024}' "/proc/$server/status"; }
polls() {
  TOKENS="$work/tokens" wrk -t2 -c32 -d"${secs}s" --latency -s bench/next.lua "$base" \
    | grep -E "Requests/sec|  50%|  99%|Non-2xx" | tee "$work/wrk.$1"
}
"$bin" user create --data-dir "$work/data" --email bench@example.com --password bench-password 2>/dev/null
start_server
ca="$work/data/tls/server.crt"
login() { curl -sf --cacert "$ca" -u bench@example.com:bench-password -X POST "$base/api/management/v1/useradm/auth/login"; }
token=$(login)
api() { curl -sf --cacert "$ca" -H "Authorization: Bearer $token" -H "Content-Type: application/json" "$@"; }

echo "== database: $db"
echo "== machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "== registering $polled polling devices through the API"
target/release/examples/register-devices "$base" "$ca" "$token" "$polled" 4 "$work/tokens" "$polled"
kill "$server"; wait "$server" 2>/dev/null || true

echo "== storing $total accepted devices with inventory ($rollouts sites)"
t0=$(date +%s.%N)
python3 - "$db" "$work/data/aloft.db" "${ALOFT_DATABASE_URL:-}" "$total" "$rollouts" <<'PY'
import subprocess, sqlite3, sys, uuid, time
kind, path, url, total, sites = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
now = int(time.time() * 1e6)
def attrs(dev, i):
    return [(dev, "inventory", "device_type", '"bench-device"', now),
            (dev, "inventory", "artifact_name", '"initial"', now),
            (dev, "inventory", "site", '"s%d"' % (i % sites), now)]
if kind == "sqlite":
    db = sqlite3.connect(path)
    have = [r[0] for r in db.execute("SELECT id FROM devices ORDER BY created_ts, id")]
    rows = [(str(uuid.uuid4()), f"bulk-{i:064x}", '{"mac":"bulk-%d"}' % i, now + i, now + i)
            for i in range(total - len(have))]
    db.executemany("INSERT INTO devices (id, identity_hash, identity_json, status, created_ts, updated_ts)"
                   " VALUES (?, ?, ?, 'accepted', ?, ?)", rows)
    ids = have + [r[0] for r in rows]
    db.executemany("INSERT OR REPLACE INTO attributes (device_id, scope, name, value_json, ts) VALUES (?, ?, ?, ?, ?)",
                   (a for i, dev in enumerate(ids) for a in attrs(dev, i)))
    db.execute("UPDATE devices SET inventory_ts = ?, inventory_json = (SELECT json_group_array(json_array("
               "a.name, a.value_json, a.description, a.ts)) FROM attributes a WHERE a.device_id = devices.id "
               "AND a.scope = 'inventory')", (now,))
    db.commit()
else:
    def psql(sql):
        subprocess.run(["psql", url, "-qc", sql], check=True)
    psql(f"""INSERT INTO devices (id, identity_hash, identity_json, status, created_ts, updated_ts)
      SELECT md5('bulk' || g)::uuid::text, 'bulk-' || g, '{{"mac":"bulk-' || g || '"}}', 'accepted', {now} + g, {now} + g
      FROM generate_series(1, {total} - (SELECT count(*) FROM devices)) g""")
    psql(f"""INSERT INTO attributes (device_id, scope, name, value_json, ts)
      SELECT id, 'inventory', a.name, CASE a.name WHEN 'site' THEN '"s' || ((n - 1) % {sites}) || '"' ELSE a.value END, {now}
      FROM (SELECT id, row_number() OVER (ORDER BY created_ts, id) AS n FROM devices) d,
           (VALUES ('device_type', '"bench-device"'), ('artifact_name', '"initial"'), ('site', '')) AS a(name, value)
      ON CONFLICT (device_id, scope, name) DO UPDATE SET value_json = excluded.value_json""")
    psql(f"""UPDATE devices SET inventory_ts = {now}, inventory_json = COALESCE((SELECT
      json_agg(json_build_array(a.name, a.value_json, a.description, a.ts))::text FROM attributes a
      WHERE a.device_id = devices.id AND a.scope = 'inventory'), '[]')""")
PY
echo "   took $(python3 -c "import time; print(f'{time.time() - $t0:.0f} s')")"
start_server
token=$(login)
echo "   server RSS with $total devices: $(rss)"

echo "== a small artifact for bench-device"
head -c 65536 /dev/urandom > "$work/payload.bin"
target/release/aloftctl artifact write module-image -T single-file -f "$work/payload.bin" -n bench-2 -t bench-device \
  -o "$work/bench-2.mender" >/dev/null
curl -sf --cacert "$ca" -H "Authorization: Bearer $token" -F "artifact=@$work/bench-2.mender" -o /dev/null \
  "$base/api/management/v1/deployments/artifacts"

echo "== wrk, $secs s each, 2 threads, 32 connections, rotating over $polled device tokens"
echo "-- authenticated POST v2 next, no deployment active"
polls none
echo "   server RSS: $(rss)"

echo "== dry-run plan of one deployment over every device (3 phases)"
phases='[{"batch_size":1},{"batch_size":9},{}]'
body="{\"name\":\"plan\",\"artifact_name\":\"bench-2\",\"all_devices\":true,\"phases\":$phases,\"rollout\":{\"order\":\"random\",\"seed\":7,\"advance\":\"manual\"}}"
for i in 1 2 3; do
  api -o "$work/plan.json" -w '   run %{time_total} s, %{size_download} bytes\n' -d "$body" "$base/api/management/v1/deployments/deployments/plan"
done
python3 -c "import json,sys; p=json.load(open(sys.argv[1])); print('   totals:', p['totals'], '; phases:', [x['devices'] for x in p['phases']])" "$work/plan.json" 2>/dev/null \
  || python3 -c "import json,sys; p=json.load(open(sys.argv[1])); print('   totals:', p['totals'])" "$work/plan.json"
echo "   server RSS after planning: $(rss)"

echo "== $rollouts rollouts, one per site (dynamic group), phases 1 % / 9 % / rest"
for s in $(seq 0 $((rollouts - 1))); do
  f=$(api -d "{\"name\":\"site-$s\",\"terms\":[{\"scope\":\"inventory\",\"attribute\":\"site\",\"type\":\"\$eq\",\"value\":\"s$s\"}]}" \
    -D - -o /dev/null "$base/api/management/v2/inventory/filters" | awk -F/ 'tolower($0) ~ /^location:/ {print $NF}' | tr -d '\r')
  api -o /dev/null -w "   rollout site-$s created in %{time_total} s\n" \
    -d "{\"name\":\"site-$s\",\"artifact_name\":\"bench-2\",\"filter_id\":\"$f\",\"phases\":$phases,\"rollout\":{\"order\":\"random\",\"seed\":$s,\"advance\":\"manual\"}}" \
    "$base/api/management/v2/deployments/deployments"
done
echo "   server RSS: $(rss)"

echo "-- authenticated POST v2 next, $rollouts rollouts active (devices of open phases get the update: 200)"
polls rollouts
echo "   server RSS: $(rss)"
python3 - "$work/wrk.none" "$work/wrk.rollouts" <<'PY'
import re, sys
rate = lambda f: float(re.search(r"Requests/sec:\s+([\d.]+)", open(f).read()).group(1))
print(f"   polls with rollouts / without: {rate(sys.argv[2]) / rate(sys.argv[1]):.2f}x")
PY

echo "== phase advance of rollout site-0 (phase 1 -> 2)"
python3 - "$base" "$ca" "$token" "$work/tokens" "$work/data/aloft.db" "$db" "${ALOFT_DATABASE_URL:-}" <<'PY'
import base64, http.client, json, ssl, subprocess, sqlite3, sys, time
base, ca, admin, tokens, path, kind, url = sys.argv[1:8]
host, port = base.removeprefix("https://").split(":")
tls = ssl.create_default_context(cafile=ca)
conn = http.client.HTTPSConnection(host, int(port), context=tls)
def call(method, path, token, body=None):
    conn.request(method, path, body=json.dumps(body) if body is not None else None,
                 headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
    r = conn.getresponse(); data = r.read(); return r.status, data
st, data = call("GET", "/api/management/v1/deployments/deployments?search=site-0", admin)
dep = next(d for d in json.loads(data) if d["name"] == "site-0")["id"]
def sub(tok):
    p = tok.split(".")[1]; return json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))["sub"]
toks = {sub(t): t for t in open(tokens).read().split()}
q = "SELECT device_id, phase FROM device_deployments WHERE deployment_id = '%s'" % dep
if kind == "sqlite":
    rows = sqlite3.connect(f"file:{path}?mode=ro", uri=True).execute(q).fetchall()
else:
    out = subprocess.run(["psql", url, "-Atc", q], check=True, capture_output=True, text=True).stdout
    rows = [tuple(l.split("|")) for l in out.split()]
second = [d for d, p in rows if int(p) == 1 and d in toks]
body = {"device_provides": {"artifact_name": "initial", "device_type": "bench-device"}, "update_control_map": True}
before = [call("POST", "/api/devices/v2/deployments/device/deployments/next", toks[d], body)[0] for d in second]
t0 = time.perf_counter()
st, _ = call("POST", f"/api/management/v1/deployments/deployments/{dep}/advance", admin)
t1 = time.perf_counter()
after = [call("POST", "/api/devices/v2/deployments/device/deployments/next", toks[d], body)[0] for d in second]
t2 = time.perf_counter()
print(f"   polling devices dealt into phase 2: {len(second)}; before the advance they got {sorted(set(before))}")
print(f"   advance answered {st} in {(t1 - t0) * 1e3:.1f} ms; on their first poll after it "
      f"{after.count(200)} of {len(second)} got the update (all polls done {(t2 - t1) * 1e3:.1f} ms after)")
PY
