#!/usr/bin/env bash
# The main job: a demo server with simulated devices to watch and deploy to. Builds the server,
# the device client and aloftctl (release), then runs `aloft-server demo`: a fresh data folder
# (./aloft-demo), an admin with a random password (printed), 24 simulated A/B devices running
# the real `aloft` daemon (22 accepted, two pending), two artifacts, and a phased rollout under
# way that pauses at a device broken on purpose.
# Ctrl-C stops everything. Extra arguments go to `aloft-server demo` (see --help).
set -euo pipefail
cd "$(dirname "$0")/.."
# The first build takes a few minutes: cargo shows its progress.
echo "building aloft-server, aloft and aloftctl (release; the first build takes a few minutes)..." >&2
cargo build --release --locked -p aloft-server -p aloft-client -p aloftctl
exec target/release/aloft-server demo "$@"
