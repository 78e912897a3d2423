"""Mixed precision as each framework does it natively (``precision="mixed_bfloat16"`` or
``"mixed_float16"``: torch's autocast, Keras's mixed dtype policies, Flax modules with a
low-precision compute dtype): outputs against the judge and gradients against the backend's own
float64 witness, within what the format's unit roundoff allows at the model's depth
(:func:`spec.tolerances.mixed_tolerance`; docs/precision.md, "Mixed precision")."""

from __future__ import annotations

import numpy as np
import pytest

from spec.backend import Backend
from spec.cases import Case, float32_gradients_ill_posed
from spec.params import MIXED_PRECISIONS, Precision, trained_names
from spec.precision import per_tensor_norm_errors, rounding_depth
from spec.tolerances import max_scaled_error, mixed_tolerance
from tests.checks import built
from tests.contract.matrix import cases
from tests.contract.test_witness import judge_of, witness_batch, witness_gradients


@pytest.mark.parametrize("precision", MIXED_PRECISIONS)
@pytest.mark.parametrize("case", cases("mixed"))
def test_mixed_precision_matches_float64(backend: Backend, case: Case, precision: Precision) -> None:
    spec, loss = case.spec, case.trains_with
    params, x, targets = witness_batch(case)
    model = built(backend, spec, params, precision=precision)
    depth, device = rounding_depth(spec), backend.device()
    tol = mixed_tolerance("mixed_forward", precision, depth, device)
    evaluation, training, _ = judge_of(case)
    logits = backend.logits(model, x)
    assert logits.dtype == np.float32  # outputs in the variables' dtype
    assert max_scaled_error(logits, evaluation, tol) <= 1.0, "evaluation logits"
    if not spec.has_dropout:  # in training mode each framework draws its own dropout masks
        assert max_scaled_error(backend.logits(model, x, training=True), training, tol) <= 1.0, "training logits"
    if float32_gradients_ill_posed(spec, loss):
        return  # through a deep ReLU network's kinks no float32 gradient is well-posed, let alone this one
    _, grads = backend.loss_and_grads(model, x, targets, loss)
    assert {g.dtype for g in grads.values()} == {np.dtype(np.float32)}  # gradients of float32 variables
    errors = per_tensor_norm_errors(spec, grads, witness_gradients(backend, case))
    assert list(errors) == trained_names(spec, loss)
    worst = max(errors, key=errors.__getitem__)
    bound = mixed_tolerance("mixed_gradient", precision, depth, device).rtol
    assert errors[worst] <= bound, f"{worst}: {errors[worst]:.3g} from float64 (allowed {bound:.3g})"
