# The two commands of the README: `make demo` and `make test`. Both set themselves up.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint tools apt-tools go-tools deploy-tools bench bench-tls reliability soak conformance-feed fleet

# Debian's python3 comes without venv (package python3-venv): installed on first need.
$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV) && sh tests/apt-install.sh python3-venv && $(PYTHON) -m venv $(VENV); }
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

## Run the monitor against its built-in simulated gateway.
demo: $(BIN)/.installed
	$(BIN)/gateway-monitor demo

## Install the external tools the tests use (Prometheus, Alertmanager, validators, a browser).
## apt-tools runs its scripts one after the other, holding the lock of tests/apt-install.sh;
## go-tools builds Prometheus 3.7, Alertmanager 0.29 and Thanos 0.42's rule checker
## (tests/tools/thanos-rules-check) from their Go modules (minutes the first time, cached per user
## afterwards).
tools: apt-tools go-tools deploy-tools

apt-tools:
	flock $${TMPDIR:-/tmp}/gateway-monitor-apt.lock sh -c 'bash tests/install-browser.sh && sh alerts/install-tools.sh'

go-tools:
	sh tests/install-go-tools.sh

deploy-tools:
	sh deploy/install-tools.sh

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/mypy

## Everything CI runs: lint, type check, all tests. The set-up steps run side by side (the Go
## build is CPU-bound, the package downloads are not). The tests run on two workers, a test file
## each at a time (its module fixtures run once): most of their time is waiting for alerts.
test:
	$(MAKE) --jobs=4 $(BIN)/.installed tools lint
	$(BIN)/pytest --numprocesses=2 --dist=loadfile

## The reliability suite, then its figures as tables (docs/reliability.md).
reliability: $(BIN)/.installed tools
	RELIABILITY_FIGURES=build/reliability.json $(BIN)/pytest tests/reliability
	$(BIN)/python tests/reliability/render_report.py build/reliability.json

## Feed health at default settings against the real gateway: a muted instrument, a frozen feed,
## alerts and recovery (~15 min; make test skips it). INTERVALS=15s,30s by default.
conformance-feed: $(BIN)/.installed tools
	CONFORMANCE_FULL=1 FEED_FIGURES=build/feed-default-settings.json \
	$(if $(INTERVALS),CONFORMANCE_FULL_INTERVALS=$(INTERVALS)) \
	$(BIN)/pytest tests/conformance/test_feed_default_settings.py -ra -s

## A bounded soak: every scenario and fault, repeatedly (MINUTES=15 by default).
soak: $(BIN)/.installed
	$(BIN)/python tests/harness/soak.py --minutes $(or $(MINUTES),15) --report-dir build/soak

## The performance benchmark: one table (tests/bench/RESULTS.md has a full run). QUICK=1 for a smoke run.
bench: $(BIN)/.installed
	$(BIN)/python tests/bench/run.py $(if $(QUICK),--quick,)

## What TLS and basic auth (web config file) cost a /metrics scrape: p50/p99 per mode.
bench-tls: $(BIN)/.installed
	$(BIN)/python tests/bench/scrape_tls.py

## A fleet of N simulated gateways (N=6 by default), a monitor process each, one Prometheus and one
## Alertmanager: a healthy stretch, a broker outage on 60% of them, recovery; figures and pages in
## tests/harness/FLEET-RESULTS.md. PROFILE=production keeps every ratio of production's timings;
## ARGS="--proposed" tries NOTES-fleet.md's proposed route and rule changes (on copies).
## Needs the Go-built tools (make go-tools, or DEPLOY_TOOLS_VENV pointing at them).
fleet: $(BIN)/.installed
	$(BIN)/python tests/harness/fleet.py --gateways $(or $(N),6) $(if $(PROFILE),--profile $(PROFILE),) $(ARGS)
