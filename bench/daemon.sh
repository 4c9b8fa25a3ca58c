#!/usr/bin/env bash
# Benchmarks the aloft daemon beside the real Mender 3.4 daemon, both against aloft-server on
# loopback in the same run:
#   1. binary size (aloft: the `device` profile; mender: Debian's /usr/bin/mender);
#   2. idle RSS and CPU over SECONDS of polling every second (both daemons at once);
#   3. peak RSS while each installs the same 256 MiB single-file Update Module artifact;
#   4. peak RSS of aloft during a 256 MiB rootfs-image deployment into its simulated A/B slots
#      (mender's rootfs installer needs a real A/B board, so it has no figure here).
#   bench/daemon.sh [SECONDS=600]        (root: mender runs in a private mount namespace)
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-600}"
cargo build --profile device --quiet --locked -p aloft-client
cargo build --release --quiet --locked -p aloft-server -p aloftctl --bin aloft-server --bin aloftctl
aloft=target/device/aloft; server_bin=target/release/aloft-server; ctl=target/release/aloftctl
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; sleep 0.5; rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base="https://127.0.0.1:$port"
"$server_bin" user create --data-dir "$work/data" --email bench@example.com --password bench-password 2>/dev/null
ALOFT_LOG=warn "$server_bin" serve --data-dir "$work/data" --listen "127.0.0.1:$port" 2>>"$work/server.log" &
pids+=($!)
for _ in $(seq 100); do curl -sfk "$base/healthz" >/dev/null && break; sleep 0.1; done
ca="$work/data/tls/server.crt"
token=$(curl -sf --cacert "$ca" -u bench@example.com:bench-password -X POST "$base/api/management/v1/useradm/auth/login")
api() { curl -sf --cacert "$ca" -H "Authorization: Bearer $token" "$@"; }

echo "== machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
size_a=$(stat -c %s "$aloft"); size_m=$(stat -c %s /usr/bin/mender)
echo "== binary: aloft $(numfmt --to=iec-i --suffix=B "$size_a"), mender $(numfmt --to=iec-i --suffix=B "$size_m") ($(mender --version 2>/dev/null | head -1)); ratio $(python3 -c "print(f'{$size_a/$size_m:.2f}')")x"

# The aloft device: a simulated A/B device whose daemon polls every second.
"$ctl" sim create "$work/aloft-dev" --device-type bench --slot-size 300M --server "$base" --server-cert "$ca" --poll-seconds 1 >/dev/null
ALOFT_LOG=warn "$aloft" --config "$work/aloft-dev/aloft.toml" daemon 2>>"$work/aloft.log" &
aloft_pid=$!; pids+=($aloft_pid)

# The Mender device: its fixed paths bind-mounted to this run's folders.
m="$work/mender-dev"
mkdir -p "$m"/{identity,inventory,etc,modules,data,installed}
printf '#!/bin/sh\necho mac=02:00:00:00:be:ef\n' >"$m/identity/mender-device-identity"
printf '#!/bin/sh\necho kernel=bench\n' >"$m/inventory/mender-inventory-bench"
chmod +x "$m/identity/mender-device-identity" "$m/inventory/mender-inventory-bench"
echo "artifact_name=factory-1" >"$m/etc/artifact_info"
echo "device_type=bench" >"$m/data/device_type"
cp /usr/share/mender/modules/v3/single-file "$m/modules/"
cat >"$m/mender.conf" <<JSON
{"ServerURL":"$base","ServerCertificate":"$ca","UpdatePollIntervalSeconds":1,"InventoryPollIntervalSeconds":12,"RetryPollIntervalSeconds":1,"DBus":{"Enabled":false}}
JSON
unshare --mount --propagation private sh -c "set -e; mount --bind $m/identity /usr/share/mender/identity; \
  mount --bind $m/inventory /usr/share/mender/inventory; mount --bind $m/etc /etc/mender; \
  mount --bind $m/modules /usr/share/mender/modules/v3; \
  exec mender --no-syslog --log-level warning --config $m/mender.conf --fallback-config $m/none.conf --data $m/data daemon" 2>>"$work/mender.log" &
mender_pid=$!; pids+=($mender_pid)

