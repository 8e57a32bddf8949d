# dccsim — the two commands that matter: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
export DCCSIM_HOME ?= $(CURDIR)/var

.PHONY: run test lint bench soak loadtest venv broker clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

broker:
	@bash deploy/ensure-rabbitmq.sh

## Start the whole system: venv, broker, development PKI, demo estate, every service.
run: venv broker
	$(BIN)/dccsim up

## Run the test suite (starts what it needs; slow soak/scale tests are excluded).
test: venv broker
	@bash deploy/ensure-postgres.sh
	$(BIN)/python -m pytest

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## Benchmarks: write bench/results/*.json and print tables.
bench: venv broker
	$(BIN)/python -m bench.pipeline
	$(BIN)/python -m bench.pki
	$(BIN)/python -m bench.gbcs
	$(BIN)/python -m bench.inventory
	$(BIN)/python -m bench.estate
	$(BIN)/python -m bench.duis

soak: venv broker
	$(BIN)/python -m pytest -m slow -p no:randomly

## Load test a running installation (`make run` seeded with --suppliers) with locust.
loadtest: venv
	$(BIN)/python -m pip install -q -e '.[load]'
	$(BIN)/locust -f loadtests/locustfile.py --headless -u $${USERS:-8} -r $${USERS:-8} \
		-t $${DURATION:-60s} --host https://127.0.0.1:8443 --only-summary

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache
