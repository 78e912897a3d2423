"""The framework's compiler and its eager mode compute the same model: evaluation logits, and one
train step from the same weights (its loss, and the weights after it but for a deep network, whose
gradients are not judged element by element: :data:`spec.cases.DEEP_GRADIENTS`,
:data:`spec.cases.DEEP_ELEMENTS`)."""

from __future__ import annotations

import pytest

from spec.backend import Backend
from spec.cases import Case
from spec.optimizers import OptimizerSpec
from spec.tolerances import forward_check, max_scaled_error, tolerance
from tests.checks import built
from tests.contract.matrix import cases

SEED = 8
SGD = OptimizerSpec("sgd", 0.1, momentum=0.9, nesterov=False)


@pytest.mark.parametrize("case", cases("compiled"))
def test_compiled_and_eager_agree(backend: Backend, case: Case) -> None:
    spec, params, (x, targets) = case.spec, case.params(SEED), case.gradient_batch(SEED)
    device = backend.device()
    tol = tolerance(forward_check(deep=spec.is_deep, training=False), "float32", device)
    model = built(backend, spec, params)
    eager, compiled = (backend.logits(model, x, compiled=mode) for mode in (False, True))
    assert max_scaled_error(compiled, eager, tol) <= 1.0, "evaluation logits"
    results = []
    for mode in (False, True):
        model = backend.build(spec, params)
        optimizer = backend.make_optimizer(model, SGD)
        loss = backend.train_step(model, optimizer, x, targets, case.trains_with, compiled=mode)
        results.append((loss, backend.export_params(model)))
    (eager_loss, eager_after), (compiled_loss, compiled_after) = results
    assert compiled_loss == pytest.approx(eager_loss, rel=tolerance("forward", "float32", device).rtol)
    if spec.is_deep:
        return  # its weights after the step follow its gradients, not judged element by element (see above)
    tol = tolerance("trajectory", "float32", device)
    for name, value in eager_after.items():
        assert max_scaled_error(compiled_after[name], value, tol) <= 1.0, name
