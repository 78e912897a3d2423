# The two quick-start commands: `make compare` (the cross-backend report) and `make test`.
# Both create .venv on first use, with the tested versions from .ci/constraints.txt.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
CONSTRAINTS := .ci/constraints.txt
PYTEST_ARGS ?=

.PHONY: test compare lint venv clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml $(CONSTRAINTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c $(CONSTRAINTS) -e ".[all,dev]"
	touch $@

test: venv
	$(BIN)/python -m pytest -n 2 $(PYTEST_ARGS)

compare: venv
	$(BIN)/python -m spec.compare

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) reports .pytest_cache
