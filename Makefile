# The two quick-start commands: `make compare` (the cross-backend report) and `make test`.
# Both create .venv on first use, with the tested versions from .ci/constraints.txt.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
CONSTRAINTS := .ci/constraints.txt
PYTEST_ARGS ?=
# e.g. COMPARE_ARGS="--spec-file reports/port/SimpleCNN_spec.py --no-training"
COMPARE_ARGS ?=

.PHONY: test test-all test-keras-backends compare site bench lint venv clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml $(CONSTRAINTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c $(CONSTRAINTS) -e ".[all,dev]"
	touch $@

# `make test` leaves out the exhaustive tier (tests marked `exhaustive`: long convergence runs and first
# compiles of large graphs) to stay under 12 minutes on 2 cores; `make test-all`, which CI runs, has it.
# --dist loadfile: each test file runs on one worker, so the fits, judge results and gradients a file
# shares between its tests are computed once (no worker waits for another's fit); --dist loadgroup would
# group finer, but it does not group at all with pytest 9.2 (docs/findings.md).
# --max-worker-restart=0: a worker that crashes ends the run naming its test; with a restart,
# pytest-xdist 3.8's loadfile scheduling deadlocks at the end of the run (pytest-xdist #1378).
XDIST := -n 2 --dist loadfile --max-worker-restart=0
# Keras fixes its backend once per process. The first pytest runs torch, jax and Keras on TensorFlow
# (executor keras); then one pytest per other Keras backend runs that executor's tests (its marker),
# its checks against torch and jax included. $(1): the first run's marker expression (empty: every
# test); $(2): what the other runs add to their executor's marker. Their tiers: conftest.py,
# OTHER_KERAS_BACKENDS. Every run goes ahead; the target fails if any failed (exit 5, "no test
# selected", fails too, unless PYTEST_ARGS narrowed the run to files without Keras tests).
SHELL := bash
KERAS_RUNS := keras-jax keras-torch
define keras_runs
	for executor in $(KERAS_RUNS); do \
		echo "=== $$executor: Keras on $${executor#keras-}, in its own pytest run ==="; \
		KERAS_BACKEND=$${executor#keras-} $(BIN)/python -m pytest $(XDIST) --backend torch,jax,$$executor \
			-m "$${executor/-/_}$(1)" $(PYTEST_ARGS); \
		rc=$$?; if [ $$rc -ne 0 ] && { [ $$rc -ne 5 ] || [ -z "$(strip $(PYTEST_ARGS))" ]; }; then status=$$rc; fi; \
	done
endef
define every_executor
	status=0; \
	KERAS_BACKEND=tensorflow $(BIN)/python -m pytest $(XDIST) $(if $(1),-m "$(1)") $(PYTEST_ARGS) || status=$$?; \
	$(call keras_runs,$(2)); \
	exit $$status
endef

test: venv
	$(call every_executor,not exhaustive, and not exhaustive and not keras_backends)

compare: venv
	KERAS_BACKEND=tensorflow $(BIN)/python -m spec.report $(COMPARE_ARGS)

# The static site (reports/site/index.html): each zoo model's code in the three frameworks side by side,
# with the numbers of the last `make compare` (which also builds it); the docs as pages.
site: venv
	KERAS_BACKEND=tensorflow $(BIN)/python -m spec.report.site

test-all: venv
	$(call every_executor,, and not keras_backends)

# Every test of Keras on JAX and on torch, the families, recipes and benchmark smoke runs beyond
# CI's tier included (an hour and more on 2 cores)
test-keras-backends: venv
	status=0; $(call keras_runs,); exit $$status

# Time every benchmark (tests/bench) with every framework pinned to the same number of intra-op threads
# (all cores); saves pytest-benchmark's JSON for `make compare` and for `pytest-benchmark compare`: the
# main run's (torch, jax, Keras on TensorFlow) in reports/bench.json, each other Keras backend's in
# reports/bench-<executor>.json (its hand-written baseline is its engine's).
# torch's inductor gets an empty cache for each run, so that its first calls are cold compiles like
# JAX's and XLA's (it reuses compiled kernels from /tmp across processes by default).
BENCH_THREADS ?= $(shell nproc)
BENCH_PYTEST := TORCHINDUCTOR_CACHE_DIR=$(CURDIR)/reports/torchinductor-cache \
	TRIPTYCH_THREADS=$(BENCH_THREADS) $(BIN)/python -m pytest tests/bench -p no:xdist -p no:randomly -q \
	--benchmark-enable --benchmark-min-rounds=15 --benchmark-max-time=0.25 --durations=10 \
	--benchmark-storage=reports/benchmarks --benchmark-autosave \
	--benchmark-columns=min,median,mean,stddev,rounds --benchmark-sort=name
bench: venv
	mkdir -p reports
	rm -rf reports/torchinductor-cache
	KERAS_BACKEND=tensorflow $(BENCH_PYTEST) --benchmark-json=reports/bench.json
	for executor in $(KERAS_RUNS); do \
		rm -rf reports/torchinductor-cache; \
		KERAS_BACKEND=$${executor#keras-} $(BENCH_PYTEST) --backend $$executor \
			--benchmark-json=reports/bench-$$executor.json || exit $$?; \
	done

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) reports .pytest_cache
