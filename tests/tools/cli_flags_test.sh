#!/usr/bin/env bash
# The flags of `salience peak`, `bench` and `check`: every value outside its
# range, and every flag the chosen mode would ignore, is a usage error
# (exit 2) naming the flag; output that cannot be written fails the
# command. Needs no model files.
#
#   tests/tools/cli_flags_test.sh path/to/salience
# Prints "N passed, N failed".
set -uo pipefail

SALIENCE=$(realpath "${1:?usage: cli_flags_test.sh path/to/salience}")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
passed=0 failed=0
ok()   { passed=$((passed + 1)); echo "ok   $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1"; [[ -f "$work/err" ]] && sed 's/^/     /' "$work/err"; }

# expect_error NAME EXIT_CODE MESSAGE_FRAGMENT -- COMMAND...: the command
# exits with EXIT_CODE within 20 s and stderr names the problem.
expect_error() {
  local name=$1 code=$2 fragment=$3; shift 4
  timeout 20 "$@" >"$work/out" 2>"$work/err"; local got=$?
  if [[ $got -eq $code ]] && grep -qF -- "$fragment" "$work/err"; then ok "$name"
  else fail "$name (exit $got, wanted $code and '$fragment')"; fi
}

# --- peak ----------------------------------------------------------------
for value in nan inf -1 0 1e9 abc; do
  expect_error "peak --seconds $value" 2 "--seconds: expected a number in [0.01, 600], got '$value'" -- \
    "$SALIENCE" peak --seconds "$value"
done
expect_error "peak to a full stdout" 1 "cannot write to standard output" -- \
  bash -c 'exec "$0" peak --json --seconds 0.05 >/dev/full' "$SALIENCE"

# --- bench: ranges -------------------------------------------------------
for flag in --batch --heads-q --heads-kv --seq-q --seq-k --head-dim --head-dim-v; do
  expect_error "bench $flag 0" 2 "$flag: expected an integer in [1, 9223372036854775807], got '0'" -- \
    "$SALIENCE" bench "$flag" 0
  expect_error "bench $flag 2^64" 2 "$flag: expected an integer in [1, 9223372036854775807], got '18446744073709551616'" -- \
    "$SALIENCE" bench "$flag" 18446744073709551616
done
expect_error "bench --seq-q 1e3" 2 "--seq-q: expected an integer" -- "$SALIENCE" bench --seq-q 1e3
expect_error "bench --window-left -2" 2 "--window-left: expected an integer in [-1," -- \
  "$SALIENCE" bench --window-left -2
expect_error "bench --repeats 0" 2 "--repeats: expected an integer in [1, 1000000]" -- "$SALIENCE" bench --repeats 0
expect_error "bench --repeats 2^31" 2 "--repeats: expected an integer in [1, 1000000]" -- \
  "$SALIENCE" bench --repeats 2147483648
expect_error "bench --warmup -1" 2 "--warmup: expected an integer in [0, 1000000]" -- "$SALIENCE" bench --warmup -1
cpus=$(nproc)
expect_error "bench --threads past the CPUs" 2 "--threads: expected an integer in [0, $cpus], got '1000'" -- \
  "$SALIENCE" bench --threads 1000
expect_error "bench --threads 2^32 + 1" 2 "--threads: expected an integer in [0, $cpus]" -- \
  "$SALIENCE" bench --threads 4294967297
expect_error "bench --bf16-path without --dtype bf16" 2 "--bf16-path: only with --dtype bf16" -- \
  "$SALIENCE" bench --bf16-path dot --seq-q 64

# --- bench --decode: its shapes are fixed, the other flags are errors ----
for flag in "--batch 2" "--heads-q 8" "--heads-kv 2" "--seq-q 4" "--head-dim 64" "--head-dim-v 64" \
            "--causal none" "--window-left 8" "--window-right 0" "--as-mask" "--backward" \
            "--dtype bf16" "--bf16-path dot"; do
  read -r -a words <<<"$flag"
  expect_error "bench --decode $flag" 2 "${words[0]}: not used by --decode" -- \
    "$SALIENCE" bench --decode $flag
done
expect_error "bench --decode --seq-k 2^32 + 64" 2 "--seq-k 4294967360: a decode cache holds at most 2147483647 tokens" -- \
  "$SALIENCE" bench --decode --seq-k 4294967360
expect_error "bench --decode --seq-k 2^31" 2 "--seq-k 2147483648: a decode cache holds at most 2147483647 tokens" -- \
  "$SALIENCE" bench --decode --seq-k 2147483648

# --- bench: what runs reports what it measured ---------------------------
"$SALIENCE" bench --seq-q 64 --heads-q 2 --head-dim 16 --threads 1 --repeats 1 --warmup 0 --json \
  >"$work/out" 2>"$work/err"
if [[ $? -eq 0 ]] && python3 -c '
import json, sys
row = json.loads(open(sys.argv[1]).read())
assert row["threads"] == 1 and row["seq_q"] == 64 and row["peak_gflops"] > 0
' "$work/out"; then ok "bench --threads 1 --json: one row, on 1 thread"; else fail "bench --json row"; fi
expect_error "bench to a full stdout" 1 "cannot write to standard output" -- \
  bash -c 'exec "$0" bench --seq-q 64 --heads-q 2 --head-dim 16 --repeats 1 --warmup 0 --json >/dev/full' "$SALIENCE"

# --- unknown flags and subcommands ---------------------------------------
expect_error "check --quick --seconds" 2 "--seconds" -- "$SALIENCE" check --quick --seconds 1
expect_error "an unknown subcommand" 2 "unknown subcommand 'bnech'" -- "$SALIENCE" bnech

echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
