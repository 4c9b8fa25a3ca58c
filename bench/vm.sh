#!/usr/bin/env bash
# The time from "deployment created" to "success" of a 256 MiB rootfs on a QEMU virtual machine
# (software emulation), split into download, slot write, reboot and commit, beside the floor of
# each part measured in the same run on the same machine (curl of the same link, dd conv=fsync
# to the same disk, a plain reboot), and the daemon's peak RSS. Needs what scripts/test.sh
# installs; the root filesystem is made by scripts/vm-rootfs.sh (cached in bench/data).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bench/data
scripts/vm-rootfs.sh bench/data/vm-rootfs.tar
cargo build --quiet --locked -p aloftctl -p aloft-server
cargo build --quiet --locked --profile device -p aloft-client
ALOFT_VM_ROOTFS=$PWD/bench/data/vm-rootfs.tar ALOFT_VM_ALOFT=$PWD/target/device/aloft \
  cargo test --quiet --locked -p aloft-server --test it vm_bench_update_phases -- --ignored --nocapture 2>&1 \
  | grep -E '^\||^artifact|^daemon|^statuses'
