"""pytest setup shared by every test: backend selection, device and precision, backend fixtures.

* ``--backend torch|keras|jax|keras-jax|keras-torch|all`` (repeatable or comma-separated) chooses the
  executors the parametrized tests run on; ``all`` (the default) is every executor this process can
  run: torch, jax, and Keras on the backend ``KERAS_BACKEND`` names (TensorFlow unless set). Keras
  fixes its backend once per process, so a run takes one Keras executor: ``--backend keras-jax``
  runs Keras on JAX (and sets ``KERAS_BACKEND``); ``make test`` runs one pytest per Keras backend.
  Spec-only tests always run.
* A backend whose framework is missing skips its tests with the import error as the reason, unless
  ``TRIPTYCH_REQUIRE_BACKENDS`` (set by CI) names it: then the run stops with that error, so a broken
  install cannot pass as a run of skips.
* Loading a backend switches its framework to exact float32 (TF32 off, JAX matmul precision
  'highest'), so the tolerance table measures the implementations, not the hardware.
* Each backend test carries a marker named after its executor: ``-m jax``, ``-m "not keras"``,
  ``-m keras_jax`` (a marker is a Python name).
* Under pytest-xdist each worker pins every framework to its share of the cores (``TRIPTYCH_THREADS``).
* After each test module every loaded backend frees the compiled programs it can, and a process near
  the kernel's limit on memory maps stops with the numbers (XLA segfaults past it: docs/findings.md).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from spec.backend import (
    BACKEND_NAMES,
    KERAS_ENGINES,
    THREADS_ENV,
    Backend,
    choose_keras_engine,
    load_backend,
    marker_of,
    process_backends,
)
from spec.cases import FIRST_OF_KIND
from spec.errors import BackendUnavailable

REQUIRED_ENV = "TRIPTYCH_REQUIRE_BACKENDS"
# The share of the kernel's memory-map limit (vm.max_map_count) a test process may hold after a
# module: each compiled program maps its code, and XLA segfaults when a map is refused.
MAPS_BUDGET = 0.9

# pytest-xdist runs one process per worker: give each an equal share of the cores instead of letting
# three frameworks per process each start a pool over every core (oversubscribed pools spin and wait).
if os.environ.get("PYTEST_XDIST_WORKER_COUNT") and not os.environ.get(THREADS_ENV):
    os.environ[THREADS_ENV] = str(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--backend",
        action="append",
        default=[],
        help=f"executor(s) to test: {', '.join(BACKEND_NAMES)} or all (repeatable, or comma-separated; default all: "
        "those this process can run, with one Keras backend)",
    )


def selected_backends(config: pytest.Config) -> tuple[str, ...]:
    raw = [part.strip() for value in config.getoption("--backend") for part in value.split(",") if part.strip()]
    if not raw or "all" in raw:
        return process_backends()
    unknown = sorted(set(raw) - set(BACKEND_NAMES))
    if unknown:
        raise pytest.UsageError(f"--backend: unknown {unknown}; choose from {', '.join(BACKEND_NAMES)} or all")
    return tuple(name for name in BACKEND_NAMES if name in raw)


def _choose_keras_engine(config: pytest.Config) -> None:
    """Set this process's Keras backend from ``--backend`` before any test imports Keras."""
    chosen = [name for name in selected_backends(config) if name in KERAS_ENGINES]
    if len(chosen) > 1:
        raise pytest.UsageError(
            f"--backend: {', '.join(chosen)} need Keras on {len(chosen)} backends, and Keras fixes its backend once "
            "per process: run one pytest per Keras executor (make test does)"
        )
    if chosen:
        try:
            choose_keras_engine(chosen[0])
        except BackendUnavailable as exc:
            raise pytest.UsageError(f"--backend: {exc}") from None


def pytest_configure(config: pytest.Config) -> None:
    _choose_keras_engine(config)
    for name in BACKEND_NAMES:
        config.addinivalue_line("markers", f"{marker_of(name)}: runs on the {name} executor")
    required = [n.strip() for n in os.environ.get(REQUIRED_ENV, "").split(",") if n.strip()]
    for name in required:
        if name not in BACKEND_NAMES:
            raise pytest.UsageError(f"{REQUIRED_ENV}: unknown backend {name!r}")
    config._triptych_required = tuple(required)  # type: ignore[attr-defined]


_loaded: dict[str, Backend | BackendUnavailable] = {}


def get_backend(config: pytest.Config, name: str) -> Backend:
    """The backend called ``name``, loaded once per session; skips (or fails, if required) when missing."""
    if name not in _loaded:
        try:
            _loaded[name] = load_backend(name)
        except BackendUnavailable as exc:
            _loaded[name] = exc
    found = _loaded[name]
    if isinstance(found, BackendUnavailable):
        if name in config._triptych_required:  # type: ignore[attr-defined]
            pytest.exit(f"{REQUIRED_ENV} requires {name!r}, but: {found}", returncode=3)
        pytest.skip(str(found))
    return found


def framework_backend(request: pytest.FixtureRequest, name: str) -> Backend:
    """Backend ``name`` for a test of its framework's own layers, if ``--backend`` selected it."""
    if name not in selected_backends(request.config):
        pytest.skip(f"--backend did not select {name}")
    return get_backend(request.config, name)


def _backend_params(config: pytest.Config) -> list:
    return [
        pytest.param(name, marks=getattr(pytest.mark, marker_of(name)), id=name) for name in selected_backends(config)
    ]


