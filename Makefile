# Two entry points on a fresh machine (see README): `make quickstart` and `make test`.
# Both create the virtual environment if it is absent. torch is installed first and pinned to
# the local CPU build; the project's bound (<2.14) then installs nothing more. The `distributed`
# extra (ray[tune]) and the `offline` extra (d3rlpy: MA-CQL, MA-TD3+BC, MA-DT) are installed too
# so the tests cover the Ray executor and the d3rlpy baselines.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

# The stamp also depends on this Makefile, so a changed install line (e.g. a new extra) reinstalls.
$(BIN)/.radiorl-installed: pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[test,distributed,offline]'
	touch $@

install: $(BIN)/.radiorl-installed

quickstart: install
	$(BIN)/radiorl run quickstart

test: install
	$(BIN)/python -m pytest -q -p no:cacheprovider tests

.PHONY: install quickstart test
