"""Finding backends by name; a missing framework skips its tests with the reason."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from spec.backend import BACKEND_NAMES, Backend, load_backend
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
