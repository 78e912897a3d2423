"""Logits and outputs against the judge, in evaluation mode and in training mode (BatchNorm on the
batch's statistics, its running statistics updated as the judge updates them)."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from spec import reference as ref
from spec.backend import Backend
from spec.cases import Case
from spec.tolerances import forward_check, max_scaled_error, tolerance
from tests.checks import built
from tests.contract.matrix import cases

SEED = 1


@functools.cache
def judged(case: Case) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """The check's parameters and batch, and the judge's evaluation logits, training-mode logits and
    running statistics after the pass: once per process, shared by every backend (ResNet-18's judge
    takes 3.5 s on a 2-core Xeon)."""
    params, (x, _) = case.params(SEED), case.batch(SEED)
    return params, x, ref.logits(case.spec, params, x), *ref.logits_and_state(case.spec, params, x, training=True)


@pytest.mark.parametrize("case", cases("forward"))
def test_forward_matches_the_judge_in_evaluation_and_training(backend: Backend, case: Case) -> None:
    spec = case.spec
    params, x, evaluation, training, state = judged(case)
    model = built(backend, spec, params)
    exported = backend.export_params(model)
    assert all(np.array_equal(exported[n], params[n]) for n in params), "export differs from what was loaded"
    device = backend.device()
    tol = tolerance(forward_check(deep=spec.is_deep, training=False), "float32", device)
    logits = backend.logits(model, x)
    outputs = backend.forward(model, x)
    assert logits.dtype == outputs.dtype == np.float32
    assert logits.shape == evaluation.shape == (len(x), *spec.output_shape)
    assert max_scaled_error(logits, evaluation, tol) <= 1.0, "logits"
    assert max_scaled_error(outputs, ref.output_activation(evaluation, spec.output_activation), tol) <= 1.0, "outputs"
    if spec.has_dropout:
        return  # in training mode each framework draws its own dropout masks: judged by the recipes
    tol = tolerance(forward_check(deep=spec.is_deep, training=case.trains_on_batch_statistics), "float32", device)
    assert max_scaled_error(backend.logits(model, x, training=True), training, tol) <= 1.0, "training-mode logits"
    after = backend.export_params(model)
    for name, value in state.items():
        error = max_scaled_error(after[name], value, tolerance("forward", "float32", device))
        assert error <= 1.0, f"{name}: running statistic off by {error:.3g}× the tolerance"
