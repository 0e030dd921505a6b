# The two commands: `make run` starts the whole system locally; `make test` runs the tests.
# Both do their own set-up (virtual environment, packages, services) on a fresh machine.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=
# Two processes: this machine has two cores, and integration tests run their own workers.
PYTEST_WORKERS ?= 2

.PHONY: run test lint fmt bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(STAMP)

run: $(STAMP)
	scripts/ensure-services.sh redis
	$(BIN)/rrpd db upgrade
	$(BIN)/rrpd run

test: $(STAMP)
	scripts/ensure-services.sh postgres redis
	scripts/ensure-browser.sh
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	# The suite, with branch coverage of every process it starts (pyproject.toml
	# [tool.coverage]); below the floor in .ci/coverage-floor fails (the floor only rises:
	# tests/unit/test_coverage_floor.py).
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile --cov --cov-report=term:skip-covered \
		--cov-fail-under=$$(cat .ci/coverage-floor) $(PYTEST_ARGS)
	# The local run's database: the periodic machinery, models and migrations on SQLite.
	RRPD_TEST_DATABASE=sqlite $(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile -m both_databases
	# The time-sensitive tests again at other hours and across midnight.
	scripts/clock-lane.sh -n $(PYTEST_WORKERS) --dist loadfile

# Lint and types: ruff on everything, mypy (strict, configured in pyproject.toml) on the
# production packages, and import-linter's contracts (the layering of docs/design.md).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

fmt: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(STAMP)
	scripts/ensure-services.sh postgres redis
	@for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache .mypy_cache .import_linter_cache *.egg-info
