# Two commands on a fresh machine with Python 3.11: `make app` and `make test`.
PY ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: setup app test lint bench bench-quick browser-deps clean

$(STAMP): requirements.txt pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip setuptools wheel
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e . -e examples/tabular_plugin
	@touch $(STAMP)

setup: $(STAMP)

app: setup
	$(BIN)/suite app

lint: setup
	$(BIN)/ruff check suite plugins apps tests bench examples

test: setup browser-deps lint
	$(BIN)/python -m pytest -n 2 --dist loadgroup $(PYTEST_ARGS)

# Headless Chromium for the browser test: installed when we can (root + apt), otherwise the test skips
# and says why.
browser-deps:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  (apt-get update -qq >/dev/null 2>&1; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1) \
	  && echo "installed chromium for the browser test" || echo "chromium not installed: the browser test will be skipped"; }

bench: setup
	$(BIN)/python -m bench.run --full

bench-quick: setup
	$(BIN)/python -m bench.run --quick

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache test-artifacts
