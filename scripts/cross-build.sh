#!/usr/bin/env bash
# Cross-builds the device binary `aloft` (package aloft-client) with `--profile device`, statically
# linked against musl, for aarch64 and 32-bit ARMv7 (hard float), then proves each binary is a
# static executable of the right architecture and that it starts under qemu-user.
#
# C cross compiler: cargo-zigbuild with Zig, both from PyPI (ziglang wheel, prebuilt cargo-zigbuild
# wheel) in a venv of their own. Zig compiles the C of zstd-sys, liblzma-sys and ring for each
# target, links, and supplies musl's libc, so no Debian cross gcc is needed.
#
# Installs what is missing: the rustup targets, rust-src (only if a target's std has to be built),
# the venv, and Debian's qemu-user / file / python3-venv (apt-get only when the command is absent).
#
# If `rustup target add` cannot get a target's prebuilt std (armv7-unknown-linux-musleabihf is not
# served to some machines), std is built from rust-src instead: -Zbuild-std on the stable
# toolchain, unlocked with RUSTC_BOOTSTRAP=1, linked with Zig's musl (-C link-self-contained=no,
# since there is no rust-std for the target to take crt1.o and libc.a from).
#
#   CARGO_TARGET_DIR       honoured (default: the workspace's target/)
#   CROSS_TARGETS          targets to build (default: the two below)
#   CROSS_TOOLS_DIR        where the venv goes (default: ${XDG_CACHE_HOME:-~/.cache}/aloft-cross)
#   ZIGLANG_VERSION, CARGO_ZIGBUILD_VERSION   pins for the PyPI packages
set -euo pipefail
cd "$(dirname "$0")/.."

TARGETS=(${CROSS_TARGETS:-aarch64-unknown-linux-musl armv7-unknown-linux-musleabihf})
PROFILE=device
ZIGLANG_VERSION=${ZIGLANG_VERSION:-0.17.1}
CARGO_ZIGBUILD_VERSION=${CARGO_ZIGBUILD_VERSION:-0.24.1}
TOOLS_DIR=${CROSS_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/aloft-cross}
VENV=$TOOLS_DIR/venv

step() { printf '\n==> %s\n' "$*"; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# What `file` must say and which qemu-user runs it, per target.
arch_of() {
  case $1 in
    aarch64-*) echo 'ARM aarch64' ;;
    armv7-*|arm-*|thumbv7*) echo '32-bit LSB .*ARM, EABI5' ;;
    x86_64-*) echo 'x86-64' ;;
    *) die "no architecture check known for $1" ;;
  esac
}
qemu_of() {
  case $1 in
    aarch64-*) echo qemu-aarch64 ;;
    armv7-*|arm-*|thumbv7*) echo qemu-arm ;;
    x86_64-*) echo env ;;  # runs natively
    *) die "no qemu known for $1" ;;
  esac
}

t_all=$(now)
step "installing what is missing"
t_install=$(now)

# Debian packages, only for commands that are absent.
need=()
command -v file >/dev/null || need+=(file)
command -v qemu-aarch64 >/dev/null && command -v qemu-arm >/dev/null || need+=(qemu-user)
command -v python3 >/dev/null || need+=(python3)
if [ ! -x "$VENV/bin/python3" ] && ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
  need+=(python3-venv)
