"""Mixed precision as each framework does it natively (``precision="mixed_bfloat16"`` or
``"mixed_float16"``: torch's autocast, Keras's mixed dtype policies, Flax modules with a
low-precision compute dtype): every model's outputs against the judge, relative to their magnitude
(the absolute terms the last product sums), and the small models' gradients against the backend's
own float64 witness, within what the format's unit roundoff allows at the model's depth
(:func:`spec.tolerances.mixed_tolerance`; docs/precision.md, "Mixed precision")."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from spec import reference as ref
from spec.backend import Backend
from spec.cases import Case
from spec.params import MIXED_PRECISIONS, Precision, trained_names
from spec.precision import per_tensor_norm_errors, rounding_depth
from spec.tolerances import max_scaled_error, mixed_tolerance
from tests.checks import built
from tests.contract.matrix import cases
from tests.contract.test_witness import judge_of, witness_batch, witness_gradients


@functools.cache
def judge_magnitudes(case: Case) -> tuple[np.ndarray, np.ndarray]:
    """The magnitude of each judge output (:func:`spec.reference.output_magnitude`) on the witness
    batch, in evaluation and in training mode, once per process."""
    params, x, _ = witness_batch(case)
    return tuple(ref.output_magnitude(case.spec, params, x, training=training) for training in (False, True))


@pytest.mark.parametrize("precision", MIXED_PRECISIONS)
@pytest.mark.parametrize("case", cases("mixed"))
def test_mixed_precision_outputs_match_the_judge(backend: Backend, case: Case, precision: Precision) -> None:
    spec = case.spec
    params, x, _ = witness_batch(case)
    model = built(backend, spec, params, precision=precision)
    tol = mixed_tolerance("mixed_forward", precision, rounding_depth(spec), backend.device())
    (evaluation, training, _), (evaluation_magnitude, training_magnitude) = judge_of(case), judge_magnitudes(case)
    logits = backend.logits(model, x)
    assert logits.dtype == np.float32  # outputs in the variables' dtype
    assert max_scaled_error(logits, evaluation, tol, evaluation_magnitude) <= 1.0, "evaluation logits"
    if not spec.has_dropout:  # in training mode each framework draws its own dropout masks
        in_training = backend.logits(model, x, training=True)
        assert max_scaled_error(in_training, training, tol, training_magnitude) <= 1.0, "training logits"


@pytest.mark.parametrize("precision", MIXED_PRECISIONS)
@pytest.mark.parametrize("case", cases("mixed_gradients"))
def test_mixed_precision_gradients_match_float64(backend: Backend, case: Case, precision: Precision) -> None:
    spec, loss = case.spec, case.trains_with
    params, x, targets = witness_batch(case)
    model = built(backend, spec, params, precision=precision)
    _, grads = backend.loss_and_grads(model, x, targets, loss)
    assert {g.dtype for g in grads.values()} == {np.dtype(np.float32)}  # gradients of float32 variables
    errors = per_tensor_norm_errors(spec, grads, witness_gradients(backend, case))
    assert list(errors) == trained_names(spec, loss)
    worst = max(errors, key=errors.__getitem__)
    bound = mixed_tolerance("mixed_gradient", precision, rounding_depth(spec), backend.device()).rtol
    assert errors[worst] <= bound, f"{worst}: {errors[worst]:.3g} from float64 (allowed {bound:.3g})"
