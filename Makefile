# Retrace developer entry points. `make test` is the full suite that CI runs.
#   make dev        build the engine into .venv-3.11 (editable) for day-to-day work
#   make test       Python 3.11, 3.12 and 3.13 suites, then the AddressSanitizer run
#   make test-asan  the C-heavy tests against an ASan+UBSan build of the engine
#   make demo       record a Flask service under load, then replay its crash offline
#   make bench      what recording costs against plain runs: bench/results.md (~15 minutes)
#   make bench-web  only its web section (Flask and Django under gunicorn and wrk)
#   make fuzz       libFuzzer on the trace reader and decoder for FUZZ_SECONDS (not part of test)
#   make vsix       lint and package the VS Code extension: editors/vscode/retrace.vsix
#   make e2e-vscode the extension in a real VS Code (code-server + chromium), see tests/e2e/

VERSIONS ?= 3.11 3.12 3.13
PYTEST_ARGS ?= -q
ASAN_TESTS ?= tests/test_codec.py tests/test_stream.py tests/test_core_replay.py tests/test_bad_input.py \
             tests/test_sqlite.py tests/test_debugger.py tests/test_debugger_tracing.py tests/test_psycopg2.py

# A Python interpreter of version $(1): pyenv's if present, else pythonX.Y on PATH.
python_for = $(firstword $(wildcard $(HOME)/.pyenv/versions/$(1).*/bin/python$(1)) $(shell command -v python$(1)))

.PHONY: dev test test-asan demo bench bench-web fuzz clean vsix e2e-vscode $(addprefix test-,$(VERSIONS))

.venv-%/done: Makefile pyproject.toml setup.py $(wildcard csrc/*.c csrc/*.h)
	@test -n "$(call python_for,$*)" || { echo "no Python $* found (pyenv or PATH)"; exit 1; }
	$(call python_for,$*) -m venv .venv-$*
	.venv-$*/bin/pip install -q --upgrade pip
	.venv-$*/bin/pip install -q -e . pytest requests flask gunicorn django psycopg2-binary
	touch $@

dev: .venv-3.11/done

# A static pattern rule: implicit pattern rules are never used for .PHONY targets.
$(addprefix test-,$(VERSIONS)): test-%: .venv-%/done
	.venv-$*/bin/python -m pytest $(PYTEST_ARGS)

test: $(addprefix test-,$(VERSIONS)) test-asan

# A separate, non-editable install so the sanitizer build never shadows the normal one.
.venv-asan/done: Makefile pyproject.toml setup.py $(wildcard csrc/*.c csrc/*.h)
	$(call python_for,3.11) -m venv .venv-asan
	.venv-asan/bin/pip install -q --upgrade pip setuptools wheel pytest requests psycopg2-binary
	RETRACE_CFLAGS="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
	RETRACE_LDFLAGS="-fsanitize=address,undefined" \
	.venv-asan/bin/pip install -q --no-build-isolation --no-cache-dir .
	touch $@

test-asan: .venv-asan/done
	cd tests && LD_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libubsan.so)" \
	ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	../.venv-asan/bin/python -m pytest $(PYTEST_ARGS) -p no:cacheprovider $(addprefix ../,$(ASAN_TESTS))

demo: .venv-3.11/done
	.venv-3.11/bin/python examples/demo.py

bench: .venv-3.11/done
	.venv-3.11/bin/python bench/run.py

bench-web: .venv-3.11/done
	.venv-3.11/bin/python bench/run.py --only web

# The reader and decoder under libFuzzer with ASan and UBSan (clang: apt-get install clang),
# embedding Python 3.11. Log in build/fuzz.log; a crashing input is saved as build/crash-*.
FUZZ_SECONDS ?= 600
PYTHON_CONFIG = $(call python_for,3.11)-config

build/fuzz_reader: fuzz/fuzz_reader.c $(wildcard csrc/*.c csrc/*.h)
	mkdir -p build
	clang -g -O1 -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -fsanitize=fuzzer,address,undefined \
	  -fno-sanitize-recover=undefined \
	  $$($(PYTHON_CONFIG) --includes) csrc/*.c fuzz/fuzz_reader.c -o $@ \
	  $$($(PYTHON_CONFIG) --ldflags --embed) -lz -lpthread

fuzz: build/fuzz_reader .venv-3.11/done
	rm -rf build/fuzz-corpus && .venv-3.11/bin/python fuzz/seeds.py build/fuzz-corpus
	PYTHONPATH=src ./build/fuzz_reader -max_total_time=$(FUZZ_SECONDS) -max_len=16384 -timeout=10 \
	  -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix=build/ build/fuzz-corpus \
	  2>&1 | tee build/fuzz.log | grep -E "^#[0-9]+ +(pulse|DONE)|ERROR|SUMMARY|stat::"

# npm ci installs exactly what package-lock.json says (again only when it changes).
editors/vscode/node_modules/.done: editors/vscode/package.json editors/vscode/package-lock.json
	cd editors/vscode && npm ci --no-audit --no-fund
	touch $@

vsix: editors/vscode/node_modules/.done
	cd editors/vscode && npm run -s compile && npm run -s lint && npm run -s package

# Installs code-server and playwright-core into ~/.cache/retrace-e2e (chromium from apt).
e2e-vscode: vsix .venv-3.11/done
	sh tests/e2e/setup.sh
	RETRACE_PYTHON=$(CURDIR)/.venv-3.11/bin/python node --test tests/e2e/vscode.test.mjs

clean:
	rm -rf build .venv-* src/retrace/*.so src/*.egg-info
	rm -rf editors/vscode/node_modules editors/vscode/out editors/vscode/retrace.vsix
