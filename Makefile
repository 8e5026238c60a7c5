# Sekat: the two commands are `make run` and `make test`. Both set themselves up.
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test up down up-cluster down-cluster bootstrap unit integration clean bench bench-freshness bench-scale \
	bench-peers

# The scale-out stack on this machine (docs/operations.md): 3 KRaft brokers, a 3-master Redis Cluster.
# Run workers against it with the same settings: `$(CLUSTER_ENV) .venv/bin/sekat worker` (one per terminal,
# each with its own SEKAT_WEB_PORT).
CLUSTER_ENV := SEKAT_KAFKA_BOOTSTRAP=127.0.0.1:19092,127.0.0.1:29092,127.0.0.1:39092 \
	SEKAT_REDIS_URL=redis+cluster://127.0.0.1:17001,127.0.0.1:17002,127.0.0.1:17003 \
	SEKAT_TOPIC_REPLICATION=3 SEKAT_TOPIC_PARTITIONS=8

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

## up-cluster / down-cluster: a 3-broker KRaft cluster (RF 3, min.insync.replicas=2) and a Redis Cluster
up-cluster: bootstrap
	$(CLUSTER_ENV) $(BIN)/sekat up --brokers 3 --redis-cluster

down-cluster:
	@if [ -x $(BIN)/sekat ]; then $(CLUSTER_ENV) $(BIN)/sekat down; fi

## test: the whole suite (starts and stops its own Kafka and Redis)
test: bootstrap
	$(BIN)/pytest -q

unit: bootstrap
	$(BIN)/pytest -q tests/unit

integration: bootstrap
	$(BIN)/pytest -q tests/integration

## bench: end-to-end throughput/latency benchmark (own Kafka + Redis) of the shipped policy, its behaviour rules
## in shadow (--policy blocklist-only for the blocklist alone); last line of output is the result JSON
bench: bootstrap
	$(BIN)/python -m load_tests.bench

## bench-scale: 1, 2 and 4 workers against a 3-broker cluster and a Redis Cluster (throughput, p99, recall)
bench-scale: bootstrap
	$(BIN)/python -m load_tests.scale

## bench-freshness: a report filed through the API, in effect on every worker (p50/p99 ms)
bench-freshness: bootstrap
	$(BIN)/python -m load_tests.freshness

## bench-peers: Sekat's blocklist path beside a Quix Streams app, a lean aiokafka loop and two Faust agents doing
## the same job on the same backlog (events/s, CPU per event, every listed event answered exactly once)
bench-peers: bootstrap .venv-peers/.installed
	$(BIN)/python -m load_tests.peers

# Quix Streams pins its own confluent-kafka and pydantic: it runs in a virtualenv of its own.
.venv-peers/.installed:
	python3 -m venv .venv-peers
	.venv-peers/bin/pip install -q "quixstreams==3.28.1" "orjson>=3.9"
	touch $@

clean: down
	rm -rf .stack
