#!/usr/bin/env bash
# Runs the workspace's test suite under valgrind memcheck against the libmongocrypt the build finds (meant for
# Debian 12's 1.7.2 in CI): every test binary of `cargo test --workspace --no-run`, and the state_machine example,
# each as
#
#   valgrind --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite <binary>
#
# and fails on any memcheck error or definite leak, in our code or in the C libraries. Left out: trybuild's
# compile_fail binary (it runs rustc on purpose-broken code; nothing it checks runs). Tests that spawn a few
# child processes (api: options_bad_input) stay: the children run natively, only the parent is checked.
#
# The fuzz test runs its default 7000 cases and the stress test 8 threads x 100 operations (MONGOCRYPT_FUZZ_CASES,
# MONGOCRYPT_STRESS_OPS override them). Two binaries run at a time on a 2-core machine; each has a time limit.
#
#   scripts/valgrind.sh                 build (target/valgrind), run everything, print a summary
#   VALGRIND_JOBS=1 scripts/valgrind.sh one binary at a time
#   scripts/valgrind.sh stress fuzz     only the binaries whose file name contains one of these words
#
# Each binary's full valgrind log is kept in target/valgrind/logs/. scripts/valgrind.supp suppresses seven definite
# leaks inside libmongocrypt 1.7.2 itself, on error and misuse paths that tests take on purpose (a KMS provider set
# twice, a second listCollections result, a cached collection info that encrypt_init rejects, a
# malformed Queryable Encryption value); it names the libmongocrypt function of each and explains it. Nothing else
# is suppressed: glibc 2.36, OpenSSL 3.0 and libbson 1.23 on Debian 12 need no suppressions. The last lines are the
# summary: the suppressions used (records and bytes per entry), then one line "valgrind summary: PASS|FAIL: ..." with
# the number of binaries, failures, memcheck errors and bytes definitely lost.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

command -v valgrind >/dev/null || { echo "valgrind is not installed (apt-get install valgrind)" >&2; exit 2; }

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target/valgrind}
export CARGO_INCREMENTAL=0 CARGO_TERM_COLOR=never
# Line tables are enough for valgrind's stack traces and keep the debug build small.
export CARGO_PROFILE_DEV_DEBUG=${CARGO_PROFILE_DEV_DEBUG:-line-tables-only}
export MONGOCRYPT_FUZZ_CASES=${MONGOCRYPT_FUZZ_CASES:-7000}
export MONGOCRYPT_STRESS_OPS=${MONGOCRYPT_STRESS_OPS:-100}
export RUST_BACKTRACE=${RUST_BACKTRACE:-1}
jobs=${VALGRIND_JOBS:-2}
limit=${VALGRIND_TIMEOUT:-480}
filters=("$@")

