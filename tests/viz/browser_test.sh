#!/usr/bin/env bash
# Browser test of `salience explain`'s HTML report: headless Chromium (the
# Debian package) loads the page from a file:// URL with the network off,
# runs its script, and
#   1. the dumped DOM holds every token label (in the token bar and on the
#      zoomed heatmap's axes, i.e. after the script ran), the layer and head
#      selectors, and one grid thumbnail per layer x head plus the rollout;
#   2. a screenshot is not blank (many distinct colours, mostly not white).
#
#   tests/viz/browser_test.sh path/to/salience
# Prints "N passed, N failed"; exits non-zero on a failure. Skips (exit 0)
# when chromium or the model is missing.
set -euo pipefail

SALIENCE=${1:?usage: browser_test.sh path/to/salience}
CHROMIUM=$(command -v chromium || command -v chromium-browser || true)
if [[ -z "$CHROMIUM" ]]; then
  echo "browser_test: SKIPPED (no chromium; bash scripts/install_model_deps.sh)"
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

passed=0 failed=0
check() {  # check NAME COMMAND...
  local name=$1; shift
  if "$@"; then passed=$((passed + 1)); echo "ok   $name"
  else failed=$((failed + 1)); echo "FAIL $name"; fi
}

text="The bank of the river was muddy."
if ! "$SALIENCE" explain "$text" --out "$work/bank.html" 2>"$work/explain.err"; then
  if grep -q "model not found" "$work/explain.err"; then
    echo "browser_test: SKIPPED (model not installed)"; exit 0
  fi
  cat "$work/explain.err"; exit 1
fi

chrome() {
  timeout 120 "$CHROMIUM" --headless --no-sandbox --disable-gpu --hide-scrollbars \
    --no-first-run --disable-extensions --user-data-dir="$work/profile" \
    --proxy-server="127.0.0.1:9" --virtual-time-budget=3000 "$@" \
    "file://$work/bank.html" 2>>"$work/chrome.err"
}
chrome --dump-dom > "$work/dom.html"
chrome --window-size=1400,900 --screenshot="$work/shot.png" >/dev/null

# A deep link: layer 0, head 4, token 2 ("bank") chosen; the page lists
# what "bank" attends to (river first in that head) and outlines its row
# and column.
timeout 120 "$CHROMIUM" --headless --no-sandbox --disable-gpu --no-first-run \
  --user-data-dir="$work/profile" --proxy-server="127.0.0.1:9" \
  --virtual-time-budget=3000 --dump-dom "file://$work/bank.html#layer=0&head=4&token=2" \
  >"$work/dom-link.html" 2>>"$work/chrome.err"
first_attended() { grep -A1 -F '"bank" attends to:' "$work/dom-link.html" | tail -n 1; }
check "deep link selects 'bank' and lists river first" \
  grep -qE '^ +0\.[0-9]+ +river$' <(first_attended)
check "chosen token's row and column outlined" \
  test "$(grep -o 'class="hl"' "$work/dom-link.html" | wc -l)" -eq 2
check "zoom title names layer 0, head 4" grep -qF '>layer 0, head 4</text>' "$work/dom-link.html"

tokens=("[CLS]" the bank of the river was muddy . "[SEP]")
for token in "${tokens[@]}"; do
  check "token bar has '$token'" \
    grep -qF "\">$token</span>" "$work/dom.html"
  check "heatmap axis has '$token'" \
    grep -qF "class=\"ylabel\" style=\"cursor: pointer;\">$token</text>" "$work/dom.html"
done
check "layer selector" grep -q 'id="layer-select"' "$work/dom.html"
check "head selector" grep -q 'id="head-select"' "$work/dom.html"
check "rollout option" grep -q '<option value="rollout">' "$work/dom.html"
thumbs=$(grep -o '<div class="thumb' "$work/dom.html" | wc -l)
check "73 thumbnails (6 x 12 + rollout), got $thumbs" test "$thumbs" -eq 73

# The screenshot: decode the PNG with the standard library only.
check "screenshot is not blank" python3 - "$work/shot.png" <<'PY'
import struct, sys, zlib
data = open(sys.argv[1], "rb").read()
assert data[:8] == b"\x89PNG\r\n\x1a\n"
pos, idat, width, height, ctype = 8, b"", 0, 0, 0
while pos < len(data):
    length, kind = struct.unpack(">I4s", data[pos:pos + 8])
    body = data[pos + 8:pos + 8 + length]
    if kind == b"IHDR":
        width, height, depth, ctype = struct.unpack(">IIBB", body[:10])
    elif kind == b"IDAT":
        idat += body
    pos += 12 + length
bpp = {2: 3, 6: 4}[ctype]
raw = zlib.decompress(idat)
stride = width * bpp
rows, prev = [], bytearray(stride)
for y in range(height):
    f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
    for i in range(stride):
        a = line[i - bpp] if i >= bpp else 0
        b, c = prev[i], (prev[i - bpp] if i >= bpp else 0)
        if f == 1: line[i] = (line[i] + a) & 255
        elif f == 2: line[i] = (line[i] + b) & 255
        elif f == 3: line[i] = (line[i] + (a + b) // 2) & 255
        elif f == 4:
            p = a + b - c; pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
    rows.append(bytes(line)); prev = line
pixels = [r[i:i + 3] for r in rows[::4] for i in range(0, stride, bpp * 4)]
colours = len(set(pixels))
non_white = sum(p != b"\xff\xff\xff" for p in pixels) / len(pixels)
print(f"  screenshot {width}x{height}: {colours} colours, {non_white:.0%} not white")
sys.exit(0 if colours > 50 and non_white > 0.2 else 1)
PY

cp "$work/shot.png" "${BROWSER_TEST_SHOT:-/dev/null}" 2>/dev/null || true
echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
