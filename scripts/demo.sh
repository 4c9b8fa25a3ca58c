#!/usr/bin/env bash
# The main job: a demo server with simulated devices to watch and deploy to. Builds the server,
# the device client and aloftctl (release), then runs `aloft-server demo`: a fresh data folder
# (./aloft-demo), an admin with a random password (printed), five simulated A/B devices running
# the real `aloft` daemon (three accepted, two pending) and two artifacts ready to deploy.
# Ctrl-C stops everything. Extra arguments go to `aloft-server demo` (see --help).
set -euo pipefail
cd "$(dirname "$0")/.."
# The first build takes a few minutes: cargo shows its progress.
echo "building aloft-server, aloft and aloftctl (release; the first build takes a few minutes)..." >&2
cargo build --release --locked -p aloft-server -p aloft-client -p aloftctl
exec target/release/aloft-server demo "$@"
