# Sekat: the two commands are `make run` and `make test`. Both set themselves up.
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test up down bootstrap unit integration clean bench bench-freshness

bootstrap:
	@bash deploy/bootstrap.sh

## run: start local Kafka + Redis (if not running), create topics, run the worker in the foreground
run: bootstrap
	$(BIN)/sekat up
	$(BIN)/sekat worker

## up / down: only the local stack
up: bootstrap
	$(BIN)/sekat up

down:
	@if [ -x $(BIN)/sekat ]; then $(BIN)/sekat down; fi

## test: the whole suite (starts and stops its own Kafka and Redis)
test: bootstrap
	$(BIN)/pytest -q

unit: bootstrap
	$(BIN)/pytest -q tests/unit

integration: bootstrap
	$(BIN)/pytest -q tests/integration

## bench: end-to-end throughput/latency benchmark (own Kafka + Redis); last line of output is the result JSON
bench: bootstrap
	$(BIN)/python -m load_tests.bench

## bench-freshness: a report filed through the API, in effect on every worker (p50/p99 ms)
bench-freshness: bootstrap
	$(BIN)/python -m load_tests.freshness

clean: down
	rm -rf .stack
