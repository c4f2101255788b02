# salience: a thin wrapper over CMake. The build itself is CMakeLists.txt and
# CMakePresets.json (presets release, asan, tsan); these targets install what
# is missing, then call cmake, ctest and the programs. `make help` lists them.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
MAKEFLAGS += --no-print-directory
JOBS ?= $(shell nproc)

# The demo's benchmark problem (the CLI's flags).
DEMO_SHAPE := --batch 1 --seq-q 1024 --seq-k 1024 --heads-q 16 --head-dim 64

# The phases of `make test`, in order (see the README's "Testing").
TEST_PHASES := build ctest sanitize tsan install-test fuzz

.DEFAULT_GOAL := build
.PHONY: help deps deps-tsan build demo test ctest sanitize tsan install-test \
        clean

# The model layer's and the Python package's targets (model-deps, model-test,
# fuzz, explain-demo, python-install, python-test, ...) live beside their code.
include models.mk
include python/python.mk
TEST_PHASES += python-test wheel-test

help:
	@echo "make build         install deps, configure Release in build/, build all"
	@echo "make demo          build, salience check --quick, explain the bank sentence, bench"
	@echo "make test          every phase, timed (CI): $(TEST_PHASES)"
	@echo "make ctest         run the test suite of build/"
	@echo "make sanitize      ASan+UBSan Debug build in build-asan/, run its tests"
	@echo "make tsan          ThreadSanitizer build in build-tsan/, run its tests"
	@echo "make install-test  install build/ and a kernels-only build, build consumers"
	@echo "make wheel-test    build the sdist and the repaired wheel, check it in a fresh venv"
	@echo "make clean         remove build/, build-asan/, build-tsan/, build-fuzz/, build-py/"

# src/CMakeLists.txt builds the model layer too, so its packages (OpenBLAS,
# utf8proc, libpng, ...) are part of every build's deps when it is there.
deps:
	@bash scripts/install_deps.sh build
	@if [[ -f scripts/install_model_deps.sh ]]; then \
	  bash scripts/install_model_deps.sh; fi

# The TSan build uses clang-14 and LLVM's OpenMP (see scripts/install_deps.sh).
deps-tsan: deps
	@bash scripts/install_deps.sh tsan

build: deps
	cmake --preset release
	cmake --build --preset release -j $(JOBS)

# The main job: the kernels checked on this CPU, then a real model's attention
# drawn for "The bank of the river was muddy." (bank.html, bank.png), the
# tokens "bank" attends to, and a benchmark line.
demo: build
	build/salience check --quick
	$(MAKE) explain-demo
	build/salience bench $(DEMO_SHAPE) --causal none
	build/salience bench $(DEMO_SHAPE) --causal bottom-right

ctest: build
	ctest --preset release -j $(JOBS)

sanitize: deps
	cmake --preset asan
	cmake --build --preset asan -j $(JOBS)
	ctest --preset asan -j $(JOBS)

tsan: deps-tsan
	cmake --preset tsan
	cmake --build --preset tsan -j $(JOBS)
	ctest --preset tsan -j $(JOBS)

# The full tree's install, then the attention library built alone
# (SALIENCE_BUILD_MODEL=OFF), each used by a find_package and a pkg-config
# consumer.
install-test: build
	bash tests/install/run.sh build
	bash tests/install/run.sh --kernels-only

# Every phase in order, each timed; stops at the first that fails.
test: deps-tsan
	@times=(); \
	for phase in $(TEST_PHASES); do \
	  echo "==> make $$phase"; start=$$SECONDS; \
	  $(MAKE) $$phase || { echo "==> make test: $$phase failed"; exit 1; }; \
	  times+=("$$(printf '%-13s %5ss' $$phase $$((SECONDS - start)))"); \
	done; \
	echo "==> make test: every phase passed"; printf '    %s\n' "$${times[@]}"

clean:
	rm -rf build build-asan build-tsan build-fuzz build-py
