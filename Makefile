PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV := $(BIN)/uv
# What gets installed, pinned with hashes: `make lock` writes these from pyproject.toml's
# dependencies and extras. dev.txt: everything (make install, test, lint, bench); demo.txt:
# the runtime and the demo's extra only; runtime.txt: the image's (Dockerfile).
LOCK_DEV := requirements/dev.txt
LOCK_DEMO := requirements/demo.txt
LOCK_RUNTIME := requirements/runtime.txt
LOCK_UV := requirements/uv.txt
# One stamp per install set: it is redone when pyproject.toml or its lock changes. Installs
# add to the venv (a demo after the dev set installs nothing); `make clean install` starts over.
DEV_STAMP := $(VENV)/.installed
DEMO_STAMP := $(VENV)/.installed-demo

.PHONY: install demo test lint bench clean js-deps docs lock

install: $(DEV_STAMP)

# The venv and uv in it (pip installs it, pinned): uv installs the locked sets in seconds,
# from its cache (~/.cache/uv) when they were downloaded once.
$(UV): $(LOCK_UV)
	@echo "==> $(VENV): virtualenv and uv ($(LOCK_UV))"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/pip install --quiet --disable-pip-version-check --require-hashes -r $(LOCK_UV)
	@touch $(UV)

$(DEV_STAMP): $(UV) pyproject.toml $(LOCK_DEV)
	@echo "==> $(VENV): the dev set from $(LOCK_DEV) (runtime, demo, test, lint, deploy, docs, bench)"
	$(UV) pip install --python $(BIN)/python --require-hashes -r $(LOCK_DEV)
	@echo "==> $(VENV): ivs-proxy itself, editable"
	$(UV) pip install --python $(BIN)/python --no-deps -e .
	@touch $@ $(DEMO_STAMP)

$(DEMO_STAMP): $(UV) pyproject.toml $(LOCK_DEMO)
	@echo "==> $(VENV): the demo set from $(LOCK_DEMO) (runtime and demo only)"
	$(UV) pip install --python $(BIN)/python --require-hashes -r $(LOCK_DEMO)
	@echo "==> $(VENV): ivs-proxy itself, editable"
	$(UV) pip install --python $(BIN)/python --no-deps -e .
	@touch $@

# Re-pins every set from pyproject.toml, keeping the versions already pinned where they still
# fit (`make lock LOCK_ARGS=--upgrade` takes the newest instead). For every platform
# (--universal) and Python >= 3.11; demo.txt and runtime.txt are subsets of dev.txt, at its
# versions. tests/unit/test_packaging.py checks the locks against pyproject.toml.
COMPILE = $(UV) pip compile --universal --generate-hashes --quiet $(LOCK_ARGS)
lock: $(UV)
	$(COMPILE) --python-version 3.11 pyproject.toml --all-extras -o $(LOCK_DEV)
	$(COMPILE) --python-version 3.11 pyproject.toml --extra demo -c $(LOCK_DEV) -o $(LOCK_DEMO)
	$(COMPILE) --python-version 3.11 pyproject.toml --extra redis --extra fast -c $(LOCK_DEV) -o $(LOCK_RUNTIME)
	$(COMPILE) requirements/uv.in -o $(LOCK_UV)

demo: $(DEMO_STAMP)
	$(BIN)/python scripts/demo.py $(DEMO_ARGS)

# Two test processes (pytest-xdist): the e2e tests mostly wait on their servers, so two halve
# the wall time on two cores. `make test TEST_PROCESSES=0` runs them in this one process.
TEST_PROCESSES ?= 2
test: install system-deps js-deps
	$(BIN)/pytest -q -n $(TEST_PROCESSES) $(PYTEST_ARGS)

# The documentation site from docs/ (mkdocs.yml) into site/; the configuration page is
# generated from config/reference.yaml first. `make test` builds it with --strict
# (tests/unit/test_docs.py), so a broken link, anchor or missing page fails there.
docs: install
	$(BIN)/python scripts/config_reference.py
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# GO_PEER / GO_PEER_FIXED: aws-sigv4-proxy binaries to measure side by side (benchmarks/go_peer.py builds them).
bench: install
	$(BIN)/python benchmarks/run.py $(if $(GO_PEER),--go-peer $(GO_PEER)) $(if $(GO_PEER_FIXED),--go-peer-fixed $(GO_PEER_FIXED)) $(BENCH_ARGS)

lint: install
	$(BIN)/ruff check proxy tests
	$(BIN)/mypy

clean:
	rm -rf $(VENV) build site *.egg-info .pytest_cache tests/js/node_modules

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
