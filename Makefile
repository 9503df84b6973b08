PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint bench clean js-deps

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: install
	$(BIN)/python scripts/demo.py $(DEMO_ARGS)

test: install system-deps js-deps
	$(BIN)/pytest -q $(PYTEST_ARGS)

# GO_PEER / GO_PEER_FIXED: aws-sigv4-proxy binaries to measure side by side (benchmarks/go_peer.py builds them).
bench: install
	$(BIN)/python benchmarks/run.py $(if $(GO_PEER),--go-peer $(GO_PEER)) $(if $(GO_PEER_FIXED),--go-peer-fixed $(GO_PEER_FIXED)) $(BENCH_ARGS)

lint: install
	$(BIN)/ruff check proxy tests
	$(BIN)/mypy

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache tests/js/node_modules

# Debian's redis-server, for the gateway's shared-state tests (tests/support/redis_server.py).
# Installed with apt-get when missing and we are root or have sudo; otherwise those tests
# skip and say why.
.PHONY: system-deps
system-deps:
	@command -v redis-server >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; \
	  else echo "redis-server is missing and cannot be installed (not root, no sudo)" >&2; exit 0; fi; \
	  command -v apt-get >/dev/null 2>&1 || { echo "redis-server is missing and apt-get is not available" >&2; exit 0; }; \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server >/dev/null; }

# The AWS SDK for JavaScript v3, at the versions tests/js/package-lock.json pins, for
# tests/e2e/test_multi_region.py. Without npm that test skips and says why.
JS_STAMP := tests/js/node_modules/.installed
js-deps:
	@if command -v npm >/dev/null 2>&1; then $(MAKE) --no-print-directory $(JS_STAMP); \
	else echo "npm is missing: the JavaScript SDK test will skip" >&2; fi

$(JS_STAMP): tests/js/package-lock.json tests/js/package.json
	npm ci --prefix tests/js --no-audit --no-fund --loglevel=error
	touch $@
