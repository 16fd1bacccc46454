# provex: `make run` sets everything up and runs the agent; `make test` sets
# everything up and runs the whole test suite. Both need root.
VENV ?= $(CURDIR)/.venv
PY := $(VENV)/bin/python
ARGS ?=
PYTEST_ARGS ?=

.PHONY: run test setup setup-test lint bench clean demo

setup:
	@PROVEX_VENV=$(VENV) scripts/setup-host.sh run

setup-test:
	@PROVEX_VENV=$(VENV) scripts/setup-host.sh test

run: setup
	$(VENV)/bin/provex run $(ARGS)

# The test set-up brings runc, busybox-static and gcc, which the demo's containers need.
demo: setup-test
	$(VENV)/bin/provex demo $(ARGS)

test: setup-test
	$(PY) -m ruff check exporter tests bench
	PROVEX_REQUIRE_EBPF=$${PROVEX_REQUIRE_EBPF:-$${CI:+1}} $(PY) -m pytest $(PYTEST_ARGS)

lint: setup-test
	$(PY) -m ruff check exporter tests bench
	$(PY) -m ruff format --check exporter tests bench

bench: setup-test
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) build dist *.egg-info