fi
if ((${#need[@]})); then
  echo "Debian packages: ${need[*]}"
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# Zig and cargo-zigbuild, from PyPI into a venv of their own (no PEP 668 trouble, no root needed).
# cargo-zigbuild looks for `zig` on PATH, then runs `python3 -m ziglang`: the venv's python3.
[ -d "$VENV/bin" ] && export PATH="$VENV/bin:$PATH"
have_zig() { command -v zig >/dev/null || python3 -m ziglang version >/dev/null 2>&1; }
if ! command -v cargo-zigbuild >/dev/null || ! have_zig; then
  echo "PyPI into $VENV: ziglang==$ZIGLANG_VERSION cargo-zigbuild==$CARGO_ZIGBUILD_VERSION"
  [ -x "$VENV/bin/python3" ] || python3 -m venv "$VENV"
  export PATH="$VENV/bin:$PATH"
  pip_args=(-q --disable-pip-version-check install)
  have_zig || pip_args+=("ziglang==$ZIGLANG_VERSION")
  command -v cargo-zigbuild >/dev/null || pip_args+=("cargo-zigbuild==$CARGO_ZIGBUILD_VERSION")
  if ! "$VENV/bin/python3" -m pip "${pip_args[@]}"; then
    # No wheel for this machine: build cargo-zigbuild from crates.io instead (about 1.5 min).
    command -v cargo-zigbuild >/dev/null || cargo install cargo-zigbuild --locked --root "$VENV"
    have_zig || die "could not install ziglang from PyPI"
  fi
fi

# Rust targets: the prebuilt std where rustup has it, else std built from rust-src.
installed=$(rustup target list --installed)
build_std=()
for t in "${TARGETS[@]}"; do
  grep -qx "$t" <<<"$installed" && continue
  if rustup target add "$t" 2>/tmp/cross-build-rustup.$$; then
    continue
  fi
  echo "note: rustup could not fetch the prebuilt std for $t ($(grep -m1 -o 'status code: [0-9]*' /tmp/cross-build-rustup.$$ || tail -n1 /tmp/cross-build-rustup.$$)); std will be built from source"
  build_std+=("$t")
done
rm -f /tmp/cross-build-rustup.$$
if ((${#build_std[@]})) && ! rustup component list --installed | grep -q '^rust-src'; then
  rustup component add rust-src
fi
install_s=$(since "$t_install")

echo "rustc:          $(rustc --version)"
echo "cargo-zigbuild: $(cargo-zigbuild --version)"
echo "zig:            $(command -v zig >/dev/null && zig version || python3 -m ziglang version) ($(command -v zig || echo python3 -m ziglang))"
echo "qemu-user:      $(qemu-aarch64 --version | head -n1)"
echo "install: ${install_s} s"

target_dir=$(cargo metadata --format-version 1 --no-deps --locked |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')

declare -A build_s
for t in "${TARGETS[@]}"; do
  args=(zigbuild -p aloft-client --bin aloft --profile "$PROFILE" --locked --target "$t")
  envs=()
  if [[ " ${build_std[*]} " == *" $t "* ]]; then
    var=CARGO_TARGET_$(tr 'a-z-' 'A-Z_' <<<"$t")_RUSTFLAGS
    envs=(RUSTC_BOOTSTRAP=1 "$var=${!var:-} -C link-self-contained=no")
    args+=(-Zbuild-std=std,panic_abort)
    step "building for $t (std from source)"
  else
    step "building for $t"
  fi
  t0=$(now)
  env "${envs[@]}" cargo "${args[@]}"
  build_s[$t]=$(since "$t0")
  echo "build $t: ${build_s[$t]} s"
done

step "checking the binaries"
summary=()
for t in "${TARGETS[@]}"; do
  bin=$target_dir/$t/$PROFILE/aloft
  [ -x "$bin" ] || die "$bin is missing"
  desc=$(file -b "$bin")
  echo "$t: $desc"
  grep -Eq 'statically linked|static-pie linked' <<<"$desc" || die "$bin is not statically linked"
  grep -Eq "$(arch_of "$t")" <<<"$desc" || die "$bin is not for $t"
  qemu=$(qemu_of "$t")
  version=$($qemu "$bin" --version) || die "$bin does not start under $qemu"
  echo "$t: $qemu aloft --version -> $version"
  size=$(stat -c %s "$bin")
  summary+=("$(printf '%-34s %-70s %9d bytes %6.2f MiB  build %6s s' "$t" "$bin" "$size" \
    "$(awk -v s="$size" 'BEGIN { print s / 1048576 }')" "${build_s[$t]}")")
done

step "summary"
printf '%s\n' "${summary[@]}"
echo "install ${install_s} s, total $(since "$t_all") s"
