# revmon developer tasks. `make help` lists them.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-11s %s\n", $$1, $$2}'

# Every dependency, transitive ones and the dev tools included, comes from the lock with
# its hashes checked; revmon itself is then installed from this tree without any download.
$(STAMP): pyproject.toml requirements-dev.lock
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --require-hashes --no-deps -r requirements-dev.lock
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $(STAMP)

.PHONY: install
install: $(STAMP) ## install revmon and its dev tools into .venv, hash-checked from the lock

.PHONY: demo
demo: $(STAMP) ## run the live demo: embedded broker, worker, simulated revenue engine
	$(VENV)/bin/revmon demo

.PHONY: lint
lint: $(STAMP) ## ruff (lint + format check) and mypy --strict
	$(VENV)/bin/ruff check revmon tests bench examples deploy
	$(VENV)/bin/ruff format --check revmon tests bench examples deploy
	$(VENV)/bin/mypy

# Debian packages the tests run for real: Prometheus and promtool, Alertmanager, headless
# Chromium, stunnel (TLS in front of the embedded broker), openssl (test certificates).
# Installed when missing.
SYSTEM_TOOLS := promtool:prometheus prometheus:prometheus \
	prometheus-alertmanager:prometheus-alertmanager chromium:chromium stunnel4:stunnel4 \
	openssl:openssl

.PHONY: system-deps
system-deps: ## install the Debian packages the tests need, when missing
	@missing=""; for pair in $(SYSTEM_TOOLS); do \
		command -v "$${pair%%:*}" >/dev/null 2>&1 || missing="$$missing $${pair#*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

.PHONY: test
test: lint system-deps ## lint, then every test (unit, integration on Tansu, end to end)
	$(VENV)/bin/pytest $(PYTEST_ARGS)

.PHONY: dashboards
dashboards: $(STAMP) ## regenerate grafana/dashboards/*.json from revmon/grafana
	$(PY) -m revmon.grafana grafana/dashboards

COMPILE = $(VENV)/bin/pip-compile --quiet --generate-hashes --strip-extras --allow-unsafe \
	--no-emit-index-url --no-emit-find-links

.PHONY: lock
lock: $(STAMP) ## regenerate requirements{,-dev,-build}.lock (pinned, hashed)
	$(COMPILE) -o requirements.lock pyproject.toml
	$(COMPILE) --extra dev -o requirements-dev.lock pyproject.toml
	$(COMPILE) --only-build-deps --build-deps-for=wheel -o requirements-build.lock pyproject.toml

.PHONY: lock-check
lock-check: $(STAMP) ## resolve pyproject.toml again (needs the index) and diff with the locks
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	cp requirements.lock requirements-dev.lock requirements-build.lock "$$tmp"/; \
	$(COMPILE) -o "$$tmp"/requirements.lock pyproject.toml && \
	$(COMPILE) --extra dev -o "$$tmp"/requirements-dev.lock pyproject.toml && \
	$(COMPILE) --only-build-deps --build-deps-for=wheel \
		-o "$$tmp"/requirements-build.lock pyproject.toml && \
	for lock in requirements.lock requirements-dev.lock requirements-build.lock; do \
		diff -u <(grep -v -e --output-file $$lock) <(grep -v -e --output-file "$$tmp"/$$lock) \
			|| { echo "$$lock is not current: run make lock"; exit 1; }; \
	done; echo "the locks are current"

.PHONY: bench
bench: $(STAMP) ## throughput, memory, freshness and soak benchmarks
	$(PY) bench/run.py
	$(PY) bench/freshness.py
	$(PY) bench/soak.py

.PHONY: clean
clean: ## remove local state and caches (not .venv)
	rm -rf .revmon-data .pytest_cache .mypy_cache .ruff_cache
