#!/usr/bin/env bash
# Installs salience into a temporary prefix and builds two consumers of the
# installed package against it, then runs them: tests/install (CMake,
# find_package(salience)) and the same main.cc compiled with the flags
# `pkg-config --cflags --libs salience` gives.
#
#   tests/install/run.sh [BUILD_DIR]     install a configured, built tree
#                                        (default: build)
#   tests/install/run.sh --kernels-only  configure and build the attention
#                                        library alone (SALIENCE_BUILD_MODEL
#                                        and every other part OFF) in a
#                                        temporary tree first, and check that
#                                        it never looked for the model
#                                        layer's packages
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

work=$(mktemp -d "${TMPDIR:-/tmp}/salience-install.XXXXXX")
trap 'rm -rf "$work"' EXIT

if [[ "${1:-}" == "--kernels-only" ]]; then
  build_dir=$work/kernels
  cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DSALIENCE_BUILD_MODEL=OFF -DSALIENCE_BUILD_TESTS=OFF \
    -DSALIENCE_BUILD_TOOLS=OFF -DSALIENCE_BUILD_BENCH=OFF \
    -DSALIENCE_BUILD_EXAMPLES=OFF
  # The model layer's packages (OpenBLAS, utf8proc, libpng, nlohmann-json)
  # and the tools' and tests' (CLI11, GoogleTest, Google Benchmark) were not
  # even looked for: their cache entries do not exist.
  if grep -E '^(SALIENCE_OPENBLAS_LIB|PNG_LIBRARY|nlohmann_json_DIR|CLI11_DIR|GTest_DIR|benchmark_DIR|pkgcfg_lib_SALIENCE_UTF8PROC)' \
      "$build_dir/CMakeCache.txt"; then
    echo "install test: the kernels-only configuration looked for the packages above" >&2
    exit 1
  fi
  cmake --build "$build_dir" -j "$(nproc)"
else
  build_dir=${1:-build}
  if [[ ! -f "$build_dir/CMakeCache.txt" ]]; then
    echo "install test: $build_dir is not a configured build (run make build)" >&2
    exit 1
  fi
fi

prefix=$work/prefix
cmake --install "$build_dir" --prefix "$prefix"

# CMake: find_package(salience) from the prefix, not from a build tree.
cmake -S tests/install -B "$work/consumer" -G Ninja \
  -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$prefix"
grep '^salience_DIR:' "$work/consumer/CMakeCache.txt"
cmake --build "$work/consumer"
"$work/consumer/consumer"

# pkg-config: the relocatable salience.pc of the prefix.
pc_dir=$(dirname "$(find "$prefix" -name salience.pc -print -quit)")
flags=$(PKG_CONFIG_PATH=$pc_dir pkg-config --cflags --libs salience)
echo "pkg-config --cflags --libs salience: $flags"
# shellcheck disable=SC2086  # the flags are words
"${CXX:-c++}" -std=c++20 -O2 tests/install/main.cc $flags -o "$work/consumer_pc"
"$work/consumer_pc"
