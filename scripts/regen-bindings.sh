#!/usr/bin/env bash
# Regenerates mongocrypt-sys/src/bindings.rs, the pre-generated bindings that builds without feature `bindgen` use,
# from the newest supported mongocrypt.h: the 1.21.1 headers of `vendor/provision latest`. The build script of
# libmongocrypt-sys itself generates them (feature `bindgen`, the same bindgen settings as a user's bindgen build)
# and leaves the unfiltered output in its OUT_DIR as bindings.generated.rs; this script copies that file. The
# output depends only on the header, the locked bindgen, libclang's parse and rustfmt, so it is the same on every
# run on one machine image.
#
#   scripts/regen-bindings.sh            rewrites mongocrypt-sys/src/bindings.rs
#   scripts/regen-bindings.sh --check    regenerates into a temporary file and fails (showing the diff) when the
#                                        checked-in file differs
#
# Needs libclang (Debian: libclang-dev). REGEN_PKG_CONFIG_PATH overrides the pkg-config directory of the header
# (default: the output of `vendor/provision latest`).
set -euo pipefail
cd "$(dirname "$0")/.."
check=no
[ "${1:-}" = --check ] && check=yes

pc=${REGEN_PKG_CONFIG_PATH:-$(vendor/provision latest | tail -n1)}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target/regen}
# Only the header of `pc` counts: no MONGOCRYPT_LIB_DIR, no system pkg-config directories, no vendor fallback.
unset MONGOCRYPT_LIB_DIR MONGOCRYPT_INCLUDE_DIR MONGOCRYPT_STATIC MONGOCRYPT_FUNCTIONS DOCS_RS
export MONGOCRYPT_NO_VENDOR=1 PKG_CONFIG_PATH="$pc"

out_dir=$(cargo build -q -p libmongocrypt-sys --features bindgen --message-format=json | python3 -c '
import json, sys
for line in sys.stdin:
    msg = json.loads(line)
    if msg.get("reason") == "build-script-executed" and "mongocrypt-sys" in msg["package_id"]:
        print(msg["out_dir"])
')
generated="$out_dir/bindings.generated.rs"
[ -f "$generated" ] || { echo "regen-bindings: the build left no $generated" >&2; exit 1; }
head -n1 "$generated" | grep -q ' 1\.21\.1$' ||
  { echo "regen-bindings: $generated is not from the 1.21.1 header: $(head -n1 "$generated")" >&2; exit 1; }

target=mongocrypt-sys/src/bindings.rs
if [ "$check" = yes ]; then
  tmp=$(mktemp)
  trap 'rm -f "$tmp"' EXIT
  cp "$generated" "$tmp"
  if ! diff -u "$target" "$tmp"; then
    echo "FAIL: $target is stale; run scripts/regen-bindings.sh and commit the result" >&2
    exit 1
  fi
  echo "ok: $target matches bindgen's output for the 1.21.1 header"
else
  cp "$generated" "$target"
  echo "wrote $target ($(grep -c '^    pub fn ' "$target") functions)"
fi
