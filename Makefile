# Two commands matter: `make run` (the gateway on http://127.0.0.1:7071 with this
# checkout's own Azurite) and `make test` (the whole suite). Both bootstrap what they need
# and are idempotent. `make run` options: PORT=7081, OAUTH_DEMO=1 (a local OpenID provider
# and a demo connector), TLS_UPSTREAM=host.example.com (an HTTPS echo for that host),
# ACCESS_LOG=1 (a line per request).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 7071
RUN_ARGS := $(if $(filter 1 yes true,$(OAUTH_DEMO)),--oauth-demo) \
	$(foreach host,$(TLS_UPSTREAM),--tls-upstream $(host)) \
	$(if $(filter 1 yes true,$(ACCESS_LOG)),--access-log)

.PHONY: run oauth-demo test lint bench clean bootstrap

bootstrap: $(VENV)/.installed node_modules/.installed /usr/bin/chromium

# The portal's browser tests drive Debian's Chromium (never a downloaded browser);
# installed once, when missing (CI runs as root on a clean machine).
/usr/bin/chromium:
	apt-get update -qq && apt-get install -y -qq chromium

$(VENV)/.installed: requirements.txt requirements-dev.txt requirements-infra.txt requirements-serve.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

run: bootstrap
	$(PY) -m functions dev --port $(PORT) $(RUN_ARGS)

oauth-demo:
	$(MAKE) run OAUTH_DEMO=1

test: bootstrap
	$(PY) -m pytest $(PYTEST_ARGS)

lint: bootstrap
	$(VENV)/bin/ruff check functions tests function_app.py bench
	$(VENV)/bin/mypy

bench: bootstrap
	$(PY) -m bench
	$(PY) -m bench.relay
	$(PY) -m bench.tracing

clean:
	rm -rf $(VENV) node_modules .pytest_cache .localdata
