#!/usr/bin/env bash
# The test command of this repository: on a fresh Debian 12 machine (as root, or with sudo), it provisions every
# libmongocrypt build it needs and runs the whole workspace suite against each of them:
#
#   dynamic    Debian 12's libmongocrypt 1.7.2, linked dynamically (pkg-config libmongocrypt), then valgrind, then the
#              aws-sdk feature's test (aws-config's credential chain), the core suite with bson 2 (feature bson-2)
#              and the serde feature's test
#   package    no libclang in the default build, `cargo publish --workspace --dry-run`, the bindings' staleness,
#              scripts/msrv.sh; the docs.rs build and scripts/cross-check.sh run beside the other steps (`side`)
#   fuzz       every cargo-fuzz target (fuzz/, scripts/fuzz.sh) for FUZZ_SECONDS (6) each on 1.21.0; fails on a
#              crash; skipped with a message when the machine has no nightly toolchain
#   static     the same 1.7.2, linked statically (pkg-config libmongocrypt-static), checked with ldd
#   1.10.1     libmongocrypt 1.10.1, 1.13.1, 1.17.0 and 1.21.0, each the shared library of a pinned pymongocrypt
#   1.13.1     wheel with the 1.21.1 headers (`vendor/provision <flavor>`, PKG_CONFIG_PATH); the first three are
#   1.17.0     older than their header, so the build leaves out the functions they lack and the tests check
#   latest     that those are Error::Unsupported (1.21.0; `nocrypto` is an old name of this step)
#   asan       the workspace's tests under AddressSanitizer on 1.21.0 (scripts/asan.sh; nightly, skipped without it)
#   miri       the unit tests of src/guard/ under Miri (scripts/miri.sh; nightly, skipped without it), beside the
#              other steps
#
# plus `cargo fmt --check`, clippy and rustdoc (once), builds with no bson feature and with both (each must stop at
# its compile_error!), and a build with nothing to find, which must fail with a readable message. Every step shares one target directory, target/matrix: the dependencies are compiled once, and
# each build recompiles only the workspace's own crates (libmongocrypt-sys's build script reruns when the library it
# is pointed at changes). The trybuild compile_fail probes run once per header (dynamic and latest): they depend on
# Rust types and on the header, and the other builds share a header with one of those two.
#
#   scripts/test.sh                       everything, in the order above (this is what CI runs)
#   scripts/test.sh dynamic 1.13.1        only some steps: lint, notfound, package, dynamic, fuzz, static, 1.10.1,
#                                         1.13.1, 1.17.0, latest, asan, miri
#
# package: what a user of the published crates gets: the docs.rs build (nightly, DOCS_RS=1, no libmongocrypt, no
# libclang), `cargo publish --workspace --dry-run` (every publishable crate, in dependency order), the checked-in
# bindings against bindgen's output for the 1.21.1 header (scripts/regen-bindings.sh --check), each crate's MSRV
# (scripts/msrv.sh) and `cargo check` for five other targets (scripts/cross-check.sh).
#
# Fails fast: the first failing command stops the run.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

wheel_builds=(1.10.1 1.13.1 1.17.0 latest)
all_steps=(lint notfound package dynamic fuzz static "${wheel_builds[@]}" asan miri)
steps=()
for step in "$@"; do
  [ "$step" = nocrypto ] && step=latest
  steps+=("$step")