# Accept both.
for _ in $(seq 100); do
  n=$(api "$base/api/management/v2/devauth/devices?status=pending" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
  [ "$n" -ge 2 ] && break; sleep 0.2
done
api "$base/api/management/v2/devauth/devices?status=pending" | python3 -c '
import json,sys
for d in json.load(sys.stdin): print(d["id"], d["auth_sets"][0]["id"])' | while read -r dev aset; do
  api -X PUT -H 'Content-Type: application/json' -d '{"status":"accepted"}' "$base/api/management/v2/devauth/devices/$dev/auth/$aset/status"
done
sleep 5

rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
mib() { python3 -c "print(f'{$1/1024:.1f}')"; }
echo "== idle: polling every second for $secs s (RSS sampled every 5 s)"
a0=$(cpu_ticks $aloft_pid); m0=$(cpu_ticks $mender_pid); t0=$(date +%s.%N)
amax=0; mmax=0; asum=0; msum=0; k=0
end=$((SECONDS + secs))
while [ $SECONDS -lt $end ]; do
  a=$(rss_kib $aloft_pid); mm=$(rss_kib $mender_pid)
  asum=$((asum + a)); msum=$((msum + mm)); k=$((k + 1))
  [ "$a" -gt "$amax" ] && amax=$a; [ "$mm" -gt "$mmax" ] && mmax=$mm
  sleep 5
done
a1=$(cpu_ticks $aloft_pid); m1=$(cpu_ticks $mender_pid); t1=$(date +%s.%N)
hz=$(getconf CLK_TCK)
python3 - "$a0" "$a1" "$m0" "$m1" "$t0" "$t1" "$hz" "$asum" "$msum" "$k" "$amax" "$mmax" <<'PY'
import sys
a0,a1,m0,m1,t0,t1,hz,asum,msum,k,amax,mmax=map(float,sys.argv[1:])
wall=t1-t0
ac=(a1-a0)/hz/wall*100; mc=(m1-m0)/hz/wall*100
print(f"   aloft : RSS mean {asum/k/1024:.1f} MiB, max {amax/1024:.1f} MiB; CPU {ac:.3f} % of one core")
print(f"   mender: RSS mean {msum/k/1024:.1f} MiB, max {mmax/1024:.1f} MiB; CPU {mc:.3f} % of one core")
print(f"   ratio : RSS {asum/msum:.2f}x, CPU {ac/mc if mc else float('nan'):.2f}x")
PY
polls=$(grep -c . "$work/server.log" || true)

# Peak RSS while a deployment runs: sampled every 50 ms.
peak() { # pid seconds-max file-to-wait-for-status
  local pid=$1 max=0 r
  while kill -0 "$pid" 2>/dev/null && [ ! -e "$work/stop" ]; do
    r=$(rss_kib "$pid" 2>/dev/null || echo 0); [ "${r:-0}" -gt "$max" ] && max=$r; sleep 0.05
  done
  echo "$max"
}
wait_deployment() { # id
  for _ in $(seq 1200); do
    s=$(api "$base/api/management/v1/deployments/deployments/$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])')
    [ "$s" = finished ] && return; sleep 0.5
  done
  echo "deployment $1 did not finish" >&2; exit 1
}
stats() { api "$base/api/management/v1/deployments/deployments/$1/statistics"; }
deploy() { # name artifact devices-json
  api -X POST -H 'Content-Type: application/json' -D - -o /dev/null \
    -d "{\"name\":\"$1\",\"artifact_name\":\"$2\",\"devices\":$3}" "$base/api/management/v1/deployments/deployments" \
    | awk -F/ 'tolower($0) ~ /^location:/ {print $NF}' | tr -d '\r'
}
ids=$(api "$base/api/management/v2/devauth/devices?status=accepted" | python3 -c 'import json,sys; print(json.dumps([d["id"] for d in json.load(sys.stdin)]))')
aloft_id=$(api "$base/api/management/v2/devauth/devices?status=accepted" | python3 -c 'import json,sys; print([d["id"] for d in json.load(sys.stdin) if d["identity_data"]["mac"]!="02:00:00:00:be:ef"][0])')

echo "== 256 MiB single-file Update Module artifact (mender-artifact, gzip) to both daemons"
head -c $((256 << 20)) /dev/urandom >"$work/payload.bin"
mkdir -p "$work/module"; echo -n "$m/installed" >"$work/module/dest_dir"; echo -n payload.bin >"$work/module/filename"
cp "$work/payload.bin" "$work/module/payload.bin"
mender-artifact write module-image -T single-file -n app-256 -t bench -o "$work/app.mender" \
  -f "$work/module/dest_dir" -f "$work/module/filename" -f "$work/module/payload.bin" >/dev/null
api -F "artifact=@$work/app.mender" "$base/api/management/v1/deployments/artifacts" >/dev/null
rm -f "$work/stop"
peak $aloft_pid >"$work/peak-a" & pa=$!
peak $mender_pid >"$work/peak-m" & pm=$!
t=$(date +%s.%N)
d=$(deploy app-256 app-256 "$ids")
wait_deployment "$d"
touch "$work/stop"; wait $pa $pm
echo "   took $(python3 -c "import time; print(f'{time.time()-$t:.1f}')") s; $(stats "$d")"
echo "   peak RSS: aloft $(mib "$(cat "$work/peak-a")") MiB, mender $(mib "$(cat "$work/peak-m")") MiB; ratio $(python3 -c "print(f'{$(cat "$work/peak-a")/$(cat "$work/peak-m"):.2f}')")x"

echo "== 256 MiB rootfs-image (aloftctl, gzip) to the aloft device (download, slot B, reboot, commit)"
head -c $((256 << 20)) /dev/urandom >"$work/rootfs.img"
"$ctl" artifact write rootfs-image --no-progress -f "$work/rootfs.img" -n rootfs-256 -t bench -o "$work/rootfs.mender"
api -F "artifact=@$work/rootfs.mender" "$base/api/management/v1/deployments/artifacts" >/dev/null
rm -f "$work/stop"
peak $aloft_pid >"$work/peak-a" & pa=$!
t=$(date +%s.%N)
d=$(deploy rootfs-256 rootfs-256 "[\"$aloft_id\"]")
wait_deployment "$d"
touch "$work/stop"; wait $pa
echo "   took $(python3 -c "import time; print(f'{time.time()-$t:.1f}')") s; $(stats "$d")"
echo "   peak RSS: aloft $(mib "$(cat "$work/peak-a")") MiB (the daemon restarts itself after the simulated reboot; same pid)"
cmp -n $((256 << 20)) "$work/rootfs.img" "$work/aloft-dev/slot-b.img" && echo "   slot B holds the image"
