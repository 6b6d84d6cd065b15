#!/usr/bin/env bash
# Checks each publishable crate's declared `rust-version` against what it needs, for each documented feature set:
#
# 1. metadata: every package that `cargo tree -p CRATE --features F -e normal,build --target all` reaches (what a
#    user of CRATE with features F compiles, on any platform, at the versions Cargo.lock pins) has a
#    `rust-version` (read from `cargo metadata`) no newer than the one declared for that feature set. Fails
#    otherwise, naming the package.
# 2. compile: when `rustup toolchain install <version> --profile minimal` works, `cargo +<version> check` of CRATE
#    with F (with --locked, in target/msrv); otherwise says it falls back to step 1 alone. MSRV_COMPILE=no skips it.
#
# The feature sets and their MSRVs are the table below; a crate whose README documents a higher MSRV for a feature
# (aws-sdk) lists it with that version. The declared default comes from each Cargo.toml.
#
#   scripts/msrv.sh              both steps
#   MSRV_COMPILE=no scripts/msrv.sh   the metadata step only
set -euo pipefail
cd "$(dirname "$0")/.."

# CRATE|FEATURES|MSRV|COMPILE (empty MSRV: the crate's rust-version; COMPILE=yes: step 2 builds it too). FEATURES is
# a comma list, empty for the defaults. Step 2 builds the -sys crate and the binding with their toolchains; the KMS
# crate's sets (rustls, hyper, openssl, aws-sdk: minutes of build per toolchain) are checked by step 1, and its own
# code by clippy's incompatible_msrv lint, which reads the same rust-version.
sets=(
  "libmongocrypt-sys|||yes"
  "libmongocrypt-sys|static||"
  "libmongocrypt-sys|bindgen||"
  "libmongocrypt|||"
  "libmongocrypt|tokio,serde||yes"
  "libmongocrypt-kms|||"
  "libmongocrypt-kms|tokio,openssl||"
  "libmongocrypt-kms|tokio,openssl,aws-sdk|1.94.1|"
  "libmongocrypt-driver|||"
  "libmongocrypt-driver|tokio||yes"
)
meta=$(mktemp)
checker=$(mktemp)
trap 'rm -f "$meta" "$checker"' EXIT
# Reads `cargo tree --format {p}` lines on stdin; fails when a package needs a newer Rust than the declared one.
cat >"$checker" <<'PY'
import json, sys
meta, crate, features, msrv = sys.argv[1:]
m = json.load(open(meta))
def key(v):  # "1.89" and "1.89.0" are one version
    parts = [int(x) for x in v.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))
rv = {(p["name"], "v" + p["version"]): p.get("rust_version") for p in m["packages"]}
seen, worst, bad = set(), None, []
for line in sys.stdin:
    parts = line.split()
    if len(parts) < 2 or (parts[0], parts[1]) in seen:
        continue
    seen.add((parts[0], parts[1]))
    r = rv.get((parts[0], parts[1]))
    if not r or parts[0] == crate:  # the crate's own rust-version is the declared one
        continue
    if worst is None or key(r) > key(worst[0]):
        worst = (r, parts[0], parts[1])
    if key(r) > key(msrv):
        bad.append(f"{parts[0]} {parts[1]} needs {r}")
if bad:
    print(f"FAIL: {crate} [{features}] declares {msrv}, but: " + "; ".join(sorted(bad)))
    sys.exit(1)
print(f"ok: {crate} [{features}] rust-version {msrv}: {len(seen)} packages, the newest need is {worst[0]} ({worst[1]} {worst[2]})")
PY
cargo metadata --format-version 1 --locked --all-features >"$meta"
mapfile -t publishable < <(python3 - "$meta" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
members = set(m["workspace_members"])
for p in m["packages"]:
    if p["id"] in members and p.get("publish") != []:
        print(p["name"])
PY
)
for crate in "${publishable[@]}"; do
  printf '%s\n' "${sets[@]}" | grep -q "^$crate|" || { echo "FAIL: scripts/msrv.sh lists no feature set of $crate" >&2; exit 1; }
done

declared_msrv() { # declared_msrv CRATE
  python3 - "$meta" "$1" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
rv = next(p.get("rust_version") for p in m["packages"] if p["name"] == sys.argv[2] and p["id"] in m["workspace_members"])
if not rv:
    sys.exit(f"FAIL: {sys.argv[2]} declares no rust-version")
print(rv)
PY
}

status=0
compile_sets=()
for set in "${sets[@]}"; do
  IFS='|' read -r crate features msrv compile <<<"$set"
  [ -n "$msrv" ] || msrv=$(declared_msrv "$crate")
  feature_args=()
  [ -z "$features" ] || feature_args=(--features "$features")
  if ! cargo tree -q --locked -p "$crate" "${feature_args[@]}" -e normal,build --target all --prefix none \
    --format '{p}' | python3 "$checker" "$meta" "$crate" "${features:-default}" "$msrv"; then
    status=1
  fi
  [ "$compile" = yes ] && compile_sets+=("$crate|$features|$msrv")
done
[ "$status" = 0 ] || exit 1

[ "${MSRV_COMPILE:-yes}" = no ] && { echo "msrv: compile step skipped (MSRV_COMPILE=no)"; exit 0; }
for set in "${compile_sets[@]}"; do
  IFS='|' read -r crate features msrv <<<"$set"
  if ! rustup toolchain list | grep -q "^$msrv" && ! rustup toolchain install "$msrv" --profile minimal >/dev/null 2>&1; then
    echo "msrv: cannot install toolchain $msrv here; $crate [${features:-default}] is checked by metadata only (above)"
    continue
  fi
  feature_args=()
  [ -z "$features" ] || feature_args=(--features "$features")
  echo "+ cargo +$msrv check --locked -p $crate ${feature_args[*]}"
  CARGO_TARGET_DIR=${MSRV_TARGET_DIR:-$PWD/target/msrv} cargo "+$msrv" check -q --locked -p "$crate" "${feature_args[@]}"
  echo "ok: $crate [${features:-default}] compiles with Rust $msrv"
done
