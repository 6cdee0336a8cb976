# pyrostruct developer commands. Every target creates .venv from python3 when it
# is missing and installs the package once (a stamp file keyed on pyproject.toml
# and constraints.txt; re-running a target reinstalls nothing when they did not
# change). torch is pinned to the CPU build through constraints.txt.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST := $(BIN)/python -m pytest
# pytest exits 5 when it collected no test: a run with nothing to fail is not a failure.
define run_pytest
	$(PYTEST) $(1); rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest: no tests collected"; rc=0; fi; exit $$rc
endef

VENV_MIN := .venv-min
STAMP_MIN := $(VENV_MIN)/.installed

.PHONY: venv demo test test-all test-min bench bench-quick lint format clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev,bench]'
	@touch $@

venv: $(STAMP)

# The lower bound of every dependency (constraints-min.txt, checked against
# pyproject.toml by tests/test_package.py), in a venv of its own.
$(STAMP_MIN): pyproject.toml constraints-min.txt
	@test -x $(VENV_MIN)/bin/python || $(PYTHON) -m venv $(VENV_MIN)
	$(VENV_MIN)/bin/python -m pip install -q --upgrade pip
	$(VENV_MIN)/bin/python -m pip install -q -c constraints-min.txt -e '.[dev]'
	@touch $@

demo: $(STAMP)
	$(BIN)/python -m pyrostruct.demo

lint: $(STAMP)
	$(BIN)/ruff check .

# The docstrings' >>> examples run as doctests, in a pytest run of their own: under the
# suite's --import-mode=importlib, doctests of several modules in one run can import a
# second copy of a module.
DOCTEST = --doctest-modules pyrostruct --import-mode=prepend -q -p no:cacheprovider

test: lint
	$(call run_pytest,-m "not slow" -n 2)
	$(call run_pytest,$(DOCTEST))

test-all: lint
	$(call run_pytest,-n 2)
	$(call run_pytest,$(DOCTEST))

# The fast suite on the lowest versions pyproject.toml allows (CI runs it once).
test-min: $(STAMP_MIN)
	$(VENV_MIN)/bin/python -m pytest -m "not slow" -n 2 -p no:cacheprovider
	$(VENV_MIN)/bin/python -m pytest $(DOCTEST)

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

bench-quick: $(STAMP)
	$(BIN)/python benchmarks/run_all.py --quick

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) $(VENV_MIN) build *.egg-info .pytest_cache .ruff_cache .hypothesis
