#!/usr/bin/env bash
# The workspace test suite under AddressSanitizer (nightly `-Zsanitizer=address`, LeakSanitizer included) against
# libmongocrypt 1.21.0 (`vendor/provision latest`; the wheel's nocrypto build, so the Rust crypto provider runs).
# libmongocrypt itself is not instrumented: ASan checks the binding's side of every call, LSan every allocation.
# Left out: trybuild's compile_fail (it runs rustc). scripts/test.sh runs it as its last step (about 2.5 min).
#
#   scripts/asan.sh            build into target/asan and run every test binary
#   scripts/asan.sh --test X   extra arguments go to cargo test
set -euo pipefail
cd "$(dirname "$0")/.."
rustup toolchain list | grep -q '^nightly' || { echo "asan: needs the nightly toolchain" >&2; exit 2; }
PKG_CONFIG_PATH=$(vendor/provision latest | tail -n1)
export PKG_CONFIG_PATH
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target/asan} CARGO_INCREMENTAL=0
export CARGO_PROFILE_DEV_DEBUG=line-tables-only
# An explicit --target keeps the flags off build scripts and proc macros.
export RUSTFLAGS="-Zsanitizer=address" RUSTDOCFLAGS="-Zsanitizer=address"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
host=$(rustc +nightly -vV | sed -n 's/^host: //p')
# The KMS crate is left out: it has no unsafe code and calls no C of ours (rustls, tokio and hyper under ASan would
# double this step for nothing the sanitizer can find there).
cargo +nightly test --workspace --exclude libmongocrypt-kms --features libmongocrypt/tokio --target "$host" --tests "$@" \
  -- --skip compile_fail
