#!/usr/bin/env bash
# Installs what building and testing salience needs, from Debian's packages.
#
#   scripts/install_deps.sh [build] [python] [tsan]
#
#   build  (the default) compiler, CMake, Ninja and the libraries: Highway,
#          GoogleTest/GoogleMock, Google Benchmark, CLI11, nlohmann-json.
#   python what the Python package's build needs (python/install.sh): the
#          compiler, CMake, Ninja and Highway; its CMake configures the
#          attention library alone (no model layer, tests or tools).
#   tsan   clang-14 with LLVM's OpenMP runtime, for the ThreadSanitizer build.
#          GCC's libgomp is not instrumented, so TSan cannot see its barriers
#          and reports false races; LLVM's libomp ships the Archer tool, which
#          tells TSan about OpenMP's synchronization (see README, "Testing").
#
# Idempotent: it asks dpkg first and touches apt only when something is
# missing (then one `apt-get update` and one `apt-get install`). Needs root or
# sudo only in that case.
set -euo pipefail

readonly MIN_CMAKE=3.22

build_packages=(
  g++ make ninja-build pkg-config
  libhwy-dev libgtest-dev libgmock-dev libbenchmark-dev libcli11-dev
  nlohmann-json3-dev
)
python_packages=(g++ ninja-build libhwy-dev)
tsan_packages=(clang-14 libclang-rt-14-dev libomp-14-dev)

is_installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

# True when a cmake >= MIN_CMAKE is on PATH (pip's or Debian's).
has_cmake() {
  command -v cmake >/dev/null 2>&1 || return 1
  local version
  version=$(cmake --version 2>/dev/null | awk 'NR == 1 { print $3 }')
  [[ -n "$version" ]] || return 1
  [[ "$(printf '%s\n%s\n' "$MIN_CMAKE" "$version" | sort -V | head -n 1)" \
      == "$MIN_CMAKE" ]]
}

wanted=()
groups=("$@")
[[ ${#groups[@]} -gt 0 ]] || groups=(build)
for group in "${groups[@]}"; do
  case "$group" in
    build) wanted+=("${build_packages[@]}")
           has_cmake || wanted+=(cmake) ;;
    python) wanted+=("${python_packages[@]}")
            has_cmake || wanted+=(cmake) ;;
    tsan) wanted+=("${tsan_packages[@]}") ;;
    *) echo "install_deps: unknown group '$group' (expected build, python, tsan)" >&2
       exit 2 ;;
  esac
done

missing=()
for package in "${wanted[@]}"; do
  is_installed "$package" || missing+=("$package")
done
if [[ ${#missing[@]} -eq 0 ]]; then
  echo "install_deps: all present (${groups[*]})"
  exit 0
fi

echo "install_deps: installing ${missing[*]}"
sudo=()
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then
    sudo=(sudo)
  else
    echo "install_deps: not root and no sudo; as root run:" >&2
    echo "  apt-get update && apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi
"${sudo[@]}" apt-get -q update
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get -q install -y --no-install-recommends "${missing[@]}"
