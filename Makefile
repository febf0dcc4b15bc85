# taskapi: `make run` to try it, `make test` to check it, `make e2e` for the browser, the Dockerfile
# and the TypeScript client. Each installs what it needs first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
THREADS ?=
CHROMIUM ?= /usr/bin/chromium
PROMETHEUS ?= /usr/bin/prometheus
TS := tests/e2e/typescript
BETTER_AUTH := tests/e2e/better_auth

WORKERS ?= $(shell nproc)

.PHONY: install run serve test topology ha lint e2e bench clean

install: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --editable '.[dev]'
	touch $@

$(VENV)/.installed-e2e: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet --editable '.[dev,e2e]'
	touch $@

# Debian's Chromium, which Playwright drives: no test tool downloads a browser of its own.
/usr/bin/chromium:
	apt-get update
	apt-get install --yes chromium

# The quick start's only secret: generated once, kept in .env (never committed).
.env: | install
	sed "s|^BETTER_AUTH_SECRET=.*|BETTER_AUTH_SECRET=$$($(BIN)/python -c 'import secrets; print(secrets.token_urlsafe(48))')|" .env.example > $@
	@echo "Created .env with a fresh BETTER_AUTH_SECRET."

# Development server with the SQLite default: http://$(HOST):$(PORT) and /docs.
run: install .env
	$(BIN)/flask --app taskapi init-db
	$(BIN)/flask --app wsgi run --host $(HOST) --port $(PORT)

# Production: WORKERS waitress processes (default: one a core) on one port, behind nginx;
# settings from the environment or .env.
serve: install
	$(BIN)/python wsgi.py --listen=$(HOST):$(PORT) --workers=$(WORKERS) $(if $(THREADS),--threads=$(THREADS))

# Both halves: SQLite, and PostgreSQL at TEST_POSTGRES_URL (default: the local server).
# TEST_WORKERS test files run at a time, each file whole in one process (pytest-xdist).
TEST_WORKERS ?= 3
test: install
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile

# The production topology on loopback, from deploy/: nginx (TLS) -> 2 waitress -> PgBouncer ->
# a fresh database at TEST_POSTGRES_URL; one process is killed under load. Needs nginx and
# pgbouncer (deploy/topology.sh installs them from Debian when run as root). And Prometheus
# scraping the metrics of `python wsgi.py --workers 2`.
topology: install $(PROMETHEUS)
	$(BIN)/pytest tests/topology

# Debian's Prometheus, for tests/topology/test_prometheus.py (installed as root).
/usr/bin/prometheus:
	apt-get update
	DEBIAN_FRONTEND=noninteractive apt-get install --yes --no-install-recommends prometheus

# A failover under load: a pg_auto_failover formation on loopback (deploy/ha.sh: a monitor and
# two PostgreSQL nodes in synchronous replication), taskapi on its multi-host URL, the primary
# killed. Needs Debian's pg_auto_failover (deploy/ha.sh installs it when run as root).
ha: install
	$(BIN)/pytest tests/ha

# The Dockerfile lint, then the browser, TypeScript client and Better Auth tests (tests/e2e).
# Needs Chromium and Node.js 20+ (and a C++ compiler: better-sqlite3 builds from source), and
# nginx and PgBouncer for the page that calls through them (deploy/topology.sh installs them as root).
e2e: $(VENV)/.installed-e2e $(CHROMIUM)
	$(BIN)/hadolint Dockerfile
	cd $(TS) && npm ci --no-audit --no-fund
	cd $(BETTER_AUTH) && npm ci --no-audit --no-fund
	BETTER_AUTH_SECRET=only-to-write-the-openapi-document-000 \
		$(BIN)/flask --app taskapi openapi write $(TS)/openapi.json
	@# openapi-typescript warns on stderr and still exits 0: here any warning fails. Fields with
	@# a default (description, completed) stay optional in bodies, as the API treats them.
	cd $(TS) && node_modules/.bin/openapi-typescript openapi.json --output api.d.ts \
		--default-non-nullable false 2> warnings.txt && ! grep . warnings.txt
	cd $(TS) && node_modules/.bin/tsc
	CHROMIUM=$(CHROMIUM) $(BIN)/pytest tests/e2e
	@echo "Screenshots: tests/e2e/output/"

# Load test against a throwaway PostgreSQL (or BENCH_DATABASE_URL): a table and bench/results.json.
# Knobs (BENCH_WORKERS, BENCH_DURATION, ...) are listed at the top of bench/run.py.
bench: $(VENV)/.bench-installed
	$(BIN)/python bench/run.py

$(VENV)/.bench-installed: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet --editable '.[dev,bench]'
	touch $@

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) instance .pytest_cache .ruff_cache *.egg-info tests/e2e/output \
		$(TS)/node_modules $(TS)/dist $(TS)/openapi.json $(TS)/api.d.ts $(TS)/warnings.txt \
		$(BETTER_AUTH)/node_modules
