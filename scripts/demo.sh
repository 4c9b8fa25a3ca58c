#!/usr/bin/env bash
# The main job, until the server exists: build aloftctl, make a signing key and a root filesystem
# image, write a signed artifact, then read and verify it (and let mender-artifact verify it too,
# when it is installed). Everything lands in target/demo/.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

step "building aloftctl (release)"
cargo build --release --locked --quiet -p aloftctl
aloftctl=target/release/aloftctl
demo=target/demo
rm -rf "$demo"; mkdir -p "$demo/tree/etc"

step "a small root filesystem image"
echo "aloft demo release 1" > "$demo/tree/etc/issue"
if command -v mke2fs >/dev/null; then
  truncate -s 16M "$demo/rootfs.ext4"
  mke2fs -q -t ext4 -d "$demo/tree" "$demo/rootfs.ext4"
else
  head -c 16M /dev/urandom > "$demo/rootfs.ext4"
fi
ls -l "$demo/rootfs.ext4"

step "a signing key (ECDSA P-256, loadable by mender-artifact too)"
run "$aloftctl" key generate --type ecdsa -o "$demo/signing.pem"

step "a signed rootfs artifact"
run "$aloftctl" artifact write rootfs-image -f "$demo/rootfs.ext4" -n demo-release-1 -t qemux86-64 \
  -k "$demo/signing.pem" -o "$demo/demo-release-1.mender"

step "what is in it"
run "$aloftctl" artifact read "$demo/demo-release-1.mender" -k "$demo/signing.pem.pub"

step "verify it"
run "$aloftctl" artifact validate "$demo/demo-release-1.mender" -k "$demo/signing.pem.pub"
if command -v mender-artifact >/dev/null; then
  run mender-artifact validate -k "$demo/signing.pem.pub" "$demo/demo-release-1.mender"
fi

step "a tampered copy is refused"
cp "$demo/demo-release-1.mender" "$demo/tampered.mender"
printf 'X' | dd of="$demo/tampered.mender" bs=1 seek=5000 conv=notrunc status=none
if "$aloftctl" artifact validate "$demo/tampered.mender" -k "$demo/signing.pem.pub"; then
  echo "the tampered artifact was accepted: this is a bug" >&2; exit 1
fi
echo "(refused, exit code 1, as it should be)"
