"""Checks shared by the zoo tests (recurrent, Transformer): one backend against the judge's
gradients and optimizer update, and two backends against each other, parameter by parameter."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import numpy as np
import pytest

from spec import reference as ref
from spec.backend import Backend
from spec.errors import UnsupportedOption
from spec.models import ModelSpec
from spec.optimizers import OptimizerSpec
from spec.params import trainable_names, trained_names
from spec.tolerances import max_scaled_error, tolerance

# Kingma & Ba's defaults at a step large enough to move every parameter visibly.
ADAM = OptimizerSpec("adam", 0.01, beta1=0.9, beta2=0.999, epsilon=1e-8, epsilon_placement="corrected")


def assert_gradients_match_judge(
    backend: Backend, model: object, spec: ModelSpec, params: dict, x: np.ndarray, targets: np.ndarray, loss: str,
    *, seed: int,
) -> None:  # fmt: skip
    """The backend's loss equals the judge's, and its gradients (one per trainable tensor, in the
    spec's order) match float64 finite differences along random directions."""
    value, grads = backend.loss_and_grads(model, x, targets, loss)
    assert value == pytest.approx(ref.loss(spec, params, x, targets, loss), rel=tolerance("forward").rtol)
    assert list(grads) == trained_names(spec, loss)
    checks = ref.check_gradients(spec, params, x, targets, loss, grads, seed=seed)
    worst = max(checks, key=lambda c: c.relative_error)
    assert worst.relative_error <= tolerance("gradient", "float32", backend.device()).rtol, worst


def _digest(*arrays: np.ndarray) -> str:
    hashed = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        hashed.update(f"{array.dtype}{array.shape}".encode())
        hashed.update(array.tobytes())
    return hashed.hexdigest()


def built(backend: Backend, spec: ModelSpec, params: Mapping[str, np.ndarray]) -> object:
    """The backend's model holding ``params``, or a skip naming what its framework cannot express."""
    try:
        return backend.build(spec, params)
    except UnsupportedOption as exc:
        pytest.skip(f"not native on {backend.name}: {exc}")


_gradients: dict[tuple[str, ModelSpec, str, str], dict[str, np.ndarray]] = {}


def gradients(
    backend: Backend, spec: ModelSpec, params: Mapping[str, np.ndarray], x: np.ndarray, targets: np.ndarray, loss: str
) -> dict[str, np.ndarray]:
    """The backend's gradients on a model built from ``params``, computed once per process for the
    same inputs: each backend meets the other two in the pair checks, and building and tracing a
    model costs more than comparing its gradients. A model the framework cannot express is a skip."""
    key = (backend.name, spec, loss, _digest(*(params[name] for name in sorted(params)), x, targets))
    if key not in _gradients:
        _gradients[key] = backend.loss_and_grads(built(backend, spec, params), x, targets, loss)[1]
    return _gradients[key]


def assert_backends_agree_per_parameter(
    backends: tuple[Backend, Backend], spec: ModelSpec, params: Mapping[str, np.ndarray], x: np.ndarray,
    targets: np.ndarray, loss: str,
) -> None:  # fmt: skip
    """Both backends' gradients of every trainable tensor, on models built from ``params``, agree within
    the cross-backend tolerance."""
    first, second = backends
    grads = [gradients(backend, spec, params, x, targets, loss) for backend in backends]
    tol = tolerance("cross_backend_gradient", "float32", first.device())
    for name in trained_names(spec, loss):
        error = max_scaled_error(grads[0][name], grads[1][name], tol)
        assert error <= 1.0, f"{name}: {first.name} vs {second.name} differ by {error:.3g}× the tolerance"


def judge_adam_step(params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The judge's first :data:`ADAM` update of the tensors in ``grads``."""
    trained = {name: params[name] for name in grads}
    return ref.ReferenceOptimizer(ADAM, trained).step(trained, grads)


def assert_adam_step_from_canonical_gradients_matches_judge(
    backend: Backend, model: object, spec: ModelSpec, params: dict, *, seed: int
) -> None:
    """Random canonical gradients applied by the native optimizer land where the judge's update
    does: the layouts convert the same way on the way in as on the way out."""
    rng = np.random.default_rng(seed)
    grads = {name: rng.standard_normal(params[name].shape).astype(np.float32) for name in trainable_names(spec)}
    backend.apply_gradients(model, backend.make_optimizer(model, ADAM), grads)
    after = backend.export_params(model)
    tol = tolerance("optimizer_step", "float32", backend.device())
    for name, value in judge_adam_step(params, grads).items():
        assert max_scaled_error(after[name], value, tol) <= 1.0, name
