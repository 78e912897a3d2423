"""Finding backends by name; a missing framework skips its tests with the reason."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from spec.backend import BACKEND_NAMES, THREADS_ENV, Backend, intra_op_threads, load_backend
from spec.errors import SpecError

ROOT = Path(__file__).resolve().parents[1]


def test_unknown_backend_is_a_spec_error() -> None:
    with pytest.raises(SpecError, match="backend: got 'mxnet'; allowed: 'torch', 'keras', 'jax'"):
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
    env = {k: v for k, v in os.environ.items() if k != "TRIPTYCH_REQUIRE_BACKENDS"} | (env_extra or {})
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


def test_required_backend_that_is_missing_stops_the_run() -> None:
    result = _run_pytest_with_blocked_import(
        "jax",
        ["--backend", "jax", "tests/test_backends.py::test_device_is_reported"],
        {"TRIPTYCH_REQUIRE_BACKENDS": "jax"},
    )
    assert result.returncode != 0
    assert "TRIPTYCH_REQUIRE_BACKENDS requires 'jax'" in result.stdout + result.stderr


@pytest.mark.parametrize("chosen", BACKEND_NAMES)
def test_backend_option_selects_only_that_backend(chosen: str) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--collect-only",
            "-q",
            "-p",
            "no:cacheprovider",
            "--backend",
            chosen,
            "tests/test_backends.py",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    ids = [line for line in result.stdout.splitlines() if "::" in line]
    assert ids and all(chosen in line or "variants_cover" in line for line in ids)
    others = [name for name in BACKEND_NAMES if name != chosen]
    assert not [line for line in ids if any(f"[{o}" in line or f"-{o}" in line for o in others)]


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
    if backend_name == "torch":
        code += "import torch; print(torch.get_num_threads())\n"
    elif backend_name == "keras":
        code += "import tensorflow as tf; print(tf.config.threading.get_intra_op_parallelism_threads())\n"
    else:
        code += "import os; print(int('intra_op_parallelism_threads=1' in os.environ['XLA_FLAGS']))\n"
    env = {**os.environ, THREADS_ENV: "1"}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["1", "1"]
