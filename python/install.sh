#!/usr/bin/env bash
# Installs salience's Python package from this checkout, and what it needs.
#
#   python/install.sh [--bench] [--wheel]
#
#   1. what the package's build needs from Debian (scripts/install_deps.sh
#      python: g++, CMake, Ninja, Highway); it touches apt only if one is
#      missing. The build configures the attention library alone (no model
#      layer, tests or tools: python/CMakeLists.txt), so nothing else;
#   2. the pinned packages of python/requirements-test.txt and
#      python/requirements-transformers.txt (with --bench also
#      python/requirements-bench.txt, with --wheel python/requirements-wheel.txt)
#      from PyPI, only those missing or at another version;
#   3. the package itself, editable: `pip install --no-build-isolation -e .`.
#      scikit-build-core configures python/CMakeLists.txt and builds the
#      nanobind module in build-py/ (incrementally after the first time);
#      the Python sources stay in python/salience, so edits there need no
#      reinstall, and a change to the C++ sources needs this script again.
#
# Idempotent. No build isolation: pip builds with the scikit-build-core and
# nanobind of step 2 and downloads nothing at build time. PYTHON picks the
# interpreter (default: python3).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}

requirements=(python/requirements-test.txt python/requirements-transformers.txt)
for arg in "$@"; do
  case "$arg" in
    --bench) requirements+=(python/requirements-bench.txt) ;;
    --wheel) requirements+=(python/requirements-wheel.txt) ;;
    *) echo "install.sh: unknown argument '$arg' (expected --bench or --wheel)" >&2; exit 2 ;;
  esac
done

bash scripts/install_deps.sh python

# The pinned requirements not installed at their version (a local build tag
# such as torch's +cpu counts as the version it tags).
mapfile -t missing < <("$PYTHON" - "${requirements[@]}" <<'PY'
import importlib.metadata as metadata
import sys

for path in sys.argv[1:]:
    for line in open(path):
        requirement = line.split("#")[0].strip()
        if not requirement:
            continue
        name, _, version = requirement.partition("==")
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = None
        if installed is None or installed.split("+")[0] != version:
            print(requirement)
PY
)
if [[ ${#missing[@]} -gt 0 ]]; then
  echo "install.sh: installing ${missing[*]}"
  "$PYTHON" -m pip install --disable-pip-version-check "${missing[@]}"
else
  echo "install.sh: Python requirements present (${requirements[*]})"
fi

"$PYTHON" -m pip install --disable-pip-version-check --no-build-isolation --no-deps -e .
"$PYTHON" -c 'import salience; print(f"install.sh: salience {salience.__version__} from {salience.__file__}")'
