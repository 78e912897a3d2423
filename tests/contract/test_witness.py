"""The float64 witnesses (:mod:`spec.precision`): each backend built in float64 computes the judge's
logits, loss and gradients to float64 rounding, but for the measured shortfalls; and two backends'
float64 gradients agree tensor by tensor — on the deep ResNets too, whose float32 gradients are
ill-posed and whose finite differences cross kinks (tests/test_precision.py)."""

from __future__ import annotations

import functools
from collections.abc import Mapping

import numpy as np
import pytest

from spec import reference as ref
from spec.backend import Backend
from spec.cases import DEEP_GRADIENTS, Case, float32_gradients_ill_posed
from spec.params import trained_names
from spec.precision import per_tensor_errors, witness_check
from spec.tolerances import max_scaled_error, tolerance
from tests.checks import built, judged
from tests.contract.matrix import cases

SEED = 5
# A deep network's float64 backward pass runs on each framework's slow float64 kernels (oneDNN has
# none): its batch is small.
DEEP_BATCH = 4


def witness_batch(case: Case) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    params = case.params(SEED)
    x, targets = case.gradient_batch(SEED, size=DEEP_BATCH if case.spec.is_deep else None)
    return params, x, targets


@functools.cache
def judge_of(case: Case) -> tuple[np.ndarray, np.ndarray, float]:
    """The judge's evaluation and training-mode logits and its loss on the witness batch, once per process."""
    params, x, targets = witness_batch(case)
    spec = case.spec
    return (
        ref.logits(spec, params, x),
        ref.logits(spec, params, x, training=True),
        ref.loss(spec, params, x, targets, case.trains_with),
    )


@pytest.mark.parametrize("case", cases("witness"))
def test_float64_build_matches_the_judge(backend: Backend, case: Case) -> None:
    spec, loss = case.spec, case.trains_with
    params, x, targets = witness_batch(case)
    model = built(backend, spec, params, precision="float64")
    tol = tolerance(witness_check(spec, backend.name), "float64", backend.device())
    evaluation, training, judge_loss = judge_of(case)
    logits = backend.logits(model, x)
    assert logits.dtype == np.float64
    assert max_scaled_error(logits, evaluation, tol) <= 1.0, "evaluation logits"
    if not spec.has_dropout:  # in training mode each framework draws its own dropout masks
        assert max_scaled_error(backend.logits(model, x, training=True), training, tol) <= 1.0, "training logits"
    value, grads = backend.loss_and_grads(model, x, targets, loss)
    assert value == pytest.approx(judge_loss, rel=tol.rtol)
    assert {g.dtype for g in grads.values()} == {np.dtype(np.float64)}
    if spec.is_deep:
        return  # finite differences cross ReLU kinks at any step: judged by the agreement of witnesses
    checks = ref.check_gradients(
        spec, params, x, targets, loss, grads, judged=judged(spec, params, x, targets, loss, SEED)
    )
    worst = max(checks, key=lambda c: c.relative_error)
    assert worst.relative_error <= tolerance("witness_gradient", "float64", backend.device()).rtol, worst


@pytest.mark.exhaustive  # in `make test` finite differences judge the small cases' float32 gradients
@pytest.mark.parametrize("case", cases("witness"))
def test_float32_gradients_match_the_float64_witness(backend: Backend, case: Case) -> None:
    """Every trained tensor's float32 gradient, per tensor, against the same backend's float64 one:
    where the judge's finite differences are too costly (the full-size networks) or compare
    elements of very different sizes, the witness judges float32 backprop."""
    spec, loss = case.spec, case.trains_with
    if float32_gradients_ill_posed(spec, loss):
        pytest.skip(DEEP_GRADIENTS)
    params, x, targets = witness_batch(case)
    _, grads = backend.loss_and_grads(built(backend, spec, params), x, targets, loss)
    errors = per_tensor_errors(spec, grads, witness_gradients(backend, case))
    worst = max(errors, key=errors.__getitem__)
    assert errors[worst] <= tolerance("gradient_vs_witness", "float32", backend.device()).rtol, (worst, errors[worst])


_gradients: dict[tuple[str, Case], dict[str, np.ndarray]] = {}


def witness_gradients(backend: Backend, case: Case) -> Mapping[str, np.ndarray]:
    """The backend's float64 gradients on the witness batch, once per process (each backend meets two others)."""
    key = (backend.name, case)
    if key not in _gradients:
        params, x, targets = witness_batch(case)
        model = built(backend, case.spec, params, precision="float64")
        _gradients[key] = backend.loss_and_grads(model, x, targets, case.trains_with)[1]
    return _gradients[key]


@pytest.mark.parametrize("case", cases("witness_agreement"))
def test_float64_witnesses_agree_per_parameter(backends: tuple[Backend, Backend], case: Case) -> None:
    first, second = backends
    grads_b = witness_gradients(second, case)  # the later executor first: Keras on JAX or torch refuses float64
    grads_a = witness_gradients(first, case)
    tol = tolerance(witness_check(case.spec, first.name, second.name, gradients=True), "float64", first.device())
    errors = per_tensor_errors(case.spec, grads_a, grads_b)
    assert list(errors) == trained_names(case.spec, case.trains_with)
    worst = max(errors, key=errors.__getitem__)
    assert errors[worst] <= tol.rtol, f"{worst}: {first.name} vs {second.name} differ by {errors[worst]:.3g}"
