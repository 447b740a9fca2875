# Two commands matter: `make run` (the gateway on http://127.0.0.1:7071 with Azurite)
# and `make test` (the whole suite). Both bootstrap what they need and are idempotent.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 7071

.PHONY: run test lint bench clean bootstrap

bootstrap: $(VENV)/.installed node_modules/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt requirements-infra.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

run: bootstrap
	$(PY) -m functions dev --port $(PORT)

test: bootstrap
	$(PY) -m pytest $(PYTEST_ARGS)

lint: bootstrap
	$(VENV)/bin/ruff check functions tests function_app.py
	$(VENV)/bin/mypy

bench: bootstrap
	$(PY) -m bench
	$(PY) -m bench.relay
	$(PY) -m bench.tracing

clean:
	rm -rf $(VENV) node_modules .pytest_cache .localdata
