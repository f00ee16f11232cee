# Set-up and everyday commands. `make demo` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-all bench install postgres clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch first and pinned: the local CPU wheel serves 2.13.0; any other torch pulls gigabytes of CUDA.
$(STAMP): $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install torch==2.13.0
	$(BIN)/pip install -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python examples/demo.py

test: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q

test-all: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -m ""

# The PostgreSQL server binaries for the sweep test on a real database (tests/test_sweeps.py, slow; docs/sweeps.md).
# Debian/Ubuntu's package; the test starts its own server in a temporary folder, so the one the package sets up may stay off.
SUDO = $(if $(filter 0,$(shell id -u)),,sudo)
postgres:
	$(SUDO) apt-get update
	$(SUDO) apt-get install -y --no-install-recommends postgresql

bench: $(STAMP)
	$(BIN)/python benchmarks/env_speed.py

clean:
	rm -rf $(VENV) build *.egg-info