done
[ ${#steps[@]} -gt 0 ] || steps=("${all_steps[@]}")
for step in "${steps[@]}"; do
  [[ " ${all_steps[*]} " == *" $step "* ]] || { echo "usage: scripts/test.sh [${all_steps[*]}]..." >&2; exit 2; }
done

# Whatever the caller's shell points at, each build below says exactly what it wants found.
unset MONGOCRYPT_LIB_DIR MONGOCRYPT_INCLUDE_DIR MONGOCRYPT_STATIC MONGOCRYPT_NO_PKG_CONFIG MONGOCRYPT_NO_VENDOR
unset PKG_CONFIG_PATH LD_LIBRARY_PATH CARGO_TARGET_DIR
unset MONGOCRYPT_TEST_EXPECT_VERSION MONGOCRYPT_TEST_EXPECT_LINKAGE MONGOCRYPT_TEST_EXPECT_CRYPTO
# Debug builds without incremental state: six builds of the workspace on two cores, in one target directory.
export CARGO_INCREMENTAL=0
export CARGO_PROFILE_DEV_DEBUG=line-tables-only
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
export RUST_BACKTRACE=${RUST_BACKTRACE:-1}
# Every build tests the core's run_tokio, the driver crate's tokio timer, and the KMS I/O crate's async faces and OpenSSL backend (libmongocrypt-kms's
# openssl feature: the system's OpenSSL, through libssl-dev; kms/tests/tls/kmip.rs runs a real PyKMIP server);
# `static` is the other feature, chosen per build by MONGOCRYPT_STATIC.
features=(--features libmongocrypt/tokio,libmongocrypt-kms/tokio,libmongocrypt-kms/openssl,libmongocrypt-driver/tokio)

target="$root/target/matrix"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
start=$SECONDS
timings=()

header() {
  echo
  echo "================================================================================"
  echo "== $*"
  echo "================================================================================"
}

# run CMD...: echoes and runs a command, keeping cargo test's result lines for the summary.
run() {
  echo "+ $*"
  "$@" 2>&1 | tee -a "$log"
}

# executables JSON-ON-STDIN: the executables cargo reported (--message-format=json-render-diagnostics).
executables() {
  python3 -c '
import json, sys
for line in sys.stdin:
    try:
        msg = json.loads(line)
    except ValueError:
        continue
    if msg.get("reason") == "compiler-artifact" and msg.get("executable"):
        print(msg["executable"])
'
}

# check_links MODE EXPECTED_DIR EXE...: MODE none: no executable may load libmongocrypt.so; MODE dynamic: at least
# one must, and every one that does must resolve it, without LD_LIBRARY_PATH, inside EXPECTED_DIR.
check_links() {
  local mode=$1 expected_dir=$2 linked=0 exe line resolved
  shift 2
  [ $# -gt 0 ] || { echo "check_links: cargo reported no executables" >&2; exit 1; }
  for exe in "$@"; do
    line=$(ldd "$exe" | grep 'libmongocrypt' || true)
    if [ -z "$line" ]; then
      continue
    fi
    linked=$((linked + 1))
    if [ "$mode" = none ]; then
      echo "FAIL: $exe is linked statically but loads a shared libmongocrypt: $line" >&2
      exit 1
    fi
    # "libmongocrypt.so.0 => /path/to/libmongocrypt.so.0 (0x...)"; /lib and /usr/lib are one directory on Debian 12.
    resolved=$(awk '{ print $3; exit }' <<<"$line")
    if [[ "$line" == *"not found"* ]] || [ "$(realpath "$(dirname "$resolved")")" != "$(realpath "$expected_dir")" ]; then
      echo "FAIL: $exe resolves libmongocrypt outside $expected_dir: $line" >&2
      exit 1
    fi
  done
  if [ "$mode" = none ]; then
    echo "ldd: none of the $# executables loads libmongocrypt.so"
  elif [ "$linked" -eq 0 ]; then
    echo "FAIL: none of the $# executables loads libmongocrypt.so; is it really a dynamic build?" >&2
    exit 1
  else
    echo "ldd: $linked of the $# executables load libmongocrypt.so, all from $expected_dir"
  fi
}

# suite NAME LINKAGE EXPECTED_LIB_DIR COMPILE_FAIL: the whole workspace suite in target/matrix, with the environment
# the caller exported for this build; COMPILE_FAIL=no skips the trybuild probes. Run it in a subshell, so that the
# exports end with it.
suite() {
  local name=$1 linkage=$2 lib_dir=$3 compile_fail=$4
  export CARGO_TARGET_DIR="$target"
  export MONGOCRYPT_TEST_EXPECT_LINKAGE=$linkage
  local json
  json=$(mktemp)

  echo "+ cargo test --workspace --all-targets ${features[*]} --no-run --message-format=json-render-diagnostics"
  cargo test --workspace --all-targets "${features[@]}" --no-run --message-format=json-render-diagnostics >"$json"
  mapfile -t test_exes < <(executables <"$json")
  echo "+ cargo build --workspace --examples ${features[*]} --message-format=json-render-diagnostics"
  cargo build --workspace --examples "${features[@]}" --message-format=json-render-diagnostics >"$json"
  mapfile -t example_exes < <(executables <"$json")
  rm -f "$json"
  if [ "$linkage" = static ]; then
    check_links none "" "${test_exes[@]}" "${example_exes[@]}"
  else
    check_links dynamic "$lib_dir" "${test_exes[@]}" "${example_exes[@]}"
  fi

  # The compile-fail probes depend only on Rust types and on the header: a build that shares its header with one
  # that ran them skips them (two minutes of rustc each).
  local skip=()
  [ "$compile_fail" = no ] && skip=(-- --skip compile_fail)
  echo "== $name: suite begins"
  run cargo test --workspace --all-targets "${features[@]}" "${skip[@]}"
  run cargo test --workspace --doc "${features[@]}"
  if [ -f examples/state_machine.rs ]; then
    run cargo run --example state_machine
    run cargo run --example async_state_machine
  else
    echo "(no examples/state_machine.rs: nothing to run)"
  fi
}

# provision_pykmip: the KMIP server of kms/tests/tls/kmip.rs, PyKMIP from PyPI, in a virtual environment of its own
# (target/pykmip-venv; tests/support/pykmip.rs runs its pykmip-server). Pinned: PyKMIP 0.10.0 is the last release
# (2021), unmaintained since. SQLAlchemy 1.4, the last 1.x, because PyKMIP 0.10 was written against SQLAlchemy 1.x
# (declarative models, Query API; 2.x starts but was not tested here). cryptography at the release tested here on
# Python 3.11: PyKMIP's crypto engine imports TripleDES, Camellia, ARC4, OFB and CFB from their old modules, which
# this release only warns about (they move to cryptography's "decrepit" modules); a release that removes them stops
# pykmip-server at start-up. Reinstalled only when the pins change.
pykmip_pins=(pykmip==0.10.0 sqlalchemy==1.4.54 cryptography==50.0.2)
provision_pykmip() {
  local venv="$root/target/pykmip-venv" stamp
  stamp="${pykmip_pins[*]}"
  if [ -x "$venv/bin/pykmip-server" ] && [ "$(cat "$venv/.pins" 2>/dev/null)" = "$stamp" ]; then
    return
  fi
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "${pykmip_pins[@]}"
  echo "$stamp" >"$venv/.pins"
  echo "PyKMIP: ${pykmip_pins[*]} in $venv"
}

provision() {
  header "provision: vendor/provision system ${wheel_builds[*]}"
  local t0=$SECONDS flavor pc
  vendor/provision system >/dev/null
  # The dynamic build's memcheck run; valgrind is on this kind of machine, but install it where it is missing.
  command -v valgrind >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null
  # kms/tests/tls/proxy.rs starts its own tinyproxy (HTTP CONNECT proxy) on a free loopback port; a few seconds, once.
  command -v tinyproxy >/dev/null || [ -x /usr/sbin/tinyproxy ] || {
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends tinyproxy >/dev/null ||
      { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends tinyproxy >/dev/null; }
  }
  # libmongocrypt-kms/openssl builds the openssl crate against the system's OpenSSL: its headers and pkg-config file.
  dpkg -s libssl-dev >/dev/null 2>&1 || {
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libssl-dev >/dev/null ||
      { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libssl-dev >/dev/null; }
  }
  provision_pykmip
  system_version=$(pkg-config --modversion libmongocrypt)
  system_lib_dir=$(pkg-config --variable=libdir libmongocrypt)
  # 1.7 cannot say whether it has native crypto (mongocrypt_is_crypto_available is 1.9's): read it from the
  # library's dependencies instead. The sys tests then encrypt without crypto hooks, which fails without it.
  if readelf -d "$system_lib_dir/libmongocrypt.so" | grep -q 'NEEDED.*libcrypto'; then system_crypto=native; else system_crypto=none; fi
  echo "system: libmongocrypt $system_version in $system_lib_dir (crypto: $system_crypto, from its NEEDED entries)"
  declare -gA wheel_pc wheel_version wheel_lib_dir wheel_crypto
  for flavor in "${wheel_builds[@]}"; do
    want "$flavor" || continue
    pc=$(vendor/provision "$flavor" | tail -n1)
    wheel_pc[$flavor]=$pc
    wheel_version[$flavor]=$(PKG_CONFIG_PATH=$pc pkg-config --modversion libmongocrypt)
    wheel_lib_dir[$flavor]=$(PKG_CONFIG_PATH=$pc pkg-config --variable=libdir libmongocrypt)
    # Read from the library by vendor/provision (mongocrypt_is_crypto_available), not assumed from the flavor.
    wheel_crypto[$flavor]=$(PKG_CONFIG_PATH=$pc pkg-config --variable=crypto libmongocrypt)
    echo "$flavor: libmongocrypt ${wheel_version[$flavor]} (crypto: ${wheel_crypto[$flavor]}) in ${wheel_lib_dir[$flavor]} (PKG_CONFIG_PATH=$pc)"
  done
  timings+=("provision: $((SECONDS - t0))s")
}

want() { [[ " ${steps[*]} " == *" $1 "* ]]; }

# side NAME FUNCTION: runs FUNCTION in the background (at low priority), its output in target/side/NAME.log, while
# the steps go on: compile-only and pure-CPU work in target directories of its own, with no server and no timing,
# which fills the cores that the test runs leave idle (servers starting, deadlines running out, one-core fuzzing).
# side_wait, at the end, prints each log and fails the run if one failed.
side_dir="$root/target/side"
side_names=()
side() {
  local name=$1
  shift
  mkdir -p "$side_dir"
  side_names+=("$name")
  echo "== $name: started beside the steps (target/side/$name.log)"
  (
    t=$SECONDS
    status=0
    renice -n 10 "$BASHPID" >/dev/null 2>&1 || true
    "$@" >"$side_dir/$name.log" 2>&1 || status=$?
    echo "$status $((SECONDS - t))" >"$side_dir/$name.rc"
  ) &
}
side_wait() {
  local name status secs
  wait
  for name in "${side_names[@]}"; do
    header "$name (ran beside the steps above)"
    tee -a "$log" <"$side_dir/$name.log"
    read -r status secs <"$side_dir/$name.rc"
    timings+=("$name (beside the others): ${secs}s")
    [ "$status" = 0 ] || { echo "FAIL: $name exited with status $status" >&2; exit 1; }
  done
}

# What docs.rs does: no libmongocrypt, no pkg-config, DOCS_RS=1, nightly rustdoc with --cfg docsrs and each
# crate's [package.metadata.docs.rs] features. No libclang either: the default build never compiles bindgen.
docsrs_build() {
  export MONGOCRYPT_NO_PKG_CONFIG=1 MONGOCRYPT_NO_VENDOR=1 DOCS_RS=1
  if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    echo "docs.rs build SKIPPED: no nightly toolchain on this machine (rustup toolchain install nightly)"
    return
  fi
  python3 - <<'PY' >"$root/target/docsrs-crates" || return 1
import json, subprocess
m = json.loads(subprocess.check_output(["cargo", "metadata", "--format-version", "1", "--no-deps", "--locked"]))
for p in m["packages"]:
    if p.get("publish") != []:
        docs = (p.get("metadata") or {}).get("docs", {}).get("rs", {})  # [package.metadata.docs.rs]
        print(p["name"], ",".join(docs.get("features", [])))
PY
  # A side job runs as the left side of `||`, where `set -e` does not stop it: each failure is counted.
  local crate docs_features failed=0
  while read -r crate docs_features; do
    echo "+ cargo +nightly doc --no-deps --locked -p $crate ${docs_features:+--features $docs_features}"
    RUSTDOCFLAGS="--cfg docsrs -D warnings" CARGO_TARGET_DIR="$root/target/docsrs" \
      cargo +nightly doc --no-deps --locked -p "$crate" ${docs_features:+--features "$docs_features"} ||
      { echo "FAIL: the docs.rs build of $crate"; failed=1; }
  done <"$root/target/docsrs-crates"
  return "$failed"
}

cross_checks() {
  CROSS_TARGET_DIR="$root/target/cross" scripts/cross-check.sh
}

miri_checks() {
  if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    echo "miri: SKIPPED: no nightly toolchain on this machine (rustup toolchain install nightly)"
    return
  fi
  CARGO_TARGET_DIR="$root/target/miri" scripts/miri.sh
}

provision

# The side jobs: docs.rs and cross-target checks (of `package`) and Miri. clang and llvm for the cross checks are
# installed first, here: apt takes one process at a time.
if want package; then
  { command -v clang >/dev/null && command -v llvm-ar >/dev/null; } ||
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends clang llvm >/dev/null
  side docs.rs docsrs_build
  side cross-checks cross_checks
fi
want miri && side miri miri_checks

if want lint; then
  header "lint: cargo fmt --check, cargo clippy -D warnings, rustdoc, the bson features' compile_error! (Debian libmongocrypt $system_version, dynamic)"
  t0=$SECONDS
  run cargo fmt --all -- --check
  (
    export CARGO_TARGET_DIR="$target" MONGOCRYPT_NO_VENDOR=1
    run cargo clippy --workspace --all-targets -- -D warnings
    run cargo clippy --workspace --all-targets "${features[@]}" -- -D warnings
    RUSTDOCFLAGS="-D warnings" run cargo doc --workspace --no-deps "${features[@]}"
    # No bson feature, or both: the build stops with the compile_error! that says what to choose.
    for bson_flags in --no-default-features "--features bson-2"; do
      echo "+ cargo check -p libmongocrypt $bson_flags (must fail)"
      # shellcheck disable=SC2086 # the flags are two words
      if out=$(cargo check -p libmongocrypt $bson_flags 2>&1); then
        echo "FAIL: cargo check -p libmongocrypt $bson_flags succeeded" >&2
        exit 1
      fi
      grep -F "error: libmongocrypt: " <<<"$out" || { echo "$out"; echo "FAIL: no compile_error! message" >&2; exit 1; }
    done
  )
  timings+=("lint: $((SECONDS - t0))s")
fi

if want notfound; then
  header "notfound: a build with nothing to find fails with a readable message"
  t0=$SECONDS
  out=$(mktemp)
  echo "+ MONGOCRYPT_NO_PKG_CONFIG=1 MONGOCRYPT_NO_VENDOR=1 cargo build -p libmongocrypt-sys"
  if CARGO_TARGET_DIR="$target" MONGOCRYPT_NO_PKG_CONFIG=1 MONGOCRYPT_NO_VENDOR=1 \
    cargo build -p libmongocrypt-sys >"$out" 2>&1; then
    cat "$out"
    echo "FAIL: the build succeeded with no libmongocrypt to find" >&2
    exit 1
  fi
  sed -n '/error: libmongocrypt-sys:/,/libclang/p' "$out"
  for needle in MONGOCRYPT_LIB_DIR pkg-config libmongocrypt-dev vendor/provision; do
    grep -qF -- "$needle" "$out" || { cat "$out"; echo "FAIL: the error message does not mention $needle" >&2; exit 1; }
  done
  echo "ok: the build failed and its message names MONGOCRYPT_LIB_DIR, pkg-config, libmongocrypt-dev, vendor/provision"
  # Every step says why it failed, and the cargo:warning carries the whole message, a line per line.
  for needle in "MONGOCRYPT_LIB_DIR: not set" "pkg-config: skipped because MONGOCRYPT_NO_PKG_CONFIG is set" \
    "vendor/provision: skipped because MONGOCRYPT_NO_VENDOR is set" "MONGOCRYPT_FUNCTIONS: not set" \
    "libclang is not needed"; do
    grep -qF -- "warning: libmongocrypt-sys@0.1.0:   - $needle" "$out" || grep -qF -- "warning: libmongocrypt-sys@0.1.0: $needle" "$out" ||
      { cat "$out"; echo "FAIL: the cargo:warning lines do not carry: $needle" >&2; exit 1; }
  done
  echo "ok: the warning carries every line, and each step its reason"
  # pkg-config that finds nothing says so (not an empty reason).
  echo "+ PKG_CONFIG_LIBDIR=/nonexistent MONGOCRYPT_NO_VENDOR=1 cargo build -p libmongocrypt-sys"
  if CARGO_TARGET_DIR="$target" PKG_CONFIG_LIBDIR=/nonexistent MONGOCRYPT_NO_VENDOR=1 \
    cargo build -p libmongocrypt-sys >"$out" 2>&1; then
    cat "$out"; echo "FAIL: the build succeeded with no libmongocrypt to find" >&2; exit 1
  fi
  grep -q -- "- pkg-config libmongocrypt: .*not found in the pkg-config search path" "$out" ||
    { cat "$out"; echo "FAIL: the pkg-config step does not say why it failed" >&2; exit 1; }
  echo "ok: the pkg-config step says pkg-config's reason"
  # A package unpacked from a registry never looks outside itself: the .crate of libmongocrypt-sys, built from a
  # directory outside this checkout with nothing else to find, does not use vendor/out even when it is there.
  pkg=$(mktemp -d)
  run cargo package -q -p libmongocrypt-sys --no-verify --allow-dirty --target-dir "$pkg/target"
  tar -xzf "$pkg"/target/package/libmongocrypt-sys-*.crate -C "$pkg"
  echo "+ (in $pkg) MONGOCRYPT_NO_PKG_CONFIG=1 cargo build of the packaged libmongocrypt-sys"
  if (cd "$pkg"/libmongocrypt-sys-*/ && CARGO_TARGET_DIR="$pkg/target" MONGOCRYPT_NO_PKG_CONFIG=1 \
    cargo build -q --offline >"$out" 2>&1); then
    cat "$out"; echo "FAIL: the packaged crate found a libmongocrypt outside itself" >&2; exit 1
  fi
  grep -qF "is not a checkout of this repository" "$out" ||
    { cat "$out"; echo "FAIL: the packaged crate did not say it is not a checkout" >&2; exit 1; }
  echo "ok: the packaged crate does not look at vendor/out"
  rm -rf "$pkg" "$out"
  timings+=("notfound: $((SECONDS - t0))s")
fi

if want package; then
  header "package: no libclang in the default build, cargo publish --dry-run, bindings staleness, MSRV (docs.rs and cross checks run beside)"
  t0=$SECONDS
  (
    export MONGOCRYPT_NO_PKG_CONFIG=1 MONGOCRYPT_NO_VENDOR=1 DOCS_RS=1
    if cargo tree -p libmongocrypt-sys -e build --prefix none | grep -q '^clang-sys'; then
      echo "FAIL: the default build of libmongocrypt-sys compiles clang-sys (libclang)" >&2
      exit 1
    fi
    echo "ok: the default build of libmongocrypt-sys needs no libclang (no clang-sys in its build graph)"
  )
  (
    export CARGO_TARGET_DIR="$target" MONGOCRYPT_NO_VENDOR=1
    # Every publishable crate, in dependency order, each verified against the others as packaged (cargo >= 1.90
    # overlays the unpublished workspace crates on the registry). The sizes are in the "Packaged" lines.
    t1=$SECONDS
    # That overlay unpacks each .crate under $CARGO_HOME/registry/src/-<hash of the target dir>/ and, finding a
    # `.cargo-ok` there, reuses what an earlier run of a checkout at the same path unpacked: an older libmongocrypt
    # then fails the driver's verification. Our crates are on no registry, so every unpacked copy of them is stale.
    rm -rf "${CARGO_HOME:-$HOME/.cargo}"/registry/src/-*/libmongocrypt-*
    run cargo publish --workspace --dry-run --locked --allow-dirty
    echo "package: publish dry-run $((SECONDS - t1))s"
    # The checked-in bindings are bindgen's output for the 1.21.1 header (feature bindgen, so libclang).
    dpkg -s libclang-dev >/dev/null 2>&1 ||
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libclang-dev >/dev/null
    t1=$SECONDS
    REGEN_PKG_CONFIG_PATH=$(vendor/provision latest | tail -n1) run scripts/regen-bindings.sh --check
    echo "package: bindings staleness $((SECONDS - t1))s"
    t1=$SECONDS
    MSRV_TARGET_DIR="$root/target/msrv" run scripts/msrv.sh
    echo "package: msrv $((SECONDS - t1))s"
  )
  timings+=("package: $((SECONDS - t0))s")
fi

if want dynamic; then
  header "dynamic: Debian libmongocrypt $system_version, linked dynamically (pkg-config libmongocrypt)"
  t0=$SECONDS
  (
    export MONGOCRYPT_NO_VENDOR=1 MONGOCRYPT_TEST_EXPECT_VERSION=$system_version MONGOCRYPT_TEST_EXPECT_CRYPTO=$system_crypto
    suite dynamic dynamic "$system_lib_dir" yes
    # The reliability check of the same build: every test binary and the example under valgrind memcheck.
    run scripts/valgrind.sh
    # Feature aws-sdk (aws-config's credential chain), once: about two minutes of extra build.
    export CARGO_TARGET_DIR="$target"
    run cargo test -p libmongocrypt-kms --features aws-sdk --test credentials_aws_sdk
    # Feature bson-2 (bson 2, the MongoDB driver 3.x's default) instead of the default bson-3, once: the core suite.
    run cargo test -p libmongocrypt --no-default-features --features bson-2,tokio --tests
    # Feature serde (the option types' Serialize/Deserialize), once: its test alone.
    run cargo test -p libmongocrypt --features serde --test api options_serde
  )
  timings+=("dynamic: $((SECONDS - t0))s")
fi

# fuzz: beside the steps that follow, at low priority (a fuzz run's length is its own time limit, not a timing).
# On the nocrypto 1.21.0: the Rust provider does every primitive, and leak detection is on. Debian's 1.7.2 gets the
# bounded deterministic fuzz of tests/fuzz_inputs.rs and valgrind instead (a second instrumented build of the
# workspace here cost two minutes of CI); `scripts/fuzz.sh TARGET SECONDS` runs on any build by hand.
fuzz_all() {
  export MONGOCRYPT_NO_VENDOR=1 FUZZ_SKIP_WITHOUT_NIGHTLY=1 FUZZ_TARGET_DIR="$root/target/fuzz"
  PKG_CONFIG_PATH=$(vendor/provision latest | tail -n1)
  export PKG_CONFIG_PATH
  echo "every cargo-fuzz target for ${FUZZ_SECONDS:-6} s, on libmongocrypt 1.21.0"
  # A side job runs as the left side of `||`, where `set -e` does not stop it: each failure is counted.
  local targets failed=0
  targets=$(scripts/fuzz.sh list) || return 1
  for fuzz_target in $targets; do
    echo "+ scripts/fuzz.sh $fuzz_target ${FUZZ_SECONDS:-6}"
    scripts/fuzz.sh "$fuzz_target" "${FUZZ_SECONDS:-6}" || { echo "FAIL: fuzz target $fuzz_target"; failed=1; }
  done
  return "$failed"
}
want fuzz && side fuzz fuzz_all

if want static; then
  header "static: Debian libmongocrypt $system_version, linked statically (MONGOCRYPT_STATIC=1)"
  t0=$SECONDS
  (
    export MONGOCRYPT_STATIC=1 MONGOCRYPT_NO_VENDOR=1 MONGOCRYPT_TEST_EXPECT_VERSION=$system_version
    export MONGOCRYPT_TEST_EXPECT_CRYPTO=$system_crypto
    suite static static "" no
  )
  timings+=("static: $((SECONDS - t0))s")
fi

for flavor in "${wheel_builds[@]}"; do
  want "$flavor" || continue
  header "$flavor: libmongocrypt ${wheel_version[$flavor]}, crypto ${wheel_crypto[$flavor]}, 1.21.1 headers (PKG_CONFIG_PATH=${wheel_pc[$flavor]})"
  t0=$SECONDS
  (
    export PKG_CONFIG_PATH=${wheel_pc[$flavor]} MONGOCRYPT_TEST_EXPECT_VERSION=${wheel_version[$flavor]}
    export MONGOCRYPT_TEST_EXPECT_CRYPTO=${wheel_crypto[$flavor]}
    # latest runs the compile_fail probes for the 1.21.1 header; the older libraries share it.
    suite "$flavor" dynamic "${wheel_lib_dir[$flavor]}" "$([ "$flavor" = latest ] && echo yes || echo no)"
  )
  timings+=("$flavor: $((SECONDS - t0))s")
done

if want asan; then
  header "asan: the workspace's tests under AddressSanitizer, libmongocrypt 1.21.0 (scripts/asan.sh)"
  t0=$SECONDS
  if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    run scripts/asan.sh
  else
    echo "asan: SKIPPED: no nightly toolchain on this machine (rustup toolchain install nightly)"
  fi
  timings+=("asan: $((SECONDS - t0))s")
fi

side_wait

header "summary"
for t in "${timings[@]}"; do echo "  $t"; done
echo "  total: $((SECONDS - start))s"
# Every `test result:` line of the runs above, added up.
awk '/^test result:/ { n++; for (i = 1; i < NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) ~ /^ignored/) s += $i } }
  END { if (n) printf "tests: %d passed, %d failed, %d skipped\n", p, f, s }' "$log"
