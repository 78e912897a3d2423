"""Finding backends by name; a missing framework skips its tests with the reason."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from spec.backend import (
    BACKEND_NAMES,
    KERAS_ENGINES,
    THREADS_ENV,
    Backend,
    intra_op_threads,
    load_backend,
    marker_of,
)
from spec.errors import SpecError

ROOT = Path(__file__).resolve().parents[1]


def test_unknown_backend_is_a_spec_error() -> None:
    allowed = "'torch', 'keras', 'jax', 'keras-jax', 'keras-torch'"
    with pytest.raises(SpecError, match=f"backend: got 'mxnet'; allowed: {allowed}"):
        load_backend("mxnet")


def test_loaded_backend_satisfies_the_protocol(backend: Backend, backend_name: str) -> None:
    assert isinstance(backend, Backend)
    assert backend.name == backend_name


def _run_pytest_with_blocked_import(blocked: str, args: list[str], env_extra: dict[str, str] | None = None):
    """Run pytest in a fresh interpreter in which ``import <blocked>`` fails, as if not installed."""
    code = (
        f"import sys; sys.modules[{blocked!r}] = None; import pytest; "
        f"sys.exit(pytest.main({args!r} + ['-p', 'no:cacheprovider', '-q', '-rs']))"
    )
    unset = ("TRIPTYCH_REQUIRE_BACKENDS", "KERAS_BACKEND")  # the child chooses its Keras backend from --backend
    env = {k: v for k, v in os.environ.items() if k not in unset} | (env_extra or {})
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_missing_framework_raises_backend_unavailable() -> None:
    code = (
        "import sys; sys.modules['jax'] = None\n"
        "from spec.backend import load_backend\n"
        "from spec.errors import BackendUnavailable\n"
        "try:\n    load_backend('jax')\nexcept BackendUnavailable as e:\n    print('UNAVAILABLE:', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert "UNAVAILABLE: backend 'jax' is not available" in out.stdout, out.stderr


def test_missing_framework_skips_its_tests_with_the_reason() -> None:
    result = _run_pytest_with_blocked_import(
        "jax", ["--backend", "jax", "tests/test_backends.py::test_device_is_reported"]
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 skipped" in result.stdout
    assert "backend 'jax' is not available" in result.stdout


def test_a_keras_executor_whose_engine_is_missing_skips_its_tests_with_the_reason() -> None:
    result = _run_pytest_with_blocked_import(
        "jax", ["--backend", "keras-jax", "tests/test_backends.py::test_device_is_reported"]
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 skipped" in result.stdout
    assert "backend 'keras-jax' is not available: import of jax halted" in result.stdout


def test_required_backend_that_is_missing_stops_the_run() -> None:
    result = _run_pytest_with_blocked_import(
        "jax",
        ["--backend", "jax", "tests/test_backends.py::test_device_is_reported"],
        {"TRIPTYCH_REQUIRE_BACKENDS": "jax"},
    )
    assert result.returncode != 0
    assert "TRIPTYCH_REQUIRE_BACKENDS requires 'jax'" in result.stdout + result.stderr


def _collect(*args: str, keras_backend: str | None = None) -> subprocess.CompletedProcess[str]:
    """``pytest --collect-only -q`` with ``args`` in a fresh interpreter (``KERAS_BACKEND`` as given, or unset)."""
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    if keras_backend is not None:
        env["KERAS_BACKEND"] = keras_backend
    command = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *args]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def _test_ids(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert result.returncode in (0, 5), result.stdout + result.stderr  # 5: none collected
    return [line for line in result.stdout.splitlines() if "::" in line]


@pytest.mark.parametrize("chosen", BACKEND_NAMES)
def test_backend_option_selects_only_that_backend(chosen: str) -> None:
    selected = _test_ids(_collect("--backend", chosen, "-m", marker_of(chosen), "tests/test_backends.py"))
    assert selected and all(f"[{chosen}" in line for line in selected)
    # the rest are the spec-only tests: no other executor's test is collected
    rest = _test_ids(_collect("--backend", chosen, "-m", f"not {marker_of(chosen)}", "tests/test_backends.py"))
    assert all("variants_cover" in line for line in rest), rest


@pytest.mark.parametrize("keras_backend", KERAS_ENGINES.values())
def test_all_is_every_executor_this_process_can_run(keras_backend: str) -> None:
    """By default a run takes torch, jax and Keras on the backend KERAS_BACKEND names."""
    executor = next(name for name, engine in KERAS_ENGINES.items() if engine == keras_backend)
    protocol_test = "tests/test_registry.py::test_loaded_backend_satisfies_the_protocol"
    ids = _test_ids(_collect(protocol_test, keras_backend=keras_backend))
    expected = [name for name in BACKEND_NAMES if name not in KERAS_ENGINES or name == executor]
    assert [line.split("[")[1].rstrip("]") for line in ids] == expected


def test_a_run_takes_one_keras_executor() -> None:
    result = _collect("--backend", "keras,keras-jax", "tests/test_registry.py")
    assert result.returncode != 0
    assert "Keras fixes its backend once per process: run one pytest per Keras executor" in result.stderr


def test_a_keras_executor_on_another_keras_backend_than_the_process_s_says_how_to_run_it() -> None:
    code = (
        "import os; os.environ['KERAS_BACKEND'] = 'tensorflow'\n"
        "import keras\n"
        "from spec.backend import load_backend\n"
        "from spec.errors import BackendUnavailable\n"
        "try:\n    load_backend('keras-torch')\nexcept BackendUnavailable as e:\n    print('UNAVAILABLE:', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert "this process's Keras runs on tensorflow" in out.stdout, out.stdout + out.stderr[-2000:]
    assert "`pytest --backend keras-torch`" in out.stdout


def test_spec_imports_no_framework_and_no_plotting_library() -> None:
    """spec/ is numpy + stdlib: importing every spec module brings in no framework (and the report's
    matplotlib only when a figure is drawn)."""
    forbidden = ["torch", "tensorflow", "keras", "jax", "flax", "optax", "matplotlib"]
    modules = sorted(
        "spec." + ".".join(path.relative_to(ROOT / "spec").with_suffix("").parts)
        for path in (ROOT / "spec").rglob("*.py")
        if path.name not in ("__init__.py", "__main__.py")  # __main__ runs the report
    )
    code = (
        f"import importlib, sys\nfor m in {modules!r}: importlib.import_module(m)\n"
        f"print(sorted(m for m in {forbidden!r} if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]", result.stdout
    assert "spec.report.compare" in modules and "spec.report.plots" in modules


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5"])
def test_a_bad_thread_count_names_the_variable(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(THREADS_ENV, value)
    with pytest.raises(SpecError, match=THREADS_ENV):
        intra_op_threads()


def test_every_backend_applies_the_thread_count_when_it_loads(backend: Backend, backend_name: str) -> None:
    code = (
        f"from spec.backend import load_backend\nbackend = load_backend({backend_name!r})\nprint(backend.threads())\n"
    )
    engine = KERAS_ENGINES.get(backend_name, backend_name)
    if engine == "torch":
        code += "import torch; print(torch.get_num_threads())\n"
    elif engine == "tensorflow":
        code += "import tensorflow as tf; print(tf.config.threading.get_intra_op_parallelism_threads())\n"
    else:
        code += "import os; print(int('intra_op_parallelism_threads=1' in os.environ['XLA_FLAGS']))\n"
    env = {**os.environ, THREADS_ENV: "1"}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["1", "1"]
