# rum-pipeline — every target installs what it needs first and is quick when nothing changed.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
#: The benchmarks also need the bench extra (the Quix Streams peer): a stamp of their own.
BENCH_STAMP := $(VENV)/.installed-bench

.PHONY: help run test test-unit broker broker-stop topics lint bench-enrich bench-intake bench-placement bench-paired bench-query bench-monitors bench-peers bench-hostile bench chaos fuzz install kcat browser

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

$(BENCH_STAMP): pyproject.toml $(STAMP)
	$(PY) -m pip install -q -e '.[dev,bench]'
	@touch $(BENCH_STAMP)

install: $(STAMP)  ## create .venv and install the project with its test and dev extras

kcat:  ## install kcat (a real, independent Kafka client used by the tests) when missing
	@command -v kcat >/dev/null || scripts/install-kcat.sh

broker: $(STAMP)  ## start the local Kafka broker (or reuse it; nothing when RUM_KAFKA__BOOTSTRAP is set)
	@scripts/broker.sh start

broker-stop:  ## stop the local Kafka broker started by 'make broker'
	@scripts/broker.sh stop

topics: broker  ## create the pipeline's topics (idempotent)
	$(VENV)/bin/rum-pipeline topics create

run: $(STAMP)  ## run the pipeline on bundled demo traffic and show what flowed, with serve (explorer URL, monitors; Ctrl-C stops it)
	@scripts/run-demo.sh

browser:  ## install headless Chromium (Debian's) and the browser tests' node packages when missing
	@scripts/install-browser.sh

test: $(STAMP) kcat browser  ## run every test; starts the broker the Kafka tests need and stops it after
	@RUM_REQUIRE_BROWSER=1 scripts/test.sh

test-unit: $(STAMP)  ## run the tests that need no broker
	$(VENV)/bin/pytest -m "not kafka" -q

lint: $(STAMP)  ## ruff and mypy
	$(VENV)/bin/ruff check pipeline tests bench scripts
	$(VENV)/bin/ruff format --check pipeline tests bench scripts
	$(VENV)/bin/mypy pipeline

bench-enrich: broker  ## benchmark the enrichment hot path and one worker against a plain aiokafka pass-through
	$(PY) bench/enrich.py

FUZZ_SECONDS ?= 600
fuzz: $(STAMP)  ## fuzz the processor and the intake's parsing for FUZZ_SECONDS (600); findings kept in tests/fuzz/corpus
	PYTHONPATH=. $(PY) -m tests.fuzz.campaign --seconds $(FUZZ_SECONDS)

bench-hostile: $(STAMP)  ## each hostile input class against clean traffic, 10,000 actions: throughput ratio and RSS (BENCH_HOSTILE_ARGS)
	PYTHONPATH=. $(PY) bench/hostile.py $(BENCH_HOSTILE_ARGS)

bench-intake: broker  ## load-test the HTTP intake (~30 s): requests/s, events/s, p99, acknowledged = in Kafka
	$(PY) bench/intake.py $(BENCH_INTAKE_ARGS)

bench-placement: broker  ## keyed-record placement: aiokafka's partitioner against ours, per key and per send (~10 s)
	$(PY) bench/placement.py

bench-paired: broker  ## rollups on and off in two workers at once (~6 min): CPU per action, off/on (BENCH_PAIRED_ARGS)
	$(PY) bench/paired.py $(BENCH_PAIRED_ARGS)

bench-query: broker  ## the rollup view: catch-up rate over 1,000,000 rollup records, memory per key, rolling-1d query p99 (BENCH_QUERY_ARGS)
	$(PY) bench/query.py $(BENCH_QUERY_ARGS)

bench-monitors: $(STAMP)  ## monitor evaluation, 100 monitors x 250 groups per cycle, no broker (~30 s): ms per cycle, target <= 100
	$(PY) bench/monitors.py $(BENCH_MONITORS_ARGS)

bench-peers: broker $(BENCH_STAMP)  ## the worker against a Quix Streams app and an aiokafka pass-through, rollups off (~5 min; BENCH_PEERS_ARGS)
	$(PY) bench/peers.py $(BENCH_PEERS_ARGS)

bench: $(BENCH_STAMP)  ## the enrichment, rollup, latency, scaling, intake, side-by-side rollup, query, monitor and peer benchmarks (bench/suite.py, ~30-45 min; BENCH_ARGS="--runs 5"): figures in bench/results.md, copied into the docs
	@scripts/broker.sh with $(PY) bench/suite.py $(BENCH_ARGS)

CHAOS_PORT ?= 19092
chaos: $(STAMP)  ## failure scenarios against ground truth, on a broker of their own (CHAOS_PORT, .broker-chaos)
	@env -u RUM_KAFKA_PORT RUM_KAFKA__PORT=$(CHAOS_PORT) RUM_BROKER_DIR=.broker-chaos scripts/broker.sh with $(PY) bench/chaos.py $(CHAOS_ARGS)
