#!/usr/bin/env bash
# Delta updates (issue 14): the bytes a device downloads, generation time and memory, apply
# time and memory, for aloft beside xdelta3 -9, zstd --patch-from and OSTree's static deltas,
# in one run on the same images and trees.
#
# Usage: bench/delta.sh [DATA]   (default bench/data; makes the image pairs there if missing:
# bench/make-rootfs-pair.sh for v1 → v2 = v1 + bc + curl, bench/make-rootfs-big.sh for
# v1 → v3 = v1 + python3 + openssh-client). Needs root (debootstrap), xdelta3, zstd, ostree.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=$(realpath -m "${1:-bench/data}")
mkdir -p "$DATA"
need=()
for t in xdelta3 zstd ostree; do command -v "$t" >/dev/null || need+=("$t"); done
if ((${#need[@]})); then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
cargo build --release --locked -q -p aloftctl
ALOFTCTL=$PWD/target/release/aloftctl
bash bench/make-rootfs-pair.sh "$DATA" >/dev/null
bash bench/make-rootfs-big.sh "$DATA" >/dev/null
work=$(mktemp -d "$DATA/.delta-XXXXXX")
trap 'rm -rf "$work"' EXIT

# time and peak RSS of a command: "SECONDS MIB"
measure() {
  /usr/bin/time -f "%e %M" -o "$work/time" "$@" >/dev/null 2>"$work/err" || { cat "$work/err" >&2; exit 1; }
  awk '{ printf "%.2f %.0f\n", $1, $2 / 1024 }' "$work/time"
}
size() { stat -c %s "$1"; }
mb() { awk -v b="$1" 'BEGIN { printf "%.2f MB", b / 1e6 }'; }

# OSTree: the trees (device nodes left out: OSTree cannot store them) committed once.
repo=$work/repo
ostree --repo="$repo" init --mode=archive-z2
for v in 1 2 3; do
  tar -C "$DATA/rootfs-v$v" --exclude='./dev/*' -cf "$work/v$v.tar" .
  ostree --repo="$repo" commit -b "v$v" --tree=tar="$work/v$v.tar" --no-xattrs --tar-autocreate-parents >/dev/null
  rm "$work/v$v.tar"
done
ostree_total() { ostree --repo="$repo" static-delta show "$1" | sed -n 's/^Total Size: \([0-9]*\).*/\1/p'; }

echo "Command: bench/delta.sh   Date: $(date -u +%F)   Machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)"
for to in 2 3; do
  a=$DATA/rootfs-v1.ext4 b=$DATA/rootfs-v$to.ext4
  echo
  echo "### v1 → v$to ($(size "$b") bytes images)"
  echo
  echo "| method | download | generate: time, peak RSS | apply: time, peak RSS |"
  echo "|---|---|---|---|"
  read -r gt gm < <(measure "$ALOFTCTL" delta make --no-progress --from "$a" --to "$b" -o "$work/d.aldelta")
  read -r at am < <(measure "$ALOFTCTL" delta apply --no-progress --from "$a" "$work/d.aldelta" -o "$work/out")
  cmp -s "$work/out" "$b" || { echo "aloft's delta did not rebuild v$to" >&2; exit 1; }
  aloft=$(size "$work/d.aldelta")
  read -r wt wm < <(measure dd if="$b" of="$work/full" bs=1M conv=fsync status=none)
  echo "| aloft delta | $(mb "$aloft") | ${gt} s, ${gm} MiB | ${at} s, ${am} MiB (writing the full image: ${wt} s) |"
  read -r gt gm < <(measure xdelta3 -9 -e -f -s "$a" "$b" "$work/x.vcdiff")
  read -r at am < <(measure xdelta3 -d -f -s "$a" "$work/x.vcdiff" "$work/out")
  cmp -s "$work/out" "$b"
  xd=$(size "$work/x.vcdiff")
  echo "| xdelta3 -9 | $(mb "$xd") | ${gt} s, ${gm} MiB | ${at} s, ${am} MiB |"
  read -r gt gm < <(measure zstd -19 -q -f --long=28 --patch-from="$a" "$b" -o "$work/z.zst")
  read -r at am < <(measure zstd -d -q -f --long=28 --patch-from="$a" "$work/z.zst" -o "$work/out")
  cmp -s "$work/out" "$b"
  zs=$(size "$work/z.zst")
  echo "| zstd -19 --long --patch-from | $(mb "$zs") | ${gt} s, ${gm} MiB | ${at} s, ${am} MiB |"
  read -r gt gm < <(measure ostree --repo="$repo" static-delta generate --from=v1 --to="v$to")
  def=$(ostree_total "$(ostree --repo="$repo" rev-parse v1)-$(ostree --repo="$repo" rev-parse "v$to")")
  echo "| OSTree static delta, default (delta + fallback objects) | $(mb "$def") | ${gt} s, ${gm} MiB | – |"
  read -r gt gm < <(measure ostree --repo="$repo" static-delta generate --min-fallback-size=0 --from=v1 --to="v$to")
  own=$(ostree_total "$(ostree --repo="$repo" rev-parse v1)-$(ostree --repo="$repo" rev-parse "v$to")")
  echo "| OSTree static delta, self-contained (--min-fallback-size=0) | $(mb "$own") | ${gt} s, ${gm} MiB | – |"
  echo
  awk -v a="$aloft" -v d="$def" -v o="$own" -v x="$xd" -v z="$zs" 'BEGIN {
    printf "aloft / OSTree default %.2f×, / OSTree self-contained %.2f×, / xdelta3 %.2f×, / zstd %.2f×\n", a / d, a / o, a / x, a / z }'
  rm -f "$work/out" "$work/full" "$work"/*.vcdiff "$work"/*.zst "$work"/*.aldelta
done
