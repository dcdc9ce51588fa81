# Developer entry points. Everything installs into .venv from PyPI; nothing else is downloaded.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
CONFIG ?=

# OPA (the reference Rego engine: `engine: opa`, the differential tests, `opa test`/`check`/`fmt`)
# and Regal (the Rego linter), pinned, built from source with `go install` through the Go module
# proxy into a cache that later runs reuse. `make tools` and .ci/run both use these.
OPA_VERSION ?= v1.4.2
REGAL_VERSION ?= v0.35.1
TOOLS_BIN ?= $(HOME)/.cache/sendgate-tools/bin
export PATH := $(TOOLS_BIN):$(PATH)

.PHONY: install run test typecheck policy-test policy-lint tools bench bench-latency bench-engines bench-review bench-scale bench-instructions clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

## run: install and serve the gateway on the embedded engine and SQLite (CONFIG=sendgate.yaml to pass a config)
run: install
	$(VENV)/bin/sendgate $(if $(CONFIG),--config $(CONFIG)) serve

## tools: the pinned OPA and Regal in $(TOOLS_BIN) (needs Go; minutes the first time, instant after)
tools:
	@command -v go >/dev/null || { echo "make tools needs Go (go version): OPA and Regal are built with go install"; exit 1; }
	@mkdir -p $(TOOLS_BIN)
	@if go version -m $(TOOLS_BIN)/opa 2>/dev/null | grep -qE "^\s+mod\s+github.com/open-policy-agent/opa\s+$(OPA_VERSION)\s"; then \
		echo "opa $(OPA_VERSION): $(TOOLS_BIN)/opa (cached)"; \
	else \
		echo "building opa $(OPA_VERSION) with go install ..."; \
		GOBIN=$(TOOLS_BIN) go install github.com/open-policy-agent/opa@$(OPA_VERSION); \
	fi
	@# `go install github.com/styrainc/regal@$(REGAL_VERSION)` fails: it looks up the module's
	@# deprecation in its version list, which the module proxy refuses for regal (403). The same
	@# pinned version, required from a throwaway module and installed from there, builds the same binary.
	@if go version -m $(TOOLS_BIN)/regal 2>/dev/null | grep -qE "^\s+mod\s+github.com/styrainc/regal\s+$(REGAL_VERSION)\s"; then \
		echo "regal $(REGAL_VERSION): $(TOOLS_BIN)/regal (cached)"; \
	else \
		echo "building regal $(REGAL_VERSION) with go install ..."; \
		work=$$(mktemp -d) && cd $$work && go mod init sendgate-tools >/dev/null 2>&1 \
		&& go get github.com/styrainc/regal@$(REGAL_VERSION) \
		&& GOBIN=$(TOOLS_BIN) go install -ldflags "-X github.com/styrainc/regal/pkg/version.Version=$(REGAL_VERSION)" \
			github.com/styrainc/regal && cd / && rm -rf $$work; \
	fi

## policy-lint: what CI checks on the Rego beyond its tests (the same checks run in `make test`)
policy-lint: tools
	opa check --strict policies
	@out=$$(opa fmt --list policies); if [ -n "$$out" ]; then echo "not opa fmt'ed: $$out"; exit 1; fi
	opa test policies --coverage --threshold 90 --format=json > /dev/null && echo "opa test: coverage >= 90%"
	regal lint policies

## typecheck: mypy, strict on src/ (the version pinned in the test extras; config in pyproject.toml)
typecheck: install
	$(PY) -m mypy

## test: the type check, then the whole test suite (Rego tests included, through pytest)
test: typecheck
	$(PY) -m pytest

## policy-test: only the Rego unit tests, through the embedded engine
policy-test: install
	$(VENV)/bin/sendgate policy test --dir policies -v

## bench-engines: policy evaluation per decision, embedded vs OPA over HTTP, and gateway throughput with each
bench-engines: install tools
	$(PY) bench/engines.py

## bench: gateway (default and allow-all policies) vs a bare pass-through proxy, same load, one run;
## then the latency of each at constant offered rates (open loop), sendgate beside the bare proxy
bench: install
	$(PY) bench/gateway.py
	$(PY) bench/latency.py

## bench-latency: only the constant-rate part (RATES=200,1000 DURATION=5 to change the defaults)
bench-latency: install
	$(PY) bench/latency.py $(if $(RATES),--rates $(RATES)) $(if $(DURATION),--duration $(DURATION))

## bench-instructions: user-space instructions per message (callgrind; needs valgrind), AGAINST=REV to compare
bench-instructions: install
	$(PY) bench/instructions.py $(if $(AGAINST),--against $(AGAINST))

## bench-scale: the same load on SQLite, on PostgreSQL with one worker and with two (throwaway PostgreSQL and Redis)
bench-scale: install
	$(PY) bench/scale.py

## bench-review: the review pages and their queries on 1,000,000 decision records
bench-review: install
	$(PY) bench/review_queries.py

clean:
	rm -rf $(VENV) .sendgate .pytest_cache
