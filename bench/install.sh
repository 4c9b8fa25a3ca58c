#!/usr/bin/env bash
# Benchmark: `aloft install` of the standard 256 MiB Debian rootfs image (v2), in one run:
#  1. rootfs-image (zstd and gzip) into a file-backed slot of a simulated device, against the
#     physical pipeline (extract | decompress | tee slot | sha256sum) on the same artifact, as
#     is and followed by `sync` (aloft fsyncs the slot and reads it back before arming it);
#  2. a 256 MiB single-file Update Module artifact (made by Debian's generator with the real
#     mender-artifact), installed by Debian's mender 3.4 (`install` + `commit`) and by aloft,
#     through the same Debian single-file module;
#  3. the size of the stripped `aloft` binary built with the `device` profile.
# Needs root (mender reads /etc/mender/artifact_info; created if missing, removed after).
# Usage: bench/install.sh [RUNS=5]
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
data=$PWD/bench/data
for tool in mender mender-artifact zstd; do
  command -v $tool >/dev/null || { echo "needs $tool (apt-get install mender-client mender-artifact zstd)" >&2; exit 1; }
done
[ -f "$data/rootfs-v2.ext4" ] || bash bench/make-rootfs-pair.sh "$data" >/dev/null
cargo build --release --locked --quiet -p aloftctl -p aloft-client
cargo build --profile device --locked --quiet -p aloft-client
aloftctl=$PWD/target/release/aloftctl
aloft=$PWD/target/device/aloft
image=$data/rootfs-v2.ext4
work=$(mktemp -d); created_info=""
cleanup() { rm -rf "$work"; [ -n "$created_info" ] && rm -f /etc/mender/artifact_info; }
trap cleanup EXIT

# measure NAME SETUP CMD: runs SETUP (untimed) then CMD, RUNS times; prints "NAME median_s max_rss_kib"
measure() {
  local name=$1 setup=$2 cmd=$3 times=() rss=0 line
  for _ in $(seq "$RUNS"); do
    bash -c "$setup" >/dev/null 2>&1
    sync
    /usr/bin/time -f '%e %M' bash -c "$cmd" >/dev/null 2>"$work/time.txt" || { cat "$work/time.txt" >&2; exit 1; }
    line=$(tail -n1 "$work/time.txt")
    times+=("${line% *}")
    [ "${line#* }" -gt "$rss" ] && rss=${line#* }
  done
  echo "$name $(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}') $rss"
}

# 1. rootfs
"$aloftctl" sim create "$work/dev" --device-type qemux86-64 --slot-size 300M >/dev/null
for codec in zstd gzip; do
  "$aloftctl" artifact write rootfs-image --no-progress --compression $codec -f "$image" -n bench-2 -t qemux86-64 -o "$work/rootfs-$codec.mender"
done
results=()
for codec in zstd gzip; do
  art=$work/rootfs-$codec.mender
  results+=("$(measure aloft-rootfs-$codec "$aloft --config $work/dev/aloft.toml rollback" "$aloft --config $work/dev/aloft.toml install $art")")
  dec="zstd -dc"; [ $codec = gzip ] && dec="gzip -dc"
  member=data/0000.tar.zst; [ $codec = gzip ] && member=data/0000.tar.gz
  results+=("$(measure pipeline-rootfs-$codec "true" "tar -xOf $art $member | $dec | tar -xO | tee $work/dev/slot-b.img | sha256sum")")
  results+=("$(measure pipesync-rootfs-$codec "true" "tar -xOf $art $member | $dec | tar -xO | tee $work/dev/slot-b.img | sha256sum && sync $work/dev/slot-b.img")")
done
"$aloft" --config "$work/dev/aloft.toml" rollback >/dev/null

# 2. single-file module, both clients, same artifact and module
[ -f /etc/mender/artifact_info ] || { echo "artifact_name=bench-base" > /etc/mender/artifact_info; created_info=1; }
mkdir -p "$work/gen" "$work/mender-data" "$work/dest-mender" "$work/dest-aloft"
cp "$image" "$work/gen/big.img"
echo "device_type=qemux86-64" > "$work/mender-data/device_type"
echo '{}' > "$work/mender.conf"
(cd "$work/gen" && sh /usr/share/doc/mender-client/examples/single-file-artifact-gen -n sf-bench -t qemux86-64 -d "$work/dest-mender" -o "$work/sf-mender.mender" big.img >/dev/null 2>&1)
(cd "$work/gen" && sh /usr/share/doc/mender-client/examples/single-file-artifact-gen -n sf-bench -t qemux86-64 -d "$work/dest-aloft" -o "$work/sf-aloft.mender" big.img >/dev/null 2>&1)
"$aloftctl" sim create "$work/mdev" --device-type qemux86-64 --slot-size 1M >/dev/null
mender_cmd="mender --no-syslog --config $work/mender.conf --data $work/mender-data"
results+=("$(measure mender-single-file "rm -rf $work/mender-data/mender-store* $work/dest-mender/*" "$mender_cmd install $work/sf-mender.mender && $mender_cmd commit")")
results+=("$(measure aloft-single-file "rm -f $work/mdev/data/provides.json $work/mdev/data/state.json $work/dest-aloft/*" "$aloft --config $work/mdev/aloft.toml install $work/sf-aloft.mender")")
cmp "$image" "$work/dest-aloft/big.img" && cmp "$image" "$work/dest-mender/big.img"

declare -A t m
for r in "${results[@]}"; do read -r n s k <<<"$r"; t[$n]=$s; m[$n]=$k; done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
echo "Command: bench/install.sh $RUNS   Date: $(date -u +%Y-%m-%d)   Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(lscpu | sed -n 's/^Model name: *//p' | head -1)"
echo "Input: rootfs-v2.ext4, $(stat -c %s "$image") bytes. Median of $RUNS runs; RSS = peak over the runs."
echo
echo "| operation | peer | aloft | ratio (aloft / peer) |"
echo "|---|---|---|---|"
for codec in zstd gzip; do
  echo "| rootfs-image ($codec) into a file slot vs the physical pipeline: time | ${t[pipeline-rootfs-$codec]} s | ${t[aloft-rootfs-$codec]} s | $(ratio "${t[aloft-rootfs-$codec]}" "${t[pipeline-rootfs-$codec]}") |"
  echo "| rootfs-image ($codec) vs the pipeline followed by \`sync\` (aloft fsyncs before arming): time | ${t[pipesync-rootfs-$codec]} s | ${t[aloft-rootfs-$codec]} s | $(ratio "${t[aloft-rootfs-$codec]}" "${t[pipesync-rootfs-$codec]}") |"
done
echo "| rootfs-image: aloft peak RSS (zstd / gzip) | | $(mib "${m[aloft-rootfs-zstd]}") / $(mib "${m[aloft-rootfs-gzip]}") MiB | |"
echo "| single-file module, 256 MiB, mender 3.4 install+commit vs aloft install: time | ${t[mender-single-file]} s | ${t[aloft-single-file]} s | $(ratio "${t[aloft-single-file]}" "${t[mender-single-file]}") |"
echo "| single-file module: peak RSS | $(mib "${m[mender-single-file]}") MiB | $(mib "${m[aloft-single-file]}") MiB | $(ratio "${m[aloft-single-file]}" "${m[mender-single-file]}") |"
echo "| \`aloft\` binary, device profile, stripped | | $(stat -c %s "$aloft") bytes | |"
