# wastestream: the two commands are `make demo` and `make test`; both install what they need
# (Debian packages: `packages`; Python: the venv), then start the services.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
DURATION ?= 60
PYTEST_ARGS ?=
BENCH_ARGS ?=
CHAOS_ARGS ?=

.PHONY: demo test unit integration packages services services-down lint schema bench bench-city chaos clean

# Debian packages of every program the services and tests use (deploy/local/lib.sh WS_PROGRAMS),
# installed only when missing: first, since even the venv needs one (python3-venv).
packages:
	@bash deploy/local/packages.sh

$(STAMP): pyproject.toml | packages
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@mkdir -p .run && : > .run/venv-install.log
	@bash -c 'source deploy/local/lib.sh && with_progress venv "installing the Python packages into $(VENV)" \
	  "1-3 min the first time" .run/venv-install.log $(BIN)/python -m pip install -q --upgrade pip && \
	  with_progress venv "installing wastestream[dev] into $(VENV)" "1-3 min the first time" \
	  .run/venv-install.log $(BIN)/python -m pip install -q -e ".[dev]"' \
	  || { tail -n 30 .run/venv-install.log; echo "venv: install failed (log: .run/venv-install.log)"; exit 1; }
	@rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP)

services: $(STAMP)
	bash deploy/local/services.sh up

services-down:
	bash deploy/local/services.sh down

demo: $(STAMP)
	$(BIN)/wastestream demo --duration $(DURATION)

test: $(STAMP) services
	$(BIN)/python -m pytest -ra $(PYTEST_ARGS)

unit: $(STAMP)
	$(BIN)/python -m pytest -ra tests/unit $(PYTEST_ARGS)

# The bench starts private services of its own (ports 38830/39092/38086) and stops them after; it
# does not start the shared ones: idle, their Kafka alone was ~2 % of the machine in every figure.
# BENCH_ARGS=--shared-services measures on those instead (`make services` first).
bench: $(STAMP)
	$(BIN)/wastestream bench $(BENCH_ARGS)

# A city of 4 million (wastestream/bench/city.py) in real time: every device at its report rate;
# BENCH_ARGS=--province: ten times that (40 million people, ~4,700 msg/s).
bench-city: $(STAMP)
	$(BIN)/wastestream bench --city-scale $(BENCH_ARGS)

# Fault injection on PRIVATE services (.run/chaos, ports 28830/29092/28086): kill -9 of each
# service and process in turn during steady traffic; exact counts per fault (CHAOS_ARGS).
chaos: $(STAMP)
	$(BIN)/wastestream chaos $(CHAOS_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

schema: $(STAMP)
	$(BIN)/wastestream schema --out contract/wastestream.schema.json

clean:
	bash deploy/local/services.sh down || true
	rm -rf .run

# The indicator report of the last day (REPORT_FROM, REPORT_ARGS) as HTML, then a PNG of it rendered
# by headless Chromium (installed with apt-get if missing) to check that it looks right.
.PHONY: report-screenshot
report-screenshot: REPORT_FROM ?= now-1d
report-screenshot: REPORT_DIR ?= .run/report
report-screenshot: $(STAMP) services
	$(BIN)/wastestream report --from $(REPORT_FROM) --out $(REPORT_DIR)/report.html $(REPORT_ARGS)
	$(BIN)/python -m wastestream.report.screenshot $(REPORT_DIR)/report.html $(REPORT_DIR)/report.png
	@echo "screenshot: $(REPORT_DIR)/report.png"
