# Retrace developer entry points. `make test` is the full suite that CI runs.
#   make dev        build the engine into .venv-3.11 (editable) for day-to-day work
#   make test       Python 3.11, 3.12 and 3.13 suites, then the AddressSanitizer run
#   make test-asan  the C-heavy tests against an ASan+UBSan build of the engine
#   make demo       record a Flask service under load, then replay its crash offline
#   make bench      what recording costs against plain runs: bench/results.md (a few minutes)

VERSIONS ?= 3.11 3.12 3.13
PYTEST_ARGS ?= -q
ASAN_TESTS ?= tests/test_codec.py tests/test_stream.py tests/test_core_replay.py tests/test_bad_input.py \
             tests/test_sqlite.py tests/test_psycopg2.py

# A Python interpreter of version $(1): pyenv's if present, else pythonX.Y on PATH.
python_for = $(firstword $(wildcard $(HOME)/.pyenv/versions/$(1).*/bin/python$(1)) $(shell command -v python$(1)))

.PHONY: dev test test-asan demo bench clean $(addprefix test-,$(VERSIONS))

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
	.venv-asan/bin/pip install -q --upgrade pip setuptools wheel pytest psycopg2-binary
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

clean:
	rm -rf build .venv-* src/retrace/*.so src/*.egg-info
