#!/usr/bin/env bash
# The unit tests of src/guard/ (the checks that refuse what aborts libmongocrypt) under Miri, which finds undefined
# behaviour, out-of-bounds reads and leaks in the binding's own parsing. They call no libmongocrypt function (Miri
# cannot run C); the crate still builds against the libmongocrypt that pkg-config finds (the -sys build script).
#
#   scripts/miri.sh            install Miri if needed, run `guard::`
#   scripts/miri.sh ARGS       extra arguments go to the test binary (a name filter, --nocapture)
set -euo pipefail
cd "$(dirname "$0")/.."
rustup toolchain list | grep -q '^nightly' || { echo "miri: needs the nightly toolchain" >&2; exit 2; }
# Miri needs the standard library's source to build its own sysroot.
if ! rustup +nightly component list --installed | grep -q '^miri' && ! rustup +nightly component add miri rust-src; then
  # rustup's downloads are not a package registry: a machine that reaches only those cannot add the component.
  echo "miri: SKIPPED: rustup cannot install the miri component on this machine"
  exit 0
fi
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target/miri} CARGO_INCREMENTAL=0
cargo +nightly miri test -p libmongocrypt --lib guard:: -- "$@"
