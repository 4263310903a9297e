# The two commands of the README: `make demo` (main job) and `make test` (test suite).
# Both create .venv on first use. torch is installed first from its pinned CPU build so that
# pip never pulls the CUDA packages on a CPU machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev]"
	@# Chromium for the report's browser test: the system package where apt can install it (else that test skips)
	-command -v chromium >/dev/null || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; } || echo "no chromium: the report's browser test will skip"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/drivesim demo --out out/demo --overwrite  # a demo always starts afresh

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 tests

.PHONY: install demo test
