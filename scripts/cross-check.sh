#!/usr/bin/env bash
# `cargo check` of every publishable crate for the platforms the crates support besides this machine's, against the
# pre-generated bindings (no libmongocrypt for those targets here: MONGOCRYPT_FUNCTIONS=all says the library has
# every function, and nothing is linked by a check).
#
#   scripts/cross-check.sh                      all targets below
#   scripts/cross-check.sh aarch64-apple-darwin only some
#
# ring (a dependency of libmongocrypt) compiles C in its build script even under `cargo check`. There is no C
# library of those targets on this machine, so clang compiles ring's C for the target as ring does for targets
# without a libc (-nostdlibinc -DRING_CORE_NOSTDLIBINC=1), with two empty stand-ins for the only system headers that
# ring then still includes: <TargetConditionals.h> (Apple SDK; only its TARGET_OS_* flags are read) and
# <stdlib.h> (the MSVC CRT; clang provides _byteswap_ulong itself). The objects are never linked: this checks
# the Rust code (cfgs, types, FFI declarations) for each target, not a build that runs. Needs clang and
# llvm-ar (Debian: clang, llvm) and `rustup target add` for each target.
set -euo pipefail
cd "$(dirname "$0")/.."
targets=("$@")
[ ${#targets[@]} -gt 0 ] ||
  targets=(aarch64-unknown-linux-gnu x86_64-unknown-linux-musl x86_64-apple-darwin aarch64-apple-darwin x86_64-pc-windows-msvc)

command -v clang >/dev/null || { echo "cross-check: needs clang (Debian: apt-get install clang)" >&2; exit 1; }
ar=$(command -v llvm-ar || ls /usr/bin/llvm-ar-* 2>/dev/null | head -n1 || true)
[ -n "$ar" ] || { echo "cross-check: needs llvm-ar (Debian: apt-get install llvm)" >&2; exit 1; }

# Every publishable workspace member.
mapfile -t crates < <(cargo metadata --format-version 1 --no-deps --locked | python3 -c '
import json, sys
m = json.load(sys.stdin)
for p in m["packages"]:
    if p.get("publish") != []:
        print(p["name"])
')
pkgs=()
for c in "${crates[@]}"; do pkgs+=(-p "$c"); done
# The features whose code differs per platform (TLS, sockets, timers) on; the KMS crate's openssl and aws-sdk are left out:
# openssl-sys needs the target's OpenSSL, and aws-sdk adds nothing platform-specific of ours.
features=(--features libmongocrypt/tokio,libmongocrypt-kms/tokio)

stubs=$(mktemp -d)
trap 'rm -rf "$stubs"' EXIT
cat >"$stubs/TargetConditionals.h" <<'H'
/* Stand-in for the Apple SDK header, for cross-checking only: macOS. */
#define TARGET_OS_OSX 1
#define TARGET_OS_IPHONE 0
H
echo '/* Stand-in for the MSVC CRT header, for cross-checking only. */' >"$stubs/stdlib.h"

export CARGO_TARGET_DIR=${CROSS_TARGET_DIR:-$PWD/target/cross}
export MONGOCRYPT_FUNCTIONS=all MONGOCRYPT_NO_PKG_CONFIG=1 MONGOCRYPT_NO_VENDOR=1
unset MONGOCRYPT_LIB_DIR MONGOCRYPT_INCLUDE_DIR PKG_CONFIG_PATH
installed=$(rustup target list --installed)
# One cargo run for every target: its jobs interleave the targets' build scripts and checks on both cores.
env_args=()
target_args=()
for target in "${targets[@]}"; do
  if ! grep -qx "$target" <<<"$installed" && ! rustup target add "$target" >/dev/null 2>&1; then
    # rustup's downloads are not a package registry: a machine that reaches only those cannot add a target.
    echo "cross-check: SKIPPED $target: rustup cannot install its standard library on this machine"
    continue
  fi
  t=${target//-/_}
  env_args+=("CC_$t=clang" "AR_$t=$ar" "CFLAGS_$t=-nostdlibinc -DRING_CORE_NOSTDLIBINC=1 -isystem $stubs")
  target_args+=(--target "$target")
done
[ ${#target_args[@]} -gt 0 ] || { echo "cross-check: SKIPPED: no target could be installed"; exit 0; }
t0=$SECONDS
echo "+ cargo check ${target_args[*]} ${pkgs[*]} ${features[*]}"
env "${env_args[@]}" cargo check -q --locked "${target_args[@]}" "${pkgs[@]}" "${features[@]}"
echo "ok: ${targets[*]} ($((SECONDS - t0))s)"
