"""Two backends on the same weights and batch: their evaluation logits, and every trained tensor's
gradient."""

from __future__ import annotations

import pytest

from spec.backend import Backend
from spec.cases import Case
from tests.checks import assert_backends_agree
from tests.contract.matrix import cases

SEED = 4


@pytest.mark.parametrize("case", cases("agreement"))
def test_backends_agree_on_logits_and_per_parameter(backends: tuple[Backend, Backend], case: Case) -> None:
    params, (x, targets) = case.params(SEED), case.gradient_batch(SEED)
    assert_backends_agree(backends, case.spec, params, x, targets, case.trains_with)
