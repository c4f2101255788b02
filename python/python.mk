# salience's Python side; the root Makefile includes this file.
#
#   make python-install  python/install.sh: deps, pinned requirements, the
#                        package (editable, built in build-py/)
#   make python-test     install, then the pytest suite of python/tests
#   make peers           install with the benchmark's extras, then
#                        bench/peers.py (PEERS_FLAGS, e.g. --quick, --write)
#   make wheel-test      the sdist, the wheel built from it, auditwheel
#                        repair, then the wheel alone in a fresh venv
#                        against torch (python/wheel_test.sh)
#   make hf-bench        bench/hf_peers.py: transformers models with
#                        "salience", "sdpa" and "eager" (HF_BENCH_FLAGS)
PYTHON ?= python3
PEERS_FLAGS ?=
HF_BENCH_FLAGS ?=

.PHONY: python-install python-test peers wheel-test hf-bench

python-install:
	PYTHON=$(PYTHON) bash python/install.sh

python-test: python-install
	$(PYTHON) -m pytest python/tests -q

peers:
	PYTHON=$(PYTHON) bash python/install.sh --bench
	$(PYTHON) bench/peers.py $(PEERS_FLAGS)

wheel-test:
	PYTHON=$(PYTHON) bash python/install.sh --wheel
	PYTHON=$(PYTHON) bash python/wheel_test.sh

hf-bench: python-install
	$(PYTHON) bench/hf_peers.py $(HF_BENCH_FLAGS)
