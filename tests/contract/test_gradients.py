"""The training loss and the gradient of every trained tensor against the judge's float64 finite
differences along random directions."""

from __future__ import annotations

import pytest

from spec.backend import Backend
from spec.cases import Case
from tests.checks import assert_gradients_match_judge, built
from tests.contract.matrix import cases

SEED = 2


@pytest.mark.parametrize("case", cases("gradients"))
def test_loss_and_gradients_match_the_judge(backend: Backend, case: Case) -> None:
    params, (x, targets) = case.params(SEED), case.gradient_batch(SEED)
    model = built(backend, case.spec, params)
    assert_gradients_match_judge(backend, model, case.spec, params, x, targets, case.trains_with, seed=SEED + 1)
