#!/usr/bin/env bash
# A tour of the artifact tools and the standalone client: build aloftctl and aloft, make a signing key and a root
# filesystem image, write a signed artifact, read and verify it (mender-artifact too, when
# installed), then install it on a simulated A/B device that requires the signature: install,
# reboot into the new slot, health check and commit. Everything lands in target/demo/.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

step "building aloftctl and aloft (release)"
cargo build --release --locked --quiet -p aloftctl -p aloft-client
aloftctl=target/release/aloftctl
aloft=target/release/aloft
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

step "a simulated A/B device (U-Boot) that only accepts artifacts signed by our key"
run "$aloftctl" sim create "$demo/device" --device-type qemux86-64 --slot-size 32M --artifact-name factory-1
cp "$demo/signing.pem.pub" "$demo/device/trusted.pem"
sed -i '1a verify_keys = ["trusted.pem"]\nhealth_check = "test -r /proc/uptime"' "$demo/device/aloft.toml"
run "$aloft" --config "$demo/device/aloft.toml" status

step "the tampered artifact is refused before anything is touched"
if "$aloft" --config "$demo/device/aloft.toml" install "$demo/tampered.mender"; then
  echo "the device accepted a tampered artifact: this is a bug" >&2; exit 1
fi

step "install, reboot into the new slot on trial, health check, commit"
run "$aloft" --config "$demo/device/aloft.toml" install "$demo/demo-release-1.mender"
run "$aloftctl" sim reboot "$demo/device"
run "$aloft" --config "$demo/device/aloft.toml" resume
run "$aloft" --config "$demo/device/aloft.toml" status
