#!/usr/bin/env bash
# Checks that the C++ block in README.md after the marker line
#   <!-- example: examples/readme_example.cc -->
# is examples/readme_example.cc exactly, so the README's example compiles.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

readonly example=examples/readme_example.cc
block=$(awk -v marker="<!-- example: $example -->" '
  $0 == marker { found = 1; next }
  found == 1 && /^```/ { found = 2; next }
  found == 2 && /^```/ { exit }
  found == 2 { print }
' README.md)
if [[ -z "$block" ]]; then
  echo "README.md has no code block after '<!-- example: $example -->'" >&2
  exit 1
fi
if ! diff -u "$example" <(printf '%s\n' "$block"); then
  echo "README.md's example differs from $example (diff above)" >&2
  exit 1
fi
echo "README.md's example matches $example"
