"""The framework's own parameter count (trainable and not) equals the spec's, for every case; and the
native model recorded each canonical layer where a layer holding its tensors is (``build`` checks
that exactly the spec's layers are recorded)."""

from __future__ import annotations

import pytest

from spec.backend import Backend
from spec.cases import Case
from spec.params import count_params
from tests.checks import assert_recorded_layers_hold_their_tensors, built
from tests.contract.matrix import cases


@pytest.mark.parametrize("case", cases("counts"))
def test_param_counts_from_the_framework_equal_the_spec(backend: Backend, case: Case) -> None:
    params = case.params(0)
    model = built(backend, case.spec, params)
    assert backend.count_params(model) == count_params(case.spec)
    assert_recorded_layers_hold_their_tensors(model, params)
