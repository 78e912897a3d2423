"""Checks shared by the contract matrix (tests/contract/) and the family tests: one backend against
the judge's gradients and optimizer update, two backends against each other parameter by parameter,
and a model built or skipped where its framework cannot express it."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest

from spec import reference as ref
from spec.backend import Backend
from spec.errors import UnsupportedOption
from spec.layer_paths import resolve
from spec.models import ModelSpec
from spec.optimizers import OptimizerSpec
from spec.params import Precision, trained_names
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
    checks = ref.check_gradients(
        spec, params, x, targets, loss, grads, judged=judged(spec, params, x, targets, loss, seed)
    )
    worst = max(checks, key=lambda c: c.relative_error)
    assert worst.relative_error <= tolerance("gradient", "float32", backend.device()).rtol, worst


def _inputs_digest(params: Mapping[str, np.ndarray], x: np.ndarray, targets: np.ndarray) -> str:
    """What a cached result depends on besides the spec and loss: the parameters (by name), the batch."""
    hashed = hashlib.sha256()
    for array in (*(params[name] for name in sorted(params)), x, targets):
        array = np.ascontiguousarray(array)
        hashed.update(f"{array.dtype}{array.shape}".encode())
        hashed.update(array.tobytes())
    return hashed.hexdigest()


_judged: dict[tuple[ModelSpec, str, int, str], list[ref.JudgedDirection]] = {}


def judged(
    spec: ModelSpec, params: Mapping[str, np.ndarray], x: np.ndarray, targets: np.ndarray, loss: str, seed: int
) -> list[ref.JudgedDirection]:
    """The judge's directional derivatives for these inputs (:func:`spec.reference.judge_directions`),
    computed once per process: every backend is checked against the same ones, and the judge's finite
    differences cost more than a backend's gradients."""
    key = (spec, loss, seed, _inputs_digest(params, x, targets))
    if key not in _judged:
        _judged[key] = ref.judge_directions(spec, params, x, targets, loss, seed=seed)
    return _judged[key]


def built(
    backend: Backend, spec: ModelSpec, params: Mapping[str, np.ndarray], precision: Precision = "float32"
) -> object:
    """The backend's model holding ``params``, or a skip naming what its framework cannot express."""
    try:
        return backend.build(spec, params, precision=precision)
    except UnsupportedOption as exc:
        pytest.skip(f"not native on {backend.name}: {exc}")


_results: dict[tuple[str, ModelSpec, str, str], tuple[np.ndarray, dict[str, np.ndarray]]] = {}


def logits_and_gradients(
    backend: Backend, spec: ModelSpec, params: Mapping[str, np.ndarray], x: np.ndarray, targets: np.ndarray, loss: str
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The backend's evaluation logits and training gradients on a model built from ``params``,
    computed once per process for the same inputs: each backend meets the other two in the pair
    checks, and building and tracing a model costs more than comparing its results. A model the
    framework cannot express is a skip."""
    key = (backend.name, spec, loss, _inputs_digest(params, x, targets))
    if key not in _results:
        model = built(backend, spec, params)
        logits = backend.logits(model, x)  # before the training pass updates any running statistics
        _results[key] = (logits, backend.loss_and_grads(model, x, targets, loss)[1])
    return _results[key]


def assert_backends_agree(
    backends: tuple[Backend, Backend], spec: ModelSpec, params: Mapping[str, np.ndarray], x: np.ndarray,
    targets: np.ndarray, loss: str,
) -> None:  # fmt: skip
    """Both backends' evaluation logits, and their gradients of every trained tensor, on models built
    from ``params``, agree within the cross-backend tolerances."""
    first, second = backends
    (logits_a, grads_a), (logits_b, grads_b) = (
        logits_and_gradients(backend, spec, params, x, targets, loss) for backend in backends
    )
    device = first.device()
    error = max_scaled_error(logits_a, logits_b, tolerance("cross_backend_forward", "float32", device))
    assert error <= 1.0, f"logits: {first.name} vs {second.name} differ by {error:.3g}× the tolerance"
    tol = tolerance("cross_backend_gradient", "float32", device)
    for name in trained_names(spec, loss):
        error = max_scaled_error(grads_a[name], grads_b[name], tol)
        assert error <= 1.0, f"{name}: {first.name} vs {second.name} differ by {error:.3g}× the tolerance"


def judge_adam_step(params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The judge's first :data:`ADAM` update of the tensors in ``grads``."""
    trained = {name: params[name] for name in grads}
    return ref.ReferenceOptimizer(ADAM, trained).step(trained, grads)


# the native class holding each canonical variable, by the name the framework gives that class
HOLDERS = {
    "kernel": ("Linear", "Conv2d", "ConvTranspose2d", "Dense", "Conv2D", "Conv2DTranspose", "Conv", "ConvTranspose",
               "EinsumDense", "LinearGeneral", "MultiheadAttention", "RNN", "LSTM", "GRU", "SimpleRNNCell",
               "LSTMCell", "GRUCell", "SimpleCell", "OptimizedLSTMCell"),
    "gamma": ("BatchNorm1d", "BatchNorm2d", "BiasedBatchNorm1d", "BiasedBatchNorm2d", "BatchNormalization",
              "BatchNorm", "LayerNorm", "LayerNormalization"),
    "embeddings": ("Embedding", "Embed", "LearnedPositions"),
}  # fmt: skip


def assert_recorded_layers_hold_their_tensors(model: Any, params: Mapping[str, np.ndarray]) -> None:
    """Each canonical layer the model recorded (``model.layer_paths``) leads to a native layer of a
    class that holds tensors of the layer's kind (a kernel on a Linear, not on its activation)."""
    for layer in model.layer_paths:
        variables = {name.rsplit("/", 1)[1] for name in params if name.rsplit("/", 1)[0] == layer}
        native = type(resolve(model, model.layer_paths[layer]))
        kinds = {cls.__name__ for cls in native.__mro__}  # torch's out_proj is a subclass of Linear
        for variable, holders in HOLDERS.items():
            if variable in variables:
                assert kinds & set(holders), f"{layer}: {variable} recorded on a {native.__name__}"
