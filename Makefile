# The one list of commands, used the same way locally and in .ci/run.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: install demo dev services lint test bench bench-captioning bench-load clean

$(BIN)/scenecap: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@

install: $(BIN)/scenecap ## venv with the project and its dev tools

demo: install ## analyse a generated sample video on the embedded defaults and print the job
	$(BIN)/scenecap demo

dev: install ## the whole service on this machine (SQLite, embedded broker, local backend)
	$(BIN)/scenecap dev

services: ## make sure PostgreSQL and Redis run on 127.0.0.1 (for the tests)
	scripts/ensure-services.sh

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: install services lint ## lint, then the whole test suite against real PostgreSQL, Redis and a worker
	$(BIN)/pytest -q

bench: install ## media-pipeline benchmark (BENCH_ARGS=--long adds the 30-minute video)
	$(BIN)/python -m bench.run $(BENCH_ARGS)

bench-captioning: install ## captioning stage against the fake VLM: concurrency vs ideal, per-frame overhead
	$(BIN)/python -m bench.captioning

bench-load: install services ## API under N concurrent clients (real worker, fake VLM): req/s, p50/p99, jobs/s
	$(BIN)/python -m bench.load

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache test-artifacts
