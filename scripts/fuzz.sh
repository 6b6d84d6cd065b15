#!/usr/bin/env bash
# Runs one coverage-guided fuzz target (fuzz/, cargo-fuzz + libFuzzer, AddressSanitizer on the Rust side) for a
# bounded time against the libmongocrypt the build finds, as every other build does (pkg-config, or
# MONGOCRYPT_LIB_DIR; PKG_CONFIG_PATH=$(vendor/provision latest | tail -n1) for 1.21.0). Exits non-zero on a crash
# (a panic, an abort, a sanitizer report, a timeout or out-of-memory); libFuzzer writes the input to
# fuzz/artifacts/TARGET/.
#
#   scripts/fuzz.sh TARGET SECONDS     e.g. scripts/fuzz.sh kms_feed 60
#   scripts/fuzz.sh list               the targets
#   scripts/fuzz.sh list linked        the targets that call libmongocrypt
#
# Targets: mongo_feed (every NEED_MONGO_* state), kms_feed (AWS, Azure, GCP, KMIP replies), explicit_decrypt,
# options (every setter and init that takes a document), rust_crypto (the Rust crypto provider's hooks);
# credentials_reply (metadata-server and STS replies), proxy_connect_reply (a proxy's reply to CONNECT) and
# kms_framing (KMS reply and request framing), the KMS crate's parsers of what peers send. Seeds are
# fuzz/seeds/TARGET (checked in, read only); what the run finds goes to $FUZZ_CORPUS/TARGET (default
# target/fuzz-corpus, kept between runs). Needs the nightly toolchain; installs cargo-fuzz if it is missing.
# FUZZ_SKIP_WITHOUT_NIGHTLY=1: exit 0 with a message instead of failing when there is no nightly toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

# The targets that call libmongocrypt (their outcome depends on the linked version), then the KMS crate's pure
# parsers of network replies (the same on every version).
linked_targets=(mongo_feed kms_feed explicit_decrypt options rust_crypto)
targets=("${linked_targets[@]}" credentials_reply proxy_connect_reply kms_framing)
if [[ ${1:-} == list && ${2:-} == linked ]]; then
  printf '%s\n' "${linked_targets[@]}"
  exit 0
fi
if [[ ${1:-} == list ]]; then
  printf '%s\n' "${targets[@]}"
  exit 0
fi
target=${1:?usage: scripts/fuzz.sh TARGET SECONDS (scripts/fuzz.sh list)}
seconds=${2:?usage: scripts/fuzz.sh TARGET SECONDS}
[[ " ${targets[*]} " == *" $target "* ]] || { echo "fuzz: unknown target $target (one of: ${targets[*]})" >&2; exit 2; }

if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  if [[ -n ${FUZZ_SKIP_WITHOUT_NIGHTLY:-} ]]; then
    echo "fuzz: SKIPPED $target: no nightly toolchain on this machine (rustup toolchain install nightly)"
    exit 0
  fi
  echo "fuzz: cargo-fuzz needs the nightly toolchain: rustup toolchain install nightly" >&2
  exit 2
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz (cargo install cargo-fuzz)"
  cargo install --locked cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz
fi

export CARGO_INCREMENTAL=0 CARGO_TERM_COLOR=never
target_dir=${FUZZ_TARGET_DIR:-$root/target/fuzz}
corpus=${FUZZ_CORPUS:-$root/target/fuzz-corpus}/$target
mkdir -p "$corpus" "$root/fuzz/artifacts/$target"
cd fuzz
cargo +nightly fuzz build --target-dir "$target_dir" "$target" >"$target_dir.build.log" 2>&1 ||
  { tail -n 30 "$target_dir.build.log" >&2; echo "fuzz: build of $target failed" >&2; exit 1; }
# LeakSanitizer: on libmongocrypt before 1.21 (Debian's 1.7.2) the targets reach leaks inside libmongocrypt itself
# (scripts/valgrind.supp lists them; e.g. a malformed Queryable Encryption unindexed value) and its stacks end in
# libbson's bson_malloc, so leak detection is off there (valgrind covers 1.7.2, with those suppressions); on 1.21
# it is on. FUZZ_DETECT_LEAKS=0|1 overrides.
linked=$(pkg-config --modversion libmongocrypt 2>/dev/null || echo 0)
if [[ -z ${FUZZ_DETECT_LEAKS:-} ]]; then
  FUZZ_DETECT_LEAKS=$(printf '%s\n1.21.0\n' "$linked" | sort -V -C && echo 0 || echo 1)
  [[ $linked == 1.21.0 ]] && FUZZ_DETECT_LEAKS=1
fi
export ASAN_OPTIONS="detect_leaks=$FUZZ_DETECT_LEAKS${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
# -timeout: one input may take 10 s at most (a hang is a failure); -rss_limit_mb: 2 GiB.
log=$target_dir.$target.log
status=0
cargo +nightly fuzz run --target-dir "$target_dir" "$target" "$corpus" "seeds/$target" -- \
  -max_total_time="$seconds" -detect_leaks="$FUZZ_DETECT_LEAKS" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1 || status=$?
grep -E 'stat::number_of_executed_units|stat::new_units_added|Done [0-9]+ runs|ERROR|panicked|SUMMARY|Test unit written' "$log" |
  sed "s/^/fuzz $target: /" || true
if [[ $status -ne 0 ]]; then
  tail -n 60 "$log" >&2
  echo "fuzz: $target FAILED (exit $status); the input is in fuzz/artifacts/$target/, the log in $log" >&2
  exit 1
fi
echo "fuzz: $target passed ($seconds s, corpus $(find "$corpus" -type f | wc -l) inputs)"
