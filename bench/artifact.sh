#!/usr/bin/env bash
# Benchmark: aloftctl vs mender-artifact on the standard 256 MiB Debian rootfs image, in one run.
# Times (median of RUNS) and peak RSS of: write rootfs-image (gzip, and zstd for aloftctl) and
# validate (both tools on the same mender-artifact-written gzip artifact, plus ours on zstd).
# Prints a Markdown table for bench/RESULTS.md.   Usage: bench/artifact.sh [RUNS=5]
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
data=$PWD/bench/data
command -v mender-artifact >/dev/null || { echo "needs mender-artifact (apt-get install mender-artifact)" >&2; exit 1; }
[ -x /usr/bin/time ] || { apt-get install -y -qq time >/dev/null; }
[ -f "$data/rootfs-v1.ext4" ] || bash bench/make-rootfs-pair.sh "$data" >/dev/null
cargo build --release --locked --quiet -p aloftctl
aloftctl=$PWD/target/release/aloftctl
image=$data/rootfs-v1.ext4
out=$(mktemp -d); trap 'rm -rf "$out"' EXIT

# measure NAME CMD...: runs CMD RUNS times, prints "NAME median_seconds max_rss_kib"
measure() {
  local name=$1; shift
  local times=() rss=0
  for _ in $(seq "$RUNS"); do
    sync
    local line
    /usr/bin/time -f '%e %M' "$@" >/dev/null 2>"$out/time.txt" || { cat "$out/time.txt" >&2; exit 1; }
    line=$(tail -n1 "$out/time.txt")
    times+=("${line% *}")
    [ "${line#* }" -gt "$rss" ] && rss=${line#* }
  done
  local median
  median=$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  echo "$name $median $rss"
}

results=()
results+=("$(measure mender-write-gzip mender-artifact write rootfs-image --no-progress -f "$image" -n bench-1 -t qemux86-64 -o "$out/mender-gzip.mender")")
results+=("$(measure aloft-write-gzip "$aloftctl" artifact write rootfs-image --no-progress -f "$image" -n bench-1 -t qemux86-64 -o "$out/aloft-gzip.mender")")
results+=("$(measure aloft-write-zstd "$aloftctl" artifact write rootfs-image --no-progress --compression zstd -f "$image" -n bench-1 -t qemux86-64 -o "$out/aloft-zstd.mender")")
results+=("$(measure mender-validate-gzip mender-artifact validate "$out/mender-gzip.mender")")
results+=("$(measure aloft-validate-gzip "$aloftctl" artifact validate --no-progress "$out/mender-gzip.mender")")
results+=("$(measure aloft-validate-zstd "$aloftctl" artifact validate --no-progress "$out/aloft-zstd.mender")")

size() { stat -c %s "$1"; }
declare -A t m
for r in "${results[@]}"; do read -r n s k <<<"$r"; t[$n]=$s; m[$n]=$k; done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
mb() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1e6 }'; }

echo "Command: bench/artifact.sh $RUNS   Date: $(date -u +%Y-%m-%d)   Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(lscpu | sed -n 's/^Model name: *//p' | head -1)"
echo "Input: rootfs-v1.ext4, $(mb "$(size "$image")") MB (Debian bookworm minbase, bench/make-rootfs-pair.sh). Median of $RUNS runs; RSS = peak over the runs."
echo
echo "| operation | mender-artifact 3.9 | aloftctl | ratio (aloft / mender) |"
echo "|---|---|---|---|"
echo "| write rootfs-image, gzip: time | ${t[mender-write-gzip]} s | ${t[aloft-write-gzip]} s | $(ratio "${t[aloft-write-gzip]}" "${t[mender-write-gzip]}") |"
echo "| write rootfs-image, gzip: size | $(mb "$(size "$out/mender-gzip.mender")") MB | $(mb "$(size "$out/aloft-gzip.mender")") MB | $(ratio "$(size "$out/aloft-gzip.mender")" "$(size "$out/mender-gzip.mender")") |"
echo "| write rootfs-image, zstd (aloft) vs gzip (mender): time | ${t[mender-write-gzip]} s | ${t[aloft-write-zstd]} s | $(ratio "${t[aloft-write-zstd]}" "${t[mender-write-gzip]}") |"
echo "| write rootfs-image, zstd (aloft) vs gzip (mender): size | $(mb "$(size "$out/mender-gzip.mender")") MB | $(mb "$(size "$out/aloft-zstd.mender")") MB | $(ratio "$(size "$out/aloft-zstd.mender")" "$(size "$out/mender-gzip.mender")") |"
echo "| write: peak RSS (gzip / zstd) | $(mib "${m[mender-write-gzip]}") MiB | $(mib "${m[aloft-write-gzip]}") / $(mib "${m[aloft-write-zstd]}") MiB | |"
echo "| validate the mender-written gzip artifact: time | ${t[mender-validate-gzip]} s | ${t[aloft-validate-gzip]} s | $(ratio "${t[aloft-validate-gzip]}" "${t[mender-validate-gzip]}") (speed-up $(ratio "${t[mender-validate-gzip]}" "${t[aloft-validate-gzip]}")×) |"
echo "| validate: peak RSS | $(mib "${m[mender-validate-gzip]}") MiB | $(mib "${m[aloft-validate-gzip]}") MiB | |"
echo "| validate aloft's zstd artifact (mender 3.9 cannot) | – | ${t[aloft-validate-zstd]} s, $(mib "${m[aloft-validate-zstd]}") MiB | |"
