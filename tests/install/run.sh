#!/usr/bin/env bash
# Installs a built tree into a temporary prefix, builds tests/install (a
# consumer using find_package(salience)) against it, and runs it.
#
#   tests/install/run.sh [BUILD_DIR]     (default: build)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

build_dir=${1:-build}
if [[ ! -f "$build_dir/CMakeCache.txt" ]]; then
  echo "install test: $build_dir is not a configured build (run make build)" >&2
  exit 1
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/salience-install.XXXXXX")
trap 'rm -rf "$work"' EXIT

cmake --install "$build_dir" --prefix "$work/prefix"
cmake -S tests/install -B "$work/consumer" -G Ninja \
  -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$work/prefix"
# The package must come from the prefix, not from a build tree.
grep '^salience_DIR:' "$work/consumer/CMakeCache.txt"
cmake --build "$work/consumer"
"$work/consumer/consumer"