def _backend_pair_params(config: pytest.Config) -> list:
    names = selected_backends(config)
    if len(names) < 2:
        reason = f"cross-backend checks need two backends; --backend selected only {names[0]}"
        return [pytest.param((names[0], names[0]), marks=pytest.mark.skip(reason=reason), id=f"only-{names[0]}")]
    return [
        pytest.param(
            (a, b), marks=[getattr(pytest.mark, marker_of(a)), getattr(pytest.mark, marker_of(b))], id=f"{a}-{b}"
        )
        for i, a in enumerate(names)
        for b in names[i + 1 :]
    ]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend_name" in metafunc.fixturenames:
        metafunc.parametrize("backend_name", _backend_params(metafunc.config))
    if "backend_pair" in metafunc.fixturenames:
        metafunc.parametrize("backend_pair", _backend_pair_params(metafunc.config))


# Keras on JAX and on torch run the same impls/keras code as keras (on TensorFlow) does, but 3–8 times
# slower, eagerly (Keras on JAX compiles each operation for each shape): the quick tier took 11.6 min
# on keras-jax alone on a 2-core EPYC, the contract matrix's quick tier 4.9 min against TensorFlow's
# 0.65. So their tests are tiered by what they check beyond keras: `make test` runs the tests of what
# differs between Keras's backends and the contract matrix's checks against the judge on the smallest
# zoo model of each kind (not the compiled ones); `make test-all` (CI) the contract matrix's quick
# tier, the optimizers and the schedules, against the judge and against the executor of their own
# engine (keras-jax with jax, keras-torch with torch: what Keras adds); `make test-keras-backends`
# every test, the rest marked ``keras_backends``.
OTHER_KERAS_BACKENDS = frozenset(KERAS_ENGINES) - {"keras"}
# the tests of what differs between Keras's backends: files, and tests elsewhere (by function name)
KERAS_BACKEND_TESTS = ("test_keras_engines.py", "test_registry.py", "test_mixed_ops.py")
KERAS_BACKEND_TEST_FUNCTIONS = (
    "test_an_average_that_leaves_out_asymmetric_padding_is_refused_by_torch",  # finding 20
    "test_a_train_step_updates_embeddings_with_the_dense_gradient",  # dense gradients on every engine
    "test_one_train_step_updates_running_statistics_as_the_judge",  # state written back after a step
)
KERAS_BACKEND_CI_FILES = ("test_optimizers.py", "test_schedules.py")


def _tier_on_other_keras_backends(item: pytest.Item, callspec: pytest.CallSpec2) -> None:  # type: ignore[name-defined]
    executors = {callspec.params.get("backend_name"), *callspec.params.get("backend_pair", ())}
    function = getattr(item, "originalname", item.name)
    if not executors & OTHER_KERAS_BACKENDS or item.path.name in KERAS_BACKEND_TESTS:
        return
    if function in KERAS_BACKEND_TEST_FUNCTIONS:
        return
    contract = item.path.parent.name == "contract"
    pair = callspec.params.get("backend_pair")
    other_engine = pair is not None and not any(KERAS_ENGINES.get(name) in pair for name in pair)
    beyond_ci = other_engine or not (contract or item.path.name in KERAS_BACKEND_CI_FILES)
    if item.get_closest_marker("exhaustive") is not None or beyond_ci:
        item.add_marker(pytest.mark.keras_backends)
        return
    case = callspec.params.get("case")
    first_of_kind = getattr(getattr(case, "spec", None), "name", None) in FIRST_OF_KIND.values()
    # make test: against the judge only; the compiled checks (torch's first compiles: 20-57 s a model)
    # and the pairs are CI's
    if not (contract and first_of_kind and pair is None and item.path.name != "test_compiled.py"):
        item.add_marker(pytest.mark.exhaustive)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test marked ``quick_on(*backends)`` joins the exhaustive tier on every other backend; the
    tests of Keras on JAX and on torch are tiered as :data:`OTHER_KERAS_BACKENDS` says."""
    for item in items:
        quick_on = item.get_closest_marker("quick_on")
        callspec = getattr(item, "callspec", None)
        if callspec is None:
            continue
        if quick_on is not None and callspec.params.get("backend_name") not in quick_on.args:
            item.add_marker(pytest.mark.exhaustive)
        _tier_on_other_keras_backends(item, callspec)


@pytest.fixture
def backend(request: pytest.FixtureRequest, backend_name: str) -> Backend:
    """The backend under test (parametrized over ``--backend``)."""
    return get_backend(request.config, backend_name)


@pytest.fixture
def backends(request: pytest.FixtureRequest, backend_pair: tuple[str, str]) -> tuple[Backend, Backend]:
    """Two different backends to compare with each other."""
    return tuple(get_backend(request.config, name) for name in backend_pair)  # type: ignore[return-value]


def memory_maps() -> tuple[int, int] | None:
    """The memory maps this process holds and the kernel's limit on them, where Linux tells."""
    try:
        limit = int(Path("/proc/sys/vm/max_map_count").read_text())
        with open("/proc/self/maps") as maps:
            return sum(1 for _ in maps), limit
    except OSError:
        return None


@pytest.fixture(autouse=True, scope="module")
def release_compiled_programs() -> Iterator[None]:
    """After each module, every loaded backend frees the compiled programs it can
    (:meth:`spec.backend.Backend.release_compiled`); a process still holding most of the kernel's
    memory-map budget then fails here, naming the numbers, instead of segfaulting modules later."""
    yield
    for found in _loaded.values():
        if not isinstance(found, BackendUnavailable):
            found.release_compiled()
    maps = memory_maps()
    if maps is not None and maps[0] > MAPS_BUDGET * maps[1]:
        held, limit = maps
        pytest.fail(
            f"this process holds {held} memory maps, {held / limit:.0%} of vm.max_map_count={limit}: compiled "
            "programs its frameworks keep (TensorFlow keeps every XLA executable); XLA segfaults at the limit. "
            "Run fewer modules per process, or raise vm.max_map_count."
        )
