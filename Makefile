# Developer entry points. Everything installs into .venv from PyPI; nothing else is downloaded.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
CONFIG ?=

.PHONY: install run test policy-test bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

## run: install and serve the gateway on the embedded engine and SQLite (CONFIG=sendgate.yaml to pass a config)
run: install
	$(VENV)/bin/sendgate $(if $(CONFIG),--config $(CONFIG)) serve

## test: the whole test suite (Rego tests included, through pytest)
test: install
	$(PY) -m pytest

## policy-test: only the Rego unit tests, through the embedded engine
policy-test: install
	$(VENV)/bin/sendgate policy test --dir policies -v

## bench: gateway vs a bare pass-through proxy, same load, one run
bench: install
	$(PY) bench/gateway.py

clean:
	rm -rf $(VENV) .sendgate .pytest_cache
