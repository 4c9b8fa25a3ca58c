#!/usr/bin/env bash
# The second benchmark pair of delta updates (a bigger change than bench/make-rootfs-pair.sh):
#   OUT/rootfs-v3.ext4  Debian bookworm minbase plus python3 and openssh-client (256 MiB ext4)
# made from OUT/rootfs-v1/ (run bench/make-rootfs-pair.sh OUT first). Needs root; reuses what
# already exists in OUT.
set -euo pipefail
OUT=${1:?usage: make-rootfs-big.sh OUTDIR [SIZE]}
SIZE=${2:-256M}
MIRROR=${DEBIAN_MIRROR:-$(sed -n 's/^URIs: *\([^ ]*debian\)$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1)}   # the machine's own Debian mirror
cd "$OUT"
[ -d rootfs-v1/usr ] || { echo "run bench/make-rootfs-pair.sh $OUT first" >&2; exit 1; }
if [ ! -d rootfs-v3/usr ]; then
  rm -rf rootfs-v3; cp -a rootfs-v1 rootfs-v3
  echo "deb $MIRROR bookworm main" > rootfs-v3/etc/apt/sources.list
  chroot rootfs-v3 /bin/sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3 openssh-client && apt-get clean && rm -rf /var/lib/apt/lists/*' >v3.log 2>&1
  rm -f rootfs-v3/etc/apt/sources.list
fi
if [ ! -f rootfs-v3.ext4 ]; then
  truncate -s "$SIZE" rootfs-v3.ext4.tmp
  mke2fs -q -t ext4 -d rootfs-v3 -U clear -E root_owner=0:0 rootfs-v3.ext4.tmp
  mv rootfs-v3.ext4.tmp rootfs-v3.ext4
fi
ls -l "$OUT"/rootfs-v3.ext4