logs=$CARGO_TARGET_DIR/logs
mkdir -p "$logs"
rm -f "$logs"/*.log "$logs"/*.status

json=$(mktemp)
trap 'rm -f "$json"' EXIT

# executables: the executables cargo reported (--message-format=json on stdin), test binaries only when $1 = test,
# leaving out the packages that stay out of memcheck: the KMS I/O crate (libmongocrypt-kms: TLS and HTTP on
# loopback, no FFI of its own) and the benches (libmongocrypt-bench).
executables() {
  python3 -c '
import json, sys
kind = sys.argv[1]
for line in sys.stdin:
    try:
        msg = json.loads(line)
    except ValueError:
        continue
    if msg.get("reason") != "compiler-artifact" or not msg.get("executable"):
        continue
    if kind == "test" and not msg["profile"]["test"]:
        continue
    if any(f"#{name}@" in msg["package_id"] for name in ("libmongocrypt-kms", "libmongocrypt-bench")):
        continue
    print(msg["executable"])
' "$1"
}

# The test suite's features and targets (scripts/test.sh), so that the binaries are the ones the suite built, not a
# second build: the tokio features bring in the async driver tests (tests/runner/async_driver.rs), the driver
# crate's async faces and the async example.
features=(--features libmongocrypt/tokio,libmongocrypt-kms/tokio,libmongocrypt-kms/openssl,libmongocrypt-driver/tokio)
echo "+ cargo test --workspace --all-targets ${features[*]} --no-run --message-format=json"
cargo test --workspace --all-targets "${features[@]}" --no-run --message-format=json >"$json"
mapfile -t binaries < <(executables test <"$json" | grep -Ev '/compile_fail-[0-9a-f]+$' | sort -u)
if [ -f examples/state_machine.rs ]; then
  echo "+ cargo build --example state_machine --example async_state_machine ${features[*]} --message-format=json"
  cargo build --example state_machine --example async_state_machine "${features[@]}" --message-format=json >"$json"
  mapfile -t -O "${#binaries[@]}" binaries < <(executables any <"$json")
else
  echo "(no examples/state_machine.rs: no example to run)"
fi

if [ ${#filters[@]} -gt 0 ]; then
  selected=()
  for exe in "${binaries[@]}"; do
    for f in "${filters[@]}"; do
      if [[ "$(basename "$exe")" == *"$f"* ]]; then selected+=("$exe"); break; fi
    done
  done
  binaries=("${selected[@]}")
fi
[ ${#binaries[@]} -gt 0 ] || { echo "no binaries to run" >&2; exit 1; }

echo "libmongocrypt: $(pkg-config --modversion libmongocrypt 2>/dev/null || echo '?') (pkg-config); valgrind: $(valgrind --version)"
echo "running ${#binaries[@]} binaries under memcheck, $jobs at a time, ${limit}s each (MONGOCRYPT_FUZZ_CASES=$MONGOCRYPT_FUZZ_CASES MONGOCRYPT_STRESS_OPS=$MONGOCRYPT_STRESS_OPS)"

# Tests left out under memcheck, by binary: valgrind runs glibc's posix_spawn (CLONE_VM | CLONE_VFORK) as a plain
# fork, so a child's failed exec is not reported to the parent and spawning a missing program "succeeds". The two
# tests that spawn one (driver/tests/mongocryptd.rs) run everywhere else.
skips_for() {
  case $1 in
    mongocryptd-*) echo "--skip a_spawn_failure_names_the_path_and_the_ways_out --skip a_server_selection_error_respawns_once_and_retries_once" ;;
  esac
}
export -f skips_for

# run_one EXE: one binary under memcheck; writes LOG and a STATUS line "name exit seconds".
run_one() {
  local exe=$1 name log t0 rc skips
  name=$(basename "$exe")
  read -r -a skips <<<"$(skips_for "$name")"
  log=$logs/$name.log
  t0=$SECONDS
  set +e
  # -v: the log ends with the suppressions used ("used_suppression:" lines), which the summary counts.
  timeout --signal=KILL "$limit" valgrind -v --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite \
    --show-leak-kinds=definite --num-callers=40 --suppressions="$supp" --log-file="$log" "$exe" "${skips[@]}" >"$logs/$name.out" 2>&1
  rc=$?
  set -e
  echo "$name $rc $((SECONDS - t0))" >"$logs/$name.status"
  local errors leaks
  errors=$(grep -ho 'ERROR SUMMARY: [0-9,]* errors' "$log" | tail -1 | grep -o '[0-9,]*' | head -1 || true)
  leaks=$(grep -ho 'definitely lost: [0-9,]* bytes' "$log" | tail -1 | grep -o '[0-9,]*' | head -1 || true)
  printf '%-48s exit=%-3s %4ss errors=%s definitely_lost=%s\n' "$name" "$rc" "$((SECONDS - t0))" "${errors:-?}" "${leaks:-0}"
}
export -f run_one
supp=$root/scripts/valgrind.supp
export logs limit supp

start=$SECONDS
printf '%s\n' "${binaries[@]}" | xargs -P "$jobs" -I{} bash -c 'run_one "$@"' _ {}

failed=0
total_errors=0
for status in "$logs"/*.status; do
  read -r name rc secs <"$status"
  log=$logs/$name.log
  errors=$(grep -ho 'ERROR SUMMARY: [0-9,]* errors' "$log" | tail -1 | grep -o '[0-9,]*' | head -1 | tr -d , || echo 0)
  total_errors=$((total_errors + ${errors:-0}))
  if [ "$rc" != 0 ]; then
    failed=$((failed + 1))
    case $rc in
      137) why="killed after ${limit}s" ;;
      1) why="memcheck errors or definite leaks (or a failing test: see $logs/$name.out)" ;;
      *) why="exit $rc (see $logs/$name.out)" ;;
    esac
    echo "FAIL: $name: $why; log: $log"
    # The failing tests' panics (libtest's "failures:" section), so that the run's own output says what failed.
    sed -n '/^failures:$/,/^test result:/p' "$logs/$name.out" | grep -v -E '^ +[0-9]+: |^ +at ' | head -60 || true
    grep -A25 -m3 -E '^==[0-9]+== (Invalid|Conditional|Use of|Syscall|Mismatched|Source and|.*definitely lost)' "$log" | head -80 || true
  fi
done
# Bytes definitely lost, summed over every binary's leak summary (0 when a binary lost nothing or did not get that far).
lost=$(cat "$logs"/*.log | grep -ho 'definitely lost: [0-9,]* bytes' | grep -o '[0-9,]*' | tr -d , |
  awk '{ n += $1 } END { print n + 0 }')
# The suppressions used (valgrind -v lists them at exit), summed over binaries: leak records and bytes per entry.
used=$(cat "$logs"/*.log |
  sed -nE 's/^--[0-9]+-- used_suppression: +([0-9]+) (.*) [^ ]*valgrind\.supp:[0-9]+ suppressed: ([0-9,]+) bytes.*/\1|\3|\2/p' |
  awk -F'|' '{ gsub(",", "", $2); n[$3] += $1; b[$3] += $2 }
    END { for (k in n) printf "%d|%d|%s\n", n[k], b[k], k }' | sort -t'|' -k1,1nr)
entries=$(grep -c '^   Memcheck:' "$supp")
echo "suppressed (scripts/valgrind.supp: known leaks inside libmongocrypt 1.7.2, each explained there):"
suppressed=0
used_entries=0
while IFS='|' read -r records bytes entry; do
  [ -n "$records" ] || continue
  printf '  %4d leak records, %7d bytes: %s\n' "$records" "$bytes" "$entry"
  suppressed=$((suppressed + records))
  used_entries=$((used_entries + 1))
done <<<"$used"
verdict=PASS
[ "$failed" -eq 0 ] || verdict=FAIL
echo "valgrind summary: $verdict: ${#binaries[@]} binaries in $((SECONDS - start))s; $failed failed;" \
  "$total_errors memcheck errors (definite leaks count as errors); $lost bytes definitely lost;" \
  "$suppressed known libmongocrypt leak records suppressed ($used_entries of $entries suppressions used)"
[ "$failed" -eq 0 ]
